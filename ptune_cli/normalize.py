"""``ptune normalize-labels``: fold grammatical label variants to canonical forms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ptune_cli.errors import UserError
from ptune_cli.io import STDIO, check_outputs, display_name, iter_records, write_records
from ptune_cli.labels import LabelMap, load_label_map
from ptune_cli.options import option, validate


@dataclass
class NormalizeResult:
    records: int = 0
    counts: Counter = field(default_factory=Counter)  # canonical label -> count
    unmapped: Counter = field(default_factory=Counter)  # unknown label -> count


def normalize_records(
    records: Sequence[tuple[int, dict]], fields: Sequence[str], label_map: LabelMap
) -> tuple[list[dict], NormalizeResult]:
    """Map every ``fields`` value through ``label_map``; unknown values pass through unchanged."""
    result = NormalizeResult()
    out = []
    for _, rec in records:
        rec = dict(rec)
        for f in fields:
            canon = label_map.lookup(rec[f])
            if canon is None:
                result.unmapped[rec[f]] += 1
            else:
                result.counts[canon] += 1
                rec[f] = canon
        out.append(rec)
        result.records += 1
    return out, result


@dataclass
class NormalizeConfig:
    """Options of ``ptune normalize-labels``."""

    input: str = option(STDIO, argument=True, help="JSONL file, or - for stdin.")
    output: str = option(STDIO, short="-o", help="Output JSONL, or - for stdout.")
    fields: list[str] = option(["label"], flag="--field", help="Field to normalize (repeatable).")
    map: str = option("sv-sentiment", help="Built-in map name (sv-sentiment, en-sentiment) or a JSON/YAML file "
                      "{canonical: \\[variants…]}.")
    strict: bool = option(False, flag="--strict", help="Fail (exit 1, no output) on labels the map doesn't know.")


def run_normalize(cfg: NormalizeConfig) -> NormalizeResult:
    """Read ``cfg.input``, normalize ``cfg.fields``, write ``cfg.output`` (nothing written on error)."""
    validate(cfg)
    check_outputs({"-o": cfg.output}, {"INPUT": cfg.input, "--map": cfg.map})
    label_map = load_label_map(cfg.map)
    fields = list(dict.fromkeys(cfg.fields)) or ["label"]
    # labels are strings (io.text_field_problem): a null or a number is refused with file:line
    records = list(iter_records(cfg.input, {f: str for f in fields}))
    out, result = normalize_records(records, fields, label_map)
    if cfg.strict and result.unmapped:
        shown = ", ".join(f"'{k}' ({v})" for k, v in result.unmapped.most_common(5))
        more = f" and {len(result.unmapped) - 5} more" if len(result.unmapped) > 5 else ""
        raise UserError(
            f"{display_name(cfg.input)}: {sum(result.unmapped.values())} label(s) not in map "
            f"'{label_map.name}': {shown}{more} (add them to the map or drop --strict)"
        )
    write_records(cfg.output, out)
    return result
