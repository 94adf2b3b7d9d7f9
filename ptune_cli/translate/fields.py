"""Which strings of a record go through the model, and how the record is put back together.

A record becomes a :class:`RecordPlan` (validated up front, so bad input fails before any
translation). Translation happens in two passes over a chunk of plans:

* pass 1: text fields (the intent/slot utterance with its slot values bracketed) and, with
  ``--label-format text``, the label;
* pass 2: only for slot values that did not come back through the brackets: the clean
  utterance and each value on its own, located in the translation afterwards.

:func:`assemble` writes the translated strings back: intent names, slot types, the label's
layout, ``taskname`` and every unlisted field stay verbatim. Problems are recorded as flags
``"<field>:<flag>"`` (``"label:slot_projection:date"``) in the record's ``_translate_flags``.

QA records (a ``context`` to translate and an ``answer`` / ``answers``) get the same treatment as
slot values: every distinct gold answer is bracketed in the context, read back from the
translated context, else translated alone and located in it. An answer that ends up not
verbatim in the translated context is kept (translated alone) and flagged
``answers:answer_projection:K``; the record is never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ptune_cli.errors import UserError, at
from ptune_cli.labels import LabelLayout, LabelMap, parse_label_layout
from ptune_cli.translate.config import DEFAULT_FIELDS, TranslateConfig
from ptune_cli.translate.projection import Marked, locate, mark_spans, read_marked
from ptune_cli.translate.quality import Translation

SLOT_PROJECTION = "slot_projection"  # a slot value could not be found in the translated utterance
LABEL_KEPT = "label_kept"  # --label-format auto did not recognise the label; copied unchanged
ANSWER_PROJECTION = "answer_projection"  # a QA answer is not verbatim in the translated context
QA_CONTEXT = "context"


@dataclass
class Piece:
    """One string field: the stripped core is translated, surrounding whitespace kept."""

    field: str
    lead: str
    core: str
    trail: str

    @classmethod
    def of(cls, name: str, value: str) -> Piece:
        core = value.strip()
        if not core:
            return cls(name, value, "", "")
        start = value.index(core)
        return cls(name, value[:start], core, value[start + len(core) :])

    def wrap(self, text: str) -> str:
        return f"{self.lead}{text}{self.trail}"


@dataclass
class RecordPlan:
    lineno: int
    record: dict
    pieces: list[Piece] = field(default_factory=list)
    label_mode: str = "none"  # intent-slot | sentiment | text | keep | none
    label_piece: Piece | None = None
    layout: LabelLayout | None = None
    utterance: Piece | None = None  # the text field slot values are projected into
    marked: Marked | None = None
    sentiment: str | None = None
    flags: list[str] = field(default_factory=list)
    answers: list[str] | None = None  # QA: the distinct gold answers, projected into the context

    @property
    def slot_values(self) -> list[str]:
        """The spans projected into ``utterance``: slot values, or a QA record's answers."""
        if self.answers is not None:
            return self.answers
        return [s.value for s in self.layout.slots] if self.layout and self.layout.slots else []


def plan_record(record: dict, lineno: int, source: str, cfg: TranslateConfig, lexicon: LabelMap) -> RecordPlan:
    """Validate one record and decide what to translate; raises UserError with file:line:field."""
    plan = RecordPlan(lineno, record)
    names = cfg.fields or tuple(f for f in DEFAULT_FIELDS if f in record)
    if not names:
        raise UserError(f"{at(source, lineno)}: no text field to translate (looked for {', '.join(DEFAULT_FIELDS)}; name yours with --fields)")
    for name in names:
        if name not in record:
            raise UserError(f"{at(source, lineno, name)}: missing (it is listed in --fields)")
        value = record[name]
        if value is None:
            continue
        if not isinstance(value, str):
            raise UserError(f"{at(source, lineno, name)}: expected a string to translate, got {type(value).__name__}")
        plan.pieces.append(Piece.of(name, value))
    _plan_label(plan, source, cfg, lexicon)
    _plan_answers(plan, source)
    return plan


def _plan_answers(plan: RecordPlan, source: str) -> None:
    """QA records: bracket every distinct gold answer in the context to be translated."""
    rec = plan.record
    qa = QA_CONTEXT in rec and ("answer" in rec or "answers" in rec)
    if qa and not (isinstance(rec[QA_CONTEXT], str) and rec[QA_CONTEXT].strip()):
        got = "null" if rec[QA_CONTEXT] is None else repr(rec[QA_CONTEXT])[:20]
        raise UserError(f"{at(source, plan.lineno, QA_CONTEXT)}: expected the non-empty text the answers are in, "
                        f"got {got} (QA record)")
    if qa and "answers" in rec and (not isinstance(rec["answers"], list) or not rec["answers"]):
        raise UserError(f"{at(source, plan.lineno, 'answers')}: expected a non-empty list of strings, every gold "
                        f"answer (QA record{'; answer is ' + repr(rec['answer'])[:40] if rec.get('answer') else ''})")
    context = next((p for p in plan.pieces if p.field == QA_CONTEXT and p.core), None)
    if context is None or plan.utterance is not None or not qa:
        return
    answers = rec.get("answers", [rec.get("answer")])
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{at(source, plan.lineno, 'answers')}: expected a list of strings (QA record)")
    if "answer" in rec and not isinstance(rec["answer"], str):
        raise UserError(f"{at(source, plan.lineno, 'answer')}: expected a string (QA record)")
    values = list(dict.fromkeys(a.strip() for a in [*answers, rec.get("answer") or ""] if a.strip()))
    plan.answers, plan.utterance = values, context
    plan.marked = mark_spans(context.core, values)


def _plan_label(plan: RecordPlan, source: str, cfg: TranslateConfig, lexicon: LabelMap) -> None:
    name, mode = cfg.label_field, cfg.label_format
    if mode == "keep" or name not in plan.record:
        if mode in ("intent-slot", "sentiment", "text"):
            raise UserError(f"{at(source, plan.lineno, name)}: missing label (--label-format {mode}; use --label-field or --label-format keep)")
        return
    label = plan.record[name]
    if not isinstance(label, str):
        if mode != "auto":
            raise UserError(f"{at(source, plan.lineno, name)}: expected a string label, got {type(label).__name__}")
        plan.label_mode = "keep"
        plan.flags.append(f"{name}:{LABEL_KEPT}")
        return
    if mode in ("auto", "intent-slot"):
        layout = parse_label_layout(label)
        if layout is not None:
            plan.label_mode, plan.layout = "intent-slot", layout
            if layout.slots:
                # project into the first non-empty text field (the utterance)
                plan.utterance = next((p for p in plan.pieces if p.core), None)
                if plan.utterance is not None:
                    plan.marked = mark_spans(plan.utterance.core, plan.slot_values)
                else:  # nothing to project into: values kept as they are, and said so
                    plan.flags += [f"{name}:{SLOT_PROJECTION}:{s.type}" for s in layout.slots]
            return
        if mode == "intent-slot":
            raise UserError(f"{at(source, plan.lineno, name)}: not an 'Intent: … Slots: …' label ({label[:40]!r}; use --label-format keep or text)")
    if mode in ("auto", "sentiment"):
        found = lexicon.lookup(label)
        if found is not None:
            plan.label_mode, plan.sentiment = "sentiment", found
            return
        if mode == "sentiment":
            raise UserError(f"{at(source, plan.lineno, name)}: label {label!r} is not in lexicon '{lexicon.name}' (add it there, or use --label-format text|keep)")
    if mode == "text":
        plan.label_mode, plan.label_piece = "text", Piece.of(name, label)
        return
    plan.label_mode = "keep"
    plan.flags.append(f"{name}:{LABEL_KEPT}")


def _marked_ok(plan: RecordPlan) -> bool:
    return bool(plan.marked and plan.marked.order)


def first_pass(plan: RecordPlan) -> list[str]:
    """Strings pass 1 needs (stripped, non-empty; empty fields never reach the model)."""
    out = []
    for p in plan.pieces:
        if not p.core:
            continue
        out.append(plan.marked.text if p is plan.utterance and _marked_ok(plan) else p.core)
    if plan.label_piece and plan.label_piece.core:
        out.append(plan.label_piece.core)
    return out


def second_pass(plan: RecordPlan, got: Mapping[str, Translation]) -> list[str]:
    """Strings needed when brackets did not carry every slot value back."""
    if plan.utterance is None or plan.marked is None:
        return []
    values = plan.slot_values
    if _marked_ok(plan) and read_marked(got[plan.marked.text].text, len(plan.marked.order)) is not None:
        return [values[k].strip() for k in plan.marked.missing if values[k].strip()]
    return [plan.utterance.core] + [v.strip() for v in values if v.strip()]


def assemble(plan: RecordPlan, got: Mapping[str, Translation], label_field: str) -> tuple[dict, list[str], str]:
    """The translated record, its flags, and how its slots were projected
    (``marked`` / ``fallback`` / ``none``)."""
    rec = dict(plan.record)  # key order and unlisted fields kept
    flags = list(plan.flags)
    texts, how = _project(plan, got, flags, label_field) if plan.utterance else ({}, "none")
    if plan.answers is not None:
        _set_answers(rec, plan, texts, flags)
        how = f"qa:{how}"
    for p in plan.pieces:
        if not p.core:
            continue  # empty / whitespace-only: copied unchanged
        if p is plan.utterance:
            text, tr_flags = texts["utterance"], texts["flags"]
        else:
            tr = got[p.core]
            text, tr_flags = tr.text, tr.flags
        rec[p.field] = p.wrap(text)
        flags += [f"{p.field}:{f}" for f in tr_flags]
    if plan.label_mode == "sentiment":
        rec[label_field] = plan.sentiment
    elif plan.label_mode == "text" and plan.label_piece.core:
        tr = got[plan.label_piece.core]
        rec[label_field] = plan.label_piece.wrap(tr.text)
        flags += [f"{label_field}:{f}" for f in tr.flags]
    elif plan.label_mode == "intent-slot" and plan.layout.slots is not None:
        rec[label_field] = plan.layout.format()
    return rec, flags, how


def _project(plan: RecordPlan, got: Mapping[str, Translation], flags: list[str], label_field: str):
    """Set translated slot values on ``plan.layout``; returns the utterance text and flags."""
    values = plan.slot_values
    new = list(values)
    read = None
    if _marked_ok(plan):
        tr = got[plan.marked.text]
        read = read_marked(tr.text, len(plan.marked.order))
    if read is not None:
        utterance, spans = read
        for k, span in zip(plan.marked.order, spans, strict=True):
            new[k] = span
        todo, how, utt_flags = plan.marked.missing, "marked", tr.flags
    else:
        clean = got[plan.utterance.core]
        utterance, todo, how, utt_flags = clean.text, range(len(values)), "fallback", clean.flags
    for k in todo:
        value = values[k].strip()
        if not value:
            continue
        alone = got[value].text
        found = locate(alone, utterance)
        new[k] = found if found is not None else alone
        if found is None and plan.answers is None:
            flags.append(f"{label_field}:{SLOT_PROJECTION}:{plan.layout.slots[k].type}")
    if plan.answers is not None:
        return {"utterance": utterance, "flags": utt_flags, "values": new}, how
    for slot, value in zip(plan.layout.slots, new, strict=True):
        slot.value = value
    return {"utterance": utterance, "flags": utt_flags}, how


def _set_answers(rec: dict, plan: RecordPlan, texts: dict, flags: list[str]) -> None:
    """``answer`` / ``answers`` of a QA record in the translated context's words; an answer not
    verbatim in that context is flagged (with its index in ``answers``)."""
    context = texts["utterance"]
    mapping = {}
    for k, (old, new) in enumerate(zip(plan.answers, texts["values"], strict=True)):
        if new not in context:
            new = locate(new, context) or new  # a marked span that tidy() reshaped
        mapping[old] = new
        if new not in context:
            flags.append(f"answers:{ANSWER_PROJECTION}:{k}")
    if isinstance(rec.get("answers"), list):
        rec["answers"] = [mapping.get(a.strip(), a) for a in rec["answers"]]
    if isinstance(rec.get("answer"), str):
        rec["answer"] = mapping.get(rec["answer"].strip(), rec["answer"])
