"""JSONL in and out, shared by every command.

* Input is a path or ``-`` (stdin); bad input raises :class:`UserError` naming file and line.
* Output goes to a path or ``-`` (stdout). Files are written to a temporary sibling and renamed
  into place only when complete, so a failed run never leaves a partial output file.
* Records round-trip: key order kept, non-ASCII written as UTF-8.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import jsonlines

from ptune_cli.errors import UserError, at

STDIO = "-"
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def display_name(path: str | os.PathLike) -> str:
    return "<stdin>" if str(path) == STDIO else str(path)


def dumps(record: Mapping[str, Any]) -> str:
    """One JSONL line (without newline): UTF-8 text, key order kept."""
    return json.dumps(record, ensure_ascii=False)


def _check_fields(record: dict, name: str, lineno: int, required: Mapping[str, type | tuple]) -> None:
    for field, typ in required.items():
        if field not in record:
            raise UserError(f"{at(name, lineno, field)}: missing required field")
        if typ is not None and not isinstance(record[field], typ):
            want = _TYPE_NAMES.get(typ, getattr(typ, "__name__", str(typ))) if isinstance(typ, type) else "of another type"
            got = type(record[field]).__name__
            raise UserError(f"{at(name, lineno, field)}: expected {want}, got {got}")


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
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{at(name, lineno)}: not valid UTF-8 (byte {e.start + 1})") from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]  # a UTF-8 byte-order mark (Windows editors, Excel exports)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{at(name, lineno)}: invalid JSON ({e.msg}, column {e.colno})") from None
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
    n = 0
    with atomic_output(path) as fh:
        writer = jsonlines.Writer(fh, dumps=dumps, flush=False)
        for rec in records:
            writer.write(rec)
            n += 1
    return n


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write pretty JSON atomically (UTF-8, trailing newline)."""
    with atomic_output(path) as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


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
