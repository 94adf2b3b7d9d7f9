"""``ptune translate``: field-aware translation of labeled JSONL (thin: options → run_translate)."""

from __future__ import annotations

from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, progress, stderr_console

_FORMATS = "auto|intent-slot|sentiment|text|keep"


@app.command(
    "translate",
    epilog=example(
        "ptune translate assistant_en.jsonl -o assistant_sv.jsonl --report run.json",
        "ptune translate fiqa_en.jsonl -o fiqa_sv.jsonl --label-format sentiment --lexicon en-sv-sentiment-plural",
        "ptune translate tatoeba.jsonl -o tatoeba.sv.jsonl --fields en --label-format keep --reference tatoeba.jsonl --reference-field sv",
        "ptune translate en.jsonl -o sv.jsonl --model facebook/nllb-200-distilled-600M --src-lang en --tgt-lang sv --device cuda --precision fp16",
    ),
)
def translate_cmd(
    input: Annotated[str, typer.Argument(help="JSONL file, or - for stdin.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Output JSONL (or - for stdout; resuming needs a file).")],
    model: Annotated[str, typer.Option("--model", help="HF hub id or local folder of a seq2seq model (Marian, NLLB-200, M2M100, …).")] = "Helsinki-NLP/opus-mt-en-sv",
    fields: Annotated[str | None, typer.Option("--fields", help="Comma-separated text fields to translate [default: those of sentence,utterance,text,question,context present].")] = None,
    label_field: Annotated[str, typer.Option("--label-field", help="The label field.")] = "label",
    label_format: Annotated[str, typer.Option("--label-format", help=f"{_FORMATS}: intent-slot keeps intent and slot types and projects slot values; sentiment maps through --lexicon; text translates the label; keep copies it.")] = "auto",
    lexicon: Annotated[str, typer.Option("--lexicon", help="Sentiment lexicon: a name in templates/labels/ or a JSON/YAML file (en-sv-sentiment-plural gives positiva/negativa).")] = "en-sv-sentiment",
    src_lang: Annotated[str | None, typer.Option("--src-lang", help="Source language code for multilingual models (en, eng_Latn).")] = None,
    tgt_lang: Annotated[str | None, typer.Option("--tgt-lang", help="Target language code; required by NLLB-200 (sv → swe_Latn) and M2M100 (sv).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="transformers, or ctranslate2 (converts the model once into the cache folder; int8 on CPU).")] = "transformers",
    beam_size: Annotated[int, typer.Option("--beam-size", help="Beams (1 = greedy).")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Most sentences per batch.")] = 32,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token budget per batch (sentences × longest input); batches are length-sorted.")] = 4096,
    max_length: Annotated[int, typer.Option("--max-length", help="Hard cap on output tokens; outputs that reach their cap are flagged length_cap.")] = 256,
    length_ratio: Annotated[float, typer.Option("--length-ratio", help="Per-sentence output cap: ratio × input tokens + 10 (stops runaway repetition early).")] = 2.0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (fp32 on CPU; bf16 on GPUs that have it, else fp16), fp32, fp16, bf16.")] = "auto",
    ct2_compute_type: Annotated[str, typer.Option("--ct2-compute-type", help="CTranslate2 compute type (auto: int8 on CPU, int8_float16 on GPU).")] = "auto",
    threads: Annotated[int, typer.Option("--threads", help="CPU threads (0 = library default).")] = 0,
    cache: Annotated[str | None, typer.Option("--cache", help="Translation cache (sqlite) [default: ~/.cache/ptune-cli/translate.sqlite].")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Don't read or write the persistent cache (duplicates in the run are still translated once).")] = False,
    chunk_records: Annotated[int, typer.Option("--chunk-records", help="Records per durable step (written and fsynced together).")] = 512,
    report: Annotated[str | None, typer.Option("--report", help="Write the run report (JSON) here.")] = None,
    reference: Annotated[str | None, typer.Option("--reference", help="Line-aligned reference JSONL: score the translated fields with sacrebleu BLEU and chrF.")] = None,
    reference_field: Annotated[str | None, typer.Option("--reference-field", help="The reference's text field when it is not named like the translated one (e.g. sv).")] = None,
    flags_field: Annotated[str, typer.Option("--flags-field", help="Field that lists a record's problems (length_cap, repetition, empty_output, slot_projection, label_kept).")] = "_translate_flags",
) -> None:
    """Translate the text fields of a labeled JSONL file, keeping labels intact.

    Records come out in input order, one for one; taskname and unlisted fields are copied.
    Intent names and slot types are never sent to the model; slot values are projected into
    the translated utterance. If the run is killed, run the same command again: it resumes.
    """
    from ptune_cli.translate import TranslateConfig, run_translate, write_report

    cfg = TranslateConfig(
        model=model, fields=tuple(f.strip() for f in fields.split(",")) if fields else (),
        label_field=label_field, label_format=label_format, lexicon=lexicon,
        src_lang=src_lang, tgt_lang=tgt_lang, engine=engine, beam_size=beam_size,
        batch_size=batch_size, max_tokens=max_tokens, max_length=max_length,
        length_ratio=length_ratio, device=device, precision=precision,
        ct2_compute_type=ct2_compute_type, threads=threads, cache=cache, use_cache=not no_cache,
        chunk_records=chunk_records, flags_field=flags_field,
    ).validate()
    with progress() as bar:
        task = bar.add_task("translate", total=None)

        def on_progress(advance: int, total: int) -> None:
            if total:
                bar.update(task, total=total)
            bar.advance(task, advance)

        result = run_translate(input, output, cfg, reference=reference,
                               reference_field=reference_field, on_progress=on_progress)
    if not result["is_main"]:
        return  # under accelerate launch, rank 0 reports on every shard
    if report:
        write_report(report, result)
    _print_summary(result)


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
    if r["flagged_records"]:
        console.print(f"[yellow]{r['flagged_records']} record(s) flagged: see the '{r['flags_field']}' field[/]")
