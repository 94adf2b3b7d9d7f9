"""The QA chain of `make qa-demo` end to end on a tiny Llama: `make -n` lists prepare → kfold →
train per fold → eval per fold → zero-shot baseline → report → comparison tables, and every
command runs (ptune in-process) on the shipped QA sample; then files and results are checked."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.test_pipeline_e2e import MAKE, REPO, _make, _recipe_lines, _run_line

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.skipif(MAKE is None, reason="make not installed")]


def _jsonl(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_qa_demo_chain_on_a_tiny_model(tmp_path, tiny_lm_dir):
    results = tmp_path / "results"
    variables = [f"RESULTS={results}", f"MODEL={tiny_lm_dir}", "STEPS=2", "BATCH=4", "FOLDS=2", "QA_MAX_NEW=3"]
    plan = _make(["-n", "qa-demo", *variables])
    assert plan.returncode == 0, plan.stderr
    # the recursive make runs under -n too and prints its "qa-demo: finished" line
    lines = [x for x in _recipe_lines(plan.stdout) if not x.startswith(("qa-demo:", 'echo "qa-demo:'))]
    order = [shlex.split(x)[1] for x in lines if x.startswith(".venv/bin/ptune")]
    assert order[:3] == ["prepare", "kfold", "train"] and order.count("train") == 2
    assert order.count("eval") == 4 and order.count("report") == 2
    for line in lines:
        _run_line(line)

    (qa,) = (results / "qa").iterdir()
    records = _jsonl(qa / "data" / "qa.jsonl")
    sample = json.loads((REPO / "pipelines/qa/qa_sv.json").read_text(encoding="utf-8"))
    assert len(records) == sum(len(p["qas"]) for a in sample["data"] for p in a["paragraphs"])
    assert all(r["answer"] in r["context"] for r in records)  # the sample is extractive
    tests = [_jsonl(qa / "data" / "folds" / f / "test.jsonl") for f in ("fold_00", "fold_01")]
    assert sum(map(len, tests)) == len(records)
    assert not {r["paragraph_id"] for r in tests[0]} & {r["paragraph_id"] for r in tests[1]}
    for kind in ("eval", "zero"):
        for f, test in enumerate(tests):
            res = json.loads((qa / kind / f"fold_{f:02d}.json").read_text())
            assert res["metric"] == "squad" and res["n"] == len(test) and res["lang"] == "sv"
            assert 0 <= res["exact_match"] <= res["f1"] + 1e-9 <= 1 + 1e-9 and res["meta"]["fold"] == f
            assert res["meta"]["max_new_tokens"] == 3
            preds = _jsonl(qa / kind / f"fold_{f:02d}.pred.jsonl")
            assert [p["id"] for p in preds] == [r["id"] for r in test]
    summary = json.loads((qa / "summary.json").read_text())
    assert summary["metric"] == "squad" and summary["keys"] == ["exact_match", "f1"] and len(summary["rows"]) == 2
    table = json.loads((qa / "results-f1.json").read_text())
    assert [r["setting"] for r in table["rows"]] == ["p-tuned", "zero-shot"] and table["key"] == "f1"
    assert table["rows"][0]["mean"] == pytest.approx(summary["groups"][0]["mean"]["f1"])
    assert "| p-tuned | 2 |" in (qa / "results.md").read_text()
    for png in ("folds.png", "zero-folds.png", "comparison.png", "comparison-f1.png"):
        assert (qa / "plots" / png).read_bytes()[:4] == b"\x89PNG"
