"""``ptune prepare``: convert public source datasets to the toolkit's JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, stderr_console


@app.command(
    "prepare",
    epilog=example(
        "ptune prepare NLU-Data-Home-Domain-Annotated-All.csv -o assistant_en.jsonl",
        "ptune prepare Sentences_AllAgree.txt -o fpb_en.jsonl",
        "ptune prepare task1_headline_ABSA_train.json task1_post_ABSA_train.json -o fiqa_en.jsonl --neutral-band 0.1 --id-field source_id",
    ),
)
def prepare_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Source files, converted in order into one JSONL.", show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", help="Output JSONL, or - for stdout.")] = "-",
    source: Annotated[str, typer.Option("--source", help="nlu-eval (annotated CSV), phrasebank (sentence@label .txt), fiqa (task-1 JSON), or auto by suffix (.csv/.txt/.json).")] = "auto",
    taskname: Annotated[str | None, typer.Option("--taskname", help="taskname field (default: intent_and_slot for nlu-eval, sentiment-task otherwise).")] = None,
    encoding: Annotated[str, typer.Option("--encoding", help="phrasebank: text encoding; auto = UTF-8 if valid, else ISO-8859-1 (the original release).")] = "auto",
    neutral_band: Annotated[float, typer.Option("--neutral-band", help="fiqa: score < -band negative, [-band, band) neutral, >= band positive.")] = 0.1,
    utterance_column: Annotated[str, typer.Option("--utterance-column", help="nlu-eval: utterance column; the de-bracketed annotation when the CSV lacks it.")] = "answer_from_anno",
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave bad rows out (each listed on stderr) instead of stopping at the first.")] = False,
    id_field: Annotated[str | None, typer.Option("--id-field", help="Add the source item's id (FILE_STEM:KEY or FILE_STEM:LINE) under this field; fiqa targets of one text share it, for `ptune kfold --group-field`.")] = None,
) -> None:
    """Convert NLU-Evaluation-Data, Financial PhraseBank or FiQA files to NeMo-style JSONL.

    nlu-eval rows become intent_and_slot records (utterance, label "Intent: scenario_intent /
    Slots: type(value), …" or "Slots: None"); phrasebank and fiqa rows become sentiment-task
    records (sentence, label positive|negative|neutral; fiqa sentences end with " Sentiment for
    TARGET"). A bad row stops the run with file:line unless --skip-bad; a summary goes to stderr.
    """
    from rich.table import Table

    from ptune_cli.prepare import PrepareConfig, run_prepare

    cfg = PrepareConfig(
        inputs=list(inputs),
        output=output,
        source=source,
        taskname=taskname,
        encoding=encoding,
        neutral_band=neutral_band,
        utterance_column=utterance_column,
        skip_bad=skip_bad,
        id_field=id_field,
    )
    result = run_prepare(cfg)
    console = stderr_console()
    for bad in result.skipped[:20]:
        console.print(f"[yellow]skipped[/] {bad}")
    if len(result.skipped) > 20:
        console.print(f"[yellow]… and {len(result.skipped) - 20} more skipped rows[/]")
    table = Table(title=f"prepare: {result.records} records → {output}", title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    shown = result.labels.most_common(12)
    for label, n in shown:
        table.add_row(label, str(n))
    if len(result.labels) > len(shown):
        table.add_row(f"… {len(result.labels) - len(shown)} more labels", str(sum(result.labels.values()) - sum(n for _, n in shown)))
    if result.skipped:
        table.add_row("[yellow]skipped rows[/]", str(len(result.skipped)))
    console.print(table)
