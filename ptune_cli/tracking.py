"""Experiment tracking for ``--report-to wandb|tensorboard`` (the optional extra ``track``).

One small :class:`Tracker` interface over Weights & Biases and TensorBoard: the resolved config,
scalars by step, tables and artifacts. The listeners live beside what they listen to:
``ptune train``'s events feed :class:`ptune_cli.training.tracking.TrainTracking` (loss, lr, val
loss and tokens/s per step, the options and the resolved run as config, with wandb the exported
prompt table as an artifact), and ``ptune eval`` logs its headline metrics and a predictions
table through :func:`ptune_cli.evaluate.tracking.log_eval`.

Where things go: wandb writes under ``$WANDB_DIR`` (else the run folder / the results folder),
project ``$WANDB_PROJECT`` (else ``ptune-cli``); ``WANDB_MODE=offline`` works as usual.
TensorBoard event files go to ``RUN_DIR/tensorboard`` (train) and
``RESULTS_DIR/tensorboard/RESULTS_STEM`` (eval). wandb and tensorboard are imported only when
asked for (wandb's import takes seconds).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from ptune_cli.errors import UserError

DEFAULT_PROJECT = "ptune-cli"
TABLE_TEXT_ROWS = 50  # TensorBoard has no tables: the first rows go in as a markdown text
_PACKAGE = {"wandb": "wandb", "tensorboard": "tensorboard"}


def check_available(kind: str) -> None:
    """Fail fast (before any model is loaded) when the tracker's package is missing."""
    if kind != "none" and importlib.util.find_spec(_PACKAGE[kind]) is None:
        raise UserError(f"--report-to {kind}: the {kind} package is not installed (pip install 'ptune-cli[track]')")


class Tracker:
    """What ptune logs; each backend implements what it can (the base ignores it)."""

    def log(self, values: dict[str, float], step: int | None = None) -> None: ...

    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None: ...

    def artifact(self, name: str, kind: str, files: list[Path]) -> None: ...

    def finish(self, ok: bool = True) -> None: ...


class WandbTracker(Tracker):
    def __init__(self, job_type: str, folder: Path, config: dict, run_id: str | None = None):
        import wandb

        folder = Path(os.environ.get("WANDB_DIR") or folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, job_type=job_type,
                              dir=str(folder), config=config, id=run_id, resume="allow" if run_id else None)

    def log(self, values, step=None):
        self.run.log(values, step=step)

    def table(self, name, columns, rows):
        self.run.log({name: self._wandb.Table(columns=columns, data=rows)})

    def artifact(self, name, kind, files):
        art = self._wandb.Artifact(name, type=kind)
        for f in files:
            art.add_file(str(f))
        self.run.log_artifact(art)

    def finish(self, ok=True):
        self.run.finish(exit_code=0 if ok else 1)


class TensorBoardTracker(Tracker):
    def __init__(self, folder: Path, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("config", "```json\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def log(self, values, step=None):
        for k, v in values.items():
            self.writer.add_scalar(k, v, global_step=step)

    def table(self, name, columns, rows):
        def cell(x) -> str:
            return str(x).replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows[:TABLE_TEXT_ROWS]]
        self.writer.add_text(name, "\n".join(lines))

    def finish(self, ok=True):
        self.writer.close()


def open_tracker(kind: str, job_type: str, folder: Path, config: dict, run_id: str | None = None) -> Tracker:
    """A started tracker of ``kind`` (``wandb`` / ``tensorboard``; ``none`` logs nothing)."""
    check_available(kind)
    if kind == "wandb":
        return WandbTracker(job_type, folder, config, run_id)
    if kind == "tensorboard":
        return TensorBoardTracker(folder, config)
    return Tracker()
