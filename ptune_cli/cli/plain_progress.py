"""Progress for logs: when stderr is not a terminal (``train > log``, make, CI), a plain line
every ``PTUNE_PROGRESS_SECONDS`` seconds (default 30) and one at the end, instead of rich's bar
(which draws nothing there) — so a 14-minute training run is never silent between its start
summary and ``done:``.

:class:`PlainProgress` takes the calls the commands make on a rich ``Progress`` (``add_task``,
``update``, ``advance``, ``start``, ``stop``, ``with``), so a command never asks which it holds.
"""

from __future__ import annotations

import os
import sys
import time

SECONDS_ENV = "PTUNE_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600} h {s // 60 % 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


class _Task:
    def __init__(self, description: str, total: float | None, completed: float):
        self.description, self.total, self.completed = description, total, completed
        self.start = time.monotonic()
        self.start_completed = completed  # resumed work does not count for the rate


class PlainProgress:
    """A line ``train loss 0.4321: 120/600 (20%), 3 min 10 s, ~12 min 40 s left`` on stderr at
    most every ``every`` seconds while work advances, and the last state when it stops."""

    def __init__(self, every: float | None = None, stream=None):
        if every is None:
            try:
                every = float(os.environ.get(SECONDS_ENV, DEFAULT_SECONDS))
            except ValueError:
                every = DEFAULT_SECONDS
        self.every, self.stream = every, stream or sys.stderr
        self.tasks: list[_Task] = []
        self._last = time.monotonic()
        self._dirty = False

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        self.tasks.append(_Task(description, total, completed))
        return len(self.tasks) - 1

    def update(self, task_id: int, *, total=None, completed=None, advance=None, description=None, **_) -> None:
        t = self.tasks[task_id]
        if total is not None:
            t.total = total
        if description is not None:
            t.description = description
        if completed is not None:
            t.completed = completed
            self._dirty = True
        if advance:
            t.completed += advance
            self._dirty = True
        if self._dirty and time.monotonic() - self._last >= self.every:
            self._print()

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self, t: _Task) -> str:
        elapsed = time.monotonic() - t.start
        done = f"{t.completed:g}"
        if t.total:
            done += f"/{t.total:g} ({100 * t.completed / t.total:.0f}%)"
        out = f"{t.description}: {done}, {_duration(elapsed)}"
        rate = (t.completed - t.start_completed) / elapsed if elapsed > 0 else 0
        if t.total and rate > 0 and t.completed < t.total:
            out += f", ~{_duration((t.total - t.completed) / rate)} left"
        return out

    def _print(self) -> None:
        for t in self.tasks:
            print(self.line(t), file=self.stream, flush=True)
        self._last, self._dirty = time.monotonic(), False

    def start(self) -> None:
        self._last = time.monotonic()

    def stop(self, failed: bool = False) -> None:
        """The last state, unless the command failed (its error is then the one line)."""
        if self._dirty and not failed:
            self._print()
        self._dirty = False

    def __enter__(self) -> PlainProgress:
        self.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.stop(failed=exc_type is not None)
