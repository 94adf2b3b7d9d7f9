"""CI reproduction of an experiment: the commands `make demo` runs, executed on tiny local models.

`make -n demo` (with MODEL= a tiny Llama, TRANSLATE=yes with a tiny Marian) lists exactly the
commands of the pipeline: translate → normalize-labels → kfold (k=3) → train per fold → eval per
fold → zero-shot baseline → report → comparison table. Each `ptune …` line runs in-process
through typer's CliRunner (one torch import instead of one per step), the rest through the
shell; then the files and the results schema are checked, and make must see nothing left to do.
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

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make not installed")


@pytest.fixture(scope="module")
def tiny_marian_dir(tmp_path_factory) -> Path:
    tiny_marian = pytest.importorskip("tests.tiny_marian")
    return tiny_marian.build_tiny_marian(tmp_path_factory.mktemp("tiny-marian"))




def _make(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "--no-print-directory", "-o", "setup", "-o", ".venv/.installed", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def _run_line(line: str) -> None:
    """One recipe line of `make -n`: ptune and compare.py in-process, anything else in a shell."""
    words = shlex.split(line)
    if words and words[0].endswith("bin/ptune"):
        r = CliRunner().invoke(app, words[1:])
        assert r.exit_code == 0, f"{line}\n{r.output}\n{r.exception!r}"
    elif len(words) > 1 and words[1] == "pipelines/compare.py":
        sys.path.insert(0, str(REPO / "pipelines"))
        try:
            import compare
        finally:
            sys.path.pop(0)
        compare.main(words[2:])
    else:
        subprocess.run(line, shell=True, cwd=REPO, check=True)


def _recipe_lines(stdout: str) -> list[str]:
    """Join backslash-continued lines; drop the recursive make and the final printing."""
    lines, cur = [], ""
    for raw in stdout.splitlines():
        cur += raw[:-1] + " " if raw.endswith("\\") else raw
        if not raw.endswith("\\"):
            lines.append(cur.strip())
            cur = ""
    skip = ("make ", "cat ", "echo \"demo:", "start=", "demo:")
    return [x for x in lines if x and not x.startswith(skip)]


def test_demo_chain_on_tiny_models(tmp_path, tiny_lm_dir, tiny_marian_dir):
    results = tmp_path / "results"
    variables = [f"RESULTS={results}", f"MODEL={tiny_lm_dir}", "TRANSLATE=yes", f"TRANSLATE_MODEL={tiny_marian_dir}",
                 "STEPS=3", "BATCH=4", "FOLDS=3"]
    plan = _make(["-n", "demo", *variables])
    assert plan.returncode == 0, plan.stderr
    lines = _recipe_lines(plan.stdout)
    order = [shlex.split(x)[1] for x in lines if x.startswith(".venv/bin/ptune")]
    assert order[:4] == ["translate", "normalize-labels", "kfold", "train"], order
    assert order.count("train") == 3 and order.count("eval") == 9 and order[-1] == "report"  # p-tuned, zero-, few-shot
    for line in lines:
        _run_line(line)

    (demo,) = (results / "demo").iterdir()
    assert demo.name.startswith(f"{tiny_lm_dir.name}-sv-k3-s3-")
    settings = (demo / "settings.txt").read_text()
    assert f"model={tiny_lm_dir}" in settings and "folds=3" in settings and f"translate_model={tiny_marian_dir}" in settings

    # translate → normalize-labels: the sentences translated, the labels through the lexicon, in order
    en = [json.loads(x) for x in (REPO / "pipelines/demo/sentiment_en.jsonl").read_text().splitlines()]
    sv = [json.loads(x) for x in (demo / "data/target.jsonl").read_text().splitlines()]
    norm = [json.loads(x) for x in (demo / "data/norm.jsonl").read_text().splitlines()]
    assert len(sv) == len(norm) == len(en) >= 60
    to_sv = {"positive": "positiv", "negative": "negativ", "neutral": "neutral"}
    assert [r["label"] for r in norm] == [to_sv[r["label"]] for r in en]
    assert all(r["taskname"] == "sentiment-task" for r in norm)

    # kfold k=3: every record in exactly one test split
    manifest = json.loads((demo / "data/folds/manifest.json").read_text())
    assert manifest["records"] == len(en) and [f["fold"] for f in manifest["folds"]] == [0, 1, 2]
    assert sum(f["counts"]["test"] for f in manifest["folds"]) == len(en)

    # train → eval per fold
    for fold in range(3):
        run = demo / "runs" / f"fold_{fold:02d}"
        assert (run / "prompt_table.safetensors").is_file() and (run / "prompt_table.json").is_file()
        for kind in ("eval", "zero", "few"):
            res = json.loads((demo / kind / f"fold_{fold:02d}.json").read_text())
            assert res["metric"] == "accuracy" and res["n"] == manifest["folds"][fold]["counts"]["test"]
            assert 0.0 <= res["accuracy"] <= 1.0 and res["meta"]["fold"] == fold
            preds = (demo / kind / f"fold_{fold:02d}.pred.jsonl").read_text().splitlines()
            # 5 shots of the tiny Marian's length-capped "translations" can overflow the tiny LM's
            # 512 positions: such records are predicted "" (counted wrong), never dropped
            allowed = set(to_sv.values()) | ({""} if kind == "few" else set())
            assert len(preds) == res["n"] and all(json.loads(p)["prediction"] in allowed for p in preds)

    # report and the comparison table
    summary = json.loads((demo / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and len(summary["rows"]) == 3
    (group,) = summary["groups"]
    assert group["results"] == 3 and set(group["mean"]) >= {"accuracy"} and group["std"]["accuracy"] is not None
    table = json.loads((demo / "results.json").read_text())
    assert [r["setting"] for r in table["rows"]] == ["p-tuned", "zero-shot", "5-shot"]
    assert table["rows"][0]["mean"] == pytest.approx(group["mean"]["accuracy"])
    assert len(table["rows"][1]["per_fold"]) == len(table["rows"][2]["per_fold"]) == 3
    assert "| p-tuned | 3 |" in (demo / "results.md").read_text()
    for png in ("folds.png", "zero-folds.png", "few-folds.png", "comparison.png"):
        assert (demo / "plots" / png).read_bytes()[:4] == b"\x89PNG"

    # re-running reuses every finished step
    again = _make(["-q", str(demo / "results.json"), *variables])
    assert again.returncode == 0, again.stdout + again.stderr
