"""``ptune translate``: field-aware translation of labeled JSONL (thin: options → run_translate)."""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, progress, stderr_console
from ptune_cli.options import typer_command
from ptune_cli.translate.config import TranslateConfig


def _opt(name: str, tp, default, *decls: str, help: str) -> inspect.Parameter:
    """A command-line parameter outside TranslateConfig: run_translate's own arguments."""
    info = typer.Argument(help=help) if not decls else typer.Option(*decls, help=help)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[tp, info])


_IO = [
    _opt("input", str, inspect.Parameter.empty, help="JSONL file, or - for stdin."),
    _opt("output", str, inspect.Parameter.empty, "-o", "--output", help="Output JSONL (or - for stdout; resuming needs a file)."),
    _opt("report", str | None, None, "--report", help="Write the run report (JSON) here."),
    _opt("reference", str | None, None, "--reference",
         help="Line-aligned reference JSONL: score the translated fields with sacrebleu BLEU and chrF."),
    _opt("reference_field", str | None, None, "--reference-field",
         help="The reference's text field when it is not named like the translated one (e.g. sv)."),
]


def _translate(cfg, *, input: str, output: str, report: str | None, reference: str | None,
               reference_field: str | None) -> None:
    from ptune_cli.translate import run_translate, write_report

    with progress() as bar:
        task = bar.add_task("translate", total=None)

        def on_progress(advance: int, total: int) -> None:
            if total:
                bar.update(task, total=total)
            bar.advance(task, advance)

        result = run_translate(input, output, cfg, reference=reference, reference_field=reference_field,
                               report=report, on_progress=on_progress)
    if not result["is_main"]:
        return  # under accelerate launch, rank 0 reports on every shard
    if report:
        write_report(report, result)
    _print_summary(result)


typer_command(
    app, "translate", TranslateConfig, _translate, extra=_IO,
    help="""Translate the text fields of a labeled JSONL file, keeping labels intact.

    Records come out in input order, one for one; taskname and unlisted fields are copied.
    Intent names and slot types are never sent to the model; slot values are projected into
    the translated utterance. If the run is killed, run the same command again: it resumes.
    """,
    epilog=example(
        "ptune translate assistant_en.jsonl -o assistant_sv.jsonl --report run.json",
        "ptune translate fiqa_en.jsonl -o fiqa_sv.jsonl --label-format sentiment --lexicon en-sv-sentiment-plural",
        "ptune translate tatoeba.jsonl -o tatoeba.sv.jsonl --fields en --label-format keep --reference tatoeba.jsonl --reference-field sv",
        "ptune translate en.jsonl -o sv.jsonl --model facebook/nllb-200-distilled-600M --src-lang en --tgt-lang sv --device cuda --precision fp16",
    ),
)


def _print_summary(r: dict) -> None:
    from rich.table import Table

    table = Table(title=f"translate: {r['records']} records → {r['output']}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        ("resumed (already written)", r["resumed_records"]),
        ("strings", r["strings"]),
        ("translated by the model", r["translated"]),
        ("cache hits", r["cache_hits"]),
        ("duplicates in this run", r["deduplicated"]),
        ("empty fields skipped", r["empty_skipped"]),
        ("sentences/s (model)", r["sentences_per_s"] if r["sentences_per_s"] is not None else "-"),
        ("records/s", r["records_per_s"] if r["records_per_s"] is not None else "-"),
        ("flagged records", r["flagged_records"]),
    ]
    rows += [(f"  flag {k}", v) for k, v in r["flags"].items()]
    rows += [(f"  slots projected ({k})", v) for k, v in r["slot_projection"].items()]
    rows += [(f"  QA answers projected ({k})", v) for k, v in r.get("answer_projection", {}).items()]
    for k, v in rows:
        table.add_row(k, str(v))
    if "score" in r:
        s = r["score"]
        table.add_row("BLEU", f"{s['bleu']:.2f}")
        table.add_row("chrF", f"{s['chrf']:.2f}")
    console = stderr_console()
    console.print(table)
    if "score" in r:
        console.print(f"sacrebleu: {r['score']['bleu_signature']} | {r['score']['chrf_signature']}")
        left_out = r["score"].get("empty_sources_left_out")
        console.print(f"BLEU and chrF over {r['score']['segments']} translated fields"
                      + (f"; [yellow]{left_out} field(s) with an empty source left out[/] (not translated, "
                         "nothing to score)" if left_out else ""))
    if r["flagged_records"]:
        console.print(f"[yellow]{r['flagged_records']} record(s) flagged: see the '{r['flags_field']}' field[/]")
