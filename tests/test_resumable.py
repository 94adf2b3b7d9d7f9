"""One resumable-JSONL mechanism for translate and eval (ptune_cli.resumable)."""

from __future__ import annotations

import json

from ptune_cli.resumable import (
    ResumableJSONL,
    file_digest,
    fingerprint,
    partial_path,
    records_digest,
)


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_same_fingerprint_resumes_after_the_last_complete_record(tmp_path):
    out = tmp_path / "o.jsonl"
    p = ResumableJSONL(partial_path(out), "fp1")
    assert p.open() == [] and p.path == tmp_path / "o.jsonl.partial"
    p.append([{"a": 1}, {"a": 2}])
    p.close()
    with p.path.open("ab") as fh:
        fh.write(b'{"a": 3, "tor')  # killed mid-write
    again = ResumableJSONL(partial_path(out), "fp1")
    assert again.open() == [{"a": 1}, {"a": 2}] and again.done == 2  # the torn line is cut off
    again.append([{"a": 3}])
    again.finish(out)
    assert _lines(out) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert not p.path.exists() and not p.meta.exists()


def test_a_complete_but_broken_line_is_torn_too(tmp_path):
    p = ResumableJSONL(tmp_path / "x.partial", "fp")
    p.open()
    p.append([{"a": 1}])
    p.close()
    with p.path.open("ab") as fh:
        fh.write(b'{"a": 2\n{"a": 3}\n')
    assert ResumableJSONL(tmp_path / "x.partial", "fp").open() == [{"a": 1}]
    assert p.path.read_bytes() == b'{"a": 1}\n'


def test_other_fingerprint_starts_over(tmp_path):
    p = ResumableJSONL(tmp_path / "p.partial", "fp1")
    p.open()
    p.append([{"a": 1}])
    p.close()
    other = ResumableJSONL(tmp_path / "p.partial", "fp2")
    assert other.open() == [] and other.path.read_bytes() == b""
    other.discard()
    assert list(tmp_path.iterdir()) == []


def test_fingerprint_covers_settings_and_input_contents(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"a": 1}\n')
    base = fingerprint({"model": "m"}, {"data": file_digest(f)})
    assert base == fingerprint({"model": "m"}, {"data": file_digest(f)})
    assert base != fingerprint({"model": "n"}, {"data": file_digest(f)})
    f.write_text('{"a": 2}\n')
    assert base != fingerprint({"model": "m"}, {"data": file_digest(f)})
    assert records_digest([{"a": 1}]) != records_digest([{"a": 2}])
    assert file_digest(tmp_path / "missing") is None and file_digest("-") is None
