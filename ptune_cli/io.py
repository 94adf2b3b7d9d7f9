"""JSONL in and out, shared by every command.

* Input is a path or ``-`` (stdin); bad input raises :class:`UserError` naming file and line.
* Output goes to a path or ``-`` (stdout). Files are written to a temporary sibling and renamed
  into place only when complete, so a failed run never leaves a partial output file.
* Records round-trip: key order kept, non-ASCII written as UTF-8.
* Strict JSON both ways: ``NaN``/``Infinity`` literals and duplicate keys are refused on read
  (``file:line``), and never written; a UTF-16/32 file is named as such, not blamed on its bytes.
* One rule for text: template fields and labels are strings (:func:`text_field_problem`).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ptune_cli.errors import UserError, at

STDIO = "-"
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def dumps(record: Mapping[str, Any]) -> str:
    """One JSONL line (without newline): UTF-8 text, key order kept, never NaN/Infinity."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def text_field_problem(record: Mapping[str, Any], field: str) -> str | None:
    """What is wrong with ``record[field]`` as a template field or label, or None when it is a
    string: the one rule every command applies (never ``str()`` of null, a number or a list).
    The caller adds the place: ``f"{at(name, lineno)}: {problem}"``."""
    if field not in record:
        return f"field '{field}': missing required field"
    value = record[field]
    if not isinstance(value, str):
        return f"field '{field}': expected a string, got {_type_name(value)}"
    return None


def require_text_fields(record: Mapping[str, Any], fields: Iterable[str], path: str | os.PathLike, lineno: int) -> None:
    """Raise :class:`UserError` ``file:line: field 'x': …`` for the first of ``fields`` that is
    missing or not a string (see :func:`text_field_problem`)."""
    for field in fields:
        problem = text_field_problem(record, field)
        if problem is not None:
            raise UserError(f"{at(display_name(path), lineno)}: {problem}")


def _check_fields(record: dict, name: str, lineno: int, required: Mapping[str, type | tuple]) -> None:
    for field, typ in required.items():
        if typ is str:
            problem = text_field_problem(record, field)
            if problem is not None:
                raise UserError(f"{at(name, lineno)}: {problem}")
            continue
        if field not in record:
            raise UserError(f"{at(name, lineno, field)}: missing required field")
        if typ is not None and not isinstance(record[field], typ):
            want = _TYPE_NAMES.get(typ, getattr(typ, "__name__", str(typ))) if isinstance(typ, type) else "of another type"
            raise UserError(f"{at(name, lineno, field)}: expected {want}, got {_type_name(record[field])}")


# ---------------------------------------------------------------------------------------------
# Strict JSON and text encodings

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


class _Bad(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _NonFinite:
    """Stands for a NaN/Infinity literal until the record's field holding it is known."""

    def __init__(self, literal: str):
        self.literal = literal


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Bad(f"duplicate key '{dup}' (readers disagree on which value counts; keep one)")
    return out


def _find_nonfinite(value: Any) -> _NonFinite | None:
    if isinstance(value, _NonFinite):
        return value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for v in items:
        found = _find_nonfinite(v)
        if found is not None:
            return found
    return None


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses NaN/Infinity literals and duplicate keys (``ValueError``
    with a short reason; :func:`iter_records` adds file:line and the field)."""
    try:
        value = _DECODER.decode(text)
    except _Bad as e:
        raise ValueError(e.message) from None
    bad = _find_nonfinite(value) if "NaN" in text or "Infinity" in text else None  # walk only then
    if bad is not None:
        field = next((k for k, v in value.items() if _find_nonfinite(v) is bad), None) if isinstance(value, dict) else None
        where = f"field '{field}': " if field is not None else ""
        raise ValueError(f"{where}{bad.literal} is not valid JSON (write null, a number or a string)")
    return value


_DECODER = json.JSONDecoder(parse_constant=_NonFinite, object_pairs_hook=_unique_keys)


def iter_records(
    path: str | os.PathLike,
    required: Mapping[str, type | tuple | None] | Sequence[str] = (),
    *,
    allow_empty: bool = False,
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` from a JSONL file or stdin.

    ``required`` names fields that must be present; as a mapping it also gives their type
    (``None`` for any). Blank lines are skipped. Raises :class:`UserError` with ``file:line``.
    """
    if not isinstance(required, Mapping):
        required = {f: str for f in required}
    name = display_name(path)
    if str(path) == STDIO:
        stream: IO[bytes] = sys.stdin.buffer
        close = False
    else:
        p = Path(path)
        if not p.exists():
            raise UserError(f"{name}: no such file")
        if p.is_dir():
            raise UserError(f"{name}: is a directory, expected a JSONL file")
        stream = p.open("rb")
        close = True
    seen = 0
    try:
        for lineno, raw in enumerate(stream, start=1):
            if lineno == 1 or b"\x00" in raw:
                check_encoding(raw, name, None if lineno == 1 else lineno)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{at(name, lineno)}: not valid UTF-8 (byte {e.start + 1})") from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]  # a UTF-8 byte-order mark (Windows editors, Excel exports)
            if not line.strip():
                continue
            try:
                record = loads_strict(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{at(name, lineno)}: invalid JSON ({e.msg}, column {e.colno})") from None
            except ValueError as e:
                raise UserError(f"{at(name, lineno)}: {e}") from None
            if not isinstance(record, dict):
                raise UserError(f"{at(name, lineno)}: expected a JSON object, got {type(record).__name__}")
            _check_fields(record, name, lineno, required)
            seen += 1
            yield lineno, record
    finally:
        if close:
            stream.close()
    if seen == 0 and not allow_empty:
        raise UserError(f"{name}: empty file (no JSONL records)")


def read_records(
    path: str | os.PathLike,
    required: Mapping[str, type | tuple | None] | Sequence[str] = (),
    *,
    allow_empty: bool = False,
) -> list[dict]:
    """All records of a JSONL file (see :func:`iter_records`)."""
    return [r for _, r in iter_records(path, required, allow_empty=allow_empty)]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing through a temporary sibling renamed on success.

    ``-`` writes to stdout. On any exception the temporary file is removed and ``path`` is
    untouched.
    """
    if str(path) == STDIO:
        if "b" in mode:
            yield sys.stdout.buffer
        else:
            yield sys.stdout
        sys.stdout.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target}: is a folder, expected an output file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise UserError(f"{target}: cannot write ({e.strerror or e})") from None
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_records(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> int:
    """Write records as JSONL atomically (or to stdout for ``-``); returns the count."""
    import jsonlines  # not on the `ptune --help` path (the data configs import this module)

    n = 0
    with atomic_output(path) as fh:
        writer = jsonlines.Writer(fh, dumps=dumps, flush=False)
        for rec in records:
            writer.write(rec)
            n += 1
    return n


def finite(obj: Any) -> Any:
    """``obj`` with NaN/Infinity floats replaced by None (JSON null): strict readers refuse them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write pretty JSON atomically (UTF-8, trailing newline); a NaN/Infinity (an undefined
    metric, a diverged loss) is written as null, never as an invalid literal."""
    text = json.dumps(finite(obj), ensure_ascii=False, indent=2, allow_nan=False)
    with atomic_output(path) as fh:
        fh.write(text + "\n")


def check_fields(record: dict, path: str | os.PathLike, lineno: int,
                 required: Mapping[str, type | tuple | None]) -> None:
    """The :func:`iter_records` field check for a record already read (``file:line: field``)."""
    _check_fields(record, display_name(path), lineno, required)


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.resolve() == pb.resolve():
        return True
    try:
        return pa.exists() and pb.exists() and os.path.samefile(pa, pb)  # hard links
    except OSError:
        return False


PathsByFlag = Mapping[str, "str | os.PathLike | None"] | Iterable[tuple[str, "str | os.PathLike | None"]]


def check_outputs(outputs: PathsByFlag, inputs: PathsByFlag = ()) -> None:
    """Refuse, before any work, output paths that cannot be written as intended: an existing
    folder, one of the command's own inputs, or the same file as another output.

    ``outputs`` / ``inputs`` map a flag (``-o``, ``--data``) to its path, as a mapping or as
    pairs (several inputs under one name); None and ``-`` are skipped. Raises a one-line
    :class:`UserError` naming both flags.
    """
    def given(paths: PathsByFlag) -> list:
        pairs = paths.items() if isinstance(paths, Mapping) else paths
        return [(flag, p) for flag, p in pairs if p is not None and str(p) != STDIO]

    outs, ins = given(outputs), given(inputs)
    for k, (flag, path) in enumerate(outs):
        if Path(path).is_dir():
            raise UserError(f"{flag} {path}: is a folder, expected an output file path")
        for other_flag, other in ins:
            if _same_path(path, other):
                raise UserError(f"{flag} {path} is also {other_flag}: it would overwrite an input; "
                                "write the output somewhere else")
        for other_flag, other in outs[:k]:
            if _same_path(path, other):
                raise UserError(f"{flag} and {other_flag} are the same file ({path}): give each its own path")
