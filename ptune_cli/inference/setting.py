"""One task's decoding, typed and resolved once (per task and prompt table, not per batch).

eval, predict and serve resolve a :class:`DecodeSetting` per task of the table
(:func:`ptune_cli.inference.job.resolve_setting`); the decoder gives every record its task's
setting, so records of different tasks share a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ptune_cli.ptuning.template import TaskTemplate


@dataclass(eq=False)  # compared by identity: rows with the same setting are the same task
class DecodeSetting:
    """How a task's records are decoded: its template and prompt (a [T, h] tensor, a
    :class:`~ptune_cli.ptuning.prefix.Prefix`, or None for a baseline), the generation limit,
    whether a newline ends the answer, the candidates of ``--decode rank``, the longest prompt
    that fits the model (``limit`` tokens, new tokens and the window rule counted) and the
    decoding mode (records of one mode share batches across tasks)."""

    template: TaskTemplate | None
    prompt: Any
    max_new_tokens: int = 32
    stop_at_newline: bool = True
    candidates: list[str] | None = None
    limit: int = 1 << 30
    decode: str = "generate"  # generate | rank: how this task's records are decoded

    @property
    def taskname(self) -> str:
        return self.template.taskname if self.template is not None else ""
