"""Structured decoding (``--decode structured``) and the label metadata it reads from the run.

* the batched walk (forced chunks, finished rows leaving the cache, gathered head rows) picks
  exactly the tokens a naive walk picks from the model's full logits, one record at a time,
  on every family (input prompts) and with a deep prefix;
* every output parses: a known intent, known slot types, values copied from the utterance;
* ``describe_answers`` / ``task_labels`` (the metadata ``ptune train`` stores).
"""

from __future__ import annotations

import pytest
import torch

from ptune_cli.inference.structured import (
    _groups,
    _Row,
    build_trie,
    grammar_for,
    resolve_decode,
    structured_ids,
    structured_texts,
    value_spans,
)
from ptune_cli.labels import parse_intent_slot
from ptune_cli.ptuning.labelset import describe_answers, task_labels
from ptune_cli.ptuning.model import inject_prompts
from ptune_cli.ptuning.prefix import Prefix, kv_layout
from ptune_cli.ptuning.template import TaskTemplate, encode_example
from tests.test_families import _prompt, family  # noqa: F401 - the family fixture

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TPL = TaskTemplate("intent_and_slot", "<|VIRTUAL_PROMPT_0|> Utterance: {utterance}<|VIRTUAL_PROMPT_1|>{label}",
                   5, [3, 2], "label", "utterance")
GOLD = ["\nIntent: alarm_set\nSlots: time(seven am), date(tomorrow)", "\nIntent: iot_coffee\nSlots: None",
        "\nIntent: weather_query\nSlots: place_name(stockholm)", "\nIntent: play_music\nSlots: None"]
UTTERANCES = ["wake me up at seven am tomorrow", "make me a coffee please",
              "what is the weather like in stockholm today?", "ok", "play some jazz from the seventies now please"]


def labels() -> dict:
    return describe_answers(GOLD)


def test_describe_answers_kinds():
    lab = labels()
    assert lab["grammar"] == "intent-slot"
    assert lab["intents"] == ["alarm_set", "iot_coffee", "play_music", "weather_query"]
    assert lab["slot_types"] == ["date", "place_name", "time"] and lab["max_slots"] == 2 and lab["max_value_words"] == 2
    assert describe_answers(["positiv", "negativ", "positiv"]) == {"answers": ["negativ", "positiv"]}
    assert "answers" not in describe_answers([f"answer {i}" for i in range(300)])


def test_task_labels_prefers_the_stored_ones_and_falls_back_to_the_training_file(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"utterance": "x", "label": "\\nIntent: a\\nSlots: None"}\n', encoding="utf-8")
    old = {"tasks": {"t": {}}, "hyperparameters": {"train": str(train)}}
    assert task_labels(old, "t")["intents"] == ["a"]
    assert task_labels({**old, "tasks": {"t": {"labels": {"answers": ["y"]}}}}, "t") == {"answers": ["y"]}
    train.unlink()
    assert task_labels(old, "t") == {}  # an old table whose training file is gone: nothing known


def test_resolve_decode():
    assert resolve_decode("auto", labels()) == "structured"
    assert resolve_decode("auto", {"answers": ["a"]}) == "generate"
    assert resolve_decode("auto", {}) == "generate"
    assert resolve_decode("generate", labels()) == "generate"


def test_value_spans_and_trie():
    spans = value_spans("at seven am, please", 2)
    assert "seven am" in spans and "am" in spans and "am, please" in spans and "please" in spans
    assert "at seven am" not in spans  # longer than max_words
    trie = build_trie([([1, 2], "a"), ([1, 3], "b")])
    assert set(trie[1]) == {2, 3} and trie[1][2][-1] == "a"


def _naive(model, tok, grammar, record, enc, prompt) -> list[int]:
    """Reference: the same walk, each choice from the model's full logits over the whole
    sequence (no cache, no batching, no gathered head)."""
    row = _Row(grammar, record)
    row.advance()
    while not row.done:
        ids = torch.tensor([enc.input_ids + row.out])
        vmask = torch.tensor([enc.virtual_mask + [False] * len(row.out)])
        with torch.no_grad():
            if isinstance(prompt, Prefix):
                raise AssertionError("prefix reference not used")
            logits = model(inputs_embeds=inject_prompts(model, ids, vmask, prompt)).logits[0, -1].float()
        choices = row.choices()
        row.take(max(choices, key=lambda t: float(logits[t])))
    return row.out


def _records():
    return [{"utterance": u} for u in UTTERANCES]


def _check_parses(texts, lab):
    for text, u in zip(texts, UTTERANCES, strict=True):
        parsed = parse_intent_slot(text)
        assert parsed.intent in lab["intents"], text
        for stype, value in parsed.slots:
            assert stype in lab["slot_types"] and value in u.lower(), text
        assert text.endswith(")") or text.endswith("None"), text


def test_batched_structured_decoding_equals_a_naive_walk(family):  # noqa: F811
    _, _, model, tok = family
    lab = labels()
    grammar = grammar_for(tok, TPL, lab)
    records = _records()
    encs = [encode_example(TPL, r, tok, include_answer=False) for r in records]
    prompt = _prompt(model)
    with torch.no_grad():  # batched as the window allows (see structured._groups)
        batched = [None] * len(records)
        for sub in _groups(model, encs, list(range(len(records))), prompt, 64):
            outs = structured_ids(model, tok, grammar, [records[i] for i in sub], [encs[i] for i in sub], prompt)
            for i, ids in zip(sub, outs, strict=True):
                batched[i] = ids
    want = [_naive(model, tok, grammar, r, e, prompt) for r, e in zip(records, encs, strict=True)]
    assert batched == want
    texts = structured_texts(model, tok, TPL, lab, records, encs, prompt, batch_size=3)
    _check_parses(texts, lab)
    assert texts == [tok.decode(ids, skip_special_tokens=True).strip() for ids in want]


def test_structured_decoding_with_a_deep_prefix_equals_one_at_a_time(family):  # noqa: F811
    _, _, model, tok = family
    lab = labels()
    records = _records()
    encs = [encode_example(TPL, r, tok, include_answer=False) for r in records]
    n_layers, n_kv, head_dim = kv_layout(model)
    g = torch.Generator().manual_seed(2)
    prefix = Prefix(torch.randn(n_layers, 2, n_kv, TPL.total_virtual_tokens, head_dim, generator=g) * 0.5)
    batched = structured_texts(model, tok, TPL, lab, records, encs, prefix, batch_size=8)
    alone = [structured_texts(model, tok, TPL, lab, [r], [e], prefix)[0] for r, e in zip(records, encs, strict=True)]
    assert batched == alone
    _check_parses(batched, lab)


def test_structured_decoding_of_a_closed_label_set(family):  # noqa: F811
    _, _, model, tok = family
    tpl = TaskTemplate("s", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 5, [5], "label", "sentence")
    records = [{"sentence": u} for u in UTTERANCES]
    encs = [encode_example(tpl, r, tok, include_answer=False) for r in records]
    answers = ["positiv", "negativ", "neutral"]
    texts = structured_texts(model, tok, tpl, {"answers": answers}, records, encs, _prompt(model))
    assert set(texts) <= set(answers)
