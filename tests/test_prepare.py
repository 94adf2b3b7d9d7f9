"""``ptune prepare``: source formats → NeMo JSONL, bad rows, and the shared data's conversions."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.errors import UserError
from ptune_cli.prepare import PrepareConfig, fiqa_label, parse_annotation, run_prepare

runner = CliRunner()


def _lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    "annotation, utterance, slots",
    [
        ("list all of my alarms", "list all of my alarms", []),
        ("wake me at [time : seven am] [date : tomorrow]", "wake me at seven am tomorrow", [("time", "seven am"), ("date", "tomorrow")]),
        # adjacent spans of one type with only spaces between them are merged
        ("at [time : nine am] [place_name : bangalore] [place_name : india] time", "at nine am bangalore india time",
         [("time", "nine am"), ("place_name", "bangalore india")]),
        ("[player_setting : pause] [player_setting : resume]", "pause resume", [("player_setting", "pause resume")]),
        # same type with words between them: two slots
        ("[date : monday] and [date : friday]", "monday and friday", [("date", "monday"), ("date", "friday")]),
        ("[person:anna]", "anna", [("person", "anna")]),
        ("time is [time : 5:30 pm]", "time is 5:30 pm", [("time", "5:30 pm")]),
    ],
)
def test_parse_annotation(annotation, utterance, slots):
    assert parse_annotation(annotation) == (utterance, slots)


@pytest.mark.parametrize("bad", ["wake me [time : seven", "wake ] me", "[time seven am]", "[ : x]", "[time : ]", "[a : [b : c]]"])
def test_parse_annotation_rejects(bad):
    with pytest.raises(ValueError):
        parse_annotation(bad)


NLU_CSV = (
    "answerid;scenario;intent;answer_annotation;answer_from_anno;answer_from_user\n"
    '1;"alarm";"set";"wake me up at [time : five am] [date : this week]";"wake me up at five am this week";"Wake me up"\n'
    '2;"iot";"coffee";"make me a coffee";"make me a coffee";"Make me a coffee!"\n'
    '3;"transport";"query";"trains from [place_name : new] [place_name : york]";"trains from new york";"x"\n'
)


def test_nlu_eval_csv(tmp_path):
    src = tmp_path / "nlu.csv"
    src.write_text(NLU_CSV, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = run_prepare(PrepareConfig(inputs=[src], output=str(out)))
    assert res.records == 3 and res.labels == {"alarm_set": 1, "iot_coffee": 1, "transport_query": 1}
    assert _lines(out) == [
        {"taskname": "intent_and_slot", "utterance": "wake me up at five am this week",
         "label": "\nIntent: alarm_set\nSlots: time(five am), date(this week)"},
        {"taskname": "intent_and_slot", "utterance": "make me a coffee", "label": "\nIntent: iot_coffee\nSlots: None"},
        {"taskname": "intent_and_slot", "utterance": "trains from new york",
         "label": "\nIntent: transport_query\nSlots: place_name(new york)"},
    ]


def test_nlu_eval_without_utterance_column_uses_debracketed_annotation(tmp_path):
    # the repo's AnnotatedData CSV has no answer_from_anno column
    src = tmp_path / "all.csv"
    src.write_text("userid;answerid;scenario;intent;status;answer_annotation\n1;2;weather;query;;is it [weather_descriptor : cold] in [place_name : oslo]\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    run_prepare(PrepareConfig(inputs=[src], output=str(out), taskname="assist"))
    assert _lines(out) == [{"taskname": "assist", "utterance": "is it cold in oslo",
                            "label": "\nIntent: weather_query\nSlots: weather_descriptor(cold), place_name(oslo)"}]


def test_bad_rows_name_file_and_line_and_leave_no_output(tmp_path):
    src = tmp_path / "nlu.csv"
    src.write_text(NLU_CSV + '4;"alarm";"set";"wake me [time : six";"wake me six";"x"\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(UserError, match=r"nlu\.csv:5: field 'answer_annotation': unbalanced brackets.*--skip-bad"):
        run_prepare(PrepareConfig(inputs=[src], output=str(out)))
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    res = run_prepare(PrepareConfig(inputs=[src], output=str(out), skip_bad=True))
    assert res.records == 3 and [str(b.where) for b in res.skipped] == [f"{src}:5: field 'answer_annotation'"]


def test_nlu_eval_wrong_header(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"x\.csv:1: CSV header lacks scenario, intent, answer_annotation"):
        run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "o.jsonl")))


def test_phrasebank_iso_8859_1(tmp_path):
    src = tmp_path / "Sentences_AllAgree.txt"
    src.write_bytes("Vinsten för Lemminkäinen steg@positive\r\nSales fell by 5 % @ EUR 3m@negative\r\n\r\nNo change .@neutral\r\n".encode("iso-8859-1"))
    out = tmp_path / "fpb.jsonl"
    res = run_prepare(PrepareConfig(inputs=[src], output=str(out)))
    assert _lines(out) == [
        {"taskname": "sentiment-task", "sentence": "Vinsten för Lemminkäinen steg", "label": "positive"},
        {"taskname": "sentiment-task", "sentence": "Sales fell by 5 % @ EUR 3m", "label": "negative"},
        {"taskname": "sentiment-task", "sentence": "No change .", "label": "neutral"},
    ]
    assert res.labels == {"positive": 1, "negative": 1, "neutral": 1}
    with pytest.raises(UserError, match=r"not valid utf-8 \(byte 10\)"):
        run_prepare(PrepareConfig(inputs=[src], output=str(out), encoding="utf-8"))


def test_phrasebank_bad_label(tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("good@positive\nwhat@maybe\nno separator\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"s\.txt:2: label 'maybe' is not one of positive, negative, neutral"):
        run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "o.jsonl")))
    res = run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "o.jsonl"), skip_bad=True))
    assert [b.reason for b in res.skipped] == ["label 'maybe' is not one of positive, negative, neutral",
                                               "no '@' separating sentence and label"]


@pytest.mark.parametrize("score, label", [(-0.5, "negative"), (-0.1001, "negative"), (-0.1, "neutral"), (0.0, "neutral"),
                                          (0.0999, "neutral"), (0.1, "positive"), (0.9, "positive")])
def test_fiqa_threshold(score, label):
    assert fiqa_label(score) == label


FIQA = {
    "7": {"sentence": "Stakes  High for\tAstraZeneca", "info": [{"target": "AstraZeneca", "sentiment_score": "-0.24"}]},
    "9": {"sentence": "Tesco and Sainsbury's up", "info": [{"target": "Tesco", "sentiment_score": "0.3"},
                                                           {"target": "Sainsbury's", "sentiment_score": 0.05}]},
}


def test_fiqa_json(tmp_path):
    src = tmp_path / "task1.json"
    src.write_text(json.dumps(FIQA, indent=2), encoding="utf-8")
    out = tmp_path / "f.jsonl"
    run_prepare(PrepareConfig(inputs=[src], output=str(out)))
    assert _lines(out) == [
        {"taskname": "sentiment-task", "sentence": "Stakes High for AstraZeneca Sentiment for AstraZeneca", "label": "negative"},
        {"taskname": "sentiment-task", "sentence": "Tesco and Sainsbury's up Sentiment for Tesco", "label": "positive"},
        {"taskname": "sentiment-task", "sentence": "Tesco and Sainsbury's up Sentiment for Sainsbury's", "label": "neutral"},
    ]
    run_prepare(PrepareConfig(inputs=[src], output=str(out), neutral_band=0.25))
    assert [r["label"] for r in _lines(out)] == ["neutral", "positive", "neutral"]


def test_fiqa_bad_score_names_line_and_id(tmp_path):
    bad = dict(FIQA)
    bad["12"] = {"sentence": "x", "info": [{"target": "X", "sentiment_score": "high"}]}
    src = tmp_path / "task1.json"
    src.write_text(json.dumps(bad, indent=2), encoding="utf-8")
    line = next(i for i, x in enumerate(src.read_text().splitlines(), 1) if x.strip().startswith('"12"'))
    with pytest.raises(UserError, match=rf"task1\.json:{line}: id '12': info\[0\]: sentiment_score 'high' is not a number"):
        run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "o.jsonl")))


def test_config_reports_all_problems(tmp_path):
    with pytest.raises(UserError) as e:
        run_prepare(PrepareConfig(inputs=[tmp_path / "nope.csv", tmp_path / "x.tsv"], output="-", neutral_band=2, encoding="klingon"))
    msg = str(e.value)
    for part in ("nope.csv: no such file", "x.tsv: no such file", "--neutral-band", "--encoding"):
        assert part in msg


def test_cli_concatenates_inputs_and_errors_in_one_line(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"1": FIQA["7"]}), encoding="utf-8")
    b.write_text(json.dumps({"2": FIQA["9"]}), encoding="utf-8")
    out = tmp_path / "fiqa.jsonl"
    r = runner.invoke(app, ["prepare", str(a), str(b), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert len(_lines(out)) == 3 and "prepare: 3 records" in r.output
    bad = tmp_path / "s.txt"
    bad.write_text("ok@positive\nbroken\n", encoding="utf-8")
    r = runner.invoke(app, ["prepare", str(bad), "-o", str(tmp_path / "s.jsonl")])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "s.txt:2" in r.output
    assert not (tmp_path / "s.jsonl").exists()


@pytest.mark.parametrize(
    "raw, converted",
    [
        (["assistant/raw/nlu_eval_cv_testfolds.csv"], "assistant/assistant_all.jsonl"),
        (["financial_phrasebank/raw/Sentences_AllAgree.txt"], "financial_phrasebank/fpb_allagree_sentiment.jsonl"),
        (["fiqa/raw/task1_headline_ABSA_train.json"], "fiqa/fiqa_headline_sentiment.jsonl"),
        (["fiqa/raw/task1_post_ABSA_train.json"], "fiqa/fiqa_post_sentiment.jsonl"),
    ],
)
def test_reproduces_shared_data_conversions(shared_data, tmp_path, raw, converted):
    out = tmp_path / "out.jsonl"
    run_prepare(PrepareConfig(inputs=[shared_data / p for p in raw], output=str(out)))
    assert out.read_bytes() == (shared_data / converted).read_bytes()


def test_phrasebank_original_iso_bytes(shared_data, tmp_path):
    # the shared copy is transcoded to UTF-8; re-encoding gives back the original release's bytes
    text = (shared_data / "financial_phrasebank/raw/Sentences_AllAgree.txt").read_bytes().decode("utf-8")
    original = tmp_path / "Sentences_AllAgree.txt"
    original.write_bytes(text.encode("iso-8859-1"))
    assert hashlib.sha256(original.read_bytes()).hexdigest() == "5fb370b3005b9a2759f708849a691ad2e4d2593d4c995c1afde229398a516594"
    out = tmp_path / "fpb.jsonl"
    run_prepare(PrepareConfig(inputs=[original], output=str(out)))
    assert out.read_bytes() == (shared_data / "financial_phrasebank/fpb_allagree_sentiment.jsonl").read_bytes()


def test_id_field_groups_fiqa_targets_of_one_text(tmp_path):
    src = tmp_path / "task1.json"
    src.write_text(json.dumps(FIQA, indent=2), encoding="utf-8")
    out = tmp_path / "f.jsonl"
    run_prepare(PrepareConfig(inputs=[src], output=str(out), id_field="source_id"))
    assert [r["source_id"] for r in _lines(out)] == ["task1:7", "task1:9", "task1:9"]
    with pytest.raises(UserError, match="--id-field 'label'"):
        run_prepare(PrepareConfig(inputs=[src], output=str(out), id_field="label"))


def test_real_fiqa_headlines_never_straddle_folds(shared_data, tmp_path):
    """The svfiqa pipeline: prepare --id-field, then kfold --group-field keeps each headline's
    targets in one fold (498 records from 436 texts)."""
    out = tmp_path / "fiqa.jsonl"
    run_prepare(PrepareConfig(inputs=[shared_data / "fiqa/raw/task1_headline_ABSA_train.json"], output=str(out), id_field="source_id"))
    r = runner.invoke(app, ["kfold", str(out), "-o", str(tmp_path / "folds"), "--k", "5", "--group-field", "source_id"])
    assert r.exit_code == 0, r.output
    fold_of: dict[str, set] = {}
    for k in range(5):
        for split in ("train", "val", "test"):
            for rec in _lines(tmp_path / "folds" / f"fold_{k:02d}" / f"{split}.jsonl"):
                if split == "test":
                    fold_of.setdefault(rec["source_id"], set()).add(k)
    assert len(fold_of) == 436 and all(len(v) == 1 for v in fold_of.values())


@pytest.mark.parametrize("name, text", [("s.txt", "good news@positive\n"), ("n.csv", NLU_CSV), ("f.json", json.dumps(FIQA))])
@pytest.mark.parametrize("codec, enc", [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-32", "UTF-32")])
def test_utf16_input_is_named_not_blamed_on_label_bytes(tmp_path, name, text, codec, enc):
    src = tmp_path / name
    src.write_bytes(text.encode(codec))
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(app, ["prepare", str(src), "-o", str(out)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{src}: file is {enc}, convert to UTF-8" in r.output
    assert not out.exists()


def test_phrasebank_with_an_explicit_utf16_encoding_still_reads(tmp_path):
    src = tmp_path / "s.txt"
    src.write_bytes("good news@positive\n".encode("utf-16"))
    res = run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "o.jsonl"), encoding="utf-16"))
    assert res.records == 1


def test_source_choices_shown_and_checked_with_every_other_problem(tmp_path):
    out = runner.invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"}).output
    assert "[auto|nlu-eval|phrasebank|fiqa|squad]" in out
    src = tmp_path / "s.txt"
    src.write_text("good@positive\n", encoding="utf-8")
    r = runner.invoke(app, ["prepare", str(src), "--source", "csv", "--neutral-band", "3", "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "--source must be one of auto, nlu-eval, phrasebank, fiqa, squad, got 'csv'" in r.output
    assert "--neutral-band must be in [0, 1)" in r.output
    assert not (tmp_path / "o.jsonl").exists()


# ---- issue 19: prepare never overwrites or doubles its input; FiQA/SQuAD JSON read strictly


def test_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, monkeypatch):
    """Defect 2: `ptune prepare x.json -o ./x.json` deleted the SQuAD file."""
    src = tmp_path / "x.json"
    src.write_text(json.dumps(FIQA), encoding="utf-8")
    before = src.read_bytes()
    monkeypatch.chdir(tmp_path)
    for out in ("./x.json", str(src)):
        r = runner.invoke(app, ["prepare", "x.json", "-o", out])
        assert r.exit_code == 1 and "is also INPUT: it would overwrite an input" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    (tmp_path / "link.json").symlink_to(src)
    r = runner.invoke(app, ["prepare", "x.json", "-o", "link.json"])
    assert r.exit_code == 1 and "it would overwrite an input" in r.output
    assert src.read_bytes() == before


def test_the_same_input_twice_is_refused(tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("ok@positive\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"s.txt: given twice"):
        run_prepare(PrepareConfig(inputs=[src, tmp_path / "." / "s.txt"], output=str(tmp_path / "o.jsonl")))
    assert not (tmp_path / "o.jsonl").exists()


def test_fiqa_boolean_score_is_not_a_number(tmp_path):
    bad = {"1": {"sentence": "x", "info": [{"target": "X", "sentiment_score": True}]}}
    src = tmp_path / "task1.json"
    src.write_text(json.dumps(bad, indent=2), encoding="utf-8")
    with pytest.raises(UserError, match=r"info\[0\]: sentiment_score True is not a number"):
        run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "o.jsonl")))


@pytest.mark.parametrize("text, message", [
    ('{"1": {"sentence": "a", "info": []}, "1": {"sentence": "b", "info": []}}', "task1.json: duplicate key '1'"),
    ('{"1": {"sentence": "a", "sentence": "b", "info": []}}', "task1.json: 1: duplicate key 'sentence'"),
    ('{"1": ' + "[" * 50_000 + "]" * 50_000 + "}", "task1.json: nested too deeply"),
    ('{"1": {"sentence": "\\udc80", "info": []}}', "task1.json: 1.sentence: lone surrogate"),
])
def test_fiqa_json_read_strictly(tmp_path, text, message):
    src = tmp_path / "task1.json"
    src.write_text(text, encoding="utf-8")
    r = runner.invoke(app, ["prepare", str(src), "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 1 and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "o.jsonl").exists()
