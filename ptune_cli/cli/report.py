"""``ptune report`` (placeholder until its issue lands)."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example
from ptune_cli.errors import UserError


@app.command("report", epilog=example("ptune report --help"))
def report_cmd(ctx: typer.Context) -> None:
    """Not yet available."""
    raise UserError("'ptune report' is not yet available")
