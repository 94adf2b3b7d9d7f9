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

import contextlib
import errno
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from ptune_cli.errors import UserError, at
from ptune_cli.strict_json import (  # noqa: F401 - the readers' names, kept importable from io
    JSONProblem,
    check_encoding,
    json_path,
    loads_strict,
    lone_surrogate,
    read_json,
    read_text,
    surrogate_reason,
    wide_encoding,
)

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
    at_char = lone_surrogate(value)
    if at_char is not None:  # valid JSON ("\ud800"), but no tokenizer or UTF-8 writer takes it
        return f"field '{field}': {surrogate_reason(value, at_char)}"
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


def output_error(path: str | os.PathLike, e: OSError) -> UserError:
    """The one line for an OSError while writing, fsyncing or renaming an output (a full disk,
    a quota, a read-only or vanished folder): names the output, never a traceback."""
    why = e.strerror or str(e) or type(e).__name__
    hint = "; free some space and run the command again" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return UserError(f"{'<stdout>' if str(path) == STDIO else path}: cannot write ({why}){hint}")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Around writes to ``path`` outside :func:`atomic_output` (resumable partial files, the
    step log): an OSError becomes :func:`output_error`."""
    try:
        yield
    except OSError as e:
        raise output_error(path, e) from None


def swap_in_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out`` by renames (same parent): an earlier ``out`` is
    moved aside first and removed only once the new one is in place; errors are one line."""
    import shutil

    with writing(out):
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "x")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)


class _Guarded:
    """A file object whose write/flush errors become :func:`output_error` (the data's producer
    runs between the writes, so its own OSErrors, e.g. reading an input, keep their meaning)."""

    def __init__(self, fh: IO, path: str | os.PathLike):
        self._fh, self._path = fh, path

    def write(self, data):
        with writing(self._path):
            return self._fh.write(data)

    def flush(self) -> None:
        with writing(self._path):
            self._fh.flush()

    def __getattr__(self, name: str):
        return getattr(self._fh, name)


def output_mode(target: str | os.PathLike, folder: bool = False) -> int:
    """The permission bits a plain ``open(target, "w")`` (``mkdir`` for a ``folder``) would
    leave: an existing one keeps its own, a new one gets 0o666 (0o777) minus the umask
    (``mkstemp`` / ``mkdtemp`` alone would give 0o600 / 0o700)."""
    import stat

    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return (0o777 if folder else 0o666) & ~mask


def _silence_stdout() -> None:
    """After a failed write to stdout (full disk, closed pipe): point it at /dev/null so the
    interpreter's final flush does not print a second error."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``path`` for writing through a temporary sibling renamed on success.

    ``-`` writes to stdout. On any exception the temporary file is removed and ``path`` is
    untouched. The file gets the permissions ``open()`` would give (:func:`output_mode`); a
    failure to write, fsync or rename (a full disk) is one :class:`UserError` line.
    """
    if str(path) == STDIO:
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        try:
            yield _Guarded(stream, path)
            with writing(path):
                stream.flush()
        except UserError:
            _silence_stdout()
            raise
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target}: is a folder, expected an output file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise output_error(target, e) from None
    kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    fh = os.fdopen(fd, mode, **kwargs)
    try:
        yield _Guarded(fh, target)
        with writing(target):
            fh.flush()
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), output_mode(target))
            fh.close()
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # closing flushes again what could not be written
            fh.close()
        with contextlib.suppress(OSError):
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


def _inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    p, d = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return d == p or d in p.parents


PathsByFlag = Mapping[str, "str | os.PathLike | None"] | Iterable[tuple[str, "str | os.PathLike | None"]]


def _given(paths: PathsByFlag) -> list[tuple[str, Any]]:
    pairs = paths.items() if isinstance(paths, Mapping) else paths
    return [(flag, p) for flag, p in pairs if p is not None and str(p) != STDIO]


def check_outputs(outputs: PathsByFlag, inputs: PathsByFlag = (), *, folders: PathsByFlag = ()) -> None:
    """The one output-≠-input rule of every command that writes: refuse, before any work, an
    output path that is an existing folder, one of the command's own inputs (also through a
    symlink or a hard link), or the same file as another output; and an input inside one of
    ``folders`` (output folders the command replaces whole, e.g. kfold's ``-o``).

    ``outputs`` / ``inputs`` / ``folders`` map a flag (``-o``, ``--data``) to its path, as a
    mapping or as pairs (several paths under one name); None and ``-`` are skipped. Raises a
    one-line :class:`UserError` naming both flags.
    """
    # an input that is not there cannot be overwritten (and a map's built-in name is no path)
    outs, ins = _given(outputs), [(f, p) for f, p in _given(inputs) if Path(p).expanduser().exists()]
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
    for flag, folder in _given(folders):
        for other_flag, other in ins:
            if _inside(other, folder):
                raise UserError(f"{other_flag} {other} is inside {flag} {folder}, which is replaced: "
                                "write the output somewhere else")


def check_distinct_inputs(inputs: PathsByFlag) -> None:
    """Refuse the same input file given twice (also through a symlink or a hard link): its
    records would count twice."""
    seen: list[tuple[str, Any]] = []
    for flag, path in _given(inputs):
        for other_flag, other in seen:
            if _same_path(path, other):
                also = f"{other_flag} {other}" if str(other) != str(path) else other_flag
                raise UserError(f"{flag} {path}: given twice (also as {also}); each file counts once")
        seen.append((flag, path))
