"""``ptune prepare`` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example
from ptune_cli.errors import UserError


@app.command("prepare", epilog=example("ptune prepare --help"))
def prepare_cmd(ctx: typer.Context) -> None:
    """Not yet available."""
    raise UserError("'ptune prepare' is not yet available")
