"""Templates: validation reports every problem; virtual tokens land at the markers; labels."""

from __future__ import annotations

import json

import pytest

from ptune_cli.errors import UserError
from ptune_cli.ptuning.template import (
    TaskTemplate,
    encode_example,
    load_templates,
    template_from_dict,
)

SENT = {
    "taskname": "sentiment-task",
    "prompt_template": "<|VIRTUAL_PROMPT_0|> {sentence}:{label}",
    "total_virtual_tokens": 10,
    "virtual_token_splits": [10],
    "truncate_field": "sentence",
    "answer_only_loss": True,
    "answer_field": "label",
}
TWO = {
    "taskname": "intent_and_slot",
    "prompt_template": "<|VIRTUAL_PROMPT_0|> Utterance: {utterance}<|VIRTUAL_PROMPT_1|>{label}",
    "total_virtual_tokens": 6,
    "virtual_token_splits": [4, 2],
    "answer_field": "label",
}
REC = {"taskname": "sentiment-task", "sentence": "Aktierna föll kraftigt", "label": "negativ"}


@pytest.fixture(scope="module")
def tok(tiny_lm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def test_roundtrip_and_defaults():
    t = template_from_dict(SENT)
    assert t.to_dict() == SENT
    t2 = template_from_dict({k: v for k, v in TWO.items()})
    assert t2.truncate_field is None and t2.answer_only_loss is True
    assert t2.input_fields == ["utterance"]


def test_every_problem_reported_at_once(tmp_path):
    bad = dict(SENT, virtual_token_splits=[4, 4], prompt_template="{label} <|VIRTUAL_PROMPT_0|> {sentence}")
    with pytest.raises(UserError) as e:
        template_from_dict(bad, "t.json")
    msg = str(e.value)
    assert "t.json" in msg and "sum to 8" in msg and "1 <|VIRTUAL_PROMPT_i|> marker" in msg
    assert "must end prompt_template" in msg
    # several templates in one file: both broken ones are named
    f = tmp_path / "multi.json"
    f.write_text(json.dumps({"_comment": "x", "tasks": [dict(SENT, answer_field="missing"), dict(TWO, total_virtual_tokens=3), SENT]}))
    with pytest.raises(UserError) as e:
        load_templates(f)
    assert "tasks[0]" in str(e.value) and "tasks[1]" in str(e.value) and "tasks[2]" not in str(e.value)
    assert "answer_field 'missing'" in str(e.value)


def test_missing_keys_and_types():
    with pytest.raises(UserError) as e:
        template_from_dict({"taskname": "x", "total_virtual_tokens": "10", "answr_field": "l"})
    msg = str(e.value)
    assert "missing key 'prompt_template'" in msg and "'total_virtual_tokens' must be int" in msg
    assert "unknown key(s) 'answr_field'" in msg


def test_load_templates_forms(tmp_path):
    f = tmp_path / "one.json"
    f.write_text(json.dumps(dict(SENT, _comment="used by ptune train")))
    assert list(load_templates(f)) == ["sentiment-task"]
    f.write_text(json.dumps([SENT, TWO]))
    assert list(load_templates(f)) == ["sentiment-task", "intent_and_slot"]
    f.write_text(json.dumps({"tasks": [SENT, SENT]}))
    with pytest.raises(UserError, match="duplicate taskname"):
        load_templates(f)
    f.write_text("{nope")
    with pytest.raises(UserError, match="invalid JSON"):
        load_templates(f)


def test_virtual_tokens_at_markers_with_splits(tok):
    t = template_from_dict(TWO)
    rec = {"utterance": "make me a coffee", "label": "\nIntent: iot_coffee\nSlots: None"}
    enc = encode_example(t, rec, tok)
    assert sum(enc.virtual_mask) == 6
    assert len(enc.input_ids) == len(enc.virtual_mask) == len(enc.labels)
    # layout: [BOS?] 4 virtual, " Utterance: make me a coffee", 2 virtual, label, EOS
    runs, prev = [], None
    for v in enc.virtual_mask:
        if v != prev:
            runs.append([v, 0])
            prev = v
        runs[-1][1] += 1
    assert [r for r in runs if r[0]] == [[True, 4], [True, 2]]
    first = enc.virtual_mask.index(True)
    middle = tok(" Utterance: make me a coffee", add_special_tokens=False)["input_ids"]
    assert enc.input_ids[first + 4 : first + 4 + len(middle)] == middle
    assert enc.virtual_mask[first + 4 + len(middle) : first + 6 + len(middle)] == [True, True]
    assert all(enc.input_ids[i] == tok.pad_token_id for i, v in enumerate(enc.virtual_mask) if v)


def test_answer_only_loss_labels_and_prefix(tok):
    t = template_from_dict(SENT)
    full = encode_example(t, REC, tok)
    prompt = encode_example(t, REC, tok, include_answer=False)
    ans = tok("negativ", add_special_tokens=False)["input_ids"]
    assert full.input_ids[: len(prompt.input_ids)] == prompt.input_ids
    assert prompt.answer_start == len(prompt.input_ids) == full.answer_start
    assert full.input_ids[full.answer_start :] == ans + [tok.eos_token_id]
    assert full.labels == [-100] * full.answer_start + ans + [tok.eos_token_id]
    assert set(prompt.labels) == {-100}
    # all non-virtual tokens carry a loss without answer_only_loss
    allt = encode_example(template_from_dict(dict(SENT, answer_only_loss=False)), REC, tok)
    assert [lab != -100 for lab in allt.labels] == [not v for v in allt.virtual_mask]


def test_zero_shot_template_without_virtual_tokens(tok):
    t = TaskTemplate("base", "Sentence: {sentence}\nSentiment:{label}", 0, [], "label")
    enc = encode_example(t, REC, tok, include_answer=False)
    assert not any(enc.virtual_mask) and enc.answer_start == len(enc.input_ids)
    assert template_from_dict(t.to_dict()).total_virtual_tokens == 0


def test_truncation_and_skip(tok):
    long = dict(REC, sentence=" ".join(["Aktierna föll kraftigt efter beskedet."] * 20))
    t = template_from_dict(SENT)
    full = encode_example(t, long, tok)
    enc = encode_example(t, long, tok, max_length=40)
    assert enc is not None and enc.truncated and len(enc.input_ids) <= 40
    assert enc.input_ids[enc.answer_start :] == full.input_ids[full.answer_start :]
    assert sum(enc.virtual_mask) == 10
    no_trunc = template_from_dict(dict(SENT, truncate_field=None))
    assert encode_example(no_trunc, long, tok, max_length=40) is None
    assert encode_example(t, long, tok, max_length=12) is None  # not even the answer fits
    assert not encode_example(t, REC, tok, max_length=40).truncated


def test_missing_record_field_is_user_error(tok):
    with pytest.raises(UserError, match="no field 'sentence'"):
        encode_example(template_from_dict(SENT), {"label": "x"}, tok)


@pytest.mark.parametrize("prompt, char, pos", [
    ("<|VIRTUAL_PROMPT_0|> {sentence:{label}", "{", 22),
    ("<|VIRTUAL_PROMPT_0|> {sentence}}:{label}", "}", 32),
    ("<|VIRTUAL_PROMPT_0|> sentence}:{label}", "}", 30),
    ("<|VIRTUAL_PROMPT_0|> {sentence}:{label", "{", 33),
])
def test_unbalanced_brace_names_template_prompt_and_position(prompt, char, pos):
    with pytest.raises(UserError) as e:
        template_from_dict(dict(SENT, prompt_template=prompt), "t.json")
    msg = str(e.value)
    assert msg == (f"t.json: template 'sentiment-task': prompt_template {prompt!r} has an unbalanced "
                   f"'{char}' at character {pos} (fields are written {{name}})")
    assert "truncate_field" not in msg


def test_literal_balanced_braces_are_still_allowed():
    t = template_from_dict(dict(SENT, prompt_template="<|VIRTUAL_PROMPT_0|> {sentence} {} {not a field}:{label}"))
    assert t.fields == ["sentence", "label"]


@pytest.mark.parametrize("value, got", [(None, "null"), (3, "int"), (["negativ"], "list")])
def test_encoding_a_non_string_field_is_refused_not_str(tok, value, got):
    t = template_from_dict(SENT)
    for field in ("sentence", "label"):
        with pytest.raises(UserError, match=f"field '{field}': expected a string, got {got}"):
            encode_example(t, {**REC, field: value}, tok)


def test_template_file_with_duplicate_keys_is_refused(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps(SENT)[:-1] + ', "answer_field": "sentence"}', encoding="utf-8")
    with pytest.raises(UserError, match=r"t.json: invalid JSON \(duplicate key 'answer_field'"):
        load_templates(p)


def test_space_before_the_answer_goes_with_the_answer(tiny_lm_dir):
    """'Sentiment: {label}' tokenizes as the whole string would: the answer is ' positive', and
    the prompt (what generation continues) ends at ':'."""
    from ptune_cli.models import load_tokenizer

    tok = load_tokenizer(str(tiny_lm_dir))
    tpl = template_from_dict({**SENT, "prompt_template": "<|VIRTUAL_PROMPT_0|> {sentence} Sentiment: {label}"})
    rec = {"sentence": "Shares fell", "label": "positive"}
    full = encode_example(tpl, rec, tok)
    prompt = encode_example(tpl, rec, tok, include_answer=False)
    answer = full.input_ids[full.answer_start:]
    assert answer == tok(" positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert full.input_ids[: full.answer_start] == prompt.input_ids
    assert tok.decode(prompt.input_ids[-1:]).endswith(":")


@pytest.mark.parametrize("prompt, message", [
    ("<|VIRTUAL_PROMPT_0|> {{sentence}}:{label}",
     "'{{sentence}}' at character 22: fields are written with single braces, {sentence}"),
    ("<|VIRTUAL_PROMPT_0|> { sentence }:{label}", "'{ sentence }' at character 22 would stay literal text; "
                                                  "write the field without spaces, {sentence}"),
    ("<|VIRTUAL_PROMPT_0|> {0}:{label}", "'{0}' at character 22 is not a field (positional placeholders"),
])
def test_fields_written_the_wrong_way_are_named_not_kept_as_text(prompt, message):
    """Issue 19: nested {{sentence}} was reported as unbalanced; { sentence } and {0} became
    literal prompt text silently."""
    with pytest.raises(UserError) as e:
        template_from_dict(dict(SENT, prompt_template=prompt), "t.json")
    assert message in str(e.value) and "unbalanced" not in str(e.value)
