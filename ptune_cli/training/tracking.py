"""``ptune train --report-to``: a listener on :func:`~ptune_cli.training.recipe.run_train`'s
events (:mod:`.events`) that logs them to a tracker (:mod:`ptune_cli.tracking`)."""

from __future__ import annotations

import json
from pathlib import Path

from ptune_cli.tracking import Tracker, WandbTracker, check_available, open_tracker
from ptune_cli.training.events import Evaluated, Finished, Started, Step

WANDB_ID_FILE = "wandb_run_id.txt"  # --resume continues the same W&B run


class TrainTracking:
    """``on_event`` for :func:`~ptune_cli.training.recipe.run_train` that also logs to the
    tracker of ``cfg.report_to``; a context manager that closes the tracker (failed on error)."""

    def __init__(self, cfg, on_event=None):
        check_available(cfg.report_to)
        self.cfg, self.on_event, self.tracker = cfg, on_event, None

    def __call__(self, event) -> None:
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
