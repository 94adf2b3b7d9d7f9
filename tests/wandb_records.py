"""Read back what an offline W&B run wrote (tests only).

wandb ≥ 0.2x writes ``offline-run-*/run-ID.wandb`` from its Go core and no longer ships the
Python ``DataStore`` reader. The file is a LevelDB-style log (a 7-byte ``:W&B`` header, then
32 KiB blocks of records framed as crc32c(4) length(2) type(1), FULL=1 FIRST=2 MIDDLE=3 LAST=4)
whose payloads are ``wandb.proto.wandb_internal_pb2.Record`` messages: we undo the framing and
let wandb's own protobuf classes parse the records.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_BLOCK, _HEADER = 32768, 7


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a .wandb file"
    pos, buf, out = _HEADER, b"", []
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and n == 0:
            pos += left
            continue
        if pos + _HEADER + n > len(data):  # still being written
            break
        buf += data[pos + _HEADER : pos + _HEADER + n]
        pos += _HEADER + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def run_summary(folder: Path, timeout: float = 20.0) -> dict:
    """One offline run folder → its config, history rows, summary, artifacts and exit code.

    ``run.finish()`` can return before wandb's core process has written the whole file, so
    this waits (up to ``timeout`` s) for the run's exit record."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        out = _summary(folder)
        if out["exit_code"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _summary(folder: Path) -> dict:
    (path,) = Path(folder).glob("run-*.wandb")
    out: dict = {"config": {}, "history": [], "summary": {}, "artifacts": [], "exit_code": None, "job_type": None}
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["job_type"] = rec.run.job_type
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "history":
            out["history"].append({(i.key or ".".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            out["summary"].update({(u.key or ".".join(u.nested_key)): json.loads(u.value_json) for u in rec.summary.update})
        elif kind == "artifact":
            out["artifacts"].append({"type": rec.artifact.type, "name": rec.artifact.name,
                                     "files": [e.path for e in rec.artifact.manifest.contents]})
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out
