"""SQuAD v1.1 / v2.0 JSON (``data → paragraphs → qas``) → NeMo QA records, for ``ptune prepare``.

One record per question::

    {"taskname": "squad", "id": QA_ID, "context": …, "question": …,
     "answer": FIRST_GOLD, "answers": [ALL_GOLDS], "paragraph_id": "FILE_STEM:i:j"}

``paragraph_id`` (or ``--id-field``) is the same for every question of one paragraph, so
``ptune kfold --group-field paragraph_id`` keeps a context in one fold: a model never sees a test
question's context in training. v2.0's unanswerable questions (``is_impossible``) get the fixed
answer :data:`NO_ANSWER` (``--no-answer`` changes it) or are left out with ``--unanswerable
skip``, and counted either way. A malformed item is a :class:`~ptune_cli.prepare.BadRow` naming
the file and its JSON path (``data[3].paragraphs[0].qas[2].answers``), and so is a question id
given twice; a gold answer not found at its ``answer_start`` in the context is kept and
counted (:class:`Noted`), or refused with ``--strict``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptune_cli.errors import UserError

NO_ANSWER = "unanswerable"  # the answer a v2.0 impossible question is trained and scored on
GROUP_FIELD = "paragraph_id"
ANSWERABLE, UNANSWERABLE = "answerable", "unanswerable"
NOT_IN_CONTEXT, BAD_START = "answer not in its context", "answer_start does not point at the answer"


@dataclass
class LeftOut:
    """A question left out on purpose (not an error): counted by reason."""

    reason: str


@dataclass
class Noted:
    """A record kept with a problem worth counting (an answer not where ``answer_start`` says);
    ``ptune prepare`` reports the count, ``--strict`` refuses instead."""

    reason: str


def is_squad(data: Any) -> bool:
    """SQuAD v1.1/v2.0 JSON (``{"data": [articles…]}``, whatever key comes first); FiQA's files
    are keyed by id."""
    return isinstance(data, dict) and isinstance(data.get("data"), list)


def _articles(path: Path, data: Any) -> list:
    if not is_squad(data):
        raise UserError(f"{path}: data: expected {{\"data\": [articles…]}} (SQuAD v1.1/v2.0 JSON)")
    return data["data"]


def _nonempty_str(x) -> bool:
    return isinstance(x, str) and bool(x.strip())


def squad_rows(path: Path, data: Any, cfg, taskname: str, bad_row,
               seen_ids: set[str] | None = None) -> Iterator[dict | LeftOut | Noted]:
    """Records of one SQuAD file (``data``: its JSON, read strictly) in file order;
    ``bad_row(where, reason)`` builds the error rows; ``seen_ids`` (shared by the run's files)
    refuses a question id given twice."""
    group_field = cfg.id_field or GROUP_FIELD
    seen_ids = set() if seen_ids is None else seen_ids
    for i, article in enumerate(_articles(path, data)):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            yield bad_row(f"{path}: data[{i}].paragraphs", "expected a list of paragraphs")
            continue
        for j, para in enumerate(paragraphs):
            where = f"data[{i}].paragraphs[{j}]"
            context = para.get("context") if isinstance(para, dict) else None
            qas = para.get("qas") if isinstance(para, dict) else None
            if not _nonempty_str(context):
                yield bad_row(f"{path}: {where}.context", "expected a non-empty string")
                continue
            if not isinstance(qas, list):
                yield bad_row(f"{path}: {where}.qas", "expected a list of questions")
                continue
            for k, qa in enumerate(qas):
                fields = _question(qa, f"{where}.qas[{k}]", path, cfg, bad_row)
                if not isinstance(fields, dict):  # a BadRow or LeftOut
                    yield fields
                    continue
                note = _misplaced(qa, context)
                if note is not None:
                    a, reason = note
                    if cfg.strict:
                        yield bad_row(f"{path}: {where}.qas[{k}].answers[{a}]", f"{reason} (--strict)")
                        continue
                    yield Noted(reason)
                qid = fields.pop("id") or f"{path.stem}:{i}:{j}:{k}"
                if qid in seen_ids:
                    yield bad_row(f"{path}: {where}.qas[{k}].id", f"question id {qid!r} given twice (ids are unique)")
                    continue
                seen_ids.add(qid)
                yield {"taskname": taskname, "id": qid, "context": context, **fields,
                       group_field: f"{path.stem}:{i}:{j}"}


def _question(qa, where: str, path: Path, cfg, bad_row):
    """One ``qas`` item → the record's question and answer fields (or a BadRow / LeftOut)."""
    if not isinstance(qa, dict):
        return bad_row(f"{path}: {where}", "expected an object {id, question, answers}")
    if not _nonempty_str(qa.get("question")):
        return bad_row(f"{path}: {where}.question", "expected a non-empty string")
    qid = qa.get("id")
    if qid is not None and not isinstance(qid, (str, int)):
        return bad_row(f"{path}: {where}.id", f"expected a string, got {type(qid).__name__}")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        return bad_row(f"{path}: {where}.is_impossible", "expected true or false")
    answers = qa.get("answers", [] if impossible else None)
    if not isinstance(answers, list):
        return bad_row(f"{path}: {where}.answers", "expected a list of {text, answer_start}")
    texts = []
    for a, ans in enumerate(answers):
        text = ans.get("text") if isinstance(ans, dict) else None
        if not _nonempty_str(text):
            return bad_row(f"{path}: {where}.answers[{a}].text", "expected a non-empty string")
        texts.append(text.strip())
    if impossible or not texts:
        if not impossible:
            return bad_row(f"{path}: {where}.answers", "empty, but the question is not marked is_impossible")
        if cfg.unanswerable == "skip":
            return LeftOut(UNANSWERABLE)
        texts = [cfg.no_answer]
    return {"id": None if qid is None else str(qid), "question": qa["question"].strip(),
            "answer": texts[0], "answers": texts}


def _misplaced(qa: dict, context: str) -> tuple[int, str] | None:
    """The first gold answer (index, why) that is not where SQuAD says: its text at
    ``answer_start`` in the context (the answers are checked by :func:`_question` first)."""
    for a, answer in enumerate(qa.get("answers") or []):
        text, start = answer["text"], answer.get("answer_start")
        if text not in context:
            return a, NOT_IN_CONTEXT
        if not isinstance(start, int) or isinstance(start, bool) or context[start:start + len(text)] != text:
            return a, BAD_START
    return None


def count_key(rec: dict, no_answer: str) -> str:
    """What ``ptune prepare`` counts a QA record as."""
    return UNANSWERABLE if rec["answers"] == [no_answer] else ANSWERABLE
