"""Prompt table round trip and prompt injection into inputs_embeds."""

from __future__ import annotations

import json

import pytest
import torch

from ptune_cli.errors import UserError
from ptune_cli.ptuning.model import answer_loss, check_gathered_head, inject_prompts
from ptune_cli.ptuning.table import (
    PROMPT_META_FILE,
    PROMPT_TABLE_FILE,
    load_prompt_table,
    save_prompt_table,
)
from ptune_cli.ptuning.template import template_from_dict
from tests.test_template import SENT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_table_roundtrip(tmp_path):
    prompts = {"sentiment-task": torch.randn(10, 32), "other": torch.randn(3, 32, dtype=torch.float64)}
    meta = {"base_model": "m", "templates": {"sentiment-task": SENT}, "hyperparameters": {"lr": 0.01}}
    save_prompt_table(tmp_path, prompts, meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROMPT_META_FILE, PROMPT_TABLE_FILE]
    t = load_prompt_table(tmp_path)
    assert torch.equal(t.prompts["sentiment-task"], prompts["sentiment-task"])
    assert t.prompts["other"].dtype == torch.float32 and t.meta["hidden_size"] == 32
    assert t.meta["tasks"]["other"]["total_virtual_tokens"] == 3
    assert t.template("sentiment-task") == template_from_dict(SENT)
    with pytest.raises(UserError, match="known tasks: other, sentiment-task"):
        t.template("nope")
    assert json.loads((tmp_path / PROMPT_META_FILE).read_text())["base_model"] == "m"


def test_missing_table(tmp_path):
    with pytest.raises(UserError, match="no prompt table .* run `ptune train` first"):
        load_prompt_table(tmp_path)


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    from ptune_cli.models import load_causal_lm

    return load_causal_lm(str(tiny_lm_dir))


def test_inject_prompts_replaces_exactly_the_masked_rows(lm):
    model, tok = lm
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 3]])
    vmask = torch.tensor([[0, 1, 1, 0, 1, 0], [1, 0, 0, 1, 1, 0]], dtype=torch.bool)
    prompts = torch.randn(2, 3, 32, requires_grad=True)
    out = inject_prompts(model, ids, vmask, prompts)
    base = model.get_input_embeddings()(ids)
    assert torch.equal(out[~vmask], base[~vmask])
    assert torch.equal(out[0, [1, 2, 4]], prompts[0].detach())
    assert torch.equal(out[1, [0, 3, 4]], prompts[1].detach())
    out.sum().backward()
    assert prompts.grad is not None and torch.equal(prompts.grad, torch.ones_like(prompts))
    # one [T, h] prompt broadcast over the batch, cast to the embedding dtype
    out2 = inject_prompts(model, ids, vmask, prompts[0].double().detach())
    assert out2.dtype == base.dtype and torch.equal(out2[1, [0, 3, 4]], prompts[0].detach())


def test_gathered_loss_equals_full_logits_loss(lm):
    model, tok = lm
    assert check_gathered_head(model, tok)
    torch.manual_seed(0)
    ids = torch.randint(4, 100, (2, 9))
    attn = torch.ones_like(ids)
    attn[1, 7:] = 0
    vmask = torch.zeros_like(ids, dtype=torch.bool)
    vmask[:, 1:3] = True
    labels = torch.full_like(ids, -100)
    labels[0, 5:8] = ids[0, 5:8]
    labels[1, 4:7] = ids[1, 4:7]
    prompts = torch.randn(2, 32)
    loss, n = answer_loss(model, ids, attn, vmask, labels, prompts)
    embeds = inject_prompts(model, ids, vmask, prompts)
    ref = model(inputs_embeds=embeds, attention_mask=attn, labels=labels).loss
    assert n == 6 and torch.allclose(loss, ref, atol=1e-5)
