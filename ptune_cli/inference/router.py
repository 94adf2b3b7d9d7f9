"""Records of several tasks → one job → predictions in input order (``ptune predict`` and
``ptune serve``).

:class:`Router` holds what is fixed for a prompt table: the base model (loaded once), each
task's :class:`~ptune_cli.inference.job.Task` and its :class:`~ptune_cli.inference.setting.DecodeSetting`,
resolved once at load (and again when serve reloads the table). :meth:`Router.predict` encodes
each record with its task's setting and decodes them all in one job
(:func:`~ptune_cli.inference.job.decode`, records of different tasks in shared batches) — the
code ``ptune eval`` predicts with, so the same record gets the same prediction from eval,
predict and serve.

A record's task is its ``taskname``, else ``--task``, else the table's only task. Records need
the template's input fields as strings; the answer field is not needed (no gold labels).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ptune_cli.errors import UserError


@dataclass
class RoutedTask:
    """A task of the table with its decoding setting, resolved once (and again on reload)."""

    task: Any  # inference.job.Task
    setting: Any  # inference.setting.DecodeSetting

    @property
    def template(self):
        return self.task.template

    @property
    def one_line(self) -> bool:
        return self.setting.stop_at_newline


class RecordProblem(Exception):
    """A record that cannot be predicted: ``field`` names the offending field, ``message`` says
    ``field 'x': …``. Predict prefixes ``file:line``, serve answers 422 with the field's path."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def training_answers(task) -> list[str]:
    """The task's answers in the training file it was trained on (``hyperparameters.train``), if
    still there: what predict and serve know of the answers (eval knows the gold ones). A task
    kept from ``train --existing`` was trained in the run its ``from_existing`` names."""
    from pathlib import Path

    from ptune_cli.inference.job import run_answers
    from ptune_cli.io import loads_strict
    from ptune_cli.ptuning.table import PROMPT_META_FILE

    entry = (task.run_meta.get("tasks") or {}).get(task.template.taskname) or {}
    labels = entry.get("labels")
    if isinstance(labels, dict) and ("answers" in labels or "grammar" in labels):
        return list(labels.get("answers") or [])  # stored by ptune train (intent/slot: none listed)
    origin = Path(str(entry.get("from_existing") or "")) / PROMPT_META_FILE
    if entry.get("from_existing") and origin.is_file():
        with contextlib.suppress(OSError, ValueError):  # best effort: the origin run may be gone or changed
            meta = loads_strict(origin.read_text(encoding="utf-8"))
            if isinstance(meta, dict):
                task = dataclasses.replace(task, run_meta=meta)
    return run_answers(task)


def check_record(templates: dict, record: dict, default: str | None = None) -> str:
    """The record's task (``taskname``, else ``default``, else the only task) after checking its
    input fields are strings (io's text rule); else :class:`RecordProblem`."""
    from ptune_cli.io import text_field_problem

    name = record.get("taskname")
    if name is None:
        name = default
    if name is None:
        if len(templates) == 1:
            name = next(iter(templates))
        else:
            raise RecordProblem("taskname", f"field 'taskname': missing: the prompt table has several tasks ({', '.join(templates)})")
    if not isinstance(name, str):
        raise RecordProblem("taskname", f"field 'taskname': expected a string, got {type(name).__name__}")
    if name not in templates:
        raise RecordProblem("taskname", f"field 'taskname': unknown task '{name}' (known: {', '.join(templates) or 'none'})")
    for f in templates[name].input_fields:
        problem = text_field_problem(record, f)
        if problem:
            raise RecordProblem(f, problem)
    return name


class Router:
    """The table's tasks on one loaded model; :meth:`predict` answers records of any of them,
    in shared batches."""

    def __init__(self, cfg, table, loaded=None):
        from ptune_cli.inference.job import load_model, load_task, resolve_setting

        self.cfg, self.table = cfg, table
        self.tasks: dict[str, RoutedTask] = {}
        self.model_name = None
        for name in table.tasknames:
            task = load_task(cfg, table.template(name), table, False)
            self.model_name = task.model
            if loaded is None:
                loaded = load_model(cfg, task.model)
            answers = training_answers(task)
            one_line = cfg.stop_at_newline if cfg.stop_at_newline is not None else bool(answers) and not any(
                "\n" in a for a in answers)
            setting = resolve_setting(cfg, task, *loaded, answers, one_line)
            if setting.decode == "rank" and not setting.candidates:
                raise UserError(f"task '{name}': --decode rank needs --labels (the run's training file is not there)")
            self.tasks[name] = RoutedTask(task, setting)  # --decode auto resolved here, once per task
        self.loaded = loaded
        gathered = [m for m in ("rank", "structured") if any(rt.setting.decode == m for rt in self.tasks.values())]
        if gathered and loaded is not None:
            from ptune_cli.inference.decode import require_gathered_head

            require_gathered_head(*loaded, gathered[0])  # once per model, not per batch

    @property
    def tasknames(self) -> list[str]:
        return list(self.tasks)

    def check(self, record: dict, default: str | None = None) -> str:
        return check_record({n: rt.template for n, rt in self.tasks.items()}, record, default)

    def predict(self, items: list[tuple[str, dict]], todo: list[bool] | None = None,
                on_batch: Callable[[list[tuple[int, dict]]], None] | None = None,
                on_progress=None) -> dict[int, dict]:
        """``{index: {"prediction": …}}`` for ``items`` = ``[(taskname, record)]`` (checked by
        :meth:`check`) with ``todo[index]``; records of every task in one job, decoded with
        eval's code. A record too long for the model gets ``{"prediction": "", "skipped": True}``."""
        from ptune_cli.inference.job import decode, make_job

        todo = todo if todo is not None else [True] * len(items)
        idx = [i for i, want in enumerate(todo) if want]
        if not idx:
            return {}
        model, tok = self.loaded
        job = make_job(self.cfg, model, tok, [items[i][1] for i in idx],
                       [self.tasks[items[i][0]].setting for i in idx], head_checked=True)
        skipped = [idx[k] for k, e in enumerate(job.encodings) if e is None]

        def keep(batch):
            if on_batch is not None:
                on_batch([(idx[k], fields) for k, fields in batch])

        fields = decode(job, [e is not None for e in job.encodings], on_progress, keep)
        out = {idx[k]: f for k, f in fields.items()}
        for i in skipped:
            out[i] = {"prediction": "", "skipped": True}
        if skipped and on_batch is not None:
            on_batch([(i, out[i]) for i in skipped])
        return out
