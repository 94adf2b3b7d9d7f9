"""A tiny run for the predict and serve tests: the varied tiny Llama, a random prompt table of
two tasks, and a training file in the table's metadata (where predict and serve find the
answers they default from)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ptune_cli.ptuning.table import save_prompt_table
from ptune_cli.ptuning.template import TaskTemplate
from tests.test_eval_cli import LABELS, SENTENCES
from tests.test_predict import varied_lm

SENT = TaskTemplate("sentiment-task", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 4, [4], "label", "sentence")
# no truncate_field: a question too long for the model is refused, not cut
ASK = TaskTemplate("ask", "<|VIRTUAL_PROMPT_0|> Q: {question}<|VIRTUAL_PROMPT_1|> A:{answer}", 5, [3, 2], "answer")
QUESTIONS = ["vad kostar en kaffe", "when does the train leave", "är det kallt ute", "who won"]
ANSWERS = ["tjugo kronor", "at nine", "ja", "nobody"]


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def sentiment(labeled: bool = True) -> list[dict]:
    return [{"taskname": "sentiment-task", "sentence": s, **({"label": lab} if labeled else {})}
            for s, lab in zip(SENTENCES, LABELS, strict=True)]


def questions(labeled: bool = True) -> list[dict]:
    return [{"taskname": "ask", "question": q, **({"answer": a} if labeled else {})}
            for q, a in zip(QUESTIONS, ANSWERS, strict=True)]


def make_run(root: Path, tiny_lm_dir: Path, prefix: bool = False) -> dict:
    """``prefix``: the "ask" task is a deep prompt (per-layer keys/values) instead of input rows."""
    model, tok = varied_lm(tiny_lm_dir, seed=3)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    prompts = {"sentiment-task": torch.randn(4, 32, generator=g), "ask": torch.randn(5, 32, generator=g)}
    if prefix:
        c = model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        shape = (c.num_hidden_layers, 2, c.num_key_value_heads, ASK.total_virtual_tokens, head_dim)
        prompts["ask"] = torch.randn(*shape, generator=g)
    # the training answers are the test labels: eval's gold-derived defaults equal predict's
    train = write_jsonl(root / "train.jsonl", sentiment() + questions())
    meta = {"base_model": str(root / "model"), "templates": {t.taskname: t.to_dict() for t in (SENT, ASK)},
            "hyperparameters": {"train": train}}
    save_prompt_table(root / "run", prompts, meta)
    return {"root": root, "run": str(root / "run"), "model": str(root / "model"), "train": train}
