"""Experiment tracking for ``--report-to wandb|tensorboard`` (the optional extra ``track``).

One small :class:`Tracker` interface over Weights & Biases and TensorBoard: the resolved config,
scalars by step, tables and artifacts. ``ptune train`` feeds it from its events
(:class:`TrainTracking` wraps ``run_train``'s ``on_event``): loss, lr, val loss and tokens/s per
step, the options and the resolved run (``Started``) as config, and with wandb the exported
prompt table as an artifact at ``Finished``. ``ptune eval`` logs its headline metrics and a
predictions table (the input fields, gold and prediction; :func:`log_eval`).

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


# ---------------------------------------------------------------------------------------------
# ptune train: a listener on run_train's events

WANDB_ID_FILE = "wandb_run_id.txt"  # --resume continues the same W&B run


class TrainTracking:
    """``on_event`` for :func:`~ptune_cli.training.recipe.run_train` that also logs to the
    tracker of ``cfg.report_to``; a context manager that closes the tracker (failed on error)."""

    def __init__(self, cfg, on_event=None):
        check_available(cfg.report_to)
        self.cfg, self.on_event, self.tracker = cfg, on_event, None

    def __call__(self, event) -> None:
        from ptune_cli.training.events import Evaluated, Finished, Started, Step

        if isinstance(event, Started):
            self.tracker = self._open(event)
        elif isinstance(event, Step) and self.tracker:
            self.tracker.log(_step_values(event.to_dict()), step=event.step)
        elif isinstance(event, Evaluated) and self.tracker:
            self.tracker.log({"val/best_loss": event.best_val_loss}, step=event.step)
        elif isinstance(event, Finished) and self.tracker:
            from ptune_cli.ptuning.table import PROMPT_META_FILE, PROMPT_TABLE_FILE

            run = Path(event.result.run_dir)
            self.tracker.artifact(f"prompt-table-{run.name}", "prompt-table",
                                  [run / PROMPT_TABLE_FILE, run / PROMPT_META_FILE])
            self.tracker.finish()
            self.tracker = None
        if self.on_event is not None:
            self.on_event(event)

    def _open(self, started) -> Tracker:
        run = Path(self.cfg.output)
        config = {"options": {k: v for k, v in self.cfg.to_dict().items() if v is not None},
                  "resolved": started.to_dict()}
        if self.cfg.report_to != "wandb":
            return open_tracker(self.cfg.report_to, "train", run / "tensorboard", config)
        id_file = run / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if self.cfg.resume and id_file.is_file() else None
        tracker = open_tracker("wandb", "train", run, config, run_id)
        from ptune_cli.io import writing

        with writing(id_file):
            id_file.write_text(tracker.run.id + "\n", encoding="utf-8")
        if run_id and started.resumed_from:
            _replay_steps(tracker, run, started.resumed_from)
        return tracker

    def __enter__(self) -> TrainTracking:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.tracker is not None:  # not finished: the run failed
            self.tracker.finish(ok=False)
            self.tracker = None


def _step_values(step: dict) -> dict:
    """A step (a log.jsonl line, ``Step.to_dict()``) as the tracker's scalars."""
    values = {"train/loss": step["loss"], "train/lr": step["lr"], "train/tokens_per_s": step["tokens_per_s"],
              "train/epoch": step["epoch"]}
    if step.get("val_loss") is not None:
        values["val/loss"] = step["val_loss"]
    return values


def _replay_steps(tracker: WandbTracker, run: Path, upto: int) -> None:
    """--resume: W&B buffers, so a kill -9 loses the killed process's last history (offline,
    all of it); log again what log.jsonl holds past the W&B run's own last step, up to the
    checkpoint resumed from (the steps after it are trained and logged again), so the curve
    has no hole. Steps W&B already has are not sent twice."""
    log = run / "log.jsonl"  # training.rundir.LOG_FILE (not imported: torch-free module)
    last = max(int(getattr(tracker.run, "step", 0) or 0) - 1, 0)  # wandb's step is the next one
    if not log.is_file():
        return
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line)
        except ValueError:
            break  # a torn last line
        if isinstance(step, dict) and isinstance(step.get("step"), int) and last < step["step"] <= upto:
            tracker.log(_step_values(step), step=step["step"])


# ---------------------------------------------------------------------------------------------
# ptune eval

def log_eval(kind: str, output: str | None, results: dict, records: list[dict], columns: list[str]) -> None:
    """Headline metrics (as summary values) and a predictions table of ``columns``."""
    from ptune_cli.evaluate.metrics import headline

    out = Path(output) if output and output != "-" else Path.cwd() / "eval.json"
    meta = results.get("meta") or {}
    config = {k: v for k, v in meta.items() if v is not None and not isinstance(v, list)}
    tracker = open_tracker(kind, "eval", out.parent if kind == "wandb" else out.parent / "tensorboard" / out.stem,
                           config)
    try:
        tracker.log({f"eval/{k}": v for k, v in headline(results).items()} | {"eval/n": results["n"]}, step=0)
        rows = [[_cell(r.get(c)) for c in columns] for r in records]
        tracker.table("predictions", columns, rows)
    except BaseException:
        tracker.finish(ok=False)
        raise
    tracker.finish()


def _cell(value) -> Any:
    """Table cells: strings and numbers as they are, anything else (lists of answers) as JSON."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, ensure_ascii=False)
