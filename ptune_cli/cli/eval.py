"""``ptune eval`` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example
from ptune_cli.errors import UserError


@app.command("eval", epilog=example("ptune eval --help"))
def eval_cmd(ctx: typer.Context) -> None:
    """Not yet available."""
    raise UserError("'ptune eval' is not yet available")
