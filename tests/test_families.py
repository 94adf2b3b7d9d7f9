"""The invariants prompt injection must keep on every architecture family users p-tune.

Each family is a tiny model from config (tests/tiny_models.py: 2 layers, hidden 32) that keeps
the trait which breaks injection silently: Gemma's scaled embeddings, Gemma 2's softcapping,
GPT-2's absolute positions, sliding windows shorter than prompt + padding, GQA, q/k norms.
For each family:

* a ``--init text:X`` prompt, untrained, gives exactly the logits of the hard prompt X;
* the gathered answer-only loss equals the loss from the model's full logits;
* batched, left-padded greedy generation and rank decoding equal one record at a time;
* continual learning keeps earlier prompts byte-identical, and resume equals an uninterrupted
  run (through ``run_train``).
"""

from __future__ import annotations

import pytest
import torch

from ptune_cli.inference import decode as predict
from ptune_cli.ptuning.encoders import build_encoder
from ptune_cli.ptuning.model import answer_loss, check_gathered_head, inject_prompts
from ptune_cli.ptuning.template import TaskTemplate, encode_example
from tests.test_predict import SENTENCES as PREDICT_SENTENCES
from tests.test_predict import TEMPLATE, _greedy_no_cache
from tests.tiny_models import FAMILIES, WINDOW

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# test_predict's sentences, the last one longer: lengths differ by more than the window
SENTENCES = [*PREDICT_SENTENCES[:-1], PREDICT_SENTENCES[-1] + " wake me up at seven am tomorrow"]
INIT_TEXT = "Sentiment positive, negative"
LABELS = ["positive", "negative", "neutral", "positiva"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    """(name, folder, model, tokenizer): the family's tiny model with large random weights, so
    greedy outputs vary from token to token (a fresh one repeats its last input token, which
    makes equality tests pass trivially)."""
    from ptune_cli.models import load_causal_lm
    from tests.tiny_models import build_tiny_causal_lm

    name = request.param
    folder = build_tiny_causal_lm(tmp_path_factory.mktemp(f"tiny-{name}"), arch=name)
    model, tok = load_causal_lm(str(folder))
    g = torch.Generator().manual_seed(0)
    scale = {"gemma2": 0.05, "gemma3": 0.05, "gpt2": 0.2}.get(name, 0.5)  # larger ones saturate
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return name, folder, model, tok


def _prompt(model, n: int = 5, seed: int = 1) -> torch.Tensor:
    """Random prompt rows at the scale of the embeddings the model really sees."""
    ids = torch.arange(50)
    scale = model.get_input_embeddings()(ids).std()
    return torch.randn(n, model.config.hidden_size, generator=torch.Generator().manual_seed(seed)) * scale


def _encs(tok, include_answer=False):
    return [encode_example(TEMPLATE, {"sentence": s, "label": "positive"}, tok, include_answer=include_answer)
            for s in SENTENCES]


@pytest.mark.parametrize("kind", ["embedding", "lstm", "mlp"])
def test_text_init_prompt_is_the_hard_prompt(family, kind):
    _, _, model, tok = family
    text_ids = tok(INIT_TEXT, add_special_tokens=False)["input_ids"]
    tpl = TaskTemplate("t", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", len(text_ids), [len(text_ids)], "label", "sentence")
    torch.manual_seed(0)
    enc = build_encoder(kind, {"t": tpl}, tok, model.get_input_embeddings(), init=f"text:{INIT_TEXT}")
    prompt = enc.table()["t"]
    ex = encode_example(tpl, {"sentence": SENTENCES[0], "label": "positive"}, tok)
    ids, vmask = torch.tensor([ex.input_ids]), torch.tensor([ex.virtual_mask])
    hard = ids.clone()
    hard[vmask] = torch.tensor(text_ids)
    with torch.no_grad():
        soft = model(inputs_embeds=inject_prompts(model, ids, vmask, prompt)).logits
        ref = model(input_ids=hard).logits
    torch.testing.assert_close(soft, ref, atol=1e-4, rtol=1e-4)


def test_gathered_loss_equals_full_logits_loss(family):
    _, _, model, tok = family
    from ptune_cli.ptuning.data import EncodedSet, collate

    assert check_gathered_head(model, tok)
    exs = _encs(tok, include_answer=True)
    batch = collate(EncodedSet(exs, [0] * len(exs)), list(range(len(exs))), tok.pad_token_id)
    prompt = _prompt(model)
    with torch.no_grad():
        args = (model, batch["input_ids"], batch["attention_mask"], batch["virtual_mask"], batch["labels"], prompt)
        got, n = answer_loss(*args, gathered=True)
        ref, n_ref = answer_loss(*args, gathered=False)
    assert n == n_ref > 0
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_batched_generation_equals_one_at_a_time(family):
    _, _, model, tok = family
    encs = _encs(tok)
    lens = sorted(len(e.input_ids) for e in encs)
    assert lens[-1] - lens[0] > WINDOW and len(set(lens)) == len(lens)  # padding outgrows the window
    prompt = _prompt(model)
    stops = predict.stop_token_ids(tok, False)
    with torch.no_grad():
        batched = predict.generate_ids(model, tok, encs, prompt, max_new_tokens=12, stop_ids=stops)
    want = [_greedy_no_cache(model, e, prompt, 12, set(stops)) for e in encs]
    assert batched == want
    assert len({t for row in batched for t in row}) > 3  # outputs are not trivial repetitions


def _rank_one(model, tok, record, enc, prompt, cands):
    """Reference: each candidate's answer tokens appended to one record, a full forward pass,
    log-probabilities over the candidates' tokens (see predict.rank_labels)."""
    vocab = sorted({t for c in cands for t in c})
    scores = []
    for c in cands:
        ids = torch.tensor([enc.input_ids + c])
        vmask = torch.tensor([enc.virtual_mask + [False] * len(c)])
        with torch.no_grad():
            logits = model(inputs_embeds=inject_prompts(model, ids, vmask, prompt)).logits[0].float()
        logp = torch.log_softmax(logits[:, vocab], -1)
        start = len(enc.input_ids) - 1
        scores.append(sum(float(logp[start + j, vocab.index(t)]) for j, t in enumerate(c)))
    return scores


def test_batched_rank_decoding_equals_one_at_a_time(family):
    _, _, model, tok = family
    records = [{"sentence": s, "label": ""} for s in SENTENCES]
    encs = _encs(tok)
    prompt = _prompt(model)
    preds, scores = predict.rank_labels(model, tok, TEMPLATE, records, encs, prompt, LABELS, batch_size=8)
    cands = predict.candidate_ids(TEMPLATE, tok, records[0], LABELS)
    for i, (rec, enc) in enumerate(zip(records, encs, strict=True)):
        want = _rank_one(model, tok, rec, enc, prompt, cands)
        assert scores[i] == pytest.approx(want, abs=2e-3)
        assert preds[i] == LABELS[max(range(len(LABELS)), key=want.__getitem__)]
    assert len({tuple(row) for row in scores}) == len(scores)  # scores differ between records


def test_continual_learning_and_resume(family, tmp_path):
    """Through run_train: a second task leaves the first byte-identical; a run killed after a
    checkpoint and resumed ends byte-identical to one that was never stopped."""
    from ptune_cli.ptuning.table import PROMPT_TABLE_FILE
    from ptune_cli.training import TrainConfig, run_train
    from ptune_cli.training.events import Step
    from tests.test_train import (
        INTENT_TPL,
        SENT_TPL,
        intent_records,
        sentiment_records,
        tensor_bytes,
        write,
    )

    class Killed(Exception):
        pass

    name, folder, _, _ = family
    train = write(tmp_path / "train.jsonl", sentiment_records(16))
    base = dict(train=train, template=SENT_TPL, model=str(folder), epochs=2, batch_size=4, lr=1e-2, save_every=3)
    run_train(TrainConfig(output=str(tmp_path / "full"), **base))

    def crash(event):
        if isinstance(event, Step) and event.step == 5:  # last checkpoint: step 3
            raise Killed

    with pytest.raises(Killed):
        run_train(TrainConfig(output=str(tmp_path / "part"), **base), on_event=crash)
    assert not (tmp_path / "part" / PROMPT_TABLE_FILE).exists()
    assert run_train(TrainConfig(output=str(tmp_path / "part"), resume=True, **base)).resumed_from == 3
    assert tensor_bytes(tmp_path / "full", "sentiment-task") == tensor_bytes(tmp_path / "part", "sentiment-task")

    intent = write(tmp_path / "intent.jsonl", intent_records(8))
    run_train(TrainConfig(train=intent, template=INTENT_TPL, existing=str(tmp_path / "full"),
                          output=str(tmp_path / "two"), epochs=1, batch_size=4))
    assert tensor_bytes(tmp_path / "full", "sentiment-task") == tensor_bytes(tmp_path / "two", "sentiment-task")


def test_rank_decoding_refuses_a_head_it_cannot_reproduce(family, monkeypatch):
    from ptune_cli.errors import UserError

    _, _, model, tok = family
    monkeypatch.setattr(predict, "check_gathered_head", lambda m, t: False)
    with pytest.raises(UserError, match="--decode rank: the LM head of .* use --decode generate"):
        predict.rank_labels(model, tok, TEMPLATE, [{"sentence": "ok", "label": ""}], _encs(tok)[:1], _prompt(model), LABELS)


# -- deep prompts (P-tuning v2, --encoder prefix) ---------------------------------------------

PREFIX_TEXT = "positive negative"  # short: BOS + its tokens fit the tiny sliding window of 8


def _random_prefix(model, tok, t: int = 5, seed: int = 2):
    """A random prefix at the scale of the model's own keys/values."""
    from ptune_cli.ptuning.prefix import Prefix, kv_layout, token_kv

    ref = token_kv(model, [tok.bos_token_id], tok("make me a coffee", add_special_tokens=False)["input_ids"])
    n_layers, n_kv, d = kv_layout(model)
    g = torch.Generator().manual_seed(seed)
    return Prefix(torch.randn(n_layers, 2, n_kv, t, d, generator=g) * ref.std())


def _prefix_logits(model, before, rest, prefix):
    """Reference: one sequence, the prefix cache built fresh, a full forward pass."""
    from ptune_cli.ptuning.model import run_cached
    from ptune_cli.ptuning.prefix import start_cache

    off = len(before) + prefix.length
    cache = start_cache(model, before, prefix.kv, 1)
    with torch.no_grad():
        out, _ = run_cached(model, cache, input_ids=torch.tensor([rest]), attention_mask=torch.ones(1, off + len(rest)),
                            position_ids=off + torch.arange(len(rest))[None])
    return out.logits[0].float()


@pytest.fixture(params=["no-bos", "bos"])
def bos(request, monkeypatch):
    """The tiny tokenizers add no BOS; Gemma's do: then BOS is computed into the cache before
    the prefix. "bos" makes every encoding start with BOS."""
    if request.param == "bos":
        from ptune_cli.ptuning import template

        monkeypatch.setattr(template, "uses_bos", lambda tok: True)
    return request.param


@pytest.mark.parametrize("projection", [False, True])
def test_text_init_prefix_is_the_hard_prompt(family, projection, bos):
    """An untrained --init text:X prefix (the frozen model's own keys/values for X) gives the
    logits and the answer loss of the hard prompt X, with and without the projection MLP."""
    from ptune_cli.ptuning.data import EncodedSet, collate
    from ptune_cli.ptuning.prefix import split_virtual
    from ptune_cli.ptuning.prefix_encoder import build_prefix_encoder

    _, _, model, tok = family
    text_ids = tok(PREFIX_TEXT, add_special_tokens=False)["input_ids"]
    tpl = TaskTemplate("t", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", len(text_ids), [len(text_ids)], "label", "sentence")
    torch.manual_seed(0)
    enc = build_prefix_encoder(model, {"t": tpl}, tok, init=f"text:{PREFIX_TEXT}", projection=projection)
    prefix = enc(0)
    exs = [encode_example(tpl, {"sentence": s, "label": "positive"}, tok) for s in SENTENCES[:3]]
    batch = collate(EncodedSet(exs, [0] * 3), [0, 1, 2], tok.pad_token_id)
    hard = batch["input_ids"].clone()
    hard[batch["virtual_mask"]] = torch.tensor(text_ids * 3)
    no_prompt = torch.zeros(0, model.config.hidden_size)
    with torch.no_grad():
        got, n = answer_loss(model, **batch, prompts=prefix)
        want, n_ref = answer_loss(model, hard, batch["attention_mask"], torch.zeros_like(hard, dtype=torch.bool),
                                  batch["labels"], no_prompt)
        before, rest = split_virtual(exs[0])
        assert len(before) == (bos == "bos")
        soft = _prefix_logits(model, before, rest, _as_prefix(prefix))
        ref = model(input_ids=torch.tensor([before + text_ids + rest])).logits[0, len(before) + len(text_ids):].float()
    assert n == n_ref > 0
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(soft, ref, atol=1e-4, rtol=1e-4)


def _as_prefix(t):
    from ptune_cli.ptuning.prefix import Prefix

    return Prefix(t.detach())


def test_prefix_batched_generation_equals_one_at_a_time(family, bos):
    from ptune_cli.ptuning.prefix import split_virtual

    _, _, model, tok = family
    encs = _encs(tok)
    prefix = _random_prefix(model, tok)
    stops = set(predict.stop_token_ids(tok, False))
    with torch.no_grad():
        batched = predict.generate_texts(model, tok, encs, prefix, batch_size=8, max_new_tokens=10, stop_at_newline=False)
    want = []
    for e in encs:
        before, seq = split_virtual(e)
        out = []
        for _ in range(10):
            nxt = int(_prefix_logits(model, before, seq, prefix)[-1].argmax())
            if nxt in stops:
                break
            out.append(nxt)
            seq = [*seq, nxt]
        want.append(predict.decode_prediction(tok, out, False))
    assert batched == want
    assert len(set(batched)) > 2  # predictions differ between records


def test_prefix_batched_rank_decoding_equals_one_at_a_time(family, bos):
    from ptune_cli.ptuning.prefix import split_virtual

    _, _, model, tok = family
    records = [{"sentence": s, "label": ""} for s in SENTENCES]
    encs = _encs(tok)
    prefix = _random_prefix(model, tok)
    preds, scores = predict.rank_labels(model, tok, TEMPLATE, records, encs, prefix, LABELS, batch_size=8)
    cands = predict.candidate_ids(TEMPLATE, tok, records[0], LABELS)
    vocab = sorted({t for c in cands for t in c})
    for i, e in enumerate(encs):
        before, rest = split_virtual(e)
        want = []
        for c in cands:
            logp = torch.log_softmax(_prefix_logits(model, before, rest + c, prefix)[:, vocab], -1)
            want.append(sum(float(logp[len(rest) - 1 + j, vocab.index(t)]) for j, t in enumerate(c)))
        assert scores[i] == pytest.approx(want, abs=2e-3)
    assert len({tuple(row) for row in scores}) == len(scores)


def test_prefix_continual_learning_and_resume(family, tmp_path):
    """Through run_train with --encoder prefix: resume equals an uninterrupted run; a prefix task
    added to an input-prompt table (and an input task to a prefix table) leaves the earlier
    task byte-identical. Families whose sliding window is shorter than the examples refuse."""
    from ptune_cli.errors import UserError
    from ptune_cli.training import TrainConfig, run_train
    from ptune_cli.training.events import Step
    from tests.test_train import (
        INTENT_TPL,
        SENT_TPL,
        intent_records,
        sentiment_records,
        tensor_bytes,
        write,
    )

    class Killed(Exception):
        pass

    name, folder, model, _ = family
    train = write(tmp_path / "train.jsonl", sentiment_records(12))
    base = dict(train=train, template=SENT_TPL, model=str(folder), epochs=2, batch_size=4, lr=1e-2, save_every=2)
    if predict.sliding_window(model) is not None:
        with pytest.raises(UserError, match="sliding window .* the prefix would drop out"):
            run_train(TrainConfig(output=str(tmp_path / "w"), encoder="prefix", **base))
        return
    run_train(TrainConfig(output=str(tmp_path / "full"), encoder="prefix", prefix_projection=True, **base))

    def crash(event):
        if isinstance(event, Step) and event.step == 5:  # last checkpoint: step 4
            raise Killed

    with pytest.raises(Killed):
        run_train(TrainConfig(output=str(tmp_path / "part"), encoder="prefix", prefix_projection=True, **base),
                  on_event=crash)
    assert run_train(TrainConfig(output=str(tmp_path / "part"), encoder="prefix", prefix_projection=True,
                                 resume=True, **base)).resumed_from == 4
    assert tensor_bytes(tmp_path / "full", "sentiment-task") == tensor_bytes(tmp_path / "part", "sentiment-task")

    intent = write(tmp_path / "intent.jsonl", intent_records(8))
    more = dict(train=intent, template=INTENT_TPL, epochs=1, batch_size=4)
    run_train(TrainConfig(existing=str(tmp_path / "full"), output=str(tmp_path / "two"), **more))  # input task
    assert tensor_bytes(tmp_path / "full", "sentiment-task") == tensor_bytes(tmp_path / "two", "sentiment-task")
    run_train(TrainConfig(train=train, template=SENT_TPL, model=str(folder), epochs=1, output=str(tmp_path / "in")))
    run_train(TrainConfig(existing=str(tmp_path / "in"), output=str(tmp_path / "mix"), encoder="prefix", **more))
    assert tensor_bytes(tmp_path / "in", "sentiment-task") == tensor_bytes(tmp_path / "mix", "sentiment-task")
