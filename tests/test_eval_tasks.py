"""``ptune eval`` on a test file of several tasks: each record's ``taskname`` picks its prompts,
records of every task share batches, and each task is scored on its own — with the
predictions and scores of evaluating each task alone."""

from __future__ import annotations

import json

import pytest

from tests.test_eval_cli import _jsonl, _read, env, invoke  # noqa: F401 - env: the fixture

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mixed(paths, tmp_path):
    sent, islot = _read(paths["test"]), _read(paths["islot"])
    recs = [sent[0], islot[0], sent[1], sent[2], islot[1], *sent[3:]]
    return _jsonl(tmp_path / "mixed.jsonl", recs), recs


def test_several_tasks_in_one_file_score_as_each_alone(env, tmp_path):  # noqa: F811
    data, recs = _mixed(env, tmp_path)
    out, preds = tmp_path / "res.json", tmp_path / "pred.jsonl"
    r = invoke("--run", env["run"], "--data", data, "-o", out, "--predictions-out", preds, "--batch-size", 3)
    assert r.exit_code == 0, r.output
    assert "eval sentiment-task: accuracy" in r.output and "eval intent_and_slot: intent-slot" in r.output
    res = json.loads(out.read_text())
    assert list(res["tasks"]) == ["sentiment-task", "intent_and_slot"] and res["n"] == len(recs)
    assert res["meta"]["tasks"] == ["sentiment-task", "intent_and_slot"]
    got = _read(preds)
    assert [g["taskname"] for g in got] == [x["taskname"] for x in recs]  # input order
    for name, single in (("sentiment-task", env["test"]), ("intent_and_slot", env["islot"])):
        alone_out, alone_pred = tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl"
        r = invoke("--run", env["run"], "--data", single, "-o", alone_out, "--predictions-out", alone_pred)
        assert r.exit_code == 0, r.output
        alone = json.loads(alone_out.read_text())
        mine = res["tasks"][name]
        assert mine["metric"] == alone["metric"] and mine["n"] == alone["n"]
        assert mine["meta"]["task"] == name and mine["meta"]["max_new_tokens"] == alone["meta"]["max_new_tokens"]
        headline = {k: v for k, v in mine.items() if isinstance(v, float)}
        assert headline == pytest.approx({k: alone[k] for k in headline})
        assert [g["prediction"] for g in got if g["taskname"] == name] == [p["prediction"] for p in _read(alone_pred)]


def test_several_tasks_need_a_taskname_on_every_record(env, tmp_path):  # noqa: F811
    _, recs = _mixed(env, tmp_path)
    recs[2] = {k: v for k, v in recs[2].items() if k != "taskname"}
    data = _jsonl(tmp_path / "holes.jsonl", recs)
    r = invoke("--run", env["run"], "--data", data)
    assert r.exit_code == 1 and "holes.jsonl:3: field 'taskname'" in r.output and "Traceback" not in r.output
    recs[2] = {**recs[2], "taskname": "nope"}
    r = invoke("--run", env["run"], "--data", _jsonl(tmp_path / "unknown.jsonl", recs))
    assert r.exit_code == 1 and "task 'nope' is not in the prompt table" in r.output
