"""``ptune report``: aggregate results files (folds, fractions, samples) into tables and plots."""

from __future__ import annotations

import typer

from ptune_cli.cli._app import app, example, stderr_console, stdout_console
from ptune_cli.evaluate.config import ReportConfig
from ptune_cli.options import typer_command


def _report(cfg) -> None:
    from ptune_cli.evaluate.report import run_report

    summary, md = run_report(cfg)
    if cfg.markdown == "-":
        typer.echo(md, nl=False, err=cfg.output == "-")
    else:
        _print_summary(summary, stderr_console() if cfg.output == "-" else stdout_console())


typer_command(
    app, "report", ReportConfig, _report,
    help="""Aggregate per-fold results into per-fold rows plus mean ± sample std, and plot them.

    Training fraction, fold and sample come from each results file's "meta" (ptune eval
    records them from the kfold manifest or its --train-fraction/--fold/--sample options);
    the fold falls back to a fold_XX part of the path. A table goes to stdout.
    """,
    epilog=example(
        "ptune report runs/fiqa/fold_*/results.json -o summary.json --markdown summary.md --plot folds.png",
        "ptune report reduction/*/fold_*/results.json -o reduction.json --reduction-plot curve.png",
    ),
)


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
