"""The `ptune` entry point: command list, examples in every --help, fast startup, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("snapshots") / "ptune_help.txt"
COMMANDS = ["prepare", "translate", "normalize-labels", "kfold", "train", "eval", "report", "predict", "serve", "export"]


def _help(*args: str) -> str:
    r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    return r.output


def test_top_level_lists_the_chain_in_order():
    out = _help()
    positions = [out.find(f"│ {c} ") for c in COMMANDS]
    assert all(p > 0 for p in positions), out
    assert positions == sorted(positions)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_help_ends_with_an_example(cmd):
    out = _help(cmd).rstrip()
    tail = out[out.rfind("Example"):]
    assert "Example" in out and f"ptune {cmd}" in tail


def test_help_snapshot():
    """`ptune --help` as users see it; regenerate with UPDATE_SNAPSHOTS=1 after a deliberate change."""
    out = _help()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(out, encoding="utf-8")
    assert SNAPSHOT.exists(), f"{SNAPSHOT} is missing: run UPDATE_SNAPSHOTS=1 pytest tests/test_cli.py and commit it"
    assert out == SNAPSHOT.read_text(encoding="utf-8")


def test_version():
    from ptune_cli import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output == f"ptune {__version__}\n"


def test_train_help_projection_example_uses_a_lower_lr():
    """README: with --prefix-projection, lower the lr (3e-4 was smooth where 3e-3 spiked)."""
    import re

    from ptune_cli.training.config import TrainConfig

    out = _help("train").replace("\n", " ")
    (lr,) = re.findall(r"--prefix-projection --lr ([0-9.e-]+)", out)
    assert float(lr) < TrainConfig.__dataclass_fields__["lr"].default


def test_help_does_not_import_torch():
    code = "import sys; from ptune_cli.cli import app; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_python_dash_m_and_exit_code_on_user_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": "positiva"}\nnot json\n')
    r = subprocess.run(
        [sys.executable, "-m", "ptune_cli", "normalize-labels", str(bad), "-o", str(tmp_path / "o.jsonl")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: {bad}:2: invalid JSON (Expecting value, column 1)"]
    assert not (tmp_path / "o.jsonl").exists()
