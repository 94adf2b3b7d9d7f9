"""``ptune eval``: predictions from a p-tuned run (or a frozen-model baseline) and their scores."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example, progress, stderr_console, stdout_console
from ptune_cli.evaluate.config import EvalConfig
from ptune_cli.options import typer_command


def _eval(cfg) -> None:
    from ptune_cli.evaluate.runner import run_eval

    with progress(transient=True) as bar:
        job = bar.add_task("eval", total=None)
        results = run_eval(
            cfg,
            on_total=lambda n: bar.update(job, total=n),
            on_progress=lambda k: bar.advance(job, k),
        )
    to_stderr = "-" in (cfg.output, cfg.predictions_out)  # stdout carries the JSON / JSONL then
    per_task = results.get("tasks") or {None: results}  # a test file of several tasks: one table each
    for name, res in per_task.items():
        if cfg.markdown:
            from ptune_cli.evaluate.report import results_markdown

            typer.echo((f"### {name}\n\n" if name else "") + results_markdown(res), nl=False, err=to_stderr)
        else:
            _print_results(res, stderr_console() if to_stderr else stdout_console(), name)


typer_command(
    app, "eval", EvalConfig, _eval,
    help="""Predict on a test set with a p-tuned run and score it (accuracy, intent/slot P/R/F1, SQuAD EM/F1).

    Predictions are generated greedily in batches with a KV cache (or ranked over the label
    set with --decode rank); only the generated text is kept. A test file of several tasks
    (each record's 'taskname', no --task) is decoded in shared batches and scored per task.
    Results go to stdout as a table and to -o as JSON; `ptune report` aggregates results files
    over folds. Decoding lives in ptune_cli/inference/, scoring in ptune_cli/evaluate/.
    """,
    epilog=example(
        "ptune eval --run runs/fold_00 --data folds/fold_00/test.jsonl -o runs/fold_00/results.json --normalize sv-sentiment",
        "ptune eval --run runs/fold_00 --data folds/fold_00/test.jsonl --decode rank --predictions-out pred.jsonl",
        "ptune eval --predictions pred.jsonl --metric intent-slot --markdown",
        "ptune eval --run runs/qa-00 --data folds/fold_00/test.jsonl -o eval/fold_00.json --metric squad --lang sv --report-to wandb",
        "ptune eval --baseline few --shots 5 --train folds/fold_00/train.jsonl --template templates/sv-sentiment.json --data folds/fold_00/test.jsonl",
    ),
)


def _print_results(results: dict, console, task: str | None = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ptune_cli.evaluate.metrics import headline
    from ptune_cli.evaluate.report import key_title, pct, result_notes

    meta = results.get("meta", {})
    where = meta.get("data") or meta.get("predictions") or ""
    title = (f"eval{' ' + task if task else ''}: {results['metric']}, {results['n']} records"
             + (f" ({where})" if where else ""))
    if meta.get("records_per_s"):
        title += f", {meta['records_per_s']:.1f} records/s"
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    for k, v in headline(results).items():
        table.add_row(key_title(k), pct(v))
    console.print(table)
    rows = results.get("per_label") or []
    if rows and len(rows) <= 80:
        per = Table(title="per label", title_justify="left")
        has_kind = "kind" in rows[0]
        for col in (["kind"] if has_kind else []) + ["label"]:
            per.add_column(col)
        for col in ("precision", "recall", "F1", "support"):
            per.add_column(col, justify="right")
        for r in rows:
            per.add_row(*([r["kind"]] if has_kind else []), escape(r["label"]), pct(r["precision"]),
                        pct(r["recall"]), pct(r["f1"]), str(r["support"]))
        console.print(per)
    for line in result_notes(results):
        console.print(f"[yellow]{escape(line)}[/]")
    if meta.get("truncated"):
        console.print(f"[yellow]{meta['truncated']} record(s) were cut at the template's truncate_field to fit the model[/]")
    if meta.get("skipped"):
        console.print(f"[yellow]{meta['skipped']} record(s) did not fit the model and were scored as empty predictions[/]")
