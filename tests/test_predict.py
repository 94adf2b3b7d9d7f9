"""Batched generation and rank decoding on a tiny Llama, against one-at-a-time references."""

from __future__ import annotations

import json

import pytest
import torch

from ptune_cli.errors import UserError
from ptune_cli.inference import decode as predict
from ptune_cli.inference.baseline import build_baseline, draw_shots, plain_text, shots_for
from ptune_cli.ptuning.model import inject_prompts
from ptune_cli.ptuning.template import TaskTemplate, encode_example

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCES = [
    "Shares fell sharply after the announcement.",
    "make me a coffee please",
    "Företaget rapporterade stark vinsttillväxt under kvartalet. Känslor för Lloyds",
    "ok",
    "What is the weather like in Stockholm today?",
]
TEMPLATE = TaskTemplate(
    taskname="sentiment-task",
    prompt_template="<|VIRTUAL_PROMPT_0|> {sentence}<|VIRTUAL_PROMPT_1|>:{label}",
    total_virtual_tokens=5,
    virtual_token_splits=[3, 2],
    answer_field="label",
    truncate_field="sentence",
)




def varied_lm(tiny_dir, seed: int = 0):
    """The tiny Llama with large random weights: its greedy outputs vary from token to token
    (the freshly initialised one just repeats its last input token, which would make
    equality tests pass trivially)."""
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(str(tiny_dir))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, tok


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    return varied_lm(tiny_lm_dir)


@pytest.fixture(scope="module")
def prompt():
    return torch.randn(5, 32, generator=torch.Generator().manual_seed(1))


def _encs(tok, include_answer=False, tpl=TEMPLATE):
    return [encode_example(tpl, {"sentence": s, "label": "positive"}, tok, include_answer=include_answer)
            for s in SENTENCES]


def _greedy_no_cache(model, enc, prompt, max_new, stops):
    """Reference: one example, full forward pass per step (no KV cache, no padding)."""
    ids = torch.tensor([enc.input_ids])
    embeds = inject_prompts(model, ids, torch.tensor([enc.virtual_mask]), prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(inputs_embeds=embeds).logits[0, -1].argmax())
            if nxt in stops:
                break
            out.append(nxt)
            embeds = torch.cat([embeds, model.get_input_embeddings()(torch.tensor([[nxt]]))], dim=1)
    return out


def _hf_generate_one(model, tok, enc, prompt, max_new, stops):
    """Reference: transformers' model.generate on one example (no padding)."""
    ids = torch.tensor([enc.input_ids])
    embeds = inject_prompts(model, ids, torch.tensor([enc.virtual_mask]), prompt)
    with torch.no_grad():
        out = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new, eos_token_id=list(stops), pad_token_id=tok.pad_token_id)
    return predict.cut_at_stop(out[0].tolist(), set(stops))


@pytest.mark.parametrize("stop_at_newline", [False, True])
def test_batched_generation_equals_one_at_a_time(lm, prompt, stop_at_newline):
    model, tok = lm
    encs = _encs(tok)
    assert len({len(e.input_ids) for e in encs}) == len(encs)  # left padding really happens
    stops = predict.stop_token_ids(tok, stop_at_newline)
    with torch.no_grad():
        batched = predict.generate_ids(model, tok, encs, prompt, max_new_tokens=12, stop_ids=stops)
    for enc, got in zip(encs, batched, strict=True):
        assert got == _hf_generate_one(model, tok, enc, prompt, 12, stops)  # model.generate, one at a time
        assert got == _greedy_no_cache(model, enc, prompt, 12, set(stops))  # no cache at all
    assert len({t for row in batched for t in row}) > 5  # outputs are not trivial repetitions


def test_rows_that_stop_leave_the_batch(lm, prompt):
    model, tok = lm
    encs = _encs(tok)
    free = predict.generate_ids(model, tok, encs, prompt, max_new_tokens=10, stop_ids=[tok.eos_token_id])
    # make one frequent token a stop: rows end at different steps, the others must not change
    stop = free[0][3]
    cut = predict.generate_ids(model, tok, encs, prompt, max_new_tokens=10, stop_ids=[tok.eos_token_id, stop])
    assert cut == [predict.cut_at_stop(row, {stop}) for row in free]
    assert len({len(row) for row in cut}) > 1


def _fake(n_tokens):
    return predict.Encoded([0] * n_tokens, [False] * n_tokens, [], n_tokens, False)


def test_batches_cover_every_record_and_avoid_padding():
    encs = [_fake(n) for n in [10] * 15 + [100]] + [None]
    for cost in (0.0, 50.0, 1e9):
        batches = predict._batches(encs, 16, batch_cost=cost)
        assert sorted(i for b in batches for i in b) == list(range(16))  # None (did not fit) left out
        assert all(len(b) <= 16 for b in batches)
    assert predict._batches(encs, 16, batch_cost=50.0) == [[15], list(range(15))]  # the long one alone
    assert predict._batches(encs, 16, batch_cost=1e9) == [[15, *range(15)]]  # one batch when batches are dear
    assert sorted(len(b) for b in predict._batches([_fake(5)] * 10, 4, batch_cost=1e9)) == [2, 4, 4]


def test_shared_prefix_len(tiny_lm_dir):
    from ptune_cli.models import load_tokenizer

    tok = load_tokenizer(str(tiny_lm_dir))
    encs = _encs(tok)
    n = predict.shared_prefix_len(encs)
    assert n >= 3  # the first virtual block at least (plus BOS where the tokenizer adds one)
    assert len({tuple(e.input_ids[:n]) for e in encs}) == 1
    assert len({e.input_ids[n] for e in encs}) > 1 or any(len(e.input_ids) == n + 1 for e in encs)
    assert predict.shared_prefix_len(encs[:1]) == len(encs[0].input_ids) - 1


def test_generate_texts_keeps_input_order_and_strips_prompt(lm, prompt):
    model, tok = lm
    encs = _encs(tok)
    encs[2] = None  # a record that did not fit
    texts = predict.generate_texts(model, tok, encs, prompt, batch_size=2, max_new_tokens=8, stop_at_newline=True)
    assert texts[2] == ""
    for i, enc in enumerate(encs):
        if enc is None:
            continue
        ids = predict.generate_ids(model, tok, [enc], prompt, max_new_tokens=8,
                                   stop_ids=predict.stop_token_ids(tok, True))[0]
        assert texts[i] == predict.decode_prediction(tok, ids, True)
        assert SENTENCES[i] not in texts[i]
        assert "\n" not in texts[i]


def test_text_before_a_newline_in_the_stop_token_is_kept(tiny_lm_dir, prompt):
    """A vocabulary token like "okay\n" stops a one-line answer, but "okay" is the answer."""
    model, tok = varied_lm(tiny_lm_dir)
    tok.add_tokens(["okay\n"])
    new = len(tok) - 1
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    enc = _encs(tok)[0]
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():  # make "okay\n" the first greedy token
        embeds = inject_prompts(model, ids, torch.tensor([enc.virtual_mask]), prompt)
        h = model.model(inputs_embeds=embeds).last_hidden_state[0, -1]
        model.get_output_embeddings().weight[new] = 50 * h / h.norm()
    assert new in predict.stop_token_ids(tok, True)
    assert predict.generate_texts(model, tok, [enc], prompt, max_new_tokens=4) == ["okay"]


def test_stop_helpers(tiny_lm_dir):
    from ptune_cli.models import load_tokenizer

    tok = load_tokenizer(str(tiny_lm_dir))
    nl = predict.newline_token_ids(tok)
    assert tok("\n", add_special_tokens=False)["input_ids"][0] in nl
    assert all("\n" in tok.decode([i]) for i in nl)
    assert predict.stop_token_ids(tok, False) == [tok.eos_token_id]
    assert predict.cut_at_stop([5, 6, 2, 7], {2}) == [5, 6]
    assert predict.decode_prediction(tok, tok(" positiv\nmore", add_special_tokens=False)["input_ids"], True) == "positiv"


def _loglik_full(model, tok, tpl, record, prompt, vocab):
    """Reference: log-likelihood of answer + EOS from one full forward pass, each position's
    distribution normalised over the ``vocab`` tokens (the candidates' tokens)."""
    enc = encode_example(tpl, record, tok, include_answer=True)
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logits = model(inputs_embeds=inject_prompts(model, ids, torch.tensor([enc.virtual_mask]), prompt)).logits
    logp = torch.log_softmax(logits[0].float()[:, vocab], -1)
    return sum(float(logp[i - 1, vocab.index(enc.input_ids[i])]) for i in range(enc.answer_start, len(enc.input_ids)))


def test_rank_scores_equal_full_sequence_loglik_over_label_tokens(lm, prompt):
    model, tok = lm
    cands = ["positive", "negative", "neutral", "positiva"]  # different token lengths
    records = [{"sentence": s, "label": "x"} for s in SENTENCES]
    encs = _encs(tok)
    preds, scores = predict.rank_labels(model, tok, TEMPLATE, records, encs, prompt, cands, batch_size=3)
    vocab = sorted({t for c in predict.candidate_ids(TEMPLATE, tok, records[0], cands) for t in c})
    for rec, pred, row in zip(records, preds, scores, strict=True):
        want = [_loglik_full(model, tok, TEMPLATE, {**rec, "label": c}, prompt, vocab) for c in cands]
        assert row == pytest.approx(want, abs=2e-3)
        assert pred == cands[max(range(len(cands)), key=lambda k: want[k])]


def test_baseline_template_and_shots(tmp_path, tiny_lm_dir):
    from ptune_cli.models import load_tokenizer

    assert plain_text(TEMPLATE) == "{sentence}:{label}"
    train = tmp_path / "train.jsonl"
    train.write_text("".join(f'{{"sentence": "s{i} {{x}}", "label": "l{i}"}}\n' for i in range(10)))
    shots = draw_shots(str(train), TEMPLATE, 3, seed=4)
    assert shots == draw_shots(str(train), TEMPLATE, 3, seed=4)
    assert shots != draw_shots(str(train), TEMPLATE, 3, seed=5)
    base = build_baseline(TEMPLATE, shots, one_line=True)
    lines = base.prefix.splitlines()
    assert lines == [f"{r['sentence']}:{r['label']}" for _, r in shots]  # braces in values kept as text
    assert base.shot_lines == [line for line, _ in shots]
    tok = load_tokenizer(str(tiny_lm_dir))
    enc = encode_example(base.template, base.apply({"sentence": "test {x}", "label": "l"}), tok, include_answer=False)
    assert not any(enc.virtual_mask)
    assert tok.decode(enc.input_ids, skip_special_tokens=True) == base.prefix + "test {x}:"
    zero = build_baseline(TEMPLATE, [], one_line=True)
    assert zero.prefix == ""
    assert shots_for("zero", None) == 0 and shots_for("one", None) == 1 and shots_for("few", None) == 5
    with pytest.raises(UserError, match="uses 1 shot"):
        shots_for("one", 3)
    with pytest.raises(UserError, match="fewer than --shots 20"):
        draw_shots(str(train), TEMPLATE, 20, seed=0)


@pytest.mark.slow
def test_real_smollm2_batched_equals_one_at_a_time(shared_data):
    """The packaged SmolLM2-135M, a random prompt, FPB sentences of different lengths."""
    from ptune_cli.io import read_records
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(None)
    recs = read_records(shared_data / "financial_phrasebank" / "fpb_allagree_sentiment.jsonl")[:6]
    tpl = TaskTemplate("sentiment-task", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 10, [10], "label", "sentence")
    emb = model.get_input_embeddings().weight
    prompt = torch.randn(10, emb.shape[1], generator=torch.Generator().manual_seed(0)) * emb.std()
    encs = [encode_example(tpl, r, tok, include_answer=False) for r in recs]
    stops = predict.stop_token_ids(tok, True)
    with torch.no_grad():
        batched = predict.generate_ids(model, tok, encs, prompt, max_new_tokens=6, stop_ids=stops)
    assert batched == [_hf_generate_one(model, tok, e, prompt, 6, stops) for e in encs]


def test_shots_come_from_the_task_s_own_records(tmp_path):
    """A multitask training file: intent/slot records (no 'sentence') are not candidates."""
    train = tmp_path / "mixed.jsonl"
    rows = [{"taskname": "intent_and_slot", "utterance": f"u{i}", "label": "\nIntent: x\nSlots: None"} for i in range(6)]
    rows += [{"taskname": "sentiment-task", "sentence": f"s{i}", "label": "positive"} for i in range(4)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shots = draw_shots(str(train), TEMPLATE, 4, seed=0)
    assert sorted(line for line, _ in shots) == [7, 8, 9, 10]
    with pytest.raises(UserError, match="4 records of task 'sentiment-task', fewer than --shots 5"):
        draw_shots(str(train), TEMPLATE, 5, seed=0)
    rows[7] = {"taskname": "sentiment-task", "label": "negative"}
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match=r"mixed\.jsonl:8: field 'sentence': missing required field"):
        draw_shots(str(train), TEMPLATE, 2, seed=0)
