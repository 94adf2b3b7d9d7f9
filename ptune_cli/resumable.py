"""Resumable JSONL output: what a killed ``ptune translate`` / ``ptune eval`` continues from.

Finished records are appended to ``OUTPUT.partial`` and fsynced before the command goes on;
``OUTPUT.partial.json`` beside it holds the run's *fingerprint*: the digests of the inputs'
contents plus ``options.output_settings(cfg)`` (the config fields declared with
``affects_output=True``; nothing else decides whether a run may resume). A rerun:

* with the same fingerprint keeps every complete record and continues after the last one;
  a torn last line (``kill -9`` mid-write: no newline, or not JSON) is cut off, always;
* with another fingerprint (other inputs or options) starts over.

When the run is done, :meth:`ResumableJSONL.finish` renames the partial file onto the output
(atomic: the output is either absent or whole) — or, where the output is not the records
themselves (``ptune eval`` writes metrics and records in input order),
:meth:`ResumableJSONL.discard` removes it once the outputs are written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptune_cli.io import STDIO, dumps, output_mode, writing

SUFFIX = ".partial"


def file_digest(path: str | os.PathLike | None) -> str | None:
    """sha256 of a file's bytes (None for no file, stdin or a missing path)."""
    if not path or str(path) == STDIO or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def records_digest(records: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of records as read (works for stdin, which cannot be read twice)."""
    h = hashlib.sha256()
    for r in records:
        h.update(dumps(r).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def fingerprint(settings: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """The run's identity: ``settings`` (``options.output_settings(cfg)``) and ``inputs``
    (name -> content digest, or any JSON value that must match, e.g. the process count)."""
    blob = json.dumps({"settings": settings, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def partial_path(output: str | os.PathLike, suffix: str = SUFFIX) -> Path:
    """``OUTPUT.partial`` (``suffix`` e.g. ``.shard0of2.partial`` for one process's share)."""
    out = Path(output)
    return out.with_name(out.name + suffix)


class ResumableJSONL:
    """An append-only JSONL file of finished records plus its fingerprint sidecar."""

    def __init__(self, path: str | os.PathLike, fingerprint: str, *, created_by: str = "ptune"):
        self.path = Path(path)
        self.meta = self.path.with_name(self.path.name + ".json")
        self.fingerprint = fingerprint
        self.created_by = created_by
        self.done = 0  # complete records in the file
        self._fh = None

    def open(self) -> list[dict]:
        """Open for appending; returns the records an earlier run with the same fingerprint
        finished (and cuts off a torn last line), else ``[]`` and starts the file afresh."""
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            records = recover_jsonl(self.path) if self._same_run() else None
            if records is None:
                records = []
                self.path.write_bytes(b"")
                tmp = self.meta.with_name(self.meta.name + ".tmp")
                tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "created_by": self.created_by}),
                               encoding="utf-8")
                os.replace(tmp, self.meta)
            self._fh = self.path.open("ab")
        self.done = len(records)
        return records

    def _same_run(self) -> bool:
        if not (self.meta.is_file() and self.path.is_file()):
            return False
        try:
            return json.loads(self.meta.read_text(encoding="utf-8")).get("fingerprint") == self.fingerprint
        except (OSError, ValueError, AttributeError):
            return False

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write finished records and make them durable before returning."""
        data = [(dumps(r) + "\n").encode("utf-8") for r in records]
        with writing(self.path):  # a full disk: one line; what was fsynced before stays
            self._fh.write(b"".join(data))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        self.done += len(data)

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):  # its data was fsynced by append, or is not kept
                fh.close()

    def finish(self, target: str | os.PathLike | None) -> None:
        """Rename onto ``target`` (None: keep the partial, e.g. a shard awaiting its merge)."""
        self.close()
        if target is not None:
            with writing(target):
                os.chmod(self.path, output_mode(target))  # as open(target, "w") would leave it
                os.replace(self.path, target)
            self.meta.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove the partial file and its fingerprint (nothing left to resume)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.meta.unlink(missing_ok=True)


def recover_jsonl(path: str | os.PathLike) -> list[dict]:
    """The complete JSON-object lines of an append-only JSONL file; a torn tail (``kill -9``
    mid-write: no newline, not JSON, not an object) is cut off the file, fsynced. The one rule
    for every file a killed run appends to (partial outputs, ``train``'s log.jsonl)."""
    records, good = [], 0
    path = Path(path)
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # torn write
            try:
                rec = json.loads(raw)
            except ValueError:
                break
            if not isinstance(rec, dict):
                break
            records.append(rec)
            good += len(raw)
    if good != path.stat().st_size:
        with writing(path), path.open("r+b") as fh:
            fh.truncate(good)
            os.fsync(fh.fileno())
    return records


def read_partial(path: str | os.PathLike) -> list[dict]:
    """The records of a finished partial / shard file."""
    with Path(path).open("rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@contextlib.contextmanager
def resumable_on_failure(partial: ResumableJSONL | None):
    """Around a job writing into ``partial``: if it fails (or is interrupted), close the file
    so a rerun resumes, or remove it when nothing was kept (no stray file to resume from)."""
    try:
        yield
    except BaseException:
        if partial is not None:
            partial.close()
            if partial.done == 0:
                partial.discard()
        raise


def keep_batches(partial: ResumableJSONL | None, delay_env: str):
    """``on_batch`` for decoding (eval, predict): each finished batch ``[(index, fields)]`` made
    durable in ``partial``. ``delay_env`` names a test hook: seconds to sleep after each batch,
    so a kill lands between batches."""
    if partial is None:
        return None
    import os
    import time

    delay = float(os.environ.get(delay_env, "0") or 0)

    def keep(items: list[tuple[int, dict]]) -> None:
        partial.append({"i": i, **fields} for i, fields in items)
        if delay:
            time.sleep(delay)

    return keep
