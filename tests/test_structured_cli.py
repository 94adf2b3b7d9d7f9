"""``--decode`` through the commands: eval, predict and serve agree on every family; ``auto``
is structured for an intent/slot run and generate elsewhere; a run trained here stores its
labels and a prompt table per checkpoint, and is evaluated without its training file."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.labels import parse_intent_slot
from ptune_cli.ptuning.labelset import describe_answers
from ptune_cli.ptuning.table import save_prompt_table
from tests.predict_run import read_jsonl, write_jsonl
from tests.test_structured import GOLD, TPL, UTTERANCES
from tests.tiny_models import FAMILIES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEST = [{"taskname": "intent_and_slot", "utterance": u, "label": g} for u, g in zip(UTTERANCES, GOLD * 2, strict=False)]


def _run(root, folder, labels=True) -> str:
    """A random input-prompt table for the intent task on ``folder``'s model (labels stored or not)."""
    from ptune_cli.models import load_causal_lm

    model, _ = load_causal_lm(str(folder))
    g = torch.Generator().manual_seed(0)
    scale = model.get_input_embeddings()(torch.arange(20)).std()
    tasks = {"intent_and_slot": {"labels": describe_answers(GOLD)}} if labels else {}
    meta = {"base_model": str(folder), "templates": {TPL.taskname: TPL.to_dict()}, "tasks": tasks,
            "hyperparameters": {"train": None}}
    save_prompt_table(root / "run", {TPL.taskname: torch.randn(5, model.config.hidden_size, generator=g) * scale}, meta)
    return str(root / "run")


def _eval(run, data, *extra):
    r = CliRunner().invoke(app, ["eval", "--run", run, "--data", data, "-o", str(data) + ".res.json",
                                 "--predictions-out", str(data) + ".pred.jsonl", *extra])
    assert r.exit_code == 0, r.output
    res = json.loads(open(str(data) + ".res.json", encoding="utf-8").read())
    return res, [p["prediction"] for p in read_jsonl(str(data) + ".pred.jsonl")]


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_eval_predict_serve_agree_and_auto_is_structured(arch, tmp_path_factory):
    from ptune_cli.serve.config import ServeConfig
    from ptune_cli.serve.server import build_app
    from tests.tiny_models import build_tiny_causal_lm

    root = tmp_path_factory.mktemp(f"structured-{arch}")
    run = _run(root, build_tiny_causal_lm(root / "model", arch=arch))
    data = write_jsonl(root / "test.jsonl", TEST)
    res, preds = _eval(run, data)
    assert res["meta"]["decode"] == "structured"
    lab = describe_answers(GOLD)
    for p, rec in zip(preds, TEST, strict=True):
        parsed = parse_intent_slot(p)
        assert parsed.intent in lab["intents"]
        assert all(t in lab["slot_types"] and v in rec["utterance"] for t, v in parsed.slots)
    r = CliRunner().invoke(app, ["predict", "--run", run, "--data", data, "-o", str(root / "p.jsonl")])
    assert r.exit_code == 0, r.output
    assert [x["prediction"] for x in read_jsonl(root / "p.jsonl")] == preds
    with TestClient(build_app(ServeConfig(run=run))) as c:
        got = c.post("/v1/predict", json=[{k: v for k, v in x.items() if k != "label"} for x in TEST])
        assert got.status_code == 200, got.text
        assert [g["prediction"] for g in got.json()] == preds
    gen, _ = _eval(run, data, "--decode", "generate", "--max-new-tokens", "6")
    assert gen["meta"]["decode"] == "generate"


def test_auto_without_stored_labels_is_generate_and_structured_says_why(tiny_lm_dir, tmp_path):
    run = _run(tmp_path, tiny_lm_dir, labels=False)  # an old table whose training file is gone
    data = write_jsonl(tmp_path / "test.jsonl", TEST)
    res, _ = _eval(run, data, "--max-new-tokens", "4")
    assert res["meta"]["decode"] == "generate"
    r = CliRunner().invoke(app, ["eval", "--run", run, "--data", data, "--decode", "structured"])
    assert r.exit_code == 1 and "stores no intents or answers" in r.output


def test_trained_run_stores_labels_and_steps_and_needs_no_training_file(tiny_lm_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", TEST)
    tpl = tmp_path / "tpl.json"
    tpl.write_text(json.dumps(TPL.to_dict()), encoding="utf-8")
    r = CliRunner().invoke(app, ["train", "--train", train, "--template", str(tpl), "--model", str(tiny_lm_dir),
                                 "-o", str(tmp_path / "run"), "--max-steps", "4", "--batch-size", "4",
                                 "--save-every", "2", "--threads", "1"])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "run" / "prompt_table.json").read_text(encoding="utf-8"))
    labels = meta["tasks"]["intent_and_slot"]["labels"]
    assert labels["grammar"] == "intent-slot" and labels["intents"] == describe_answers(GOLD)["intents"]
    assert labels["answer_tokens"] > 5
    steps = sorted(p.name for p in (tmp_path / "run" / "steps").iterdir())
    assert steps == ["step_000002", "step_000004"]
    data = write_jsonl(tmp_path / "test.jsonl", TEST)
    (tmp_path / "train.jsonl").unlink()  # eval must not need it
    res, preds = _eval(str(tmp_path / "run" / "steps" / "step_000002"), data, "--threads", "1")
    assert res["meta"]["decode"] == "structured" and all(parse_intent_slot(p).intent for p in preds)
    step_meta = json.loads((tmp_path / "run" / "steps" / "step_000002" / "prompt_table.json").read_text())
    assert step_meta["intermediate_step"] == 2


def test_threads_must_be_positive(tmp_path):
    r = CliRunner().invoke(app, ["eval", "--run", str(tmp_path), "--data", str(tmp_path / "x.jsonl"), "--threads", "0"])
    assert r.exit_code == 1 and "--threads must be at least 1" in r.output
