"""``ptune eval``: predictions from a p-tuned run (or a frozen-model baseline) and their scores."""

from __future__ import annotations

from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, progress, stderr_console, stdout_console

_PRED = "Prediction"
_BASE = "Baseline (frozen model, no prompts)"
_META = "Results metadata (for ptune report)"


@app.command(
    "eval",
    epilog=example(
        "ptune eval --run runs/fold_00 --data folds/fold_00/test.jsonl -o runs/fold_00/results.json --normalize sv-sentiment",
        "ptune eval --run runs/fold_00 --data folds/fold_00/test.jsonl --decode rank --predictions-out pred.jsonl",
        "ptune eval --predictions pred.jsonl --metric intent-slot --markdown",
        "ptune eval --baseline few --shots 5 --train folds/fold_00/train.jsonl --template templates/sv-sentiment.json --data folds/fold_00/test.jsonl",
    ),
)
def eval_cmd(
    run: Annotated[str | None, typer.Option("--run", help="Run folder with the prompt table (from ptune train).")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Test JSONL with gold labels in the template's answer field.")] = None,
    output: Annotated[str | None, typer.Option("-o", "--output", help="Results JSON (metrics, per-label rows, meta).")] = None,
    predictions_out: Annotated[str | None, typer.Option("--predictions-out", help="Write each input record plus its 'prediction' (JSONL).")] = None,
    metric: Annotated[str, typer.Option("--metric", help="auto | accuracy | intent-slot (auto: intent-slot when gold labels contain 'Intent:').")] = "auto",
    normalize: Annotated[str | None, typer.Option("--normalize", help="Label map folding variants before scoring: sv-sentiment, en-sentiment or a JSON/YAML file.")] = None,
    decode: Annotated[str, typer.Option("--decode", help="generate: greedy generation; rank: score each candidate label by log-likelihood (classification).", rich_help_panel=_PRED)] = "generate",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Records per batch (32 measured fastest on CPU for multi-line answers).", rich_help_panel=_PRED)] = 32,
    task: Annotated[str | None, typer.Option("--task", help="Task name in the prompt table / template file (default: the data's taskname).", rich_help_panel=_PRED)] = None,
    model: Annotated[str | None, typer.Option("--model", help="Base model (default: the run's base model; the packaged SmolLM2-135M for baselines).", rich_help_panel=_PRED)] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="Generation limit (default: longest gold answer + 8 tokens).", rich_help_panel=_PRED)] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Comma-separated candidates for --decode rank (default: the answers in the run's training file, else the gold labels of --data).", rich_help_panel=_PRED)] = None,
    device: Annotated[str, typer.Option("--device", help="auto (cuda when available), cpu, cuda, cuda:N, mps.", rich_help_panel=_PRED)] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (fp32 on CPU; bf16 on GPUs that have it, else fp16), fp32, fp16, bf16.", rich_help_panel=_PRED)] = "auto",
    stop_at_newline: Annotated[bool | None, typer.Option("--stop-at-newline/--no-stop-at-newline", help="Stop at the first newline (default: when no gold answer has a newline).", show_default=False, rich_help_panel=_PRED)] = None,
    predictions: Annotated[str | None, typer.Option("--predictions", help="Score this predictions JSONL without any model.")] = None,
    label_field: Annotated[str | None, typer.Option("--label-field", help="Gold field with --predictions (default: label).")] = None,
    prediction_field: Annotated[str, typer.Option("--prediction-field", help="Prediction field with --predictions.")] = "prediction",
    baseline: Annotated[str | None, typer.Option("--baseline", help="zero | one | few: the frozen model with the template's text, no virtual tokens.", rich_help_panel=_BASE)] = None,
    shots: Annotated[int | None, typer.Option("--shots", help="Examples for --baseline few (default 5).", rich_help_panel=_BASE)] = None,
    train: Annotated[str | None, typer.Option("--train", help="Training JSONL the shots are drawn from.", rich_help_panel=_BASE)] = None,
    template: Annotated[str | None, typer.Option("--template", help="Template JSON of the task (templates/*.json).", rich_help_panel=_BASE)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for drawing the shots.", rich_help_panel=_BASE)] = 0,
    fold: Annotated[int | None, typer.Option("--fold", help="Fold id (default: from a fold_XX folder in --data).", rich_help_panel=_META)] = None,
    train_fraction: Annotated[float | None, typer.Option("--train-fraction", help="Training fraction (default: from the kfold manifest).", rich_help_panel=_META)] = None,
    sample: Annotated[int | None, typer.Option("--sample", help="Sample id of a repeated data-reduction draw (default: the kfold seed).", rich_help_panel=_META)] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a markdown table instead of the rich table.")] = False,
) -> None:
    """Predict on a test set with a p-tuned run and score it (accuracy or intent/slot P/R/F1).

    Predictions are generated greedily in batches with a KV cache (or ranked over the label
    set with --decode rank); only the generated text is kept. Results go to stdout as a table
    and to -o as JSON; `ptune report` aggregates results files over folds.
    """
    from ptune_cli.evaluate.run import EvalConfig, run_eval

    cfg = EvalConfig(
        data=data, run=run, predictions=predictions, output=output, predictions_out=predictions_out,
        metric=metric, normalize=normalize, decode=decode, batch_size=batch_size, task=task, model=model,
        label_field=label_field, prediction_field=prediction_field, max_new_tokens=max_new_tokens,
        labels=[x.strip() for x in labels.split(",") if x.strip()] if labels else None,
        stop_at_newline=stop_at_newline, baseline=baseline, shots=shots, train=train, template=template,
        seed=seed, fold=fold, train_fraction=train_fraction, sample=sample, device=device, precision=precision,
    )
    cfg.validate()
    with progress(transient=True) as bar:
        job = bar.add_task("eval", total=None)
        results = run_eval(
            cfg,
            on_total=lambda n: bar.update(job, total=n),
            on_progress=lambda k: bar.advance(job, k),
        )
    to_stderr = "-" in (output, predictions_out)  # stdout carries the JSON / JSONL then
    if markdown:
        from ptune_cli.evaluate.report import results_markdown

        typer.echo(results_markdown(results), nl=False, err=to_stderr)
    else:
        _print_results(results, stderr_console() if to_stderr else stdout_console())


def _print_results(results: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ptune_cli.evaluate.metrics import headline
    from ptune_cli.evaluate.report import key_title, pct

    meta = results.get("meta", {})
    where = meta.get("data") or meta.get("predictions") or ""
    title = f"eval: {results['metric']}, {results['n']} records" + (f" ({where})" if where else "")
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
    if meta.get("skipped"):
        console.print(f"[yellow]{meta['skipped']} record(s) did not fit the model and were scored as empty predictions[/]")
