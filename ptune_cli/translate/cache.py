"""A persistent translation cache (stdlib sqlite3): each source string is translated once.

Keys are ``sha256(namespace, text)`` where the namespace is the model's fingerprint plus every
option that changes the output (engine, languages, beams, length limits, precision), so a cache
file can be shared by many models and runs. Entries are committed after every batch, which is
what lets a run killed with ``kill -9`` skip the strings it already translated. Several
processes (``accelerate launch``) may share one file: sqlite serialises the writers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.translate.quality import Translation


def namespace(model_fingerprint: str, options: dict) -> str:
    """The cache namespace of a model and its output-changing options."""
    blob = json.dumps({"model": model_fingerprint, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class TranslationCache:
    """``get_many`` / ``put_many`` over one namespace; ``path=None`` keeps it in memory only."""

    def __init__(self, path: str | Path | None, ns: str):
        self.ns = ns
        self.path = path
        target = ":memory:"
        if path is not None:
            p = Path(path)
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"--cache: cannot create folder {p.parent} ({e.strerror})") from None
            target = str(p)
        try:
            self.db = sqlite3.connect(target, timeout=120)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS translations (key TEXT PRIMARY KEY, text TEXT NOT NULL, flags TEXT NOT NULL)"
            )
            self.db.commit()
        except sqlite3.DatabaseError as e:
            raise UserError(f"--cache: {path} is not a usable sqlite cache ({e}; delete it or pick another path)") from None

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.ns}\0{text}".encode()).hexdigest()

    def get_many(self, texts: Sequence[str]) -> dict[str, Translation]:
        """The cached translations among ``texts`` (source text -> Translation)."""
        found: dict[str, Translation] = {}
        keys = {self._key(t): t for t in texts}
        items = list(keys)
        for start in range(0, len(items), 500):  # sqlite's bound-parameter limit
            chunk = items[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT key, text, flags FROM translations WHERE key IN ({marks})", chunk)
            for key, text, flags in rows:
                found[keys[key]] = Translation(text, tuple(json.loads(flags)))
        return found

    def put_many(self, pairs: Iterable[tuple[str, Translation]]) -> None:
        """Store and commit translations (so they survive a crash right after)."""
        rows = [(self._key(src), tr.text, json.dumps(list(tr.flags))) for src, tr in pairs]
        try:
            self.db.executemany("INSERT OR REPLACE INTO translations VALUES (?, ?, ?)", rows)
            self.db.commit()
        except sqlite3.OperationalError as e:  # "database or disk is full", a read-only file
            raise UserError(f"--cache {self.path}: cannot write ({e}); free some space, or run with --no-cache; "
                            "the translated records already written are kept") from None

    def close(self) -> None:
        self.db.close()
