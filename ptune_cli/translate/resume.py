"""Incremental, crash-safe output: a ``.partial`` file that a rerun continues.

Records are appended to ``OUTPUT.partial`` in input order and fsynced after every chunk; a
sidecar ``OUTPUT.partial.json`` holds the run's fingerprint (input content + options). A rerun
with the same fingerprint drops a torn last line (``kill -9`` mid-write), keeps the complete
records and continues after them; a different fingerprint starts over. When every record is
written the partial file is renamed onto OUTPUT (atomic), so OUTPUT is either absent or whole.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from ptune_cli.io import dumps


def flag_kind(flag: str) -> str:
    """``"label:slot_projection:date"`` -> ``"slot_projection"``."""
    parts = flag.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


class PartialOutput:
    """An append-only JSONL file of finished records plus its fingerprint sidecar."""

    def __init__(self, path: Path, fingerprint: str, flags_field: str):
        self.path = Path(path)
        self.meta = self.path.with_name(self.path.name + ".json")
        self.fingerprint = fingerprint
        self.flags_field = flags_field
        self.done = 0
        self.flag_counts: Counter = Counter()
        self.flagged_records = 0
        self._fh = None

    def open(self) -> int:
        """Open for appending; returns how many records a previous run already finished."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        same = False
        if self.meta.is_file() and self.path.is_file():
            try:
                same = json.loads(self.meta.read_text(encoding="utf-8")).get("fingerprint") == self.fingerprint
            except (OSError, ValueError):
                same = False
        if same:
            self._recover()
        else:
            self.path.write_bytes(b"")
            tmp = self.meta.with_name(self.meta.name + ".tmp")
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint}), encoding="utf-8")
            os.replace(tmp, self.meta)
        self._fh = self.path.open("ab")
        return self.done

    def _recover(self) -> None:
        """Count complete records; cut the file after the last good line."""
        good = 0
        with self.path.open("rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn write
                try:
                    rec = json.loads(raw)
                except ValueError:
                    break
                self._count(rec)
                self.done += 1
                good += len(raw)
        with self.path.open("r+b") as fh:
            fh.truncate(good)
            os.fsync(fh.fileno())

    def _count(self, rec: dict) -> None:
        flags = rec.get(self.flags_field) or []
        if flags:
            self.flagged_records += 1
        self.flag_counts.update(flag_kind(f) for f in flags)

    def append(self, records: list[dict]) -> None:
        """Write finished records and make them durable before returning."""
        data = b"".join((dumps(r) + "\n").encode("utf-8") for r in records)
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        for r in records:
            self._count(r)
        self.done += len(records)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def finish(self, target: Path | None) -> None:
        """Rename onto ``target`` (None: keep the partial, e.g. a shard awaiting its merge)."""
        self.close()
        if target is not None:
            os.replace(self.path, target)
            self.meta.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def read_partial(path: Path) -> list[dict]:
    """The records of a finished partial/shard file."""
    with Path(path).open("rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]
