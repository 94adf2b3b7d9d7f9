"""Strict JSON and text encodings: the one JSON reader of every input ptune takes.

* :func:`loads_strict` refuses what JSON readers disagree on or cannot pass on: ``NaN`` /
  ``Infinity`` literals, duplicate keys, lone surrogates (``"\\ud800"``, valid JSON that no
  UTF-8 writer or tokenizer takes) and nesting deeper than Python's parser goes; each
  refusal names its place (:class:`JSONProblem`, ``field 'answers[0]'``).
* :func:`read_json` reads a whole JSON file with it (SQuAD, FiQA, prompt_table.json, results,
  templates); :mod:`ptune_cli.io` reads JSONL with it; ``ptune serve`` parses bodies with it.
* UTF-16/32 files are named as such (:func:`check_encoding`), not blamed on their bytes.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptune_cli.errors import UserError, at

# UTF-32 first: its little-endian BOM starts with UTF-16's
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def wide_encoding(head: bytes) -> str | None:
    """"UTF-16" / "UTF-32" when ``head`` (a file's or line's first bytes) starts with their
    byte-order mark or has their NUL pattern (ASCII in UTF-16 is every other byte NUL, in
    UTF-32 three bytes of four), else None (a binary file's NULs are no text encoding)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" not in head or len(head) < 2:
        return None
    nul = sorted(part.count(0) / len(part) for part in (head[0::2], head[1::2]))
    if nul[1] < 0.9:
        return None
    return "UTF-32" if nul[0] > 0.4 else "UTF-16"


def check_encoding(head: bytes, name: str, lineno: int | None = None) -> None:
    """:class:`UserError` naming the encoding when ``head`` is UTF-16/32 rather than UTF-8."""
    enc = wide_encoding(head)
    if enc is not None:
        raise UserError(f"{at(name, lineno)}: file is {enc}, convert to UTF-8 (e.g. iconv -f {enc} -t UTF-8 IN > OUT)")


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A UTF-8 text file (a leading byte-order mark dropped); UTF-16/32 and bad bytes are a
    :class:`UserError` naming the file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UserError(f"{p}: cannot read {what} ({e.strerror or e})") from None
    check_encoding(data[:4096], str(p))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{at(p, line)}: {what} is not valid UTF-8 (byte {e.start + 1})") from None


class JSONProblem(ValueError):
    """Valid JSON syntax that ptune refuses (a NaN literal, a duplicate key, a lone surrogate,
    nesting too deep): ``path`` locates it (``["answers", 0]``; empty: the whole value),
    ``reason`` says what is wrong. ``str()`` is ``field 'answers[0]': reason`` (or the reason)."""

    def __init__(self, path: Sequence[str | int], reason: str):
        self.path, self.reason = list(path), reason
        super().__init__(f"field '{json_path(self.path)}': {reason}" if self.path else reason)


def json_path(path: Sequence[str | int]) -> str:
    """``["data", 3, "qas"]`` → ``data[3].qas`` (how errors name a place inside a JSON value)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _NonFinite:
    """Stands for a NaN/Infinity literal until the place holding it is known."""

    def __init__(self, literal: str):
        self.literal = literal


class _DuplicateKey(Exception):
    pass


class _Dups(dict):
    """An object that had a duplicate key (only built when locating one, see loads_strict)."""

    duplicate: str | None = None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey
    return out


def _mark_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out = _Dups(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        out.duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
    return out


def lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in ``text`` (JSON's ``"\\ud800"`` escape decodes to one;
    no UTF-8 writer or tokenizer takes it), else None."""
    if text.isascii():
        return None
    m = _SURROGATE.search(text)
    return None if m is None else m.start()


_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_reason(text: str, at_char: int) -> str:
    return (f"lone surrogate {ascii(text[at_char])[1:-1]} at character {at_char + 1} is not text "
            "(a broken UTF-16 escape; fix what wrote it)")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _first_problem(value: Any) -> JSONProblem | None:
    """The first NaN/Infinity literal, lone surrogate or duplicate key in ``value``, located
    (an explicit stack: a walk as deep as the data must not hit Python's recursion limit)."""
    stack: list[tuple[list, Any]] = [([], value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, _NonFinite):
            return JSONProblem(path, f"{v.literal} is not valid JSON (write null, a number or a string)")
        if isinstance(v, str):
            at_char = lone_surrogate(v)
            if at_char is not None:
                return JSONProblem(path, surrogate_reason(v, at_char))
        elif isinstance(v, dict):
            if isinstance(v, _Dups) and v.duplicate is not None:
                return JSONProblem(path, f"duplicate key '{v.duplicate}' (readers disagree on which value "
                                   "counts; keep one)")
            items = list(v.items())
            for k, _ in items:
                if lone_surrogate(k) is not None:
                    return JSONProblem(path, f"key {ascii(k)} holds a lone surrogate (a broken UTF-16 escape)")
            stack.extend((path + [k], x) for k, x in reversed(items))
        elif isinstance(v, list):
            stack.extend((path + [i], x) for i, x in reversed(list(enumerate(v))))
    return None


_STRICT = json.JSONDecoder(parse_constant=_NonFinite, object_pairs_hook=_unique_keys)
_LOCATE = json.JSONDecoder(parse_constant=_NonFinite, object_pairs_hook=_mark_duplicates)


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses what readers disagree on or cannot pass on: NaN/Infinity
    literals, duplicate keys, lone surrogates (``"\\ud800"``) and nesting deeper than Python's
    parser goes. Raises ``json.JSONDecodeError`` for bad syntax and :class:`JSONProblem` (a
    ``ValueError`` naming the place, e.g. ``field 'answers[0]'``) for the rest; the one JSON
    reader of JSONL, JSON files (:func:`read_json`) and serve's request bodies."""
    located = False
    try:
        try:
            value = _STRICT.decode(text)
        except _DuplicateKey:
            value, located = _LOCATE.decode(text), True  # again, marking the object, to name where it is
    except RecursionError:
        raise JSONProblem([], "nested too deeply (more levels of [ and { than ptune reads)") from None
    # walk the value only when the text can hold a problem (NaN literals, \\uD8xx escapes)
    if located or "NaN" in text or "Infinity" in text or _SURROGATE_ESCAPE.search(text):
        problem = _first_problem(value)
        if problem is not None:
            raise problem
    return value


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """A whole JSON file (SQuAD, FiQA, prompt_table.json, results…) read with
    :func:`loads_strict`: bad syntax is ``file:line: invalid JSON (…)``, a refused value names
    its place (``file: data[3].qas[0]: duplicate key 'id' …``); always one line."""
    text = read_text(path, what)
    try:
        return loads_strict(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{at(path, e.lineno)}: invalid JSON ({e.msg}, column {e.colno})") from None
    except JSONProblem as e:
        where = f"{path}: {json_path(e.path)}" if e.path else str(path)
        raise UserError(f"{where}: {e.reason}") from None
