"""What a task's answers look like, stored with its prompts (``tasks[name]["labels"]`` of
prompt_table.json) so that eval, predict and serve need neither the cwd nor the training file.

Written by ``ptune train`` from the task's training records:

* intent/slot tasks (every answer has ``Intent:``): ``{"grammar": "intent-slot", "intents": […],
  "slot_types": […], "max_slots": k, "max_value_words": w, "answer_tokens": n}`` — what
  ``--decode structured`` may produce (:mod:`ptune_cli.inference.structured`);
* closed label sets (at most :data:`MAX_CLASSES` distinct answers): ``{"answers": […],
  "answer_tokens": n}`` — ``--decode rank``'s default candidates;
* anything else: ``{"answer_tokens": n}`` (the longest answer in tokens: the default generation
  budget is that + 8).

Tables written before this existed have no ``labels``: :func:`task_labels` then reads the
run's training file if it is still there (as before), else knows nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ptune_cli.labels import looks_like_intent_slot, parse_label_layout

MAX_CLASSES = 256  # more distinct answers than this: free text, not a label set


def describe_answers(answers: Iterable[str], tokenizer=None) -> dict:
    """The ``labels`` entry for a task trained on ``answers`` (``answer_tokens`` needs the tokenizer)."""
    distinct = sorted(set(answers))
    out: dict = {}
    if distinct and all(looks_like_intent_slot(a) for a in distinct):
        intents, types, max_slots, max_words = set(), set(), 0, 1
        for a in distinct:
            layout = parse_label_layout(a)
            if layout is None:  # not the grammar after all: a closed set or free text
                intents = None
                break
            intents.add(layout.intent.strip())
            for s in layout.slots or []:
                types.add(s.type.strip())
                max_words = max(max_words, len(s.value.split()))
            max_slots = max(max_slots, len(layout.slots or []))
        if intents is not None:
            out = {"grammar": "intent-slot", "intents": sorted(intents), "slot_types": sorted(types),
                   "max_slots": max_slots, "max_value_words": max_words}
    if not out and len(distinct) <= MAX_CLASSES:
        out = {"answers": distinct}
    if tokenizer is not None and distinct:
        lens = tokenizer(distinct, add_special_tokens=False)["input_ids"]
        out["answer_tokens"] = max(len(x) for x in lens)
    return out


def label_listing(labels: dict) -> str | None:
    """The text naming a task's closed answer set, which ``train --init labels`` starts the
    prompts from: ``"Intents: a, b.\nSlot types: x, y.\n"`` for intent/slot tasks (names as
    written, sorted), else ``"Answers: a, b, c.\n"``; None for free-text answers (QA)."""
    if is_intent_slot(labels):
        types = labels.get("slot_types") or []
        return ("Intents: " + ", ".join(labels["intents"]) + "."
                + ("\nSlot types: " + ", ".join(types) + "." if types else "") + "\n")
    if labels.get("answers"):
        return "Answers: " + ", ".join(labels["answers"]) + ".\n"
    return None


def answers_in_file(path, taskname: str, answer_field: str) -> list[str]:
    """The string answers of ``taskname``'s records in a JSONL file (records without a
    ``taskname`` count as the task's)."""
    from ptune_cli.io import iter_records

    return [r[answer_field] for _, r in iter_records(path, {}, allow_empty=True)
            if isinstance(r.get(answer_field), str) and r.get("taskname", taskname) == taskname]


def task_labels(run_meta: dict, taskname: str, answer_field: str = "label") -> dict:
    """The task's stored ``labels``; for an older table, described from the run's training file
    when it is still there; else ``{}``."""
    entry = (run_meta.get("tasks") or {}).get(taskname) or {}
    labels = entry.get("labels")
    if isinstance(labels, dict):
        return labels
    train = (run_meta.get("hyperparameters") or {}).get("train")
    if isinstance(train, str) and Path(train).is_file():
        return describe_answers(answers_in_file(train, taskname, answer_field))
    return {}


def is_intent_slot(labels: dict) -> bool:
    return labels.get("grammar") == "intent-slot" and bool(labels.get("intents"))

