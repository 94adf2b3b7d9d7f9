"""Kill a running ptune command with SIGKILL mid-output (resume tests of translate and eval)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kill_after_lines(args: list[str], partial: Path, lines: int, env: dict, timeout: float = 120) -> None:
    """Run ``python -m ptune_cli ARGS`` with ``env`` added, SIGKILL it once ``partial`` holds
    ``lines`` lines; fails if the command ended before that."""
    proc = subprocess.Popen([sys.executable, "-m", "ptune_cli", *args], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and partial.read_bytes().count(b"\n") >= lines:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
