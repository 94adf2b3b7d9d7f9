"""``ptune translate`` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example
from ptune_cli.errors import UserError


@app.command("translate", epilog=example("ptune translate --help"))
def translate_cmd(ctx: typer.Context) -> None:
    """Not yet available."""
    raise UserError("'ptune translate' is not yet available")
