"""``ptune normalize-labels``: fold grammatical label variants to canonical forms."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ptune_cli.errors import UserError
from ptune_cli.io import display_name, iter_records, write_records
from ptune_cli.labels import LabelMap, load_label_map


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


def run_normalize(
    input: str | os.PathLike,
    output: str | os.PathLike,
    fields: Sequence[str] = ("label",),
    map_name: str = "sv-sentiment",
    strict: bool = False,
) -> NormalizeResult:
    """Read ``input``, normalize ``fields``, write ``output`` (nothing written on error)."""
    label_map = load_label_map(map_name)
    fields = list(dict.fromkeys(fields)) or ["label"]
    records = list(iter_records(input, {f: str for f in fields}))
    out, result = normalize_records(records, fields, label_map)
    if strict and result.unmapped:
        shown = ", ".join(f"'{k}' ({v})" for k, v in result.unmapped.most_common(5))
        more = f" and {len(result.unmapped) - 5} more" if len(result.unmapped) > 5 else ""
        raise UserError(
            f"{display_name(input)}: {sum(result.unmapped.values())} label(s) not in map "
            f"'{label_map.name}': {shown}{more} (add them to the map or drop --strict)"
        )
    write_records(output, out)
    return result
