"""``ptune prepare``: convert public source datasets to the toolkit's JSONL (options declared
once, in ``PrepareConfig``)."""

from __future__ import annotations

from ptune_cli.cli._app import app, example, stderr_console
from ptune_cli.options import typer_command
from ptune_cli.prepare import PrepareConfig


def _prepare(cfg: PrepareConfig) -> None:
    from rich.table import Table

    from ptune_cli.prepare import run_prepare

    result = run_prepare(cfg)
    console = stderr_console()
    for bad in result.skipped[:20]:
        console.print(f"[yellow]skipped[/] {bad}")
    if len(result.skipped) > 20:
        console.print(f"[yellow]… and {len(result.skipped) - 20} more skipped rows[/]")
    table = Table(title=f"prepare: {result.records} records → {cfg.output}", title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    shown = result.labels.most_common(12)
    for label, n in shown:
        table.add_row(label, str(n))
    if len(result.labels) > len(shown):
        table.add_row(f"… {len(result.labels) - len(shown)} more labels", str(sum(result.labels.values()) - sum(n for _, n in shown)))
    if result.skipped:
        table.add_row("[yellow]skipped rows[/]", str(len(result.skipped)))
    for reason, n in sorted(result.left_out.items()):
        table.add_row(f"[yellow]left out: {reason}[/]", str(n))
    for reason, n in sorted(result.noted.items()):
        table.add_row(f"[yellow]kept, {reason} (--strict refuses)[/]", str(n))
    console.print(table)


typer_command(
    app, "prepare", PrepareConfig, _prepare,
    help="""Convert NLU-Evaluation-Data, Financial PhraseBank, FiQA or SQuAD files to NeMo-style JSONL.

    nlu-eval rows become intent_and_slot records (utterance, label "Intent: scenario_intent /
    Slots: type(value), …" or "Slots: None"); phrasebank and fiqa rows become sentiment-task
    records (sentence, label positive|negative|neutral; fiqa sentences end with " Sentiment for
    TARGET"); squad questions become QA records (context, question, answer, answers,
    paragraph_id shared by one paragraph's questions). A bad row stops the run with file:line unless --skip-bad; a summary goes to stderr.
    """,
    epilog=example(
        "ptune prepare NLU-Data-Home-Domain-Annotated-All.csv -o assistant_en.jsonl",
        "ptune prepare Sentences_AllAgree.txt -o fpb_en.jsonl",
        "ptune prepare task1_headline_ABSA_train.json task1_post_ABSA_train.json -o fiqa_en.jsonl --neutral-band 0.1 --id-field source_id",
        "ptune prepare train-v2.0.json -o squad_en.jsonl --unanswerable skip",
    ),
)
