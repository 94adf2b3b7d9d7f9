"""Metric definitions (README.md, `ptune eval`, "Metrics") against hand-computed tables."""

from __future__ import annotations

import pytest

from ptune_cli.errors import UserError
from ptune_cli.evaluate.metrics import (
    class_key,
    headline,
    resolve_metric,
    score,
    score_accuracy,
    score_intent_slot,
)
from ptune_cli.labels import load_label_map

COFFEE = "\nIntent: iot_coffee\nSlots: device_type(coffee machine)"

# ---------------------------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize(
    "text, mapname, want",
    [
        (" Positive.", None, "positive"),
        ("negative\nand more text", None, "negative"),
        ("\npositive", None, ""),  # up to the first newline: nothing
        ("positiva", "sv-sentiment", "positiv"),
        ("Negativt!", "sv-sentiment", "negativ"),
        ("neutrala …", "sv-sentiment", "neutral"),
        ("kanske", "sv-sentiment", "kanske"),  # unknown to the map: unchanged
        ("", None, ""),
        (None, None, ""),
    ],
)
def test_class_key(text, mapname, want):
    lm = load_label_map(mapname) if mapname else None
    assert class_key(text, lm) == want


ACCURACY_CASES = [
    # id, golds, preds, map, accuracy, correct, out_of_set
    ("empty gold", [], [], None, 0.0, 0, 0),
    ("all right", ["positive", "negative"], ["positive", "negative"], None, 1.0, 2, 0),
    ("nemo leading space", [" positive"], ["positive"], None, 1.0, 1, 0),
    ("empty prediction", ["positive", "neutral"], ["", "neutral"], None, 0.5, 1, 1),
    ("unparseable", ["positive"], ["I think it's good"], None, 0.0, 0, 1),
    ("sv variants, no map", ["positiva", "negativt", "neutral"], ["positivt", "Negativa!", "neutrala"], None, 0.0, 0, 3),
    ("sv variants, map", ["positiva", "negativt", "neutral"], ["positivt", "Negativa!", "neutrala"], "sv-sentiment", 1.0, 3, 0),
    ("sv partly", ["positiv", "negativ", "neutral", "positiva"], ["positiva", "positivt", "neutralt", "negativ."], "sv-sentiment", 0.5, 2, 0),
]


@pytest.mark.parametrize("case", ACCURACY_CASES, ids=[c[0] for c in ACCURACY_CASES])
def test_accuracy_table(case):
    _, golds, preds, mapname, acc, correct, oos = case
    lm = load_label_map(mapname) if mapname else None
    res = score_accuracy(golds, preds, lm)
    assert res["metric"] == "accuracy"
    assert res["n"] == len(golds)
    assert res["accuracy"] == pytest.approx(acc)
    assert res["correct"] == correct
    assert res["out_of_set"] == oos


def test_accuracy_per_label_rows():
    golds = ["positive", "negative", "neutral", "positive"]
    preds = [" Positive.", "negative\nmore", "", "neutral"]
    res = score_accuracy(golds, preds)
    assert res["accuracy"] == 0.5
    rows = {r["label"]: r for r in res["per_label"]}
    assert list(rows) == ["negative", "neutral", "positive"]
    # positive: TP 1, predicted 1, gold 2
    assert rows["positive"]["precision"] == 1.0
    assert rows["positive"]["recall"] == 0.5
    assert rows["positive"]["f1"] == pytest.approx(2 / 3)
    assert rows["positive"]["support"] == 2
    assert (rows["negative"]["precision"], rows["negative"]["recall"], rows["negative"]["f1"]) == (1.0, 1.0, 1.0)
    # neutral: TP 0, predicted 1 (the 4th), gold 1
    assert (rows["neutral"]["precision"], rows["neutral"]["recall"], rows["neutral"]["f1"]) == (0.0, 0.0, 0.0)
    assert res["out_of_set"] == 1  # the empty prediction
    assert res["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)


# ---------------------------------------------------------------------------------------------
# Intent / slot

IS_CASES = [
    # id, golds, preds, intent (acc, p, r, f1), slot (p, r, f1), exact
    ("empty gold", [], [], (0, 0, 0, 0), (0, 0, 0), 0),
    ("single-line form, case + spaces", [COFFEE], ["Intent: IoT_Coffee Slots: device_type(Coffee   Machine )"],
     (1, 1, 1, 1), (1, 1, 1), 1),
    ("empty prediction", [COFFEE], [""], (0, 0, 0, 0), (0, 0, 0), 0),
    ("unparseable output", [COFFEE], ["make me a coffee"], (0, 0, 0, 0), (0, 0, 0), 0),
    ("right intent, no slots", [COFFEE], ["\nIntent: iot_coffee\nSlots: None"], (1, 1, 1, 1), (0, 0, 0), 0),
    ("wrong intent, right slot", [COFFEE], ["Intent: iot_cleaning\nSlots: device_type(coffee machine)"],
     (0, 0, 0, 0), (1, 1, 1), 0),
    # gold {date/today x2, time/5}, pred {date/today, time/6, time/5 x2}: TP 2, P 2/4, R 2/3
    ("repeated slots are a multiset", ["Intent: a\nSlots: date(today), date(today), time(5)"],
     ["Intent: a\nSlots: date(today), time(6), time(5), time(5)"], (1, 1, 1, 1), (0.5, 2 / 3, 4 / 7), 0),
    ("commas inside values", ["Intent: lists_add\nSlots: list_name(milk, eggs), date(friday)"],
     ["Intent: lists_add\nSlots: list_name(milk,  eggs), date(friday)"], (1, 1, 1, 1), (1, 1, 1), 1),
    ("no gold slots, a predicted slot", ["Intent: weather_query\nSlots: None"],
     ["Intent: weather_query\nSlots: place_name(stockholm)"], (1, 1, 1, 1), (0, 0, 0), 0),
    ("no slots either side: 0/0 -> 0.0", ["Intent: weather_query\nSlots: None"], ["Intent: weather_query\nSlots:"],
     (1, 1, 1, 1), (0, 0, 0), 1),
    ("malformed slot items dropped", ["Intent: a\nSlots: date(today)"], ["Intent: a\nSlots: date(today), garbage, (x)"],
     (1, 1, 1, 1), (1, 1, 1), 1),
    ("gold without intent never counts", ["make coffee"], ["make coffee"], (0, 0, 0, 0), (0, 0, 0), 0),
    # 2 records: 1 correct intent; the second prediction has no intent -> P 1/1, R 1/2
    # "Intent:" with nothing after it is a prediction with an (empty, wrong) intent -> P 1/2
    ("empty intent is a wrong prediction, not none", ["Intent: a\nSlots: None", "Intent: b\nSlots: None"],
     ["Intent: a\nSlots: None", "Intent:\nSlots: None"], (0.5, 0.5, 0.5, 0.5), (0, 0, 0), 0.5),
    ("precision vs accuracy", ["Intent: a\nSlots: None", "Intent: b\nSlots: x(1)"], ["Intent: a", "Slots: x(1)"],
     (0.5, 1, 0.5, 2 / 3), (1, 1, 1), 0.5),
]


@pytest.mark.parametrize("case", IS_CASES, ids=[c[0] for c in IS_CASES])
def test_intent_slot_table(case):
    _, golds, preds, intent, slot, exact = case
    res = score_intent_slot(golds, preds)
    assert res["metric"] == "intent-slot"
    assert res["n"] == len(golds)
    got_i = res["intent"]
    assert (got_i["accuracy"], got_i["precision"], got_i["recall"], got_i["f1"]) == pytest.approx(intent)
    got_s = res["slot"]
    assert (got_s["precision"], got_s["recall"], got_s["f1"]) == pytest.approx(slot)
    assert res["exact_match"] == pytest.approx(exact)


def test_intent_slot_per_label_rows():
    golds = ["Intent: a\nSlots: date(today), date(today), time(5)", "Intent: b\nSlots: None"]
    preds = ["Intent: a\nSlots: date(today), time(6), time(5), time(5)", "Intent: a\nSlots: None"]
    res = score_intent_slot(golds, preds)
    rows = {(r["kind"], r["label"]): r for r in res["per_label"]}
    assert list(rows) == [("intent", "a"), ("intent", "b"), ("slot", "date"), ("slot", "time")]
    # intent a: TP 1, predicted 2, gold 1; intent b: TP 0, predicted 0, gold 1
    assert (rows["intent", "a"]["precision"], rows["intent", "a"]["recall"]) == (0.5, 1.0)
    assert rows["intent", "b"]["f1"] == 0.0 and rows["intent", "b"]["support"] == 1
    # date: TP 1, pred 1, gold 2; time: TP 1, pred 3, gold 1
    assert (rows["slot", "date"]["precision"], rows["slot", "date"]["recall"], rows["slot", "date"]["support"]) == (1.0, 0.5, 2)
    assert rows["slot", "time"]["precision"] == pytest.approx(1 / 3)
    assert rows["slot", "time"]["recall"] == 1.0
    assert res["counts"]["slot_tp"] == 2


def test_resolve_metric_and_dispatch():
    assert resolve_metric("auto", ["positive"]) == "accuracy"
    assert resolve_metric("auto", ["x", COFFEE]) == "intent-slot"
    assert resolve_metric("accuracy", [COFFEE]) == "accuracy"
    with pytest.raises(UserError, match="--metric"):
        resolve_metric("bleu", [])
    assert score([COFFEE], [COFFEE])["metric"] == "intent-slot"
    assert score(["Positiva"], ["positivt"], label_map=load_label_map("sv-sentiment"))["accuracy"] == 1.0


def test_length_mismatch_is_a_user_error():
    with pytest.raises(UserError, match="2 predictions for 1 gold"):
        score(["a"], ["a", "b"])


def test_headline_keys():
    assert set(headline(score(["a"], ["a"]))) == {"accuracy", "macro_f1"}
    h = headline(score([COFFEE], [COFFEE]))
    assert h["intent.f1"] == 1.0 and h["slot.f1"] == 1.0 and h["exact_match"] == 1.0


def test_invented_names_share_one_other_row():
    golds = ["Intent: a\nSlots: date(today)", "Intent: b\nSlots: None", "Intent: a\nSlots: None"]
    preds = ["Intent: brew_coffee\nSlots: mood(x)", "Intent: uber_ride\nSlots: None", "Intent: brew_coffee\nSlots: None"]
    res = score_intent_slot(golds, preds)
    rows = [(r["kind"], r["label"]) for r in res["per_label"]]
    assert rows == [("intent", "a"), ("intent", "b"), ("intent", "(other)"), ("slot", "date"), ("slot", "(other)")]
    other = res["per_label"][2]
    assert other["predicted"] == 3 and other["names"] == {"brew_coffee": 2, "uber_ride": 1}
    assert other["support"] == 0 and other["f1"] == 0.0
    assert res["intent"]["accuracy"] == 0.0  # the headline numbers do not change
