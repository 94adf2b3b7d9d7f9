"""Records of several tasks → one job per task → predictions in input order (``ptune predict``
and ``ptune serve``).

:class:`Router` holds what is fixed for a prompt table: the base model (loaded once), each
task's :class:`~ptune_cli.inference.job.Task` and its resolved decoding settings. Its
:meth:`Router.predict` groups records by task and runs :func:`~ptune_cli.inference.job.build_job`
(with the loaded model) and :func:`~ptune_cli.inference.job.decode` — the code ``ptune eval``
predicts with, so the same record gets the same prediction from eval, predict and serve.

A record's task is its ``taskname``, else ``--task``, else the table's only task. Records need
the template's input fields as strings; the answer field is not needed (no gold labels).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ptune_cli.errors import UserError


@dataclass
class RoutedTask:
    """A task of the table with the settings its jobs are built with."""

    task: Any  # inference.job.Task
    cfg: Any  # the command's config with max_new_tokens / labels resolved for this task
    one_line: bool

    @property
    def template(self):
        return self.task.template


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

    from ptune_cli.inference.job import candidates
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
    return candidates(SimpleNamespace(labels=None, mode="run", train=None), task, [])


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
    """The table's tasks on one loaded model; :meth:`predict` answers records of any of them."""

    def __init__(self, cfg, table, loaded=None):
        from ptune_cli.inference.job import build_job, load_model, load_task

        self.cfg, self.table = cfg, table
        self.tasks: dict[str, RoutedTask] = {}
        for name in table.tasknames:
            tpl = table.template(name)
            probe = load_task(cfg, tpl, table, False)
            if loaded is None:
                loaded = load_model(cfg, probe.model)
            answers = training_answers(probe)
            one_line = cfg.stop_at_newline if cfg.stop_at_newline is not None else bool(answers) and not any(
                "\n" in a for a in answers)
            task = load_task(cfg, tpl, table, one_line)
            # an empty job resolves the defaults once (max new tokens, rank candidates) rather
            # than re-reading the training file for every batch
            probe_job = build_job(cfg, task, [], answers, one_line, loaded=loaded)
            if cfg.decode == "rank" and not probe_job.candidates:
                raise UserError(f"task '{name}': --decode rank needs --labels (the run's training file is not there)")
            resolved = dataclasses.replace(cfg, max_new_tokens=probe_job.max_new_tokens, labels=probe_job.candidates,
                                           decode=probe_job.decode)  # auto resolved once per task
            self.tasks[name] = RoutedTask(task, resolved, one_line)
        self.loaded = loaded
        self.model_name = probe.model if table.tasknames else None

    @property
    def tasknames(self) -> list[str]:
        return list(self.tasks)

    def check(self, record: dict, default: str | None = None) -> str:
        return check_record({n: rt.template for n, rt in self.tasks.items()}, record, default)

    def predict(self, items: list[tuple[str, dict]], todo: list[bool] | None = None,
                on_batch: Callable[[list[tuple[int, dict]]], None] | None = None,
                on_progress=None) -> dict[int, dict]:
        """``{index: {"prediction": …}}`` for ``items`` = ``[(taskname, record)]`` (checked by
        :meth:`check`) with ``todo[index]``; one job per task, decoded with eval's code.
        A record too long for the model gets ``{"prediction": "", "skipped": True}``."""
        from ptune_cli.inference.job import build_job, decode

        todo = todo if todo is not None else [True] * len(items)
        out: dict[int, dict] = {}
        for name in dict.fromkeys(n for (n, _), want in zip(items, todo, strict=True) if want):
            rt = self.tasks[name]
            idx = [i for i, (n, _) in enumerate(items) if n == name and todo[i]]
            job = build_job(rt.cfg, rt.task, [items[i][1] for i in idx], [], rt.one_line, loaded=self.loaded)
            skipped = [idx[k] for k, e in enumerate(job.encodings) if e is None]

            def keep(batch, idx=idx):
                if on_batch is not None:
                    on_batch([(idx[k], fields) for k, fields in batch])

            fields = decode(job, [e is not None for e in job.encodings], on_progress, keep)
            out.update({idx[k]: f for k, f in fields.items()})
            for i in skipped:
                out[i] = {"prediction": "", "skipped": True}
            if skipped:
                keep([(idx.index(i), out[i]) for i in skipped])
        return out
