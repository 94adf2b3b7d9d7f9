"""Checks on one model output: what users were burned by (truncation, loops, empty output).

A :class:`Translation` carries its flags; the runner copies them onto the record
(``_translate_flags``) and counts them in the report. Nothing here drops or edits text.
"""

from __future__ import annotations

from dataclasses import dataclass

LENGTH_CAP = "length_cap"  # the model did not finish before the length cap (likely truncated)
REPETITION = "repetition"  # the output repeats a word or phrase far more than the source
EMPTY_OUTPUT = "empty_output"  # non-empty source, empty translation


@dataclass(frozen=True)
class Translation:
    """One translated string and its quality flags."""

    text: str
    flags: tuple[str, ...] = ()


def length_cap(n_input_tokens: int, ratio: float, max_length: int) -> int:
    """Output-token cap for one sentence: ``ratio * input + 10``, at most ``max_length``."""
    return max(1, min(max_length, int(ratio * n_input_tokens) + 10))


def _max_run(words: list[str], n: int) -> int:
    """Most consecutive repeats of any ``n``-word phrase."""
    best = 1
    for start in range(min(n, len(words))):
        run, prev = 1, None
        for i in range(start, len(words) - n + 1, n):
            gram = tuple(words[i : i + n])
            run = run + 1 if gram == prev else 1
            prev = gram
            best = max(best, run)
    return best


def _max_char_run(text: str, n: int) -> int:
    """Most consecutive repeats of any ``n``-character piece (catches "hehehehe…")."""
    best = 1
    for start in range(min(n, len(text))):
        run, prev = 1, None
        for i in range(start, len(text) - n + 1, n):
            piece = text[i : i + n]
            run = run + 1 if piece == prev else 1
            prev = piece
            best = max(best, run)
    return best


def is_repetitive(source: str, output: str, min_repeats: int = 4) -> bool:
    """True when ``output`` loops: a 1–4 word phrase (or 1–3 character piece) repeated
    ``min_repeats``+ times in a row, more often than anything in ``source`` repeats."""
    out_w, src_w = output.lower().split(), source.lower().split()
    for n in range(1, 5):
        run = _max_run(out_w, n)
        if run >= min_repeats and run > _max_run(src_w, n):
            return True
    for n in range(1, 4):  # loops inside one "word": scripts without spaces, subword loops
        run = _max_char_run(output, n)
        if run >= 3 * min_repeats and run > _max_char_run(source, n):
            return True
    return False


def check_output(source: str, output: str, finished: bool) -> Translation:
    """Flag one output; ``finished`` is False when generation stopped at the length cap."""
    flags = []
    if not finished:
        flags.append(LENGTH_CAP)
    if not output.strip():
        flags.append(EMPTY_OUTPUT)
    elif is_repetitive(source, output):
        flags.append(REPETITION)
    return Translation(output, tuple(flags))
