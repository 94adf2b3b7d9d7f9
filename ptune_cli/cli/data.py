"""``ptune normalize-labels`` and ``ptune kfold``: the data commands (no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, stderr_console


@app.command(
    "normalize-labels",
    epilog=example(
        "ptune normalize-labels sv.jsonl -o sv.norm.jsonl",
        "ptune normalize-labels preds.jsonl --field label --field prediction --map templates/labels/my-map.yaml --strict",
    ),
)
def normalize_labels(
    input: Annotated[str, typer.Argument(help="JSONL file, or - for stdin.")] = "-",
    output: Annotated[str, typer.Option("-o", "--output", help="Output JSONL, or - for stdout.")] = "-",
    field: Annotated[list[str], typer.Option("--field", help="Field to normalize (repeatable).")] = ["label"],  # noqa: B006
    map: Annotated[str, typer.Option("--map", help="Built-in map name (sv-sentiment, en-sentiment) or a JSON/YAML file {canonical: [variants…]}.")] = "sv-sentiment",
    strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 1, no output) on labels the map doesn't know.")] = False,
) -> None:
    """Fold grammatical label variants to canonical forms (positiva/positivt → positiv).

    Matching ignores case, surrounding whitespace and trailing punctuation. A per-label
    summary and every unmapped label go to stderr; unmapped labels pass through unchanged.
    """
    from rich.table import Table

    from ptune_cli.normalize import run_normalize

    result = run_normalize(input, output, fields=field, map_name=map, strict=strict)
    table = Table(title=f"normalize-labels: {result.records} records", title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    for label, n in sorted(result.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(label, str(n))
    for label, n in sorted(result.unmapped.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(f"[yellow]{label!r} (unmapped)[/]", str(n))
    stderr_console().print(table)


@app.command(
    "kfold",
    epilog=example(
        "ptune kfold sv.norm.jsonl -o folds/ --k 10 --seed 42",
        "ptune kfold fiqa_en.jsonl -o folds/ --group-field source_id --train-fraction 0.1 --seed 3",
    ),
)
def kfold_cmd(
    input: Annotated[str, typer.Argument(help="JSONL file, or - for stdin.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder for fold_XX/{train,val,test}.jsonl.")],
    k: Annotated[int, typer.Option("--k", help="Number of folds (>= 2).")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    label_field: Annotated[str, typer.Option("--label-field", help="Field to stratify by.")] = "label",
    stratify: Annotated[bool, typer.Option("--stratify/--no-stratify", help="Balance label counts across folds.")] = True,
    group_field: Annotated[str | None, typer.Option("--group-field", help="Records with equal values stay in one fold and split.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of each fold's non-test data used for val.")] = 0.1,
    train_fraction: Annotated[float, typer.Option("--train-fraction", help="Keep this seeded random share of each fold's train (data-reduction studies).")] = 1.0,
    sample_seed: Annotated[int | None, typer.Option("--sample-seed", help="Seed of the --train-fraction subsample (default: --seed); vary it for repeated samples over the same folds.")] = None,
) -> None:
    """Split a JSONL file into k stratified folds with train/val/test and a manifest.

    Every record is in exactly one fold's test.jsonl; val is carved from the non-test part.
    The same input and options give byte-identical files.
    """
    from rich.table import Table

    from ptune_cli.folds import KFoldConfig, run_kfold

    cfg = KFoldConfig(
        k=k,
        seed=seed,
        label_field=label_field,
        stratify=stratify,
        group_field=group_field,
        val_fraction=val_fraction,
        train_fraction=train_fraction,
        sample_seed=sample_seed,
    )
    manifest = run_kfold(input, output, cfg)
    table = Table(title=f"kfold: {manifest['records']} records → {output}", title_justify="left")
    for col in ("fold", "train", "val", "test"):
        table.add_column(col, justify="right")
    for f in manifest["folds"]:
        c = f["counts"]
        table.add_row(f"{f['fold']:02d}", str(c["train"]), str(c["val"]), str(c["test"]))
    stderr_console().print(table)
