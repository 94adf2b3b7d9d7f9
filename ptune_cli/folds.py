"""``ptune kfold``: stratified, grouped, deterministic k-fold splits with a manifest.

Every input record lands in exactly one fold's ``test.jsonl``; within a fold, ``val`` is carved
from the non-test part (at least one record unless ``--val-fraction 0``, which writes no
``val.jsonl``, so ``train --val fold_XX/val.jsonl`` always gets data) and ``train`` is the rest
(optionally subsampled for data-reduction studies). The same input and options give
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ptune_cli.errors import UserError, at
from ptune_cli.io import (
    STDIO,
    check_outputs,
    display_name,
    dumps,
    iter_records,
    loads_strict,
    output_error,
    output_mode,
    require_text_fields,
    swap_in_folder,
    write_json,
    write_records,
)
from ptune_cli.labels import looks_like_intent_slot, parse_intent_slot
from ptune_cli.options import option, validate

SPLITS = ("train", "val", "test")


@dataclass
class KFoldConfig:
    """Options of the split (``ptune kfold``'s flags; recorded in the manifest). INPUT and
    ``-o`` are the command's, not the split's: :func:`kfold` splits records in memory."""

    k: int = option(10, help="Number of folds (>= 2).")
    seed: int = option(42, help="Random seed.")
    label_field: str = option("label", help="Field to stratify by.")
    stratify: bool = option(True, flag="--stratify/--no-stratify", help="Balance label counts across folds.")
    group_field: str | None = option(None, help="Records with equal values stay in one fold and split.")
    val_fraction: float = option(0.1, help="Share of each fold's non-test data used for val.")
    train_fraction: float = option(
        1.0, help="Keep this seeded random share of each fold's train (data-reduction studies).")
    # repeated data-reduction samples: same folds (--seed), another train subset per sample seed
    sample_seed: int | None = option(
        None, help="Seed of the --train-fraction subsample (default: --seed); vary it for repeated samples over the same folds.")

    def problems(self) -> list[str]:
        """Checks beyond the types (:func:`ptune_cli.options.validate` lists them all)."""
        problems = []
        if self.k < 2:
            problems.append(f"--k must be at least 2 (got {self.k})")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"--val-fraction must be in [0, 1) (got {self.val_fraction})")
        if not 0.0 < self.train_fraction <= 1.0:
            problems.append(f"--train-fraction must be in (0, 1] (got {self.train_fraction})")
        return problems


@dataclass
class Fold:
    train: list[int]
    val: list[int]
    test: list[int]


def _key(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def stratum_of(value: object) -> str:
    """The stratum of a label: the intent for intent/slot labels (full label strings are nearly
    unique, so stratifying by them would balance nothing), else the label itself."""
    if looks_like_intent_slot(value):
        return parse_intent_slot(value).intent or ""
    return _key(value)


def _units(records: list[dict], cfg: KFoldConfig) -> tuple[list[list[int]], list[str]]:
    """Group record indices into units (groups) and give each unit a stratum label."""
    if cfg.group_field:
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            by_group[_key(r[cfg.group_field])].append(i)
        units = list(by_group.values())
    else:
        units = [[i] for i in range(len(records))]
    use_labels = cfg.stratify and any(cfg.label_field in r for r in records)
    if use_labels and not all(cfg.label_field in r for r in records):
        i = next(i for i, r in enumerate(records) if cfg.label_field not in r)
        raise UserError(
            f"record {i + 1}: field '{cfg.label_field}': missing, but other records have it "
            "(fix the record, or pass --no-stratify)"
        )
    strata = []
    for u in units:
        if use_labels:
            c = Counter(stratum_of(records[i].get(cfg.label_field)) for i in u)
            strata.append(min(c, key=lambda lab: (-c[lab], lab)))  # majority label of the group
        else:
            strata.append("")
    return units, strata


def _assign(units: list[list[int]], strata: list[str], n_bins: int, rng: random.Random) -> list[int]:
    """Greedy balanced assignment of units to bins: per stratum, biggest units first, each to the
    bin with the fewest records of that stratum (ties: fewest records overall, then lowest bin)."""
    per_stratum: dict[str, list[int]] = defaultdict(list)
    for u, s in enumerate(strata):
        per_stratum[s].append(u)
    totals = [0] * n_bins
    out = [0] * len(units)
    for s in sorted(per_stratum):
        order = per_stratum[s][:]
        rng.shuffle(order)
        order.sort(key=lambda u: -len(units[u]))  # stable: shuffled order breaks ties
        counts = [0] * n_bins
        for u in order:
            b = min(range(n_bins), key=lambda b: (counts[b], totals[b], b))
            out[u] = b
            counts[b] += len(units[u])
            totals[b] += len(units[u])
    return out


def _carve_val(pool: list[int], units, strata, fraction: float, rng: random.Random) -> set[int]:
    """Pick units for val from ``pool``: per stratum about ``fraction`` of its records."""
    if fraction <= 0:
        return set()
    per: dict[str, list[int]] = defaultdict(list)
    for u in pool:
        per[strata[u]].append(u)
    chosen: set[int] = set()
    for s in sorted(per):
        order = per[s][:]
        rng.shuffle(order)
        want = round(fraction * sum(len(units[u]) for u in order))
        got = 0
        for u in order:
            if got >= want:
                break
            chosen.add(u)
            got += len(units[u])
    if not chosen and len(pool) >= 2:
        # small data: every stratum rounded down to 0, yet `train --val` needs a record;
        # take the smallest unit of the largest stratum (disturbs the balance least)
        big = max(sorted(per), key=lambda s: sum(len(units[u]) for u in per[s]))
        chosen.add(min(per[big], key=lambda u: len(units[u])))
    return chosen


def _needed(k: int) -> int:
    """Fewest units with which every fold keeps 2 outside its test set (k = 2: 4, else k)."""
    return 4 if k == 2 else k


def kfold(records: list[dict], cfg: KFoldConfig) -> list[Fold]:
    """Split ``records`` into ``cfg.k`` folds of record indices (input order kept in each split)."""
    validate(cfg)
    return _split(records, cfg)


def _split(records: list[dict], cfg: KFoldConfig) -> list[Fold]:
    units, strata = _units(records, cfg)
    what = "groups" if cfg.group_field else "records"
    if cfg.k > len(units):
        raise UserError(f"--k {cfg.k} is larger than the number of {what} ({len(units)})")
    fold_of = _assign(units, strata, cfg.k, random.Random(cfg.seed))
    folds = []
    for f in range(cfg.k):
        rng = random.Random(f"{cfg.seed}-{f}")
        test_u = [u for u in range(len(units)) if fold_of[u] == f]
        rest_u = [u for u in range(len(units)) if fold_of[u] != f]
        if cfg.val_fraction > 0 and len(rest_u) < 2:
            raise UserError(
                f"fold {f}: only {len(rest_u)} of {len(units)} {what} outside its test set, too few for "
                f"both train and val; give at least {_needed(cfg.k)} {what}, or pass --val-fraction 0"
            )
        val_u = _carve_val(rest_u, units, strata, cfg.val_fraction, rng)
        train_u = [u for u in rest_u if u not in val_u]
        if not train_u:
            raise UserError(f"fold {f}: no training data left (lower --val-fraction or --k)")
        train = sorted(i for u in train_u for i in units[u])
        if cfg.train_fraction < 1.0:
            keep = max(1, round(cfg.train_fraction * len(train)))
            srng = rng if cfg.sample_seed is None else random.Random(f"{cfg.sample_seed}-{f}-sample")
            train = sorted(srng.sample(train, keep))
        folds.append(
            Fold(
                train=train,
                val=sorted(i for u in val_u for i in units[u]),
                test=sorted(i for u in test_u for i in units[u]),
            )
        )
    return folds


def _read_input(path: str | os.PathLike, cfg: KFoldConfig) -> tuple[list[dict], str]:
    required = {cfg.group_field: None} if cfg.group_field else {}
    numbered = list(iter_records(path, required))
    records = [r for _, r in numbered]
    for ln, r in numbered:
        if cfg.label_field in r:  # labels are strings everywhere (train refuses others)
            require_text_fields(r, [cfg.label_field], path, ln)
    if cfg.stratify and any(cfg.label_field in r for r in records):
        # stratifying by a field some records lack would silently lump them together
        for ln, r in numbered:
            if cfg.label_field not in r:
                raise UserError(
                    f"{at(display_name(path), ln, cfg.label_field)}: missing required field "
                    "(other records have it; fix the record or pass --no-stratify)"
                )
    if str(path) == STDIO:
        digest = hashlib.sha256("".join(dumps(r) + "\n" for r in records).encode()).hexdigest()
    else:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return records, digest


def _check_outdir(outdir: Path) -> None:
    """OUTDIR is replaced as a whole: allow only a new or empty folder or an earlier kfold
    output, never a folder holding other files (``-o data/`` must not delete the input)."""
    if not outdir.exists():
        return
    if not outdir.is_dir():
        raise UserError(f"-o {outdir}: is a file, expected an output folder")
    if outdir == Path.cwd().resolve() or outdir in Path.cwd().resolve().parents:
        raise UserError(f"-o {outdir}: is (or contains) the current folder; name a new folder (e.g. -o folds/)")
    entries = list(outdir.iterdir())
    if not entries:
        return
    others = [e.name for e in entries if e.name != "manifest.json" and not (e.is_dir() and e.name.startswith("fold_"))]
    try:
        ours = loads_strict((outdir / "manifest.json").read_text(encoding="utf-8")).get("command") == "ptune kfold"
    except (OSError, ValueError, AttributeError):  # loads_strict: nesting is a ValueError too
        ours = False
    if others or not ours:
        shown = ", ".join(sorted(others)[:3]) or "no manifest.json"
        raise UserError(f"-o {outdir}: folder exists and is not a kfold output ({shown}); name a new or empty folder")


def run_kfold(input: str | os.PathLike, outdir: str | os.PathLike, cfg: KFoldConfig) -> dict:
    """Write ``outdir/fold_XX/{train,val,test}.jsonl`` and ``manifest.json``; returns the manifest.

    The folder is built beside ``outdir`` and swapped in at the end, so a failure leaves any
    earlier ``outdir`` as it was.
    """
    validate(cfg)  # once, before any file is read
    outdir = Path(outdir).resolve()
    _check_outdir(outdir)
    check_outputs({}, {"INPUT": input}, folders={"-o": outdir})  # folds/fold_00/train.jsonl -o folds
    records, digest = _read_input(input, cfg)
    folds = _split(records, cfg)
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
        tmp.chmod(output_mode(outdir, folder=True))  # as mkdir would leave it, not mkdtemp's 0700
    except OSError as e:
        raise output_error(outdir, e) from None
    manifest = {
        "command": "ptune kfold",
        "input": display_name(input),
        "input_sha256": digest,
        "records": len(records),
        "options": asdict(cfg),
        "folds": [],
    }
    try:
        for f, fold in enumerate(folds):
            entry = {"fold": f, "counts": {}, "label_counts": {}}
            for split in SPLITS:
                idx = getattr(fold, split)
                if idx:  # no val with --val-fraction 0: an empty file is no command's input
                    write_records(tmp / f"fold_{f:02d}" / f"{split}.jsonl", (records[i] for i in idx))
                entry["counts"][split] = len(idx)
                labels = Counter(stratum_of(records[i][cfg.label_field]) for i in idx if cfg.label_field in records[i])
                entry["label_counts"][split] = dict(sorted(labels.items()))
            manifest["folds"].append(entry)
        write_json(tmp / "manifest.json", manifest)
        swap_in_folder(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
