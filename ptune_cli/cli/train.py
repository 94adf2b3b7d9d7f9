"""``ptune train`` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example
from ptune_cli.errors import UserError


@app.command("train", epilog=example("ptune train --help"))
def train_cmd(ctx: typer.Context) -> None:
    """Not yet available."""
    raise UserError("'ptune train' is not yet available")
