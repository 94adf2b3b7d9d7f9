"""Training data: route records to their task template, validate, tokenize, and batch by
similar length (one task per batch, so a batch shares one prompt)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ptune_cli.errors import UserError, at
from ptune_cli.io import display_name, iter_records, text_field_problem
from ptune_cli.ptuning.template import Encoded, TaskTemplate, encode_example

MAX_LISTED = 8


@dataclass
class EncodedSet:
    """Tokenized examples of one file, with what was cut or skipped."""

    examples: list[Encoded]
    task_index: list[int]
    skipped: dict[str, int] = field(default_factory=dict)
    truncated: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    answers: dict[str, list[str]] = field(default_factory=dict)  # each task's answer-field values

    def __len__(self) -> int:
        return len(self.examples)


def _route(record: dict, templates: dict[str, TaskTemplate]) -> tuple[str | None, str | None]:
    """(taskname, problem) for one record."""
    name = record.get("taskname")
    if name is None:
        if len(templates) == 1:
            return next(iter(templates)), None
        return None, f"field 'taskname': missing (the template file has {len(templates)} tasks)"
    if name not in templates:
        return None, f"field 'taskname': '{name}' has no template (known: {', '.join(templates)})"
    return name, None


def load_examples(path, templates: dict[str, TaskTemplate], tokenizer, max_length: int, *, flag: str = "--train") -> EncodedSet:
    """Encode every record of ``path``; problems (unknown task, missing fields) are collected
    and reported together; examples too long even after truncation are skipped and counted."""
    name = display_name(path)
    order = list(templates)
    problems: list[str] = []
    out = EncodedSet([], [], {t: 0 for t in order}, {t: 0 for t in order}, {t: 0 for t in order})
    for lineno, rec in iter_records(path):
        task, problem = _route(rec, templates)
        if problem is None:
            tpl = templates[task]
            for f in tpl.fields:
                # the one rule of io.text_field_problem: never train on str() of null or a list
                problem = text_field_problem(rec, f)
                if problem is not None:
                    problem += f" (template '{task}' uses {{{f}}})"
                    break
        if problem is not None:
            problems.append(f"{at(name, lineno)}: {problem}")
            continue
        enc = encode_example(tpl, rec, tokenizer, max_length=max_length)
        if enc is None:
            out.skipped[task] += 1
            continue
        out.truncated[task] += int(enc.truncated)
        if isinstance(rec.get(tpl.answer_field), str):
            out.answers.setdefault(task, []).append(rec[tpl.answer_field])
        out.counts[task] += 1
        out.examples.append(enc)
        out.task_index.append(order.index(task))
    if problems:
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        raise UserError(f"{flag}: {len(problems)} bad record(s): " + "; ".join(problems[:MAX_LISTED]) + more)
    if not out.examples:
        raise UserError(f"{flag} {name}: no example fits in --max-length {max_length} ({sum(out.skipped.values())} skipped)")
    return out


def make_batches(data: EncodedSet, batch_size: int, seed: int, *, shuffle: bool = True) -> list[list[int]]:
    """Index batches of one task and similar length.

    Shuffled examples are sorted by length inside windows of 50 batches, cut into batches and
    the batches shuffled: little padding, yet a different mix every epoch (``seed``).
    """
    rng = random.Random(seed)
    batches: list[list[int]] = []
    for task in sorted(set(data.task_index)):
        idx = [i for i, t in enumerate(data.task_index) if t == task]
        if shuffle:
            rng.shuffle(idx)
        window = batch_size * 50
        for w in range(0, len(idx), window):
            chunk = sorted(idx[w : w + window], key=lambda i: len(data.examples[i].input_ids))
            batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def shard(batches: list[list[int]], rank: int, world: int, multiple: int = 1, *, pad: bool = True) -> list[list[int]]:
    """This process's batches; with ``pad`` the list is first cycled up to a multiple of
    ``world * multiple`` so every process runs the same number of steps."""
    if pad and batches:
        n = world * multiple
        target = -(-len(batches) // n) * n
        batches = [batches[i % len(batches)] for i in range(target)]
    return batches[rank::world]


def collate(data: EncodedSet, idx: list[int], pad_id: int):
    """Right-padded tensors for one batch: input_ids, attention_mask, virtual_mask, labels."""
    import torch

    exs = [data.examples[i] for i in idx]
    width = max(len(e.input_ids) for e in exs)
    n = len(exs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    vmask = torch.zeros((n, width), dtype=torch.bool)
    labels = torch.full((n, width), -100, dtype=torch.long)
    for r, e in enumerate(exs):
        k = len(e.input_ids)
        ids[r, :k] = torch.tensor(e.input_ids)
        attn[r, :k] = 1
        vmask[r, :k] = torch.tensor(e.virtual_mask)
        labels[r, :k] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": attn, "virtual_mask": vmask, "labels": labels}
