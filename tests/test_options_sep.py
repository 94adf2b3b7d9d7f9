"""options.option(sep=...): a list/tuple field given as one comma-separated value."""

from __future__ import annotations

from dataclasses import dataclass

import typer
from typer.testing import CliRunner

from ptune_cli.options import option, typer_command


@dataclass
class Cfg:
    labels: list[str] | None = option(None, sep=",", help="Labels.")
    fields: tuple[str, ...] = option(("a",), sep=",", help="Fields.")


def test_sep_fields_split_into_the_field_type_and_keep_their_default():
    seen: list = []
    app = typer.Typer()

    @app.callback()
    def root():
        pass

    typer_command(app, "go", Cfg, seen.append, help="""Do it.

        Indented docstring-style help is cleaned.""")
    assert CliRunner().invoke(app, ["go", "--labels", "x, y", "--fields", "b,c"]).exit_code == 0
    assert CliRunner().invoke(app, ["go"]).exit_code == 0
    assert (seen[0].labels, seen[0].fields) == (["x", "y"], ("b", "c"))
    assert (seen[1].labels, seen[1].fields) == (None, ("a",))
    out = CliRunner().invoke(app, ["go", "--help"], env={"COLUMNS": "200"}).output
    assert "Indented docstring-style help is cleaned." in out
