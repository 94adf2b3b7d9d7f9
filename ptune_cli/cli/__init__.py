# ruff: noqa: I001  (import order = command order in --help)
"""``ptune`` command line: one module per command, registered on one typer app."""

from __future__ import annotations

from ptune_cli.cli._app import app

# Registration order is the order shown in `ptune --help` (the order of the chain).
from ptune_cli.cli import prepare as _prepare  # noqa: E402,F401
from ptune_cli.cli import translate as _translate  # noqa: E402,F401
from ptune_cli.cli import data as _data  # noqa: E402,F401
from ptune_cli.cli import train as _train  # noqa: E402,F401
from ptune_cli.cli import eval as _eval  # noqa: E402,F401
from ptune_cli.cli import report as _report  # noqa: E402,F401
from ptune_cli.cli import predict as _predict  # noqa: E402,F401
from ptune_cli.cli import serve as _serve  # noqa: E402,F401
from ptune_cli.cli import export as _export  # noqa: E402,F401


def main() -> None:
    app()


__all__ = ["app", "main"]
