"""translate on QA records: context and question translated, every gold answer projected into
the translated context (brackets, else alone + located), unprojectable answers flagged and
counted, never dropped. A word-for-word engine stands in for the model (its translations are
predictable); the tiny random Marian checks the same invariants on real model output."""

from __future__ import annotations

import pytest

from ptune_cli.errors import UserError
from ptune_cli.translate import TranslateConfig, run_translate
from tests.test_translate import WordEngine, _run, read_jsonl, write_jsonl

QA = {"taskname": "squad", "id": "q1", "context": "wake me up at seven am tomorrow.",
      "question": "what alarms are set for today?", "answer": "seven am",
      "answers": ["seven am", "at seven am", "seven am"], "paragraph_id": "p:0:0"}


def test_answers_projected_through_brackets_and_nested_ones_located(tmp_path):
    engine = WordEngine()
    (out,), report = _run(tmp_path, [QA], engine)
    assert out["context"] == "väck mig upp klockan sju fm imorgon."
    assert out["question"] == "vilka larm är inställda för idag?"
    # the longest answer is marked; "seven am" overlaps it, so it is translated alone and located
    assert out["answers"] == ["sju fm", "klockan sju fm", "sju fm"] and out["answer"] == "sju fm"
    assert all(a in out["context"] for a in out["answers"])
    assert "wake me up at [seven am] tomorrow." not in engine.calls  # the longer span won
    assert "wake me up [at seven am] tomorrow." in engine.calls
    assert out["paragraph_id"] == "p:0:0" and out["id"] == "q1" and "_translate_flags" not in out
    assert report["answer_projection"] == {"marked": 1} and report["flagged_records"] == 0


def test_lost_markers_fall_back_and_missing_answers_are_flagged_not_dropped(tmp_path):
    rows = [QA, {**QA, "id": "q2", "answer": "paris", "answers": ["paris"]}]
    out, report = _run(tmp_path, rows, WordEngine(drop_brackets=True))
    assert len(out) == 2
    assert out[0]["answer"] == "sju fm" and "_translate_flags" not in out[0]
    # "paris" is not in the context: kept (translated alone), flagged, counted
    assert out[1]["answers"] == ["paris"] and out[1]["_translate_flags"] == ["answers:answer_projection:0"]
    assert report["flags"] == {"answer_projection": 1} and report["flagged_records"] == 1
    assert report["answer_projection"] == {"fallback": 2}


def test_bad_answers_field_names_line_and_field(tmp_path):
    with pytest.raises(UserError, match=r"in.jsonl:2: field 'answers': expected a non-empty list of strings"):
        _run(tmp_path, [QA, {**QA, "answers": "seven am"}], WordEngine())


def test_tiny_marian_every_record_kept_and_answers_in_context_or_flagged(tmp_path):
    from tests.tiny_marian import build_tiny_marian

    model = build_tiny_marian(tmp_path / "marian")
    rows = [QA, {**QA, "id": "q2", "context": "make me a coffee please.", "answer": "coffee", "answers": ["coffee"]}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = TranslateConfig(model=str(model), cache=str(tmp_path / "c.sqlite"), max_length=24)
    report = run_translate(src, tmp_path / "out.jsonl", cfg)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == ["q1", "q2"]
    flagged = 0
    for r in out:
        bad = [f for f in r.get("_translate_flags", []) if "answer_projection" in f]
        flagged += bool(bad)
        # every answer is verbatim in the translated context, or the record says it is not
        assert all(a in r["context"] for a in r["answers"]) or bad
    assert report["flags"].get("answer_projection", 0) >= flagged


@pytest.mark.parametrize("bad, message", [
    ({"context": None}, "in.jsonl:2: field 'context': expected the non-empty text the answers are in, got null"),
    ({"context": "  "}, "in.jsonl:2: field 'context': expected the non-empty text the answers are in"),
    ({"answers": []}, "in.jsonl:2: field 'answers': expected a non-empty list of strings, every gold answer "
                      "(QA record; answer is 'seven am')"),
])
def test_qa_records_without_a_context_or_with_no_gold_answers_are_refused(tmp_path, bad, message):
    """Issue 19: context null and answers [] next to a non-empty answer were accepted."""
    with pytest.raises(UserError) as e:
        _run(tmp_path, [QA, {**QA, **bad}], WordEngine())
    assert str(e.value).endswith(message) or message in str(e.value)
