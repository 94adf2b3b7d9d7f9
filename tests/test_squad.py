"""SQuAD: ``ptune prepare`` of v1.1/v2.0 JSON, the official v1.1 EM/F1 (``--metric squad``) and
``ptune report`` over QA folds.

The metric cases are worked out by hand from the official evaluate-v1.1.py definitions
(normalize_answer = lower → drop string.punctuation → drop \\b(a|an|the)\\b → collapse
whitespace; f1 = 0 when no token is shared; both maximised over the gold answers).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.evaluate.metrics import normalize_answer, score, score_squad, squad_scores
from ptune_cli.evaluate.report import load_results, summarize, summary_markdown
from ptune_cli.folds import KFoldConfig, run_kfold
from ptune_cli.prepare import PrepareConfig, run_prepare

runner = CliRunner()


def _squad(version: str | None = None, impossible: bool = False) -> dict:
    paras = []
    for j in range(4):
        qas = [{"id": f"q{j}{k}", "question": f"Question {k} about {j}?",
                "answers": [{"text": f"answer {j}", "answer_start": 0}, {"text": f"the answer {j}", "answer_start": 0}]}
               for k in range(3)]
        paras.append({"context": f"answer {j} is in paragraph {j}.", "qas": qas})
    if impossible:
        paras[0]["qas"].append({"id": "imp", "question": "Who knows?", "answers": [], "is_impossible": True,
                                "plausible_answers": [{"text": "answer 0", "answer_start": 0}]})
    doc = {"data": [{"title": "A", "paragraphs": paras[:2]}, {"title": "B", "paragraphs": paras[2:]}]}
    return {"version": version, **doc} if version else doc


def _lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_v11_records_and_paragraph_groups_stay_in_one_fold(tmp_path):
    src = tmp_path / "train-v1.1.json"
    src.write_text(json.dumps(_squad()), encoding="utf-8")
    out = tmp_path / "qa.jsonl"
    res = run_prepare(PrepareConfig(inputs=[src], output=str(out)))  # auto: .json opening with "data"
    recs = _lines(out)
    assert res.records == 12 and res.labels == {"answerable": 12}
    assert recs[0] == {"taskname": "squad", "id": "q00", "context": "answer 0 is in paragraph 0.",
                       "question": "Question 0 about 0?", "answer": "answer 0",
                       "answers": ["answer 0", "the answer 0"], "paragraph_id": "train-v1.1:0:0"}
    assert recs[-1]["paragraph_id"] == "train-v1.1:1:1"
    run_kfold(out, tmp_path / "folds", KFoldConfig(k=2, group_field="paragraph_id"))
    for f in ("fold_00", "fold_01"):
        test = _lines(tmp_path / "folds" / f / "test.jsonl")
        train = _lines(tmp_path / "folds" / f / "train.jsonl") + _lines(tmp_path / "folds" / f / "val.jsonl")
        assert not {r["paragraph_id"] for r in test} & {r["paragraph_id"] for r in train}


def test_v2_unanswerable_kept_with_the_documented_answer_or_skipped_and_counted(tmp_path):
    src = tmp_path / "dev-v2.0.json"
    src.write_text(json.dumps(_squad("v2.0", impossible=True)), encoding="utf-8")
    res = run_prepare(PrepareConfig(inputs=[src], output=str(tmp_path / "a.jsonl")))
    imp = [r for r in _lines(tmp_path / "a.jsonl") if r["id"] == "imp"]
    assert imp[0]["answer"] == "unanswerable" and imp[0]["answers"] == ["unanswerable"]
    assert res.labels == {"answerable": 12, "unanswerable": 1} and not res.left_out
    r = runner.invoke(app, ["prepare", str(src), "-o", str(tmp_path / "b.jsonl"), "--unanswerable", "skip"])
    assert r.exit_code == 0 and "left out: unanswerable" in r.output
    assert len(_lines(tmp_path / "b.jsonl")) == 12


@pytest.mark.parametrize("path, break_it", [
    ("data[1].paragraphs[0].qas[2].answers", lambda d: d["data"][1]["paragraphs"][0]["qas"][2].update(answers="x")),
    ("data[0].paragraphs[1].context", lambda d: d["data"][0]["paragraphs"][1].pop("context")),
    ("data[0].paragraphs[0].qas[1].answers[0].text",
     lambda d: d["data"][0]["paragraphs"][0]["qas"][1]["answers"][0].update(text=7)),
    ("data[1].paragraphs[1].qas[0].answers", lambda d: d["data"][1]["paragraphs"][1]["qas"][0].update(answers=[])),
])
def test_malformed_item_is_one_line_with_file_and_json_path(tmp_path, path, break_it):
    doc = _squad()
    break_it(doc)
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "o.jsonl"
    r = runner.invoke(app, ["prepare", str(src), "-o", str(out)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert f"{src}: {path}:" in r.output and "Traceback" not in r.output
    assert not out.exists()


@pytest.mark.parametrize("text, lang, norm", [
    ("The  Denver Broncos!", "en", "denver broncos"),
    ("abandon the ship, an apple", "en", "abandon ship apple"),  # articles only as words
    ("U.S.", "en", "us"),
    ("state-of-the-art", "en", "stateoftheart"),  # punctuation goes first: no article left
    ("«Paris»", "en", "«paris»"),  # string.punctuation is ASCII only
    ("Den stora hunden och ett hus", "sv", "stora hunden och hus"),
    ("Den stora hunden", "en", "den stora hunden"),
    ("det är de", "sv", "är"),
])
def test_normalize_answer_as_the_official_script(text, lang, norm):
    assert normalize_answer(text, lang) == norm


@pytest.mark.parametrize("golds, pred, em, f1", [
    (["the Denver Broncos"], "Denver Broncos", 1.0, 1.0),
    (["the Denver Broncos"], "Denver Broncos won", 0.0, 0.8),  # P 2/3, R 1
    (["cat"], "the the cat cat", 0.0, 2 / 3),  # common = min counts: 1; P 1/2, R 1
    (["London", "Paris, France"], "Paris", 0.0, 2 / 3),  # max over golds: P 1, R 1/2
    (["the"], "", 1.0, 0.0),  # both normalize to "": EM 1, F1 0 (v1.1 has no empty special case)
    (["state of the art"], "state-of-the-art", 0.0, 0.0),
    (["Paris"], "Paris\nQuestion: where?", 0.0, 0.5),  # a newline is whitespace (official script)
    (["Paris France"], "Paris\nFrance", 1.0, 1.0),
])
def test_em_f1_values_of_the_official_definitions(golds, pred, em, f1):
    got_em, got_f1 = squad_scores(golds, pred)
    assert got_em == em and got_f1 == pytest.approx(f1)


def test_squad_results_are_fractions_and_auto_picks_squad_for_answer_lists():
    golds = [["the Denver Broncos"], ["cat"], ["London", "Paris, France"], ["Paris"]]
    preds = ["Denver Broncos", "the the cat cat", "Paris", "Rome"]
    res = score(golds, preds)
    assert res["metric"] == "squad" and res["n"] == 4
    assert res["exact_match"] == pytest.approx(0.25) and res["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 4)
    assert score_squad([["den stora hunden"]], ["stora hunden"], lang="sv")["exact_match"] == 1.0
    assert score_squad([["den stora hunden"]], ["stora hunden"])["exact_match"] == 0.0


def test_eval_predictions_file_and_report_over_folds(tmp_path):
    files = []
    for f, preds in enumerate([["answer 0", "nope"], ["the answer 1", "answer 1"]]):
        p = tmp_path / f"fold_{f:02d}" / "pred.jsonl"
        p.parent.mkdir()
        p.write_text("".join(json.dumps({"taskname": "squad", "context": "c", "question": "q", "answer": f"answer {f}",
                                         "answers": [f"answer {f}"], "prediction": x}) + "\n" for x in preds))
        res = tmp_path / f"fold_{f:02d}" / "results.json"
        r = runner.invoke(app, ["eval", "--predictions", str(p), "-o", str(res)])
        assert r.exit_code == 0, r.output
        assert "exact match" in r.output
        files.append(str(res))
    assert json.loads(open(files[0]).read())["exact_match"] == 0.5
    summary = summarize(load_results(files))
    assert summary["metric"] == "squad" and summary["keys"] == ["exact_match", "f1"]
    assert summary["groups"][0]["mean"]["exact_match"] == pytest.approx(0.75)
    assert "F1 (%)" in summary_markdown(summary)
    png = tmp_path / "folds.png"
    r = runner.invoke(app, ["report", *files, "-o", str(tmp_path / "s.json"), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:4] == b"\x89PNG"


# ---- issue 19: SQuAD read strictly; misplaced answers counted, --strict refuses; ids unique


def _prepare_cli(tmp_path, doc, *args, text: str | None = None):
    src = tmp_path / "train.json"
    src.write_text(text if text is not None else json.dumps(doc), encoding="utf-8")
    out = tmp_path / "qa.jsonl"
    return runner.invoke(app, ["prepare", str(src), "-o", str(out), *args]), out


def test_a_squad_file_whose_first_key_is_title_is_squad(tmp_path):
    doc = {"title": "my set", "version": "1.1", **_squad()}
    r, out = _prepare_cli(tmp_path, doc)
    assert r.exit_code == 0, r.output
    assert _lines(out)[0]["taskname"] == "squad"


def test_answers_not_at_answer_start_are_counted_and_strict_refuses(tmp_path):
    doc = _squad()
    qas = doc["data"][0]["paragraphs"][0]["qas"]
    qas[0]["answers"] = [{"text": "answer 0", "answer_start": 5}]  # in the context, wrong start
    qas[1]["answers"] = [{"text": "nowhere", "answer_start": 0}]  # not in the context
    qas[2]["answers"] = [{"text": "answer 0", "answer_start": 0}]  # fine
    for para in [p for a in doc["data"] for p in a["paragraphs"]][1:]:
        for qa in para["qas"]:
            qa["answers"] = qa["answers"][:1]  # "the answer j" is not in its context either
    res = run_prepare(PrepareConfig(inputs=[_write(tmp_path, doc)], output=str(tmp_path / "qa.jsonl")))
    assert res.records == 12
    assert res.noted == {"answer_start does not point at the answer": 1, "answer not in its context": 1}
    r, out = _prepare_cli(tmp_path, doc)
    assert r.exit_code == 0 and "kept, answer not in its context (--strict refuses)" in r.output, r.output
    out.unlink()
    r, out = _prepare_cli(tmp_path, doc, "--strict")
    assert r.exit_code == 1 and "data[0].paragraphs[0].qas[0].answers[0]: answer_start does not point" in r.output
    assert not out.exists()


def _write(tmp_path, doc):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc), encoding="utf-8")
    return src


def test_duplicate_question_ids_and_keys_are_refused(tmp_path):
    doc = _squad()
    doc["data"][1]["paragraphs"][0]["qas"][0]["id"] = "q00"
    r, out = _prepare_cli(tmp_path, doc)
    assert r.exit_code == 1 and "data[1].paragraphs[0].qas[0].id: question id 'q00' given twice" in r.output
    text = json.dumps(_squad()).replace('"id": "q00",', '"id": "q00", "id": "other",', 1)
    r, out = _prepare_cli(tmp_path, None, text=text)
    assert r.exit_code == 1, r.output
    assert "train.json: data[0].paragraphs[0].qas[0]: duplicate key 'id'" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


# ---- issue 19: the SQuAD metric agrees with the official script on adversarial pairs --------


def _official(pred: str, golds: list[str]) -> tuple[float, float]:
    """The official evaluate-v1.1.py definitions (REFERENCE.md), written out here on their own:
    lower → drop string.punctuation → articles a/an/the as whole words → split on whitespace;
    EM of the normalized strings, token F1 (0 with no common token), max over the golds."""
    import re
    import string
    from collections import Counter

    def norm(s: str) -> list[str]:
        s = s.lower().translate(str.maketrans("", "", string.punctuation))
        return re.sub(r"\b(a|an|the)\b", " ", s).split()

    def f1(p, g):
        common = sum((Counter(p) & Counter(g)).values())
        return 0.0 if common == 0 else 2 * (common / len(p)) * (common / len(g)) / (common / len(p) + common / len(g))

    return (max(float(norm(pred) == norm(g)) for g in golds), max(f1(norm(pred), norm(g)) for g in golds))


PIECES = ["the", "The", "a", "An", "an", "\n", "\n\n", "\t", " ", "  ", "\r\n", "\u00a0", "Paris", "paris.", "U.S.",
          "state-of-the-art", "«x»", "café", "ÉCOLE", "theatre", "another", "(a)", "a\nb", "1,000", "x_y", "—", "’s",
          "'s", "Denver", "Broncos", "Question:", "answer", ""]


def test_600_adversarial_pairs_agree_with_the_official_definitions():
    """Before: 569/600 agreed; all 31 differences were the prediction cut at its first newline
    (gold answers were not cut). A newline is whitespace, in predictions as in golds."""
    import random

    rng = random.Random(19)

    def text() -> str:
        return "".join(rng.choice(PIECES) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(0, 6)))

    newline_pairs = 0
    for _ in range(600):
        golds = [text() for _ in range(rng.randint(1, 3))]
        pred = text()
        newline_pairs += "\n" in pred
        em, f1 = squad_scores(golds, pred)
        want_em, want_f1 = _official(pred, golds)
        assert em == want_em and f1 == pytest.approx(want_f1), (pred, golds)
    assert newline_pairs > 100  # the case that differed is well represented
