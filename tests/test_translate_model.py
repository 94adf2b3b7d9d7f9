"""`ptune translate` end to end with a tiny Marian built here (MarianConfig + a SentencePiece
vocabulary trained at test time): real assistant records, sentiment lexicon, cache reuse,
bad input, CTranslate2 engine, and resume after ``kill -9``.

The tiny model is random: its outputs are gibberish (and often flagged), which is exactly what
lets these tests check that structure survives whatever the model produces.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.labels import parse_label_layout
from tests.killing import kill_after_lines
from tests.test_translate import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_marian_dir(tmp_path_factory) -> Path:
    from tests.tiny_marian import build_tiny_marian

    return build_tiny_marian(tmp_path_factory.mktemp("tiny-marian"))


# Short outputs and one thread keep the random model cheap (it often runs to the cap).
FAST = ["--max-length", "12", "--threads", "1"]


def invoke(*args: str):
    return CliRunner().invoke(app, ["translate", *map(str, args), *FAST])


def test_assistant_labels_keep_their_structure(tiny_marian_dir, shared_data, tmp_path):
    lines = (shared_data / "assistant" / "assistant_test.jsonl").read_text(encoding="utf-8").splitlines()[:100]
    src = [json.loads(line) for line in lines]
    inp = tmp_path / "assistant_en.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, rep = tmp_path / "assistant_sv.jsonl", tmp_path / "report.json"
    result = invoke(inp, "-o", out, "--model", tiny_marian_dir, "--cache", tmp_path / "c.sqlite", "--report", rep)
    assert result.exit_code == 0, result.output
    got = read_jsonl(out)
    assert len(got) == len(src) == 100
    n_slots = 0
    for a, b in zip(src, got, strict=True):
        la, lb = parse_label_layout(a["label"]), parse_label_layout(b["label"])
        assert lb is not None, b["label"]
        assert (lb.pre, lb.intent, lb.mid, lb.sp1, lb.sp2) == (la.pre, la.intent, la.mid, la.sp1, la.sp2)
        assert b["label"].startswith("\nIntent: ")
        if la.slots is None:
            assert b["label"] == a["label"]  # "Slots: None" verbatim
        else:
            assert [s.type for s in lb.slots] == [s.type for s in la.slots]
            n_slots += len(la.slots)
        assert b["taskname"] == a["taskname"]
        assert set(b) - {"_translate_flags"} == set(a)
    assert n_slots > 50
    report = json.loads(rep.read_text())
    assert report["records"] == 100 and report["resumed_records"] == 0
    assert report["translated"] > 0 and report["translated"] + report["deduplicated"] == report["strings"]
    flagged = sum(1 for r in got if r.get("_translate_flags"))
    assert report["flagged_records"] == flagged
    assert sum(report["flags"].values()) == sum(len(r.get("_translate_flags", [])) for r in got)
    assert "translate: 100 records" in result.output


def test_sentiment_lexicon_and_cache_reuse(tiny_marian_dir, tmp_path):
    rows = [{"taskname": "sentiment-task", "sentence": f"Shares of Lloyds fell {i} percent", "label": lab}
            for i, lab in enumerate(["negative", "positive", "neutral", "positive"])]
    rows.append(dict(rows[0]))  # a duplicate sentence
    inp = write_jsonl(tmp_path / "fiqa.jsonl", rows)
    args = [inp, "--model", tiny_marian_dir, "--cache", tmp_path / "c.sqlite", "--lexicon", "en-sv-sentiment-plural"]
    first = invoke(*args, "-o", tmp_path / "a.jsonl", "--report", tmp_path / "a.json")
    assert first.exit_code == 0, first.output
    a = read_jsonl(tmp_path / "a.jsonl")
    assert [r["label"] for r in a] == ["negativa", "positiva", "neutrala", "positiva", "negativa"]
    assert all(r["sentence"] != s["sentence"] for r, s in zip(a, rows, strict=True) if not r.get("_translate_flags"))
    assert a[0]["sentence"] == a[4]["sentence"]
    r1 = json.loads((tmp_path / "a.json").read_text())
    assert (r1["translated"], r1["deduplicated"], r1["cache_hits"]) == (4, 1, 0)
    second = invoke(*args, "-o", tmp_path / "b.jsonl", "--report", tmp_path / "b.json")
    assert second.exit_code == 0, second.output
    r2 = json.loads((tmp_path / "b.json").read_text())
    assert (r2["translated"], r2["cache_hits"]) == (0, 4)
    assert read_jsonl(tmp_path / "b.jsonl") == a


def test_bad_input_exits_1_with_location_and_no_output(tiny_marian_dir, tmp_path):
    inp = tmp_path / "bad.jsonl"
    inp.write_text('{"utterance": "hi", "label": "\\nIntent: x\\nSlots: None"}\n{"utterance": ["no"]}\n', encoding="utf-8")
    result = invoke(inp, "-o", tmp_path / "o.jsonl", "--model", tiny_marian_dir)
    assert result.exit_code == 1
    assert f"error: {inp}:2: field 'utterance': expected a string" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("o.jsonl*"))
    good = write_jsonl(tmp_path / "good.jsonl", [{"utterance": "hi"}])
    result = invoke(good, "-o", tmp_path / "o.jsonl", "--model", tmp_path / "nowhere")
    assert result.exit_code == 1 and f"--model {tmp_path / 'nowhere'}: no such folder" in result.output
    # a folder that is not a model: one clear line, and no .partial files left behind
    result = invoke(good, "-o", tmp_path / "o.jsonl", "--model", tmp_path)
    assert result.exit_code == 1 and "has no config.json" in result.output, result.output
    assert not list(tmp_path.glob("o.jsonl*"))


def test_reference_scoring_with_sacrebleu(tiny_marian_dir, tmp_path):
    rows = [{"en": "The weather is good.", "sv": "Vädret är bra."}, {"en": "Shares fell.", "sv": "Aktierna föll."}]
    inp = write_jsonl(tmp_path / "pairs.jsonl", rows)
    rep = tmp_path / "r.json"
    result = invoke(inp, "-o", tmp_path / "o.jsonl", "--model", tiny_marian_dir, "--fields", "en", "--label-format", "keep",
                    "--cache", tmp_path / "c.sqlite", "--reference", inp, "--reference-field", "sv", "--report", rep)
    assert result.exit_code == 0, result.output
    score = json.loads(rep.read_text())["score"]
    assert score["segments"] == 2 and 0 <= score["bleu"] < 50 and 0 <= score["chrf"] < 50
    assert "nrefs:1" in score["bleu_signature"] and "sacrebleu: nrefs:1" in result.output


def test_ctranslate2_engine_converts_once(tiny_marian_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    rows = [{"text": "make me a coffee please", "label": "positive"}, {"text": "", "label": "neutral"}]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    args = [inp, "--model", tiny_marian_dir, "--engine", "ctranslate2", "--cache", tmp_path / "cache" / "t.sqlite"]
    result = invoke(*args, "-o", tmp_path / "a.jsonl")
    assert result.exit_code == 0, result.output
    converted = list((tmp_path / "cache" / "ct2").glob("*/model.bin"))
    assert len(converted) == 1
    stamp = converted[0].stat().st_mtime_ns
    out = read_jsonl(tmp_path / "a.jsonl")
    assert [r["label"] for r in out] == ["positiv", "neutral"] and out[1]["text"] == ""
    assert invoke(*args, "-o", tmp_path / "b.jsonl", "--no-cache").exit_code == 0
    assert converted[0].stat().st_mtime_ns == stamp  # reused, not converted again


def _cache_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM translations").fetchone()[0]


def test_resume_after_kill_9(tiny_marian_dir, tmp_path):
    rows = [{"taskname": "t", "id": i, "text": f"wake me up at {i} am tomorrow, and play some jazz {i % 7}"} for i in range(80)]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    out, cache = tmp_path / "out.jsonl", tmp_path / "c.sqlite"
    partial = tmp_path / "out.jsonl.partial"
    cmd = ["translate", str(inp), "-o", str(out), "--model", str(tiny_marian_dir), "--cache", str(cache),
           "--chunk-records", "8", "--label-format", "keep", *FAST]
    kill_after_lines(cmd, partial, 24, {"PTUNE_TRANSLATE_CHUNK_DELAY": "0.4"}, timeout=60)
    assert not out.exists()
    written = partial.read_bytes().count(b"\n")
    assert 24 <= written < 80
    cached = _cache_rows(cache)
    unique = len({r["text"] for r in rows})

    result = CliRunner().invoke(app, [*cmd, "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    got = read_jsonl(out)
    assert [r["id"] for r in got] == list(range(80))  # every record once, in order
    assert all(r["taskname"] == "t" and r["text"] != s["text"] for r, s in zip(got, rows, strict=True))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["resumed_records"] == written
    assert report["translated"] == unique - cached  # nothing translated twice
    assert _cache_rows(cache) == unique
    assert not partial.exists() and not Path(str(partial) + ".json").exists()
    # the same as a run that was never interrupted (outputs don't depend on batch-mates)
    fresh = [*cmd[:3], str(tmp_path / "fresh.jsonl"), *cmd[4:6], "--no-cache", *cmd[8:]]
    assert CliRunner().invoke(app, fresh).exit_code == 0
    assert read_jsonl(tmp_path / "fresh.jsonl") == got


def test_stdout_output(tiny_marian_dir, tmp_path, capsys):
    from ptune_cli.translate import TranslateConfig, run_translate

    inp = write_jsonl(tmp_path / "in.jsonl", [{"text": "hello there"}, {"text": " "}])
    cfg = TranslateConfig(model=str(tiny_marian_dir), cache=str(tmp_path / "c.sqlite"), max_length=12)
    report = run_translate(inp, "-", cfg)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) == {"text": " "}
    assert report["output"] == "<stdout>" and report["empty_skipped"] == 1


@pytest.mark.slow
def test_two_processes_shard_and_merge_like_one(tiny_marian_dir, shared_data, tmp_path):
    """torchrun (what `accelerate launch` sets up) with 2 CPU processes over gloo."""
    lines = (shared_data / "assistant" / "assistant_test.jsonl").read_text(encoding="utf-8").splitlines()[:31]
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = ["translate", str(inp), "--model", str(tiny_marian_dir), "--no-cache", *FAST]
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "ptune_cli", *common,
                           "-o", str(tmp_path / "two.jsonl"), "--report", str(tmp_path / "r.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert invoke(*common[1:-len(FAST)], "-o", tmp_path / "one.jsonl").exit_code == 0
    assert read_jsonl(tmp_path / "two.jsonl") == read_jsonl(tmp_path / "one.jsonl")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["processes"] == 2 and report["records"] == 31
    assert report["strings"] >= 31 and not list(tmp_path.glob("two.jsonl.*"))
