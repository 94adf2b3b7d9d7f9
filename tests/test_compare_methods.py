"""`make compare-methods` on a tiny Llama: the commands of the target run for every method
(p-tuning, P-tuning v2, LoRA, full fine-tuning, zero- and few-shot) on both data sets with 2
steps, and the summary, table and plot of pipelines/compare_methods.py.

Like tests/test_pipeline_e2e.py: `make -n` lists the commands, `ptune …` lines and the pipeline
scripts run in-process (the measured `ptune` child processes too), the rest in a shell.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.skipif(MAKE is None, reason="make not installed")]
METHODS = ["p-tuning", "p-tuning-v2", "lora", "full", "zero-shot", "few-shot"]


@pytest.fixture(scope="module")
def cm():
    pytest.importorskip("peft")
    sys.path.insert(0, str(REPO / "pipelines"))
    try:
        import compare_methods
    finally:
        sys.path.pop(0)
    return compare_methods


def _ptune(cmd: list[str]) -> int:
    r = CliRunner().invoke(app, cmd[1:])
    assert r.exit_code == 0, f"{cmd}\n{r.output}\n{r.exception!r}"
    return 0


def _recipe_lines(stdout: str) -> list[str]:
    lines, cur = [], ""
    for raw in stdout.splitlines():
        cur += raw[:-1] + " " if raw.endswith("\\") else raw
        if not raw.endswith("\\"):
            lines.append(cur.strip())
            cur = ""
    skip = ("make ", "cat ", "echo ", "start=", "compare-methods:")
    return [x for x in lines if x and not x.startswith(skip)]


def _run_line(line: str, cm) -> None:
    words = shlex.split(line)
    while words and "=" in words[0] and not words[0].startswith("-"):  # OMP_NUM_THREADS=1 …
        words = words[1:]
    if words and words[0].endswith("bin/ptune"):
        _ptune(words)
    elif len(words) > 1 and words[1] == "pipelines/compare_methods.py":
        cm.main(words[2:])
    else:
        subprocess.run(line, shell=True, cwd=REPO, check=True)


def test_compare_methods_chain_on_tiny_llama(tmp_path, tiny_lm_dir, cm, monkeypatch):
    monkeypatch.setattr(cm.subprocess, "call", _ptune)  # the measured child: in-process here
    results = tmp_path / "results"
    variables = [f"RESULTS={results}", f"MODEL={tiny_lm_dir}", "TRANSLATE=none", "STEPS=2", "BATCH=4", "FOLDS=2",
                 "CM_INTENT_RECORDS=24", "CM_TEST_RECORDS=3", "THREADS=1"]
    plan = subprocess.run([MAKE, "--no-print-directory", "-n", "-o", "setup", "-o", ".venv/.installed",
                           "compare-methods", *variables], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    lines = _recipe_lines(plan.stdout)
    assert sum("finetune --method lora" in x for x in lines) == 4  # 2 data sets × 2 folds
    assert sum("bin/ptune train" in x and "--encoder prefix" in x for x in lines) == 4
    for line in lines:
        for part in line.split(" && "):  # ptune train (measured) && ptune eval
            _run_line(part, cm)

    (out,) = (results / "compare-methods").iterdir()
    assert out.name.startswith(f"{tiny_lm_dir.name}-en-k2-s2-")
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert [(r["method"], r["data"]) for r in rows] == [(m, d) for d in ("sentiment", "intent-slot") for m in METHODS]
    keys = {"method", "data", "metric", "mean", "std", "folds", "trainable_params", "bytes_per_task",
            "step_seconds", "peak_memory_mb"}
    for r in rows:
        assert keys <= set(r), r
        assert r["folds"] == 2 and 0.0 <= r["mean"] <= 1.0
        assert r["metric"] == ("accuracy" if r["data"] == "sentiment" else "intent.accuracy")
        assert r["peak_memory_mb"] > 0
    by = {(r["method"], r["data"]): r for r in rows}
    s = {m: by[(m, "sentiment")] for m in METHODS}
    # the frozen model trains nothing; full fine-tuning trains and stores everything
    assert s["zero-shot"]["trainable_params"] == 0 and s["zero-shot"]["bytes_per_task"] == 0
    assert s["few-shot"]["bytes_per_task"] > 0 and s["few-shot"]["step_seconds"] is None
    assert s["full"]["bytes_per_task"] == 4 * s["full"]["trainable_params"]
    assert s["lora"]["trainable_params"] < s["full"]["trainable_params"]
    assert s["p-tuning"]["bytes_per_task"] < s["lora"]["bytes_per_task"] < s["full"]["bytes_per_task"]
    for m in ("p-tuning", "p-tuning-v2", "lora", "full"):
        assert s[m]["step_seconds"] > 0 and s[m]["flops_per_step"] > 0 and s[m]["gflops"] > 0
    # every method's score is `ptune eval --predictions` on the same test records
    for m in METHODS:
        res = json.loads((out / "sentiment" / m / "eval" / "fold_01.json").read_text())
        assert res["meta"]["mode"] == "predictions" and res["n"] == 3 and res["meta"]["fold"] == 1
    assert summary["matmul_peak"]["matmul_gflops"] > 0 and summary["matmul_peak"]["threads"] == 1
    md = (out / "results.md").read_text()
    assert "| sentiment | lora |" in md and "GFLOP/s" in md and "tasks added later" in md
    assert (out / "plots" / "accuracy-vs-bytes.png").read_bytes()[:4] == b"\x89PNG"


def test_table_and_plot_from_rows(tmp_path, cm):
    pytest.importorskip("matplotlib")
    rows = [{"method": m, "data": "sentiment", "metric": "accuracy", "mean": 0.5 + 0.05 * i, "std": 0.02 if i else None,
             "folds": 2, "trainable_params": 10 ** i if i else 0, "bytes_per_task": 4 * 10 ** i if i else 0,
             "step_seconds": 0.5 if i < 4 else None, "gflops": 2.0 if i < 4 else None,
             "peak_memory_mb": 100.0, "add_tasks_later": cm.ADD_LATER[m]} for i, m in enumerate(METHODS)]
    md = cm.to_markdown(rows, peak_gflops=8.0, threads=1)
    assert "| sentiment | p-tuning | accuracy **50.00** |" in md.replace(" %", "")
    assert "2.00 (25 %)" in md and "matmul peak 8 GFLOP/s" in md
    assert md.count("\n| sentiment |") == 6
    cm.plot(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_entry_errors_are_one_line(tmp_path, cm):
    with pytest.raises(SystemExit, match="METHOD:DATA:KEY"):
        cm.method_row("lora=x.json")
    with pytest.raises(SystemExit, match="no such summary"):
        cm.method_row(f"lora:sentiment:accuracy={tmp_path / 'none.json'}")
