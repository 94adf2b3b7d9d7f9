"""``ptune predict``: a run's prompts applied to new records (no gold labels), in input order.

Check options and outputs → read the records once (stdin works) → route each to its task
(:mod:`.router`: the model is loaded once for every task of the table) → decode with eval's
code, each finished batch kept in ``OUTPUT.partial`` (:class:`~ptune_cli.resumable.ResumableJSONL`)
so that a killed run resumes → write every input record plus ``prediction`` in input order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ptune_cli.inference.options import PANEL, DecodeOptions
from ptune_cli.options import option
from ptune_cli.resumable import keep_batches, resumable_on_failure

# Test hook: seconds to sleep after each kept batch (makes kill -9 tests deterministic).
DELAY_ENV = "PTUNE_PREDICT_BATCH_DELAY"


@dataclass(kw_only=True)  # required --run after the inherited defaults
class PredictConfig(DecodeOptions):
    """Options of ``ptune predict`` (the decoding options are eval's, inherited)."""

    run: str = option(help="Run folder with the prompt table (from ptune train).")
    data: str = option(help="JSONL records to predict (- for stdin); each routed by its 'taskname'.")
    output: str = option("-", short="-o", flag="--output", affects_output=False,
                         help="Each input record plus its 'prediction', in input order (JSONL; - for stdout).")
    task: str | None = option(None, panel=PANEL,
                              help="Task of the records without a 'taskname' (default: the table's only task).")

    @property
    def mode(self) -> str:
        return "run"  # job.py's rules for a run's prompts (not a baseline)

    def problems(self) -> list[str]:
        return self.decode_problems()


def run_predict(cfg: PredictConfig, on_progress=None, on_total=None) -> dict:
    """Predict every record of ``cfg.data``; returns ``{"records", "resumed", "skipped",
    "tasks", "seconds"}``. Records of an unknown task or without their input fields fail
    before the model is loaded (``file:line: field …``)."""
    from ptune_cli.inference.job import with_prediction
    from ptune_cli.inference.router import Router
    from ptune_cli.io import check_outputs, iter_records, write_records
    from ptune_cli.models import set_threads
    from ptune_cli.options import validate
    from ptune_cli.ptuning.table import load_prompt_table

    validate(cfg)
    set_threads(cfg.threads)
    check_outputs({"-o": cfg.output}, {"--data": cfg.data})
    table = load_prompt_table(cfg.run)
    numbered = list(iter_records(cfg.data, {}))
    if cfg.task is not None:
        table.template(cfg.task)  # an unknown --task fails now, naming the known ones
    names = _route_names(table, cfg, numbered)
    router = Router(cfg, table)
    items = [(n, r) for n, (_, r) in zip(names, numbered, strict=True)]
    partial = _partial(cfg, [r for _, r in numbered])
    done = {int(r.pop("i")): r for r in partial.open()} if partial else {}
    todo = [i not in done for i in range(len(items))]
    if on_total:
        on_total(sum(todo))
    t0 = time.perf_counter()
    with resumable_on_failure(partial):
        fields = router.predict(items, todo, keep_batches(partial, DELAY_ENV), on_progress)
    fields.update(done)
    write_records(cfg.output, (with_prediction(rec, fields[i]) for i, (_, rec) in enumerate(numbered)))
    if partial is not None:
        partial.discard()  # the output is complete
    return {"records": len(items), "resumed": len(done), "skipped": sum(bool(f.get("skipped")) for f in fields.values()),
            "tasks": list(dict.fromkeys(names)), "seconds": round(time.perf_counter() - t0, 3)}


def _route_names(table, cfg: PredictConfig, numbered: list[tuple[int, dict]]) -> list[str]:
    """Each record's task, checked without the model (a light router over the table)."""
    from ptune_cli.errors import UserError
    from ptune_cli.inference.router import RecordProblem, check_record
    from ptune_cli.io import display_name

    templates = {n: table.template(n) for n in table.tasknames}
    names = []
    for lineno, rec in numbered:
        try:
            names.append(check_record(templates, rec, cfg.task))
        except RecordProblem as e:
            where = f"{display_name(cfg.data)}:{lineno}"
            raise UserError(f"{where}: {e.message}") from None
    return names


def _partial(cfg: PredictConfig, records: list[dict]):
    """Finished predictions beside ``-o`` (none for stdout): ``{"i": index, "prediction": …}``
    lines in decoding order; the fingerprint covers the records, the table and every option
    that changes a prediction."""
    from ptune_cli.io import STDIO
    from ptune_cli.options import output_settings
    from ptune_cli.ptuning.table import PROMPT_META_FILE, PROMPT_TABLE_FILE
    from ptune_cli.resumable import (
        ResumableJSONL,
        file_digest,
        fingerprint,
        partial_path,
        records_digest,
    )

    if cfg.output == STDIO:
        return None
    inputs = {"data": records_digest(records),
              "table": [file_digest(Path(cfg.run) / f) for f in (PROMPT_TABLE_FILE, PROMPT_META_FILE)]}
    return ResumableJSONL(partial_path(cfg.output), fingerprint(output_settings(cfg), inputs),
                          created_by="ptune predict")
