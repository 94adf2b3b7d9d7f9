"""``ptune normalize-labels`` and ``ptune kfold``: the data commands (no model needed).

Their options are declared once, in ``NormalizeConfig`` and ``KFoldConfig``; the commands are
built from those dataclasses and only print the summaries."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, stderr_console
from ptune_cli.folds import KFoldConfig
from ptune_cli.normalize import NormalizeConfig
from ptune_cli.options import typer_command


def _normalize(cfg: NormalizeConfig) -> None:
    from rich.table import Table

    from ptune_cli.normalize import run_normalize

    result = run_normalize(cfg)
    table = Table(title=f"normalize-labels: {result.records} records", title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    for label, n in sorted(result.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(label, str(n))
    for label, n in sorted(result.unmapped.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"[yellow]{label!r} (unmapped)[/]", str(n))
    stderr_console().print(table)


typer_command(
    app, "normalize-labels", NormalizeConfig, _normalize,
    help="""Fold grammatical label variants to canonical forms (positiva/positivt → positiv).

    Matching ignores case, surrounding whitespace and trailing punctuation. A per-label
    summary and every unmapped label go to stderr; unmapped labels pass through unchanged.
    """,
    epilog=example(
        "ptune normalize-labels sv.jsonl -o sv.norm.jsonl",
        "ptune normalize-labels preds.jsonl --field label --field prediction --map templates/labels/my-map.yaml --strict",
    ),
)


def _kfold(cfg: KFoldConfig, input: str, output: Path) -> None:
    from rich.table import Table

    from ptune_cli.folds import run_kfold

    manifest = run_kfold(input, output, cfg)
    table = Table(title=f"kfold: {manifest['records']} records → {output}", title_justify="left")
    for col in ("fold", "train", "val", "test"):
        table.add_column(col, justify="right")
    for f in manifest["folds"]:
        c = f["counts"]
        table.add_row(f"{f['fold']:02d}", str(c["train"]), str(c["val"]), str(c["test"]))
    stderr_console().print(table)


# INPUT and -o are the command's, not the split's (KFoldConfig is what the manifest records)
_KFOLD_IO = [
    inspect.Parameter("input", inspect.Parameter.KEYWORD_ONLY,
                      annotation=Annotated[str, typer.Argument(help="JSONL file, or - for stdin.")]),
    inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[
        Path, typer.Option("-o", "--output", help="Output folder for fold_XX/{train,val,test}.jsonl.")]),
]

typer_command(
    app, "kfold", KFoldConfig, _kfold, extra=_KFOLD_IO,
    help="""Split a JSONL file into k stratified folds with train/val/test and a manifest.

    Every record is in exactly one fold's test.jsonl; val is carved from the non-test part.
    The same input and options give byte-identical files.
    """,
    epilog=example(
        "ptune kfold sv.norm.jsonl -o folds/ --k 10 --seed 42",
        "ptune kfold fiqa_en.jsonl -o folds/ --group-field source_id --train-fraction 0.1 --seed 3",
    ),
)
