"""The label grammar (structural view) and label maps; scoring view is covered in test_metrics."""

from __future__ import annotations

import pytest

from ptune_cli.errors import UserError
from ptune_cli.labels import (
    IntentSlot,
    format_intent_slot,
    label_key,
    load_label_map,
    parse_intent_slot,
    parse_label_layout,
    split_outside_parens,
)


def test_split_outside_parens():
    assert split_outside_parens("a(1, 2), b(3)") == ["a(1, 2)", " b(3)"]


@pytest.mark.parametrize(
    "label",
    [
        "\nIntent: iot_coffee\nSlots: device_type(coffee machine)",
        "\nIntent: alarm_set\nSlots: None",
        "Intent: alarm_set Slots: time(seven am), date(tomorrow)",
        "\nIntent: email_query\nSlots: person(robert, jr), time(5 (five) pm)\n",
    ],
)
def test_layout_round_trips_verbatim(label):
    layout = parse_label_layout(label)
    assert layout is not None
    assert layout.format() == label


def test_layout_changes_only_values():
    layout = parse_label_layout("\nIntent: iot_coffee\nSlots: device_type(coffee machine), date(tomorrow)")
    assert [s.type for s in layout.slots] == ["device_type", "date"]
    layout.slots[0].value = "kaffebryggare"
    layout.slots[1].value = "i morgon"
    assert layout.format() == "\nIntent: iot_coffee\nSlots: device_type(kaffebryggare), date(i morgon)"
    parsed = parse_intent_slot(layout.format())
    assert parsed.intent == "iot_coffee"
    assert parsed.slots == (("device_type", "kaffebryggare"), ("date", "i morgon"))


def test_layout_rejects_non_labels():
    assert parse_label_layout("positive") is None
    assert parse_label_layout("Intent: x Slots: broken") is None


def test_builtin_sv_sentiment_map():
    m = load_label_map("sv-sentiment")
    for v, canon in [("Positiva", "positiv"), (" positivt. ", "positiv"), ("NEGATIVA!", "negativ"),
                     ("neutrala", "neutral"), ("neutral", "neutral")]:
        assert m.lookup(v) == canon
    assert m.lookup("glad") is None
    assert m.normalize("glad") == "glad"
    assert label_key("  Positiv!! ") == "positiv"


def test_map_from_yaml_and_json_files(tmp_path):
    y = tmp_path / "m.yaml"
    y.write_text("# used by: ptune normalize-labels --map\nbra: [positiv, positivt]\n", encoding="utf-8")
    assert load_label_map(str(y)).lookup("Positivt") == "bra"
    j = tmp_path / "m.json"
    j.write_text('{"_comment": "x", "dålig": ["negativ"]}', encoding="utf-8")
    assert load_label_map(str(j)).lookup("negativ") == "dålig"


@pytest.mark.parametrize("content, match", [("[1, 2]", "must be an object"), ("{bad", "cannot parse"),
                                            ('{"a": [1]}', "list of strings")])
def test_bad_map_files(tmp_path, content, match):
    p = tmp_path / "m.json"
    p.write_text(content)
    with pytest.raises(UserError, match=match):
        load_label_map(str(p))


def test_unknown_map_name():
    with pytest.raises(UserError, match="unknown label map 'nope'"):
        load_label_map("nope")


@pytest.mark.parametrize("content", ['{"positiv": ["bra", "glad"], "negativ": ["dålig", "Glad!"]}',
                                     '{"positiv": ["negativ"], "negativ": []}'])
def test_a_variant_under_two_labels_is_refused(tmp_path, content):
    p = tmp_path / "m.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_label_map(str(p))
    msg = str(e.value)
    assert "is listed under both 'positiv' and 'negativ'" in msg and str(p) in msg
    assert "variant 'Glad!'" in msg or "variant 'negativ'" in msg


def test_map_file_duplicate_key_and_utf16_are_named(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"positiv": ["bra"], "positiv": ["glad"]}', encoding="utf-8")
    with pytest.raises(UserError, match="duplicate key 'positiv'"):
        load_label_map(str(p))
    p.write_text('{"positiv": ["bra"]}', encoding="utf-16")
    with pytest.raises(UserError, match="file is UTF-16, convert to UTF-8"):
        load_label_map(str(p))


@pytest.mark.parametrize("intent, slots", [("iot_coffee", []), ("alarm_set", [("time", "seven am"), ("date", "friday")])])
def test_format_intent_slot_round_trips_through_the_scoring_parse(intent, slots):
    label = format_intent_slot(intent, slots)
    assert label.startswith("\nIntent: ") and ("Slots: None" in label) == (not slots)
    assert parse_intent_slot(label) == IntentSlot(intent, tuple(slots))
