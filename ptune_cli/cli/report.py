"""``ptune report``: aggregate results files (folds, fractions, samples) into tables and plots."""

from __future__ import annotations

from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, stderr_console, stdout_console


@app.command(
    "report",
    epilog=example(
        "ptune report runs/fiqa/fold_*/results.json -o summary.json --markdown summary.md --plot folds.png",
        "ptune report reduction/*/fold_*/results.json -o reduction.json --reduction-plot curve.png",
    ),
)
def report_cmd(
    results: Annotated[list[str], typer.Argument(help="Results JSON files written by `ptune eval -o`.")],
    output: Annotated[str | None, typer.Option("-o", "--output", help="Summary JSON (per-fold rows, mean ± sample std per training fraction); - for stdout.")] = None,
    markdown: Annotated[str | None, typer.Option("--markdown", help="Write the summary as markdown to this file (- for stdout).")] = None,
    plot: Annotated[str | None, typer.Option("--plot", help="PNG: per-fold bars with the mean line and ± std band.")] = None,
    reduction_plot: Annotated[str | None, typer.Option("--reduction-plot", help="PNG: metric vs training fraction with the spread over samples.")] = None,
    key: Annotated[list[str] | None, typer.Option("--key", help="Metric key(s) to plot, e.g. accuracy, intent.f1, slot.f1, exact_match (repeatable).")] = None,
) -> None:
    """Aggregate per-fold results into per-fold rows plus mean ± sample std, and plot them.

    Training fraction, fold and sample come from each results file's "meta" (ptune eval
    records them from the kfold manifest or its --train-fraction/--fold/--sample options);
    the fold falls back to a fold_XX part of the path. A table goes to stdout.
    """
    from ptune_cli.evaluate.report import load_results, summarize, summary_markdown
    from ptune_cli.io import atomic_output, write_json

    summary = summarize(load_results(results))
    if plot or reduction_plot:
        from ptune_cli.evaluate.plots import plot_folds, plot_reduction

        if plot:
            plot_folds(summary, plot, key or None)
        if reduction_plot:
            plot_reduction(summary, reduction_plot, key[0] if key else None)
    if output:
        write_json(output, summary)
    md = summary_markdown(summary)
    if markdown and markdown != "-":
        with atomic_output(markdown) as fh:
            fh.write(md)
    if markdown == "-":
        typer.echo(md, nl=False, err=output == "-")
    else:
        _print_summary(summary, stderr_console() if output == "-" else stdout_console())


def _print_summary(summary: dict, console) -> None:
    from ptune_cli.evaluate.report import DEFAULT_PLOT_KEYS

    table = _summary_table(summary, summary["keys"])
    if console.measure(table, options=console.options.update_width(10_000)).maximum > console.width:
        # too wide (intent/slot has 8 metrics): truncated numbers are worse than fewer columns
        table = _summary_table(summary, DEFAULT_PLOT_KEYS[summary["metric"]])
        table.caption = "every metric: --markdown or -o"
    console.print(table)


def _summary_table(summary: dict, keys: list[str]):
    from rich.table import Table

    from ptune_cli.evaluate.report import key_title, mean_std_text

    table = Table(title=f"report: {summary['metric']}, {len(summary['rows'])} results", title_justify="left")
    for col in ("train %", "results", "samples"):
        table.add_column(col, justify="right")
    for k in keys:
        table.add_column(f"{key_title(k)} (%)", justify="right")
    for g in summary["groups"]:
        cells = [mean_std_text(g['mean'][k], g['std'][k]) for k in keys]
        table.add_row(f"{100 * g['train_fraction']:g}", str(g["results"]), str(g["samples"]), *cells)
    return table
