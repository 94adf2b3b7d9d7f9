"""Resume a killed ``ptune eval``: finished predictions are appended, batch by batch, to a sidecar
``<output>.partial`` file; a rerun with the same inputs and options skips them.

The sidecar starts with a key (hash of the test file, the prompt table / template files and the
prediction options); a different key means other inputs, so the sidecar is started afresh.
A torn last line (kill -9 mid-write) is ignored. The sidecar is removed once the outputs exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from ptune_cli.io import STDIO

_KEY_FIELDS = ("run", "task", "decode", "model", "max_new_tokens", "labels", "stop_at_newline",
               "baseline", "shots", "train", "template", "seed", "device", "precision")


def _file_digest(path: str | None) -> str | None:
    if not path or path == STDIO or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_key(cfg) -> str:
    """Hash of everything that changes predictions (inputs' contents and options)."""
    from ptune_cli.ptuning.table import PROMPT_META_FILE, PROMPT_TABLE_FILE

    parts = {f: getattr(cfg, f) for f in _KEY_FIELDS}
    parts["data"] = _file_digest(cfg.data)
    if cfg.run:
        parts["table"] = [_file_digest(str(Path(cfg.run) / f)) for f in (PROMPT_TABLE_FILE, PROMPT_META_FILE)]
    parts["template_file"] = _file_digest(cfg.template)
    parts["train_file"] = _file_digest(cfg.train)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class PartialPredictions:
    """Append-only store of ``{index: fields}`` for one eval configuration."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key

    @classmethod
    def for_config(cls, cfg) -> PartialPredictions | None:
        """The sidecar next to ``--predictions-out`` (else ``-o``); None when both go to stdout
        or neither is given (nothing to resume into)."""
        target = next((t for t in (cfg.predictions_out, cfg.output) if t and t != STDIO), None)
        if target is None or cfg.data == STDIO:
            return None
        return cls(Path(f"{target}.partial"), config_key(cfg))

    def load(self) -> dict[int, dict]:
        """Finished predictions of an earlier run with the same key ({} otherwise, and the
        sidecar is restarted)."""
        done: dict[int, dict] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
            try:
                header = json.loads(lines[0])
            except ValueError:
                header = {}
            if header.get("key") == self.key:
                if lines[-1]:  # torn last line: end it so appended records start on their own line
                    with open(self.path, "a", encoding="utf-8") as fh:
                        fh.write("\n")
                for line in lines[1:]:
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue  # torn last line
                    done[int(item.pop("i"))] = item
                return done
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": self.key, "created_by": "ptune eval"}) + "\n")
        return done

    def append(self, items: list[tuple[int, dict]]) -> None:
        """Add finished predictions and make them durable before returning."""
        with open(self.path, "a", encoding="utf-8") as fh:
            for i, fields in items:
                fh.write(json.dumps({"i": i, **fields}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
