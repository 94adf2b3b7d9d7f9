"""Prompt encoders: shapes, sizes, initialisation, task conditioning, the exported table."""

from __future__ import annotations

import pytest
import torch

from ptune_cli.ptuning.encoders import build_encoder
from ptune_cli.ptuning.template import template_from_dict
from tests.test_template import SENT, TWO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(str(tiny_lm_dir))
    return model.get_input_embeddings(), tok


def templates():
    return {"sentiment-task": template_from_dict(SENT), "intent_and_slot": template_from_dict(TWO)}


@pytest.mark.parametrize("kind", ["lstm", "mlp", "embedding"])
def test_shapes_and_table(lm, kind):
    emb, tok = lm
    torch.manual_seed(0)
    enc = build_encoder(kind, templates(), tok, emb)
    assert enc(0).shape == (10, 32) and enc(1).shape == (6, 32)
    table = enc.table()
    assert list(table) == ["sentiment-task", "intent_and_slot"]
    # (the LSTM kernel under no_grad may differ in the last bits)
    assert torch.allclose(table["sentiment-task"], enc(0).detach(), atol=1e-6) and table["sentiment-task"].dtype == torch.float32
    enc(0).sum().backward()
    assert enc.inputs[0].grad is not None and enc.inputs[1].grad is None  # one task per batch


def test_lstm_is_half_width_bidirectional(lm):
    emb, tok = lm
    enc = build_encoder("lstm", templates(), tok, emb)
    assert enc.lstm.hidden_size == 16 and enc.lstm.bidirectional and enc.lstm.num_layers == 2
    assert build_encoder("lstm", templates(), tok, emb, hidden=4).lstm.hidden_size == 4


def test_text_init_and_task_name_rows(lm):
    emb, tok = lm
    ids = tok("positiv negativ", add_special_tokens=False)["input_ids"]
    enc = build_encoder("embedding", templates(), tok, emb, init="text:positiv negativ")
    want = emb(torch.tensor((ids * 10)[:10])).detach()
    assert torch.equal(enc(0).detach(), want)
    name = tok("sentiment-task", add_special_tokens=False)["input_ids"]
    lstm = build_encoder("lstm", templates(), tok, emb)
    k = min(len(name), 10)
    assert torch.equal(lstm.inputs[0].detach()[:k], emb(torch.tensor(name[:k])).detach())


def test_conditioned_on_task_name(lm):
    emb, tok = lm
    enc = build_encoder("mlp", templates(), tok, emb)
    torch.nn.init.normal_(enc.head[-1].weight)  # a trained head (it starts at zero)
    # identical input rows, different task names -> different prompts
    with torch.no_grad():
        enc.inputs[1].copy_(enc.inputs[0][:6])
    assert not torch.allclose(enc(0)[:6], enc(1))
    assert not torch.equal(enc.task_vectors[0], enc.task_vectors[1])
