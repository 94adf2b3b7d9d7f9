"""Scoring translations against references with sacrebleu (BLEU and chrF + signatures)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ptune_cli.errors import UserError, at
from ptune_cli.io import display_name, iter_records


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict:
    """``{"bleu", "chrf", "bleu_signature", "chrf_signature", "segments"}`` for one corpus."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses vs {len(refs)} references")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hyps), [list(refs)])
    c = chrf.corpus_score(list(hyps), [list(refs)])
    return {
        "segments": len(hyps),
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def reference_texts(
    reference: str | os.PathLike,
    n_records: int,
    pairs: Sequence[tuple[int, str]],
    reference_field: str | None = None,
) -> list[str]:
    """The reference string for each ``(i, field)`` in ``pairs``: line ``i`` of the reference
    JSONL, its ``reference_field`` (or the same field name). Checked before translating, so a
    wrong --reference fails in a second, not after the whole run."""
    name = display_name(reference)
    refs = list(iter_records(reference))
    if len(refs) != n_records:
        raise UserError(f"{name}: has {len(refs)} records but the input has {n_records} (--reference must be line-aligned with INPUT)")
    gold = []
    for i, f in pairs:
        ln, ref = refs[i]
        key = reference_field or f
        if not isinstance(ref.get(key), str):
            what = "missing" if key not in ref else f"expected a string, got {type(ref[key]).__name__}"
            raise UserError(f"{at(name, ln, key)}: {what} (set --reference-field to the reference's text field)")
        gold.append(ref[key])
    if not gold:
        raise UserError(f"{name}: nothing to score (no translated text fields)")
    return gold


def score_records(
    translated: Sequence[dict],
    reference: str | os.PathLike | None,
    pairs: Sequence[tuple[int, str]],
    reference_field: str | None = None,
    gold: Sequence[str] | None = None,
) -> dict:
    """Score ``translated[i][field]`` for each ``(i, field)`` in ``pairs`` against the reference
    (see :func:`reference_texts`; pass ``gold`` when it was already read)."""
    if gold is None:
        gold = reference_texts(reference, len(translated), pairs, reference_field)
    return corpus_scores([translated[i][f] for i, f in pairs], gold)
