"""``ptune train --encoder prefix`` (P-tuning v2 deep prompts) end to end on a tiny Llama: the
CLI summary and table metadata, a mixed table read by ``ptune eval`` (both kinds, predictions of
the earlier task unchanged), refusals in one line, early stopping, gradient checkpointing."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.ptuning.table import load_prompt_table
from ptune_cli.training import TrainConfig, run_train
from tests.test_train import (
    INTENT_TPL,
    SENT_TPL,
    intent_records,
    sentiment_records,
    tensor_bytes,
    write,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def data(tmp_path):
    return {"train": write(tmp_path / "train.jsonl", sentiment_records(16)),
            "val": write(tmp_path / "val.jsonl", sentiment_records(8, seed=1)),
            "intent": write(tmp_path / "intent.jsonl", intent_records(8))}


def _train(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def test_cli_prefix_summary_table_and_mixed_eval(tiny_lm_dir, data, tmp_path):
    """An input-prompt run, then a prefix task added with --existing: the summary names the
    prefix size, the table holds both kinds, and `ptune eval` predicts both; the earlier task's
    predictions are the same from either table."""
    r = _train("--train", data["train"], "--template", SENT_TPL, "--model", tiny_lm_dir, "-o", tmp_path / "in",
               "--epochs", "1", "--encoder", "embedding")
    assert r.exit_code == 0, r.output
    r = _train("--train", data["intent"], "--template", INTENT_TPL, "--existing", tmp_path / "in", "-o", tmp_path / "mix",
               "--epochs", "2", "--encoder", "prefix", "--prefix-projection", "--gradient-checkpointing")
    assert r.exit_code == 0, r.output
    # tiny Llama: 2 layers, 2 KV heads of dim 8, T = 10
    assert "intent_and_slot: prefix 2 layers × 2 × d_kv 16 × T 10 = 640 floats" in r.output
    table = load_prompt_table(tmp_path / "mix")
    assert table.kind("sentiment-task") == "input" and table.kind("intent_and_slot") == "prefix"
    assert tuple(table.prompts["intent_and_slot"].shape) == (2, 2, 2, 10, 8)
    assert table.meta["tasks"]["intent_and_slot"]["prefix_projection"] is True
    assert tensor_bytes(tmp_path / "in", "sentiment-task") == tensor_bytes(tmp_path / "mix", "sentiment-task")

    test = write(tmp_path / "test.jsonl", sentiment_records(6, seed=3))
    islot = write(tmp_path / "islot.jsonl", intent_records(3))
    preds = {}
    for run, d, decode in (("in", test, "rank"), ("mix", test, "rank"), ("mix", islot, "generate"), ("mix", test, "generate")):
        out = tmp_path / f"pred-{run}-{decode}-{len(preds)}.jsonl"
        r = CliRunner().invoke(app, ["eval", "--run", str(tmp_path / run), "--data", d, "--decode", decode,
                                     "--predictions-out", str(out), "-o", str(tmp_path / "res.json")])
        assert r.exit_code == 0, r.output
        preds[(run, d, decode)] = [json.loads(x) for x in out.read_text().splitlines()]
    assert preds[("in", test, "rank")] == preds[("mix", test, "rank")]
    assert all(isinstance(p["prediction"], str) for p in preds[("mix", islot, "generate")])


def test_prefix_refusals_are_one_line(tiny_lm_dir, data, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"taskname": "sentiment-task", "prompt_template": "Text: {sentence}<|VIRTUAL_PROMPT_0|>:{label}",
                               "total_virtual_tokens": 4, "virtual_token_splits": [4], "answer_field": "label"}))
    r = _train("--train", data["train"], "--template", bad, "--model", tiny_lm_dir, "-o", tmp_path / "a", "--encoder", "prefix")
    assert r.exit_code == 1 and "needs prompt_template to start with <|VIRTUAL_PROMPT_0|>" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "a" / "prompt_table.safetensors").exists()
    r = _train("--train", data["train"], "--template", SENT_TPL, "--model", tiny_lm_dir, "-o", tmp_path / "b",
               "--prefix-projection")
    assert r.exit_code == 1 and "--prefix-projection needs --encoder prefix" in r.output


def test_prefix_early_stopping_exports_best(tiny_lm_dir, data, tmp_path):
    res = run_train(TrainConfig(train=data["train"], val=data["val"], template=SENT_TPL, model=str(tiny_lm_dir),
                                output=str(tmp_path / "r"), encoder="prefix", epochs=30, batch_size=4, lr=0.3,
                                eval_every=1, early_stopping_patience=2))
    assert res.stopped_early and res.best_step < res.steps
    assert res.started.trainable_params == 2 * 2 * 16 * 10  # L·2·d_kv·T, no projection
    assert res.table_bytes == 2 * 2 * 16 * 10 * 4


@pytest.mark.parametrize("encoder", ["prefix", "lstm"])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_lm_dir, encoder):
    """The encoder's gradients with every layer checkpointed equal the plain ones (the frozen
    LM's cache is rewound for the recompute; non-reentrant, so no input needs requires_grad)."""
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.checkpointing import enable_checkpointing
    from ptune_cli.ptuning.data import EncodedSet, collate
    from ptune_cli.ptuning.encoders import build_encoder
    from ptune_cli.ptuning.model import answer_loss
    from ptune_cli.ptuning.prefix_encoder import build_prefix_encoder
    from ptune_cli.ptuning.template import encode_example, load_templates

    model, tok = load_causal_lm(str(tiny_lm_dir))
    tpls = load_templates(SENT_TPL)
    exs = [encode_example(tpls["sentiment-task"], r, tok) for r in sentiment_records(4)]
    batch = collate(EncodedSet(exs, [0] * 4), [0, 1, 2, 3], tok.pad_token_id)

    def grads():
        torch.manual_seed(0)
        if encoder == "prefix":
            enc = build_prefix_encoder(model, tpls, tok, projection=True)
            with torch.no_grad():
                enc.head[-1].weight.normal_()  # the zero-initialised layer would hide the MLP's other grads
        else:
            enc = build_encoder(encoder, tpls, tok, model.get_input_embeddings())
            with torch.no_grad():
                enc.head[-1].weight.normal_()
        loss, _ = answer_loss(model, **batch, prompts=enc(0))
        loss.backward()
        return [p.grad.clone() for p in enc.parameters() if p.requires_grad]

    plain = grads()
    assert enable_checkpointing(model) == 2
    ckpt = grads()
    assert len(plain) == len(ckpt) > 1 and all(float(g.abs().sum()) > 0 for g in plain)
    for a, b in zip(plain, ckpt, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_gradient_checkpointing_actually_recomputes(tiny_lm_dir, monkeypatch):
    """Each checkpointed layer runs twice per backward (forward + recompute): a test that the
    wrapper is live, not only that gradients agree."""
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.checkpointing import _layers, enable_checkpointing
    from ptune_cli.ptuning.model import answer_loss
    from ptune_cli.ptuning.prefix import Prefix, kv_layout

    model, tok = load_causal_lm(str(tiny_lm_dir))
    enable_checkpointing(model)
    calls = []
    # the attention module is called inside the layer's forward: once more when recomputed
    _layers(model)[0].self_attn.register_forward_hook(lambda *a: calls.append(torch.is_grad_enabled()))
    n_layers, n_kv, d = kv_layout(model)
    kv = torch.randn(n_layers, 2, n_kv, 3, d, requires_grad=True)
    ids = torch.tensor([[tok.bos_token_id, 0, 0, 0, 5, 6, 7]])
    vm = torch.tensor([[False, True, True, True, False, False, False]])
    labels = torch.tensor([[-100, -100, -100, -100, -100, 6, 7]])
    loss, _ = answer_loss(model, ids, torch.ones_like(ids), vm, labels, Prefix(kv))
    assert calls.count(True) == 1  # (BOS runs without grad)
    loss.backward()
    assert calls.count(True) == 2 and float(kv.grad.abs().sum()) > 0


def test_existing_prefix_table_must_match_the_model(tiny_lm_dir, tiny_gpt2_dir, data, tmp_path):
    run_train(TrainConfig(train=data["train"], template=SENT_TPL, model=str(tiny_lm_dir), output=str(tmp_path / "p"),
                          encoder="prefix", epochs=1))
    test = write(tmp_path / "t.jsonl", sentiment_records(2))
    r = CliRunner().invoke(app, ["eval", "--run", str(tmp_path / "p"), "--data", test, "--model", str(tiny_gpt2_dir),
                                 "-o", str(tmp_path / "x.json")])
    assert r.exit_code == 1 and "the prefix has (layers, kv heads, head dim)" in r.output, r.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["packaged:gemma3-270m", "packaged:smollm2-135m"])
def test_real_model_text_init_prefix_is_the_hard_prompt(name):
    """On the packaged models (Gemma 3: BOS, 5:1 sliding/full layers, GQA; SmolLM2: GQA, no
    BOS): an untrained text-init prefix gives the hard prompt's answer loss."""
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.data import EncodedSet, collate
    from ptune_cli.ptuning.model import answer_loss
    from ptune_cli.ptuning.prefix_encoder import build_prefix_encoder
    from ptune_cli.ptuning.template import TaskTemplate, encode_example

    model, tok = load_causal_lm(name)
    text = "Classify the sentiment of the sentence:"
    text_ids = tok(text, add_special_tokens=False)["input_ids"]
    tpl = TaskTemplate("t", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", len(text_ids), [len(text_ids)], "label", "sentence")
    enc = build_prefix_encoder(model, {"t": tpl}, tok, init=f"text:{text}")
    exs = [encode_example(tpl, r, tok) for r in sentiment_records(3)]
    batch = collate(EncodedSet(exs, [0] * 3), [0, 1, 2], tok.pad_token_id)
    hard = batch["input_ids"].clone()
    hard[batch["virtual_mask"]] = torch.tensor(text_ids * 3)
    with torch.no_grad():
        got, _ = answer_loss(model, **batch, prompts=enc(0))
        want, _ = answer_loss(model, hard, batch["attention_mask"], torch.zeros_like(batch["virtual_mask"]),
                              batch["labels"], torch.zeros(0, model.config.hidden_size))
    torch.testing.assert_close(got, want, atol=2e-4, rtol=2e-4)


def test_eval_keeps_prefix_records_inside_the_sliding_window(tmp_path):
    """With a prefix, ptune eval's encoding limit keeps BOS + prefix + prompt + new tokens inside
    the sliding window (W − 1 cache entries), so the prefix never drops out; input prompts keep
    the model's context limit."""
    from ptune_cli.inference.job import _prefix_window_limit
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.prefix import Prefix, kv_layout
    from tests.tiny_models import WINDOW, build_tiny_causal_lm

    model, _ = load_causal_lm(str(build_tiny_causal_lm(tmp_path / "g", arch="gemma3")))
    n_layers, n_kv, d = kv_layout(model)
    assert (n_layers, n_kv, d) == (2, 2, 8)
    prefix = Prefix(torch.zeros(n_layers, 2, n_kv, 2, d))
    assert _prefix_window_limit(model, prefix, 3) == WINDOW - 1 - 3
    assert _prefix_window_limit(model, torch.zeros(2, 32), 3) > 10**6
