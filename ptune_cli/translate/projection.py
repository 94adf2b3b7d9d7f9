"""Slot-value projection (EasyProject): carry slot values into the translated utterance.

1. :func:`mark_spans` finds each slot value in the source utterance and wraps it in plain
   brackets: ``"what alarms are set for [today]"``.
2. The marked sentence is translated; :func:`read_marked` reads the spans back by order and
   checks that exactly as many came back (no nesting, none empty).
3. When that fails (or a value was not in the source), the value is translated on its own and
   :func:`locate` looks for it (exactly, then fuzzily) in the translated utterance.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

OPEN, CLOSE = "[", "]"
_SPAN = re.compile(r"\[([^\[\]]*)\]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:])")
_WS = re.compile(r"\s+")


@dataclass
class Marked:
    """A source utterance with bracketed spans; ``order[k]`` is the slot index of span k."""

    text: str
    order: list[int]
    missing: list[int]  # slot indices whose value was not found in the source


def _find(utterance: str, value: str, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    """First case-insensitive, word-bounded occurrence of ``value`` not overlapping ``taken``."""
    pat = re.compile(r"(?<!\w)" + re.escape(value.strip()) + r"(?!\w)", re.IGNORECASE)
    for m in pat.finditer(utterance):
        if all(m.end() <= a or m.start() >= b for a, b in taken):
            return m.start(), m.end()
    return None


def mark_spans(utterance: str, values: list[str]) -> Marked:
    """Bracket every slot value found in ``utterance`` (utterances that already contain
    brackets are not marked: their spans could not be read back unambiguously)."""
    if OPEN in utterance or CLOSE in utterance:
        return Marked(utterance, [], list(range(len(values))))
    spans: list[tuple[int, int, int]] = []
    missing = []
    # longest values first so "new york city" wins over "york"
    for k in sorted(range(len(values)), key=lambda k: -len(values[k])):
        hit = _find(utterance, values[k], [(a, b) for a, b, _ in spans]) if values[k].strip() else None
        if hit is None:
            missing.append(k)
        else:
            spans.append((hit[0], hit[1], k))
    spans.sort()
    out, pos = [], 0
    for a, b, _ in spans:
        out += [utterance[pos:a], OPEN, utterance[a:b], CLOSE]
        pos = b
    out.append(utterance[pos:])
    return Marked("".join(out), [k for _, _, k in spans], sorted(missing))


def read_marked(translated: str, n_spans: int) -> tuple[str, list[str]] | None:
    """``(clean_text, span_texts)`` from a translated marked sentence, or None when the
    markers did not survive (wrong count, nesting, stray brackets, an empty span)."""
    spans = [m.group(1).strip() for m in _SPAN.finditer(translated)]
    if len(spans) != n_spans or any(not s for s in spans):
        return None
    clean = _SPAN.sub(lambda m: m.group(1).strip(), translated)
    if OPEN in clean or CLOSE in clean:
        return None
    return tidy(clean), spans


def tidy(text: str) -> str:
    """Collapse whitespace left by removed markers ("för  idag ?" -> "för idag?")."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _WS.sub(" ", text)).strip()


def locate(value: str, sentence: str, min_ratio: float = 0.8) -> str | None:
    """The piece of ``sentence`` that is ``value`` (case-insensitively), else the most similar
    run of words with similarity >= ``min_ratio``; None when nothing is close enough."""
    value = value.strip()
    if not value:
        return None
    m = re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", sentence, re.IGNORECASE)
    if m:
        return m.group(0)
    words = list(re.finditer(r"\S+", sentence))
    n = len(value.split())
    best, best_ratio = None, min_ratio
    for size in {max(1, n - 1), n, n + 1}:
        for i in range(len(words) - size + 1):
            a, b = words[i].start(), words[i + size - 1].end()
            cand = sentence[a:b].strip(".,!?;:\"'()")
            ratio = difflib.SequenceMatcher(None, value.lower(), cand.lower()).ratio()
            if ratio >= best_ratio and cand:
                best, best_ratio = cand, ratio
    return best
