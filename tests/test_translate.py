"""translate without a neural model: flags, batching, projection, labels, cache, resume, shards.

A word-for-word dictionary engine stands in for the model where a test needs translations it
can predict (slot projection through brackets); the real tiny Marian is exercised in
tests/test_translate_model.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ptune_cli.errors import UserError
from ptune_cli.labels import load_label_map, parse_intent_slot
from ptune_cli.options import validate
from ptune_cli.translate import TranslateConfig, run_translate
from ptune_cli.translate.cache import TranslationCache, namespace
from ptune_cli.translate.projection import locate, mark_spans, read_marked
from ptune_cli.translate.quality import (
    EMPTY_OUTPUT,
    LENGTH_CAP,
    REPETITION,
    Translation,
    check_output,
    is_repetitive,
    length_cap,
)
from ptune_cli.translate.runner import FlagTally
from ptune_cli.translate.score import corpus_scores
from ptune_cli.translate.seq2seq import length_batches
from ptune_cli.translate.shard import merge_shards, shard_indices

WORDS = {
    "wake": "väck", "me": "mig", "up": "upp", "at": "klockan", "seven": "sju", "am": "fm",
    "tomorrow": "imorgon", "what": "vilka", "alarms": "larm", "are": "är", "set": "inställda",
    "for": "för", "today": "idag", "make": "gör", "a": "en", "coffee": "kaffe", "please": "tack",
    "the": "", "weather": "vädret", "in": "i", "stockholm": "Stockholm", "good": "bra",
}


class WordEngine:
    """Translates word by word through WORDS; keeps brackets and punctuation (like a good NMT
    model keeps EasyProject markers). ``drop_brackets`` simulates a model that loses them."""

    name = "words"
    fingerprint = "test:words"

    def __init__(self, drop_brackets: bool = False):
        self.drop_brackets = drop_brackets
        self.calls: list[str] = []

    def translate(self, texts, on_batch=None):
        self.calls += list(texts)
        out = []
        for t in texts:
            if self.drop_brackets:
                t = t.replace("[", "").replace("]", "")
            words = re.findall(r"\[|\]|[\w']+|[^\w\s]", t)
            tr = " ".join(w2 for w in words if (w2 := WORDS.get(w.lower(), w)))
            tr = re.sub(r"\[ ", "[", re.sub(r" \]", "]", re.sub(r" ([?.!,])", r"\1", tr)))
            out.append(check_output(t, tr, True))
        if on_batch:
            on_batch(list(range(len(texts))), out)
        return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- output checks ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "source, output, finished, flags",
    [
        ("Good morning.", "God morgon.", True, ()),
        ("Good morning.", "", True, (EMPTY_OUTPUT,)),
        ("Good morning.", "God god god god god god", True, (REPETITION,)),
        ("Good morning.", "God morgon och", False, (LENGTH_CAP,)),
        ("ha ha ha ha ha", "ha ha ha ha ha", True, ()),  # the source repeats as much
        ("Hi", "hehehehehehehehehehehehehehe", True, (REPETITION,)),
    ],
)
def test_check_output_flags(source, output, finished, flags):
    assert check_output(source, output, finished).flags == flags


def test_repetition_of_phrases():
    assert is_repetitive("a b", "vi ses snart vi ses snart vi ses snart vi ses snart")
    assert not is_repetitive("a b", "vi ses snart och sedan vi ses")


def test_length_cap_is_relative_and_bounded():
    assert length_cap(10, 2.0, 256) == 30
    assert length_cap(500, 2.0, 256) == 256


def test_length_batches_sorted_and_under_budget():
    lengths = [5, 50, 7, 49, 6, 300, 8]
    batches = length_batches(lengths, batch_size=3, max_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [5]  # longer than the budget: alone
    for b in batches:
        assert len(b) <= 3
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 120
        assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


# --- projection --------------------------------------------------------------------------------

def test_mark_spans_orders_by_position_and_prefers_longer_values():
    m = mark_spans("fly from new york to york", ["york", "new york"])
    assert m.text == "fly from [new york] to [york]"
    assert m.order == [1, 0] and m.missing == []
    assert mark_spans("what is (this) [x]", ["x"]).order == []  # brackets in source: no marking
    assert mark_spans("wake me up", ["seven am"]).missing == [0]


def test_read_marked_checks_marker_count():
    assert read_marked("boka [New York ] och [York] .", 2) == ("boka New York och York.", ["New York", "York"])
    assert read_marked("boka New York och [York]", 2) is None
    assert read_marked("boka [] och [York]", 2) is None
    assert read_marked("boka [a [b] c] [d]", 2) is None


def test_locate_exact_then_fuzzy():
    assert locate("i morgon", "väck mig i Morgon bitti") == "i Morgon"
    assert locate("kaffebryggare", "gör kaffe med kaffebryggaren.") == "kaffebryggaren"
    assert locate("flygplats", "väck mig klockan sju") is None


# --- records and labels (dictionary engine) ------------------------------------------------------

ASSISTANT = [
    {"taskname": "intent_and_slot", "utterance": "wake me up at seven am tomorrow", "label": "\nIntent: alarm_set\nSlots: time(seven am), date(tomorrow)", "id": 7},
    {"taskname": "intent_and_slot", "utterance": "what alarms are set for today", "label": "\nIntent: alarm_query\nSlots: date(today)"},
    {"taskname": "intent_and_slot", "utterance": "make a coffee please", "label": "\nIntent: iot_coffee\nSlots: None"},
    {"taskname": "intent_and_slot", "utterance": "  ", "label": "\nIntent: general_quirky\nSlots: None"},
    {"taskname": "intent_and_slot", "utterance": "make a coffee please", "label": "\nIntent: iot_coffee\nSlots: None"},
]


def _run(tmp_path, rows, engine, **kw):
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    cfg = TranslateConfig(model="unused", cache=str(tmp_path / "cache.sqlite"), **kw)
    report = run_translate(src, out, cfg, engine=engine)
    return read_jsonl(out), report


def test_intent_slot_projection_through_brackets(tmp_path):
    engine = WordEngine()
    out, report = _run(tmp_path, ASSISTANT, engine)
    assert out[0] == {"taskname": "intent_and_slot", "utterance": "väck mig upp klockan sju fm imorgon",
                      "label": "\nIntent: alarm_set\nSlots: time(sju fm), date(imorgon)", "id": 7}
    assert out[1]["label"] == "\nIntent: alarm_query\nSlots: date(idag)"
    assert out[2]["label"] == "\nIntent: iot_coffee\nSlots: None"
    assert out[3]["utterance"] == "  "  # whitespace-only: copied, never sent
    assert all("_translate_flags" not in r for r in out)
    assert "  " not in engine.calls and "" not in engine.calls
    assert engine.calls.count("make a coffee please") == 1  # duplicates translated once
    assert "alarm_set" not in " ".join(engine.calls)  # intent names never reach the model
    assert report["slot_projection"] == {"marked": 2}
    assert report["empty_skipped"] == 1 and report["deduplicated"] == 1


def test_projection_fallback_and_flags_when_markers_are_lost(tmp_path):
    rows = [ASSISTANT[0], {"taskname": "t", "utterance": "the weather in stockholm", "label": "\nIntent: weather_query\nSlots: place_name(paris)"}]
    out, report = _run(tmp_path, rows, WordEngine(drop_brackets=True))
    # fallback: clean sentence + values alone, located in the translation
    assert out[0]["label"] == "\nIntent: alarm_set\nSlots: time(sju fm), date(imorgon)"
    assert "_translate_flags" not in out[0]
    # a value that is not in the utterance keeps its own translation and is flagged
    assert parse_intent_slot(out[1]["label"]).slots == (("place_name", "paris"),)
    assert out[1]["_translate_flags"] == ["label:slot_projection:place_name"]
    assert report["flags"] == {"slot_projection": 1} and report["flagged_records"] == 1
    assert report["slot_projection"] == {"fallback": 2}


def test_sentiment_lexicon_singular_and_plural(tmp_path):
    rows = [{"taskname": "sentiment-task", "sentence": "Shares fell", "label": "negative"},
            {"taskname": "sentiment-task", "sentence": "Profit grew", "label": "Positive"},
            {"taskname": "sentiment-task", "sentence": "Flat year", "label": "neutral"}]
    out, _ = _run(tmp_path, rows, WordEngine())
    assert [r["label"] for r in out] == ["negativ", "positiv", "neutral"]
    out, _ = _run(tmp_path, rows, WordEngine(), lexicon="en-sv-sentiment-plural", label_format="sentiment")
    assert [r["label"] for r in out] == ["negativa", "positiva", "neutrala"]
    assert [r["taskname"] for r in out] == ["sentiment-task"] * 3


def test_label_formats_text_keep_and_auto_unknown(tmp_path):
    rows = [{"text": "good coffee", "label": "good"}]
    out, _ = _run(tmp_path, rows, WordEngine(), label_format="text")
    assert out[0] == {"text": "bra kaffe", "label": "bra"}
    out, _ = _run(tmp_path, rows, WordEngine(), label_format="keep")
    assert out[0] == {"text": "bra kaffe", "label": "good"}
    out, report = _run(tmp_path, rows, WordEngine())  # auto: not intent/slot, not in lexicon
    assert out[0]["label"] == "good" and out[0]["_translate_flags"] == ["label:label_kept"]
    assert report["flags"] == {"label_kept": 1}


def test_every_shipped_lexicon_loads():
    root = Path(__file__).resolve().parents[1] / "templates" / "labels"
    lexicons = sorted(root.glob("en-sv-*.json"))
    assert lexicons
    for path in lexicons:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert "ptune translate" in data["_comment"]
        assert load_label_map(str(path)).lookup("positive") in ("positiv", "positiva")


@pytest.mark.parametrize(
    "rows, kw, message",
    [
        ([{"utterance": "hi", "label": "x"}, {"utterance": 3, "label": "x"}], {}, "in.jsonl:2: field 'utterance': expected a string"),
        ([{"id": 1}], {}, "in.jsonl:1: no text field"),
        ([{"text": "hi"}], {"fields": ("sentence",)}, "in.jsonl:1: field 'sentence': missing"),
        ([{"text": "hi", "label": "bogus"}], {"label_format": "sentiment"}, "in.jsonl:1: field 'label': label 'bogus' is not in lexicon"),
        ([{"text": "hi", "label": "Intent x"}], {"label_format": "intent-slot"}, "in.jsonl:1: field 'label': not an 'Intent:"),
        ([{"text": "hi"}], {"beam_size": 0, "label_format": "nope"}, "--label-format must be one of"),
    ],
)
def test_bad_input_is_a_user_error_with_location(tmp_path, rows, kw, message):
    engine = WordEngine()
    with pytest.raises(UserError, match=re.escape(message)):
        _run(tmp_path, rows, engine, **kw)
    assert engine.calls == []  # validated before any translation
    assert not (tmp_path / "out.jsonl").exists()


def test_invalid_options_are_reported_together():
    with pytest.raises(UserError) as e:
        validate(TranslateConfig(beam_size=0, engine="x", max_tokens=0))
    assert "--beam-size" in str(e.value) and "--engine" in str(e.value) and "--max-tokens" in str(e.value)


# --- cache, resume, shards, scores ---------------------------------------------------------------

def test_cache_reuse_across_runs_and_namespaces(tmp_path):
    db = tmp_path / "c.sqlite"
    ns = namespace("m1", {"beam_size": 1})
    c = TranslationCache(db, ns)
    c.put_many([("Hello", Translation("Hej")), ("Loop", Translation("x x x x", ("repetition",)))])
    c.close()
    c = TranslationCache(db, ns)
    assert c.get_many(["Hello", "Loop", "New"]) == {"Hello": Translation("Hej"), "Loop": Translation("x x x x", ("repetition",))}
    assert TranslationCache(db, namespace("m1", {"beam_size": 4})).get_many(["Hello"]) == {}

    first, second = WordEngine(), WordEngine()
    _run(tmp_path, ASSISTANT, first)
    _, report = _run(tmp_path, ASSISTANT, second)
    assert first.calls and second.calls == []
    assert report["translated"] == 0 and report["cache_hits"] == len(set(first.calls))


def test_flags_are_tallied_over_resumed_and_new_records():
    tally = FlagTally("_f")
    tally.add([{"a": 1}, {"a": 2, "_f": ["x:repetition", "label:slot_projection:date"]}])
    tally.add([{"a": 3, "_f": ["y:repetition"]}])
    assert tally.records == 2 and tally.counts == {"repetition": 2, "slot_projection": 1}


@pytest.mark.parametrize("n, world", [(0, 2), (1, 2), (7, 2), (10, 3), (5, 8)])
def test_shards_cover_every_record_once_and_merge_in_order(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert merge_shards(shards, n) == list(range(n))


def test_merge_refuses_incomplete_shard():
    with pytest.raises(RuntimeError, match="shard 1 of 2"):
        merge_shards([[0, 2, 4], [1]], 5)


def test_sacrebleu_scores_and_signature():
    s = corpus_scores(["Det regnar idag ."], ["Det regnar idag ."])
    assert s["bleu"] == 100.0 and s["chrf"] == 100.0
    assert s["bleu_signature"].startswith("nrefs:1|") and "chrf" not in s["bleu_signature"]
    worse = corpus_scores(["Det snöar idag ."], ["Det regnar idag ."])
    assert 0 < worse["bleu"] < 100 and worse["chrf"] < 100


def test_help_lists_the_options_and_an_example():
    from typer.testing import CliRunner

    from ptune_cli.cli import app

    result = CliRunner().invoke(app, ["translate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for opt in ("--output", "--model", "--fields", "--label-field", "--label-format", "--lexicon",
                "--src-lang", "--tgt-lang", "--engine", "--beam-size", "--batch-size", "--max-tokens",
                "--max-length", "--device", "--precision", "--cache", "--no-cache", "--report",
                "--reference", "--reference-field", "--flags-field"):
        assert opt in result.output, opt
    assert "Example" in result.output and "ptune translate" in result.output


# --- user errors found in the audit ---------------------------------------------------------------

def test_unknown_lexicon_names_the_lexicon_flag(tmp_path):
    with pytest.raises(UserError, match=r"^--lexicon: unknown label map 'nope' \(known: .*en-sv-sentiment-plural"):
        _run(tmp_path, [{"text": "hi", "label": "positive"}], WordEngine(), lexicon="nope")


class FailingEngine(WordEngine):
    def translate(self, texts, on_batch=None):
        raise UserError("--device cuda: no such CUDA device here")


def test_failure_before_any_record_leaves_no_partial_files(tmp_path):
    with pytest.raises(UserError, match="no such CUDA device"):
        _run(tmp_path, ASSISTANT, FailingEngine())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite", "in.jsonl"]


def test_bad_reference_fails_before_translating(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "good coffee"}, {"text": "make a coffee"}])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"sv": "bra kaffe"}])
    engine = WordEngine()
    cfg = TranslateConfig(model="unused", use_cache=False, label_format="keep")
    with pytest.raises(UserError, match=r"ref.jsonl: has 1 records but the input has 2"):
        run_translate(src, tmp_path / "out.jsonl", cfg, engine=engine, reference=ref, reference_field="sv")
    write_jsonl(ref, [{"sv": "bra kaffe"}, {"en": "x"}])
    with pytest.raises(UserError, match=r"ref.jsonl:2: field 'sv': missing"):
        run_translate(src, tmp_path / "out.jsonl", cfg, engine=engine, reference=ref, reference_field="sv")
    assert engine.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "ref.jsonl"]
    write_jsonl(ref, [{"sv": "bra kaffe"}, {"sv": "gör en kaffe"}])
    report = run_translate(src, tmp_path / "out.jsonl", cfg, engine=engine, reference=ref, reference_field="sv")
    assert report["score"]["chrf"] == 100.0 and report["score"]["segments"] == 2
    assert report["score"]["empty_sources_left_out"] == 0


def test_reference_scores_say_how_many_empty_sources_were_left_out(tmp_path, monkeypatch):
    """Issue 19: records with an empty source were left out of BLEU/chrF without a word."""
    from typer.testing import CliRunner

    from ptune_cli.cli import app

    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "good coffee"}, {"text": "  "}, {"text": "make a coffee"}])
    ref = write_jsonl(tmp_path / "ref.jsonl", [{"sv": "bra kaffe"}, {"sv": "något"}, {"sv": "gör en kaffe"}])
    cfg = TranslateConfig(model="unused", use_cache=False, label_format="keep")
    report = run_translate(src, tmp_path / "out.jsonl", cfg, engine=WordEngine(), reference=ref, reference_field="sv")
    assert report["score"]["segments"] == 2 and report["score"]["empty_sources_left_out"] == 1
    import ptune_cli.translate.engines as engines

    monkeypatch.setattr(engines, "load_engine", lambda cfg: WordEngine())
    r = CliRunner().invoke(app, ["translate", str(src), "-o", str(tmp_path / "o2.jsonl"), "--label-format", "keep",
                                 "--no-cache", "--reference", str(ref), "--reference-field", "sv"])
    assert r.exit_code == 0, r.output
    assert "BLEU and chrF over 2 translated fields; 1 field(s) with an empty source left out" in r.output


@pytest.mark.parametrize("device, message", [("bogus", "unknown device 'bogus'"), ("cuda:99", "no such CUDA device")])
def test_unavailable_device_is_a_user_error(device, message):
    from ptune_cli.models import resolve_device

    with pytest.raises(UserError, match=re.escape(message)):
        resolve_device(device)
    assert resolve_device("cpu") == "cpu"


def test_output_over_the_input_is_refused_before_any_work(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": "good coffee"}])
    engine = WordEngine()
    cfg = TranslateConfig(model="unused", use_cache=False, label_format="keep")
    with pytest.raises(UserError, match=r"^-o .*in.jsonl is also INPUT"):
        run_translate(src, src, cfg, engine=engine)
    with pytest.raises(UserError, match=r"^-o .*: is a folder"):
        run_translate(src, tmp_path, cfg, engine=engine)
    assert engine.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
