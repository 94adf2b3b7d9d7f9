"""README.md stays true: every `ptune CMD --option` it shows exists, every `make TARGET` exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _shown_commands() -> list[tuple[str, str]]:
    """(command, option) for every option on a `ptune CMD …` line of a code block."""
    blocks = re.findall(r"```(?:bash)?\n(.*?)```", README, flags=re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    out = []
    for segment in re.split(r"[|\n]", text):
        m = re.search(r"\bptune(?:_cli)? ([a-z-]+)(.*)", segment)
        if m:
            line = m.group(2).split("#")[0]
            out += [(m.group(1), opt) for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line)]
    return sorted(set(out))


SHOWN = _shown_commands()


def test_readme_shows_every_command():
    assert {c for c, _ in SHOWN} >= {"prepare", "translate", "normalize-labels", "kfold", "train", "eval", "report"}


@pytest.mark.parametrize("cmd, option", SHOWN)
def test_readme_option_exists(cmd, option):
    r = CliRunner().invoke(app, [cmd, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert r.exit_code == 0, r.output
    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", r.output), f"README shows `ptune {cmd} {option}`, which does not exist"


def test_readme_make_targets_exist():
    # `make X` in inline code, and `make X` starting a line of a code block
    targets = set(re.findall(r"`make ([a-z][a-z-]+)", README)) | set(re.findall(r"^make ([a-z][a-z-]+)", README, flags=re.M))
    listed = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True).stdout
    missing = sorted(t for t in targets if not re.search(rf"^\s*{t}\s", listed, flags=re.M))
    assert not missing, f"README names make targets that `make help` lacks: {missing}"
