"""The typer app shared by every command module, and small CLI helpers.

Commands live one per module in this package (``data.py``, ``translate.py``, ``train.py``,
``eval.py``…): each parses options and calls one plain function elsewhere in ``ptune_cli``.
Heavy libraries (torch, transformers) are imported inside command bodies only, so
``ptune --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import click
import typer
from typer.core import TyperGroup

from ptune_cli.errors import UserError


class _Group(TyperGroup):
    """Turns :class:`UserError` into one line on stderr and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context):
        if not sys.stderr.isatty():
            # transformers' "Loading weights" bars and the one-time GGUF conversion's tqdm bar
            # (272 updates) are noise in logs: our own plain progress lines say what happens
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            os.environ.setdefault("TQDM_DISABLE", "1")
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)

    def list_commands(self, ctx: click.Context) -> list[str]:
        # keep the order of the chain, not alphabetical
        return list(self.commands)


app = typer.Typer(
    name="ptune",
    cls=_Group,
    help="P-tuning for languages without labeled data: "
    "translate → normalize-labels → kfold → train → eval, then predict or serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        from ptune_cli import __version__

        typer.echo(f"ptune {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """The options of ``ptune`` itself (the commands have their own)."""


def example(*lines: str) -> str:
    """An epilog with examples, shown at the end of ``--help``."""
    body = "\n\n".join(f"  $ {line}" for line in lines)
    return f"Example:\n\n{body}"


def stderr_console():
    """A rich console on stderr (tables, summaries); quiet formatting when not a TTY."""
    from rich.console import Console

    # soft_wrap: paths and messages stay on one line in logs (tables still fit the width)
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def progress(transient: bool = False):
    """A rich progress bar on stderr; when stderr is not a terminal, plain lines every
    ``PTUNE_PROGRESS_SECONDS`` seconds instead (:mod:`.plain_progress`)."""
    if not sys.stderr.isatty():
        from ptune_cli.cli.plain_progress import PlainProgress

        return PlainProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=transient,
    )
