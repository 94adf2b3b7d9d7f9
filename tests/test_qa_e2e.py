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


def test_too_long_contexts_are_cut_at_truncate_field_and_counted(tmp_path, tiny_lm_dir):
    from ptune_cli.evaluate.config import EvalConfig
    from ptune_cli.evaluate.runner import run_eval
    from ptune_cli.training import TrainConfig, run_train

    long = " ".join(["make me a coffee please."] * 150)  # far over the tiny model's 512 positions
    recs = [{"taskname": "squad", "context": c, "question": "what?", "answer": "coffee", "answers": ["coffee"]}
            for c in ("make me a coffee please.", long)] * 2
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    tpl = str(REPO / "templates" / "sv-squad.json")
    result = run_train(TrainConfig(train=str(data), output=str(tmp_path / "run"), template=tpl,
                                   model=str(tiny_lm_dir), max_steps=1, batch_size=4, max_length=64))
    assert result.truncated == {"squad": 2} and result.skipped == {"squad": 0} and result.examples == {"squad": 4}
    res = run_eval(EvalConfig(run=str(tmp_path / "run"), data=str(data), max_new_tokens=2,
                              predictions_out=str(tmp_path / "pred.jsonl")))
    assert res["n"] == 4 and res["meta"]["truncated"] == 2 and res["meta"]["skipped"] == 0
    assert len(_jsonl(tmp_path / "pred.jsonl")) == 4


def test_svsquad_plans_prepare_translate_grouped_folds_train_eval_report(tmp_path):
    raw = tmp_path / "data" / "squad" / "train-v1.1.json"
    raw.parent.mkdir(parents=True)
    raw.write_text((REPO / "pipelines/qa/qa_en.json").read_text(encoding="utf-8"), encoding="utf-8")
    plan = _make(["-n", "svsquad", f"RESULTS={tmp_path / 'r'}", f"DATA_DIR={tmp_path / 'data'}", "FOLDS=2"])
    assert plan.returncode == 0, plan.stderr
    lines = [x for x in _recipe_lines(plan.stdout) if x.startswith(".venv/bin/ptune")]
    order = [shlex.split(x)[1] for x in lines]
    assert order == ["prepare", "translate", "kfold", "train", "eval", "train", "eval", "report"], order
    assert str(raw) in lines[0] and "--group-field paragraph_id" in lines[2]
    assert all("--metric squad --lang sv" in x for x in lines if " eval " in x)
    assert "templates/sv-squad.json" in lines[3]
