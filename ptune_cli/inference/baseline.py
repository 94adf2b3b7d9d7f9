"""Zero-, one- and few-shot baselines of the frozen model (no virtual tokens).

The task's template with its ``<|VIRTUAL_PROMPT_i|>`` markers removed is the prompt; for k shots,
k training records (drawn with a seed) are rendered with that same template, answer included,
and put in front of every test prompt. This is the published baseline the p-tuned numbers are
compared with.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ptune_cli.errors import UserError
from ptune_cli.io import display_name, iter_records, require_text_fields
from ptune_cli.ptuning.template import FIELD_RE, TaskTemplate

BASELINES = {"zero": 0, "one": 1, "few": None}
DEFAULT_FEW_SHOTS = 5
SHOTS_FIELD = "_ptune_shots"  # pseudo-field carrying the rendered shots into each record
_MARKER_AND_SPACE = re.compile(r"<\|VIRTUAL_PROMPT_\d+\|>[ \t]*")


def shots_for(kind: str, shots: int | None) -> int:
    """Number of examples for ``--baseline`` kind (``few`` defaults to 5)."""
    if kind not in BASELINES:
        raise UserError(f"--baseline: unknown kind '{kind}' (choose zero, one or few)")
    fixed = BASELINES[kind]
    if fixed is not None:
        if shots is not None and shots != fixed:
            raise UserError(f"--baseline {kind} uses {fixed} shot(s); drop --shots or use --baseline few")
        return fixed
    k = DEFAULT_FEW_SHOTS if shots is None else shots
    if k < 1:
        raise UserError(f"--shots must be at least 1 for --baseline few (got {k})")
    return k


def plain_text(tpl: TaskTemplate) -> str:
    """The template's text without virtual-token markers (and the spaces after them)."""
    return _MARKER_AND_SPACE.sub("", tpl.prompt_template).lstrip()


def render(text: str, record: dict) -> str:
    """Fill ``{field}`` placeholders from ``record`` in one pass (values are not re-scanned)."""
    return FIELD_RE.sub(lambda m: str(record[m.group(1)]), text)


def draw_shots(train_path: str, tpl: TaskTemplate, k: int, seed: int) -> list[tuple[int, dict]]:
    """``k`` ``(line, record)`` pairs drawn without replacement, seeded, from a training file;
    only records of the template's task (or without a ``taskname``) are candidates, so a
    multitask training file works."""
    pool = [(ln, r) for ln, r in iter_records(train_path) if r.get("taskname", tpl.taskname) == tpl.taskname]
    for ln, r in pool:
        require_text_fields(r, tpl.fields, train_path, ln)  # a shot is rendered: never str() of null
    if k > len(pool):
        raise UserError(f"{display_name(train_path)}: {len(pool)} records of task '{tpl.taskname}', fewer than --shots {k}")
    return random.Random(seed).sample(pool, k)


@dataclass
class Baseline:
    """A no-virtual-token template plus the shots placed before every test prompt."""

    template: TaskTemplate
    prefix: str
    shot_lines: list[int]

    def apply(self, record: dict) -> dict:
        """The record with the shots attached (for :func:`encode_example`)."""
        return {**record, SHOTS_FIELD: self.prefix}


def build_baseline(tpl: TaskTemplate, shots: list[tuple[int, dict]], *, one_line: bool) -> Baseline:
    """Template without markers, prefixed by the rendered shots (one per line for one-line
    answers, separated by a blank line otherwise)."""
    text = plain_text(tpl)
    sep = "\n" if one_line else "\n\n"
    prefix = "".join(render(text, rec) + sep for _, rec in shots)
    base = TaskTemplate(
        taskname=tpl.taskname,
        prompt_template="{" + SHOTS_FIELD + "}" + text,
        total_virtual_tokens=0,
        virtual_token_splits=[],
        answer_field=tpl.answer_field,
        truncate_field=tpl.truncate_field,
        answer_only_loss=tpl.answer_only_loss,
    )
    return Baseline(base, prefix, [line for line, _ in shots])
