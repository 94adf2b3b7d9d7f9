"""The decoding options of ``ptune eval``, ``ptune predict`` and ``ptune serve``, declared once.

Each command's config inherits :class:`DecodeOptions`, so the three commands share one flag,
help text, default and check per option, and their predictions come from the same
:mod:`ptune_cli.inference.job` code. The "known answers" that fill the defaults are the gold
answers of the test data for eval, and the run's training answers for predict and serve.

Kept free of heavy imports: ``ptune --help`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ptune_cli.options import PRECISION_ALIASES, PRECISION_HELP, Precision, flag_of, option

PANEL = "Prediction"


@dataclass
class DecodeOptions:
    """Decoding: how a prompt becomes a prediction (shared by eval, predict and serve)."""

    decode: Literal["auto", "generate", "structured", "rank"] = option(
        "auto", panel=PANEL,
        help="generate: greedy generation; structured: greedy generation that can only write the task's grammar "
             "(intent/slot: known intents and slot types, values copied from the input; else one of the known "
             "answers); rank: score each candidate label by log-likelihood (classification); auto: structured "
             "for intent/slot tasks of a run, else generate.")
    batch_size: int = option(32, panel=PANEL, affects_output=False,
                             help="Records per batch (32 measured fastest on CPU for multi-line answers).")
    model: str | None = option(None, panel=PANEL,
                               help="Base model (default: the run's base model; packaged:smollm2-135m for baselines).")
    max_new_tokens: int | None = option(
        None, panel=PANEL,
        help="Generation limit (default: longest known answer + 8 tokens; eval knows the gold answers, "
             "predict and serve the run's training answers, else 64).")
    labels: list[str] | None = option(None, panel=PANEL, sep=",",
                                      help="Comma-separated candidates for --decode rank (default: the answers in the run's training file, else the gold labels of --data).")
    device: str = option("auto", panel=PANEL, help="auto (cuda when available), cpu, cuda, cuda:N, mps.")
    precision: Precision = option("auto", panel=PANEL, aliases=PRECISION_ALIASES, help=PRECISION_HELP)
    threads: int | None = option(None, panel=PANEL, affects_output=False, help="CPU threads torch computes with (default: torch's own, one per core). Set it when other jobs share the CPU: a loaded 2-core machine ran 5x slower at the default than at --threads 1.")
    stop_at_newline: bool | None = option(None, panel=PANEL, flag="--stop-at-newline/--no-stop-at-newline",
                                          show_default=False,
                                          help="Stop at the first newline (default: when no known answer has a newline).")

    def decode_problems(self) -> list[str]:
        """The decoding options' own checks (each command's ``problems()`` adds them)."""
        p = []
        if self.batch_size < 1:
            p.append(f"{flag_of(self, 'batch_size')} must be at least 1 (got {self.batch_size})")
        if self.threads is not None and self.threads < 1:
            p.append(f"{flag_of(self, 'threads')} must be at least 1 (got {self.threads})")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            p.append(f"{flag_of(self, 'max_new_tokens')} must be at least 1 (got {self.max_new_tokens})")
        return p
