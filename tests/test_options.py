"""The config dataclass is the one declaration of a command's options (ptune_cli.options)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from ptune_cli.errors import UserError
from ptune_cli.options import (
    flag_of,
    option,
    output_fields,
    output_settings,
    typer_command,
    validate,
)


@dataclass
class Cfg:
    input: str = option(help="Input JSONL.", argument=True)
    output: str = option(help="Output file.", short="-o", affects_output=False)
    encoder: Literal["lstm", "mlp"] = option("lstm", help="Encoder kind.")
    precision: Literal["auto", "fp32", "bf16"] = option("auto", help="Precision.", aliases={"no": "fp32"})
    max_steps: int | None = option(None, help="Steps.")
    hidden: int = option(0, help="Set by code.", cli=False)

    def problems(self) -> list[str]:
        return [] if self.max_steps is None or self.max_steps >= 1 else [f"--max-steps must be >= 1, got {self.max_steps}"]


def _app(seen: list):
    app = typer.Typer()

    @app.callback()
    def root():
        pass

    def run(cfg, markdown=False):
        validate(cfg)
        seen.append((cfg, markdown))

    md = inspect.Parameter("markdown", inspect.Parameter.KEYWORD_ONLY, default=False,
                           annotation=bool)
    typer_command(app, "go", Cfg, run, help="Do it.", extra=[md])
    return app


def test_cli_is_built_from_the_dataclass():
    seen: list = []
    app = _app(seen)
    out = CliRunner().invoke(app, ["go", "--help"], env={"COLUMNS": "200"}).output
    for text in ("Input JSONL.", "--output", "-o", "[lstm|mlp]", "--max-steps", "Steps.", "--markdown", "Do it."):
        assert text in out
    assert "--hidden" not in out
    res = CliRunner().invoke(app, ["go", "in.jsonl", "-o", "x", "--max-steps", "3", "--precision", "no", "--markdown"])
    assert res.exit_code == 0, res.output
    cfg, markdown = seen[0]
    assert (cfg.input, cfg.output, cfg.max_steps, cfg.precision, markdown) == ("in.jsonl", "x", 3, "fp32", True)


def test_validate_lists_every_problem_once():
    cfg = Cfg(input="a", output="b", encoder="gru", precision="fp8", max_steps=0)
    with pytest.raises(UserError) as e:
        validate(cfg)
    msg = str(e.value)
    assert msg.startswith("invalid options: ")
    assert "--encoder must be one of lstm, mlp, got 'gru'" in msg
    assert "--precision must be one of auto, fp32, bf16, got 'fp8'" in msg
    assert "--max-steps must be >= 1, got 0" in msg


def test_output_fields_and_flags():
    assert output_fields(Cfg) == ["input", "encoder", "precision", "max_steps", "hidden"]
    assert output_settings(Cfg(input="a", output="b"))["encoder"] == "lstm"
    assert (flag_of(Cfg, "output"), flag_of(Cfg, "max_steps"), flag_of(Cfg, "input")) == ("--output", "--max-steps", "INPUT")


def test_apply_aliases_maps_saved_values():
    from ptune_cli.options import apply_aliases

    assert apply_aliases(Cfg, {"precision": "no", "encoder": "lstm"}) == {"precision": "fp32", "encoder": "lstm"}
