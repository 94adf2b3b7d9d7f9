"""A full disk (or a file-size limit, or a full stdout) while writing, fsyncing or renaming is
one line and exit 1 from every writer, never a traceback; nothing already there is lost.

The CLI cases run ``ptune`` in a subprocess under a real file-size limit (``RLIMIT_FSIZE``:
the kernel refuses the write with EFBIG, as a full disk refuses it with ENOSPC) or with stdout
on ``/dev/full`` (ENOSPC); the resumable writer is driven in-process.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ptune_cli.errors import UserError
from ptune_cli.resumable import ResumableJSONL, recover_jsonl

REPO = Path(__file__).resolve().parents[1]
LIMIT = 4096  # bytes a process may write into one file


def _limited():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _ptune(args: list[str], cwd: Path, stdout=subprocess.PIPE, limit: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptune_cli", *args], cwd=cwd, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, preexec_fn=_limited if limit else None, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def phrasebank(tmp_path) -> Path:
    src = tmp_path / "Sentences.txt"
    src.write_text("".join(f"Sentence number {i} about the company's results.@positive\n" for i in range(400)))
    return src


def _one_error_line(p: subprocess.CompletedProcess, output: str) -> None:
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert lines[0].startswith(f"error: {output}: cannot write ("), lines[0]


def test_prepare_and_normalize_into_a_file_over_the_limit(tmp_path, phrasebank):
    out = tmp_path / "fpb.jsonl"
    out.write_text('{"old": "kept"}\n')
    p = _ptune(["prepare", str(phrasebank), "-o", str(out)], tmp_path)
    _one_error_line(p, str(out))
    assert out.read_text() == '{"old": "kept"}\n'  # the old output is untouched
    assert sorted(x.name for x in tmp_path.iterdir()) == ["Sentences.txt", "fpb.jsonl"]  # no temp file left
    full = tmp_path / "full.jsonl"
    assert _ptune(["prepare", str(phrasebank), "-o", str(full)], tmp_path, limit=False).returncode == 0
    norm = tmp_path / "norm.jsonl"
    p = _ptune(["normalize-labels", str(full), "-o", str(norm), "--map", "en-sentiment"], tmp_path)
    _one_error_line(p, str(norm))
    assert not norm.exists()


def test_kfold_over_the_limit_keeps_no_half_folder(tmp_path, phrasebank):
    full = tmp_path / "full.jsonl"
    assert _ptune(["prepare", str(phrasebank), "-o", str(full)], tmp_path, limit=False).returncode == 0
    p = _ptune(["kfold", str(full), "-o", str(tmp_path / "folds"), "--k", "2"], tmp_path)
    assert p.returncode == 1 and "cannot write (File too large)" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["Sentences.txt", "full.jsonl"]


def test_stdout_on_a_full_device(tmp_path, phrasebank):
    with open("/dev/full", "w") as full:
        p = _ptune(["prepare", str(phrasebank)], tmp_path, stdout=full, limit=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip() == "error: <stdout>: cannot write (No space left on device); free some space and run the command again"


def test_resumable_writer_on_a_full_disk_keeps_what_was_fsynced(tmp_path, monkeypatch):
    part = ResumableJSONL(tmp_path / "out.jsonl.partial", "fp")
    part.open()
    part.append([{"i": 0}, {"i": 1}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"out.jsonl.partial: cannot write \(No space left on device\)"):
        part.append([{"i": 2}])
    monkeypatch.undo()
    part.close()
    again = ResumableJSONL(tmp_path / "out.jsonl.partial", "fp")
    assert [r["i"] for r in again.open()][:2] == [0, 1]  # a rerun resumes from what was kept
    again.close()


def test_step_log_torn_last_line_is_cut(tmp_path):
    """Defect 12: log.jsonl cut mid-line by kill -9 is cut back, as every resumable file is."""
    from ptune_cli.training.config import TrainConfig
    from ptune_cli.training.rundir import LOG_FILE, StepLog

    log = tmp_path / LOG_FILE
    log.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + json.dumps({"step": 2, "loss": 1.5}) + "\n"
                   + '{"step": 3, "lo')
    StepLog(TrainConfig(train="t.jsonl", template="x.json", output=str(tmp_path)), resumed_step=2)
    assert [r["step"] for r in recover_jsonl(log)] == [1, 2]
    assert log.read_text().endswith("\n")


def test_translation_cache_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    """sqlite says "database or disk is full" with its own exception type, not OSError."""
    import sqlite3

    from ptune_cli.translate.cache import TranslationCache
    from ptune_cli.translate.quality import Translation

    cache = TranslationCache(tmp_path / "c.sqlite", "ns")

    class Full:
        def executemany(self, *a):
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(cache, "db", Full())
    with pytest.raises(UserError, match=r"--cache .*c.sqlite: cannot write \(database or disk is full\)"):
        cache.put_many([("a", Translation("b", ()))])


def test_resumable_finish_gives_the_output_open_s_permissions(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        for existing, want in ((None, 0o644), (0o640, 0o640)):
            target = tmp_path / f"out{want:o}.jsonl"
            if existing is not None:
                target.write_text("old\n")
                target.chmod(existing)
            part = ResumableJSONL(tmp_path / f"p{want:o}.partial", "fp")
            part.open()
            part.append([{"i": 0}])
            part.finish(target)
            assert stat.S_IMODE(target.stat().st_mode) == want
    finally:
        os.umask(old)
