"""JSONL I/O: round-trips, file:line errors for bad input, atomic output."""

from __future__ import annotations

import json

import pytest

from ptune_cli.errors import UserError
from ptune_cli.io import (
    atomic_output,
    read_records,
    read_text,
    require_text_fields,
    text_field_problem,
    write_json,
    write_records,
)


def _write(tmp_path, data: bytes, name="in.jsonl"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_round_trip_keeps_order_and_utf8(tmp_path):
    recs = [{"z": 1, "a": "Känslor för Lloyds ✓", "m": [1, {"x": None}]}, {"b": "é"}]
    out = tmp_path / "o.jsonl"
    assert write_records(out, recs) == 2
    text = out.read_text(encoding="utf-8")
    assert "Känslor" in text and "\\u" not in text
    assert list(json.loads(text.splitlines()[0])) == ["z", "a", "m"]
    assert read_records(out) == recs


@pytest.mark.parametrize(
    "data, required, expected",
    [
        (b'{"a": "x"}\n{"a": \n', (), "in.jsonl:2: invalid JSON"),
        (b'{"a": "x"}\n[1, 2]\n', (), "in.jsonl:2: expected a JSON object, got list"),
        (b'{"a": "x"}\n\n{"b": "y"}\n', ("a",), "in.jsonl:3: field 'a': missing required field"),
        (b'{"a": 3}\n', ("a",), "in.jsonl:1: field 'a': expected a string, got int"),
        (b"", (), "in.jsonl: empty file"),
        (b"\n  \n", (), "in.jsonl: empty file"),
        (b'{"a": "ok"}\n{"a": "\xff"}\n', (), "in.jsonl:2: not valid UTF-8"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, data, required, expected):
    p = _write(tmp_path, data)
    with pytest.raises(UserError) as e:
        read_records(p, required)
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / expected.split(":")[0])) or expected in msg
    assert expected.split("in.jsonl", 1)[1] in msg
    assert "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_records(tmp_path / "nope.jsonl")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_output(target) as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_write_records_failure_mid_stream_keeps_no_partial_file(tmp_path):
    def gen():
        yield {"a": 1}
        raise UserError("bad record")

    out = tmp_path / "o.jsonl"
    with pytest.raises(UserError):
        write_records(out, gen())
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    p = _write(tmp_path, '\ufeff{"a": "å"}\n{"b": 1}\n'.encode())
    assert read_records(p) == [{"a": "å"}, {"b": 1}]


def test_unwritable_output_is_a_user_error_not_a_traceback(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match=r"afile/o.jsonl: cannot write"):
        write_records(tmp_path / "afile" / "o.jsonl", [{"a": 1}])
    with pytest.raises(UserError, match="is a folder, expected an output file"):
        write_records(tmp_path, [{"a": 1}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ---- strict JSON, encodings and the text-field rule (issue 10, bad inputs 2, 5, 6) ---------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b'{"a": "x"}\n{"a": NaN}\n', "in.jsonl:2: field 'a': NaN is not valid JSON"),
        (b'{"a": {"b": [1, Infinity]}}\n', "in.jsonl:1: field 'a.b[1]': Infinity is not valid JSON"),
        (b'{"a": -Infinity}\n', "in.jsonl:1: field 'a': -Infinity is not valid JSON"),
        (b'{"label": "a", "label": "b"}\n', "in.jsonl:1: duplicate key 'label'"),
        (b'{"a": "x"}\n{"m": {"k": 1, "k": 2}}\n', "in.jsonl:2: field 'm': duplicate key 'k'"),
    ],
)
def test_nan_literals_and_duplicate_keys_are_refused(tmp_path, data, expected):
    p = _write(tmp_path, data)
    with pytest.raises(UserError) as e:
        read_records(p)
    assert str(e.value) == f"{tmp_path}/{expected}" or str(e.value).startswith(f"{tmp_path}/{expected}")
    assert "\n" not in str(e.value)


def test_nan_in_a_string_is_text(tmp_path):
    assert read_records(_write(tmp_path, b'{"a": "NaN", "b": "Infinity"}\n')) == [{"a": "NaN", "b": "Infinity"}]


def test_nan_is_never_written(tmp_path):
    write_json(tmp_path / "m.json", {"score": float("nan"), "xs": [float("inf"), 0.5]})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "score": None, "xs": [None, 0.5]}
    with pytest.raises(ValueError):
        write_records(tmp_path / "r.jsonl", [{"a": float("nan")}])
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("codec, name", [("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"),
                                         ("utf-32", "UTF-32"), ("utf-32-le", "UTF-32")])
def test_utf16_and_utf32_are_named_not_blamed_on_bytes(tmp_path, codec, name):
    p = _write(tmp_path, '{"a": "å"}\n{"a": "b"}\n'.encode(codec))
    with pytest.raises(UserError) as e:
        read_records(p)
    assert str(e.value).startswith(f"{p}: file is {name}, convert to UTF-8")
    with pytest.raises(UserError, match=f"file is {name}, convert to UTF-8"):
        read_text(p)


def test_read_text_names_the_line_of_bad_utf8(tmp_path):
    p = _write(tmp_path, b'{"a": 1,\n "b": "\xff"}\n', "t.json")
    with pytest.raises(UserError, match=r"t.json:2: template is not valid UTF-8"):
        read_text(p, "template")
    assert read_text(_write(tmp_path, '\ufeffå'.encode(), "bom.txt")) == "å"


@pytest.mark.parametrize("value, got", [(None, "null"), (3, "int"), (1.5, "float"), (["positive"], "list"),
                                        ({"a": 1}, "dict"), (True, "bool")])
def test_text_fields_must_be_strings(tmp_path, value, got):
    rec = {"sentence": "s", "label": value}
    assert text_field_problem(rec, "label") == f"field 'label': expected a string, got {got}"
    assert text_field_problem(rec, "sentence") is None
    assert text_field_problem(rec, "other") == "field 'other': missing required field"
    with pytest.raises(UserError, match=rf"^in.jsonl:7: field 'label': expected a string, got {got}$"):
        require_text_fields(rec, ["sentence", "label"], "in.jsonl", 7)
    p = _write(tmp_path, (json.dumps({"label": "ok"}) + "\n" + json.dumps(rec) + "\n").encode())
    with pytest.raises(UserError, match=rf"in.jsonl:2: field 'label': expected a string, got {got}$"):
        read_records(p, ["label"])


def test_utf16_without_bom_is_named_but_binary_nuls_are_not(tmp_path):
    p = _write(tmp_path, '{"a": "b"}\n{"a": "c"}\n'.encode("utf-16-be"))
    with pytest.raises(UserError, match="file is UTF-16, convert to UTF-8"):
        read_records(p)
    p = _write(tmp_path, b'{"a": "b"}\n' + b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03{"x\x00": 1}\n')
    with pytest.raises(UserError) as e:
        read_records(p)
    assert "in.jsonl:2:" in str(e.value) and "UTF-16" not in str(e.value)


# ---- issue 19: nesting, lone surrogates, full disks, permissions, outputs ≠ inputs ----------


def test_deep_nesting_is_one_line_in_jsonl_and_json_files(tmp_path):
    from ptune_cli.io import read_json

    deep = "[" * 100_000 + "]" * 100_000
    p = _write(tmp_path, ('{"a": "x"}\n{"a": ' + deep + "}\n").encode())
    with pytest.raises(UserError, match=r"in.jsonl:2: nested too deeply"):
        read_records(p)
    j = _write(tmp_path, ('{"data": ' + deep + "}").encode(), "squad.json")
    with pytest.raises(UserError, match=r"squad.json: nested too deeply"):
        read_json(j)


def test_lone_surrogate_names_file_line_and_field(tmp_path):
    p = _write(tmp_path, b'{"sentence": "ok"}\n{"sentence": "bad \\ud800 text", "label": "x"}\n')
    with pytest.raises(UserError) as e:
        read_records(p)
    assert str(e.value).startswith(f"{p}:2: field 'sentence': lone surrogate \\ud800 at character 5")
    nested = _write(tmp_path, b'{"answers": ["fine", "\\udfff"]}\n', "qa.jsonl")
    with pytest.raises(UserError, match=r"qa.jsonl:1: field 'answers\[1\]': lone surrogate"):
        read_records(nested)
    # a proper pair is text (an emoji), and so is the escaped backslash
    ok = _write(tmp_path, b'{"a": "\\ud83d\\ude00", "b": "C:\\\\ud800"}\n', "ok.jsonl")
    assert read_records(ok) == [{"a": "\U0001F600", "b": "C:\\ud800"}]
    assert text_field_problem({"s": "a\ud800"}, "s").startswith("field 's': lone surrogate")


def test_duplicate_keys_in_a_json_file_name_their_place(tmp_path):
    from ptune_cli.io import read_json

    p = _write(tmp_path, b'{"data": [{"paragraphs": [{"qas": [], "qas": []}]}]}', "d.json")
    with pytest.raises(UserError, match=r"^.*d.json: data\[0\].paragraphs\[0\]: duplicate key 'qas'"):
        read_json(p)


@pytest.mark.parametrize("fail", ["write", "fsync", "replace"])
def test_a_full_disk_is_one_line_and_leaves_the_old_output(tmp_path, monkeypatch, fail):
    import errno
    import os

    import ptune_cli.io as pio

    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail == "write":
        monkeypatch.setattr(pio._Guarded, "write", _failing_write)
    else:
        monkeypatch.setattr(os, fail, full)
    with pytest.raises(UserError) as e:
        write_records(target, [{"a": 1}] * 10)
    assert str(e.value) == f"{target}: cannot write (No space left on device); free some space and run the command again"
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def _failing_write(self, data):
    import errno

    from ptune_cli.io import writing

    with writing(self._path):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_outputs_get_the_permissions_open_would_give(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        new = tmp_path / "new.json"
        write_json(new, {"a": 1})
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # not mkstemp's 0600
        shared = tmp_path / "shared.jsonl"
        shared.write_text("x\n")
        shared.chmod(0o664)
        write_records(shared, [{"a": 1}])
        assert stat.S_IMODE(shared.stat().st_mode) == 0o664  # a rewrite keeps the file's mode
        os.umask(0o077)
        private = tmp_path / "private.jsonl"
        write_records(private, [{"a": 1}])
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_check_outputs_sees_links_and_folders(tmp_path):
    import os

    from ptune_cli.io import check_distinct_inputs, check_outputs

    src = tmp_path / "in.jsonl"
    src.write_text("{}\n")
    os.link(src, tmp_path / "hard.jsonl")
    with pytest.raises(UserError, match=r"-o .*hard.jsonl is also INPUT: it would overwrite an input"):
        check_outputs({"-o": tmp_path / "hard.jsonl"}, {"INPUT": src})
    with pytest.raises(UserError, match=r"INPUT .*in.jsonl is inside -o"):
        check_outputs({}, {"INPUT": src}, folders={"-o": tmp_path})
    with pytest.raises(UserError, match=r"hard.jsonl: given twice \(also as INPUT .*in.jsonl\)"):
        check_distinct_inputs([("INPUT", src), ("INPUT", tmp_path / "hard.jsonl")])
    check_outputs({"-o": tmp_path / "sv-sentiment"}, {"--map": "sv-sentiment"})  # a built-in name is no file
