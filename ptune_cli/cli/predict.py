"""``ptune predict``: a run's prompts applied to new records (thin: options → run_predict)."""

from __future__ import annotations

from ptune_cli.cli._app import app, example, progress, stderr_console
from ptune_cli.inference.predict import PredictConfig
from ptune_cli.options import typer_command


def _predict(cfg) -> None:
    from ptune_cli.inference.predict import run_predict

    with progress(transient=True) as bar:
        job = bar.add_task("predict", total=None)
        result = run_predict(cfg, on_total=lambda n: bar.update(job, total=n),
                             on_progress=lambda k: bar.advance(job, k))
    console = stderr_console()  # stdout may carry the predictions
    line = f"predict: {result['records']} records ({', '.join(result['tasks'])}) in {result['seconds']:.1f} s"
    if result["resumed"]:
        line += f", {result['resumed']} resumed from an interrupted run"
    console.print(line + (f" → {cfg.output}" if cfg.output != "-" else ""))
    if result["skipped"]:
        console.print(f"[yellow]{result['skipped']} record(s) did not fit the model: empty prediction, \"skipped\": true[/]")


typer_command(
    app, "predict", PredictConfig, _predict,
    help="""Predict new records (no gold labels) with a p-tuned run.

    Each record goes to the prompts of its 'taskname' (records of several tasks may share one
    file; the model is loaded once) and comes out in input order with a 'prediction' field.
    Decoding options and code are eval's. If the run is killed, run the same command again:
    it resumes (with -o FILE; stdout cannot resume).
    """,
    epilog=example(
        "ptune predict --run runs/assistant --data new.jsonl -o predictions.jsonl",
        "cat new.jsonl | ptune predict --run runs/assistant --data - --decode rank --labels positive,negative,neutral",
    ),
)
