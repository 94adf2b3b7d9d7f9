"""What ``ptune serve`` holds while it runs: the loaded model, the routed prompt table (each
task's decoding setting resolved once, and again on reload), the batcher and the metrics. The
table can be swapped (:meth:`ServeState.reload`) while the model stays. Records of every task
share the worker's batches: one batch size, ``--max-batch-size``."""

from __future__ import annotations

import dataclasses

from ptune_cli.errors import UserError
from ptune_cli.inference.router import RecordProblem, Router
from ptune_cli.serve.batcher import Batcher
from ptune_cli.serve.config import ServeConfig


class ServeState:
    def __init__(self, cfg: ServeConfig):
        from ptune_cli.ptuning.table import load_prompt_table
        from ptune_cli.serve.metrics import ServeMetrics

        cfg = dataclasses.replace(cfg, batch_size=cfg.max_batch_size)  # one batch size: the worker's
        self.cfg = cfg
        self.router = Router(cfg, load_prompt_table(cfg.run))
        if cfg.task is not None and cfg.task not in self.router.tasks:
            raise UserError(f"--task {cfg.task}: not in the prompt table (known tasks: {', '.join(self.router.tasks)})")
        self.batcher = Batcher(self.run_batch, cfg.max_batch_size, cfg.max_wait_ms / 1000)
        self.metrics = ServeMetrics(self.batcher.depth)
        self.batcher.on_batch = self.metrics.batch.observe
        self.batcher.on_failure = self.metrics.record_failures.inc
        self.reloads = 0

    def templates(self) -> dict:
        return {n: rt.template for n, rt in self.router.tasks.items()}

    def check(self, record: dict) -> str:
        return self.router.check(record, self.cfg.task)

    def run_batch(self, items: list[tuple[str, dict]]) -> list:
        """On the worker: predictions (or a RecordProblem) per item, in order."""
        router = self.router
        known = [name in router.tasks for name, _ in items]  # a reload may have removed a task
        fields = router.predict(items, known)
        out = []
        for (name, rec), ok, i in zip(items, known, range(len(items)), strict=True):
            if not ok:
                out.append(RecordProblem("taskname", f"field 'taskname': task '{name}' left the table (reloaded)"))
            elif fields[i].get("skipped"):
                out.append(_too_long(router.tasks[name].template, rec))
            else:
                out.append(fields[i])
        return out

    def reload(self) -> dict:
        """On the worker: re-read ``--run``'s table; the model and the tasks' prompts that did
        not change answer exactly as before. Refused (old table kept) when the new table needs
        another base model."""
        from ptune_cli.ptuning.table import load_prompt_table

        table = load_prompt_table(self.cfg.run)
        new = Router(self.cfg, table, loaded=self.router.loaded)
        if new.model_name != self.router.model_name:
            raise UserError(f"{self.cfg.run}: the table now needs base model {new.model_name}, the server has "
                            f"{self.router.model_name} loaded (restart ptune serve)")
        old = set(self.router.tasks)
        self.router = new  # one assignment: requests see the old or the new table, never a mix
        self.reloads += 1
        self.metrics.reloads.inc()
        return {"tasks": new.tasknames, "added": [n for n in new.tasknames if n not in old],
                "removed": sorted(old - set(new.tasknames))}


def _too_long(tpl, record: dict) -> RecordProblem:
    field = tpl.truncate_field or max(tpl.input_fields, key=lambda f: len(record.get(f, "")), default="taskname")
    return RecordProblem(field, f"field '{field}': too long: the prompt does not fit the model's context "
                         "(with the tokens to generate)")
