"""``ptune prepare``: public source datasets → the toolkit's JSONL (NeMo record format).

Three sources, each read from local files (the Makefile fetches them when online):

* ``nlu-eval`` — NLU-Evaluation-Data annotated CSV (``;``-separated, ``[type : value]`` markup in
  ``answer_annotation``) → ``intent_and_slot`` records with
  ``"\\nIntent: scenario_intent\\nSlots: type(value), …"`` (``Slots: None`` when empty). Adjacent
  spans of one type with only spaces between them are merged into one slot, as NeMo's
  word-level grouping does.
* ``phrasebank`` — Financial PhraseBank ``Sentences_*.txt`` (``sentence@label`` lines,
  ISO-8859-1 in the original release) → ``sentiment-task`` records.
* ``fiqa`` — FiQA 2018 task-1 JSON (``{id: {sentence, info: [{target, sentiment_score}]}}``) →
  one ``sentiment-task`` record per (text, target): ``"<text> Sentiment for <target>"``, label
  from the score: ``< -t`` negative, ``[-t, t)`` neutral, ``>= t`` positive (t = 0.1 by default).
* ``squad`` — SQuAD v1.1 / v2.0 JSON → ``squad`` QA records (:mod:`ptune_cli.squad`: context,
  question, answer, answers, and a paragraph id shared by the questions of one paragraph).

A bad row stops the run with ``file:line`` and what is wrong; with ``skip_bad`` it is left out
and listed in the result instead (never dropped silently).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ptune_cli.errors import UserError, at
from ptune_cli.io import (
    STDIO,
    check_distinct_inputs,
    check_encoding,
    check_outputs,
    read_json,
    read_text,
    write_records,
)
from ptune_cli.labels import format_intent_slot, parse_intent_slot
from ptune_cli.options import option, validate
from ptune_cli.squad import NO_ANSWER, LeftOut, Noted, count_key, is_squad, squad_rows

DEFAULT_TASKNAMES = {"nlu-eval": "intent_and_slot", "phrasebank": "sentiment-task", "fiqa": "sentiment-task",
                     "squad": "squad"}
SENTIMENT_LABELS = ("positive", "negative", "neutral")
_SUFFIX_SOURCE = {".csv": "nlu-eval", ".txt": "phrasebank", ".json": "fiqa"}
_RECORD_FIELDS = ("taskname", "sentence", "utterance", "label", "id", "context", "question", "answer", "answers", "")


@dataclass
class BadRow:
    """One source row that cannot be converted: where it is and what is wrong."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass
class PrepareConfig:
    """Options of ``ptune prepare``."""

    inputs: list[Path] = option(argument=True, show_default=False,
                                help="Source files, converted in order into one JSONL.")
    output: str = option(STDIO, short="-o", help="Output JSONL, or - for stdout.")
    source: Literal["auto", "nlu-eval", "phrasebank", "fiqa", "squad"] = option(
        "auto", help="nlu-eval (annotated CSV), phrasebank (sentence@label .txt), fiqa (task-1 JSON), "
        "squad (SQuAD v1.1/v2.0 JSON), or auto by suffix (.csv/.txt/.json; a .json whose top level has a "
        "\"data\" list is squad).")
    taskname: str | None = option(
        None, help="taskname field (default: intent_and_slot for nlu-eval, sentiment-task otherwise).")
    encoding: str = option(
        "auto", help="phrasebank: text encoding; auto = UTF-8 if valid, else ISO-8859-1 (the original release).")
    neutral_band: float = option(
        0.1, help="fiqa: score < -band negative, \\[-band, band) neutral, >= band positive.")
    utterance_column: str = option(
        "answer_from_anno", help="nlu-eval: utterance column; the de-bracketed annotation when the CSV lacks it.")
    skip_bad: bool = option(
        False, flag="--skip-bad", help="Leave bad rows out (each listed on stderr) instead of stopping at the first.")
    id_field: str | None = option(
        None, help="Add the source item's id (FILE_STEM:KEY or FILE_STEM:LINE) under this field; fiqa targets of "
        "one text share it, for `ptune kfold --group-field`; squad: the paragraph id (default field paragraph_id).")
    unanswerable: Literal["keep", "skip"] = option(
        "keep", help="squad v2.0 questions marked is_impossible: keep (answer --no-answer) or skip (counted).")
    no_answer: str = option(NO_ANSWER, help="squad: the answer of an unanswerable question.")
    strict: bool = option(False, flag="--strict", help="squad: refuse a gold answer that is not at its answer_start "
                          "in the context (default: keep it and count it).")

    def problems(self) -> list[str]:
        """Checks beyond the types (:func:`ptune_cli.options.validate` lists them all)."""
        problems = []
        if not self.inputs:
            problems.append("give at least one INPUT file")
        for p in self.inputs:
            if not Path(p).is_file():
                problems.append(f"INPUT {p}: no such file")
        if self.source == "auto":
            unknown = [str(p) for p in self.inputs if Path(p).suffix.lower() not in _SUFFIX_SOURCE]
            if unknown:
                problems.append(f"--source auto cannot tell the format of {', '.join(unknown)} (give --source)")
        if not 0.0 <= self.neutral_band < 1.0:
            problems.append(f"--neutral-band must be in [0, 1) (got {self.neutral_band})")
        if self.encoding != "auto":
            try:
                "".encode(self.encoding)
            except LookupError:
                problems.append(f"--encoding: unknown encoding {self.encoding!r}")
        if not self.no_answer.strip():
            problems.append("--no-answer must not be empty")
        if self.id_field is not None and self.id_field in _RECORD_FIELDS:
            problems.append(f"--id-field {self.id_field!r} would overwrite a record field; pick another name")
        return problems

    def source_of(self, path: Path) -> str:
        """The reader of ``path``: --source, else by suffix (``json``: squad or fiqa, decided by
        the file's structure once it is read)."""
        if self.source != "auto":
            return self.source
        source = _SUFFIX_SOURCE[Path(path).suffix.lower()]
        return "json" if source == "fiqa" else source


@dataclass
class PrepareResult:
    """What ``run_prepare`` wrote: counts per label and per input, and the rows left out."""

    records: int = 0
    labels: Counter = field(default_factory=Counter)
    per_input: dict[str, int] = field(default_factory=dict)
    skipped: list[BadRow] = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)  # left out on purpose (squad --unanswerable skip)
    noted: Counter = field(default_factory=Counter)  # kept, with a problem worth counting (squad answers)


# ---------------------------------------------------------------------------------------------
# NLU-Evaluation-Data

_SPAN = re.compile(r"\[([^\[\]]*)\]")
_WS = re.compile(r"\s+")


def parse_annotation(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``"wake me at [time : seven am]"`` → (plain utterance, [(type, value)]) with merging.

    Raises ``ValueError`` on unbalanced brackets or a span without ``type : value``.
    """
    pieces: list[str] = []
    spans: list[tuple[str, str, bool]] = []  # (type, value, only-spaces-before)
    pos = 0
    for m in _SPAN.finditer(text):
        between = text[pos : m.start()]
        if "[" in between or "]" in between:
            raise ValueError(f"unbalanced brackets near {between.strip()[:30]!r}")
        stype, sep, value = m.group(1).partition(":")
        if not sep or not stype.strip() or not value.strip():
            raise ValueError(f"slot span [{m.group(1)}] is not [type : value]")
        pieces.append(between)
        spans.append((stype.strip(), value.strip(), not between.strip() and bool(spans)))
        pieces.append(value.strip())
        pos = m.end()
    tail = text[pos:]
    if "[" in tail or "]" in tail:
        raise ValueError(f"unbalanced brackets near {tail.strip()[:30]!r}")
    pieces.append(tail)
    merged: list[tuple[str, str]] = []
    for stype, value, adjacent in spans:
        if adjacent and merged and merged[-1][0] == stype:
            merged[-1] = (stype, f"{merged[-1][1]} {value}")
        else:
            merged.append((stype, value))
    return "".join(pieces).strip(), merged


def _with_id(rec: dict, cfg: PrepareConfig, source_id: str) -> dict:
    """``rec`` plus the source item's id under ``cfg.id_field`` (when asked for)."""
    if cfg.id_field:
        rec[cfg.id_field] = source_id
    return rec


def _nlu_eval_rows(path: Path, cfg: PrepareConfig, taskname: str) -> Iterator[dict | BadRow]:
    text = read_text(path, "CSV")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=";")
    missing = [c for c in ("scenario", "intent", "answer_annotation") if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{at(path, 1)}: CSV header lacks {', '.join(missing)} (is this NLU-Evaluation-Data with ';' separators?)")
    start = 2
    for row in reader:
        line, where = start, at(path, start)
        start = reader.line_num + 1
        if None in row or any(v is None for v in row.values()):
            yield BadRow(where, f"expected {len(reader.fieldnames)} ';'-separated fields")
            continue
        scenario, intent = row["scenario"].strip(), row["intent"].strip()
        try:
            plain, slots = parse_annotation(row["answer_annotation"])
        except ValueError as e:
            yield BadRow(f"{where}: field 'answer_annotation'", str(e))
            continue
        utterance = row.get(cfg.utterance_column)
        utterance = plain if utterance is None else utterance.strip()
        if not scenario or not intent or not utterance:
            yield BadRow(where, "empty scenario, intent or utterance")
            continue
        rec = {"taskname": taskname, "utterance": utterance, "label": format_intent_slot(f"{scenario}_{intent}", slots)}
        yield _with_id(rec, cfg, f"{path.stem}:{line}")


# ---------------------------------------------------------------------------------------------
# Financial PhraseBank


def decode_text(data: bytes, encoding: str) -> str:
    """``auto``: strict UTF-8 (re-encoded copies), else ISO-8859-1 (the original release)."""
    if encoding != "auto":
        return data.decode(encoding)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("iso-8859-1")


def _phrasebank_rows(path: Path, cfg: PrepareConfig, taskname: str) -> Iterator[dict | BadRow]:
    data = path.read_bytes()
    if cfg.encoding == "auto":  # else the user named the encoding (UTF-16 included)
        check_encoding(data[:4096], str(path))
    try:
        text = decode_text(data, cfg.encoding)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not valid {cfg.encoding} (byte {e.start + 1}); try --encoding auto") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        sentence, sep, label = line.rpartition("@")
        label = label.strip().lower()
        if not sep:
            yield BadRow(at(path, lineno), "no '@' separating sentence and label")
        elif label not in SENTIMENT_LABELS:
            yield BadRow(at(path, lineno), f"label {label!r} is not one of {', '.join(SENTIMENT_LABELS)}")
        elif not sentence.strip():
            yield BadRow(at(path, lineno), "empty sentence")
        else:
            yield _with_id({"taskname": taskname, "sentence": sentence.strip(), "label": label}, cfg, f"{path.stem}:{lineno}")


# ---------------------------------------------------------------------------------------------
# FiQA 2018 task 1


def fiqa_label(score: float, band: float = 0.1) -> str:
    """``< -band`` negative, ``[-band, band)`` neutral, ``>= band`` positive."""
    if score < -band:
        return "negative"
    return "neutral" if score < band else "positive"


def _key_lines(text: str) -> dict[str, int]:
    """Line number of each top-level ``"id": {`` in a pretty-printed JSON object (for errors)."""
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        m = re.match(r'\s*"([^"]+)"\s*:\s*\{', line)
        if m:
            lines.setdefault(m.group(1), n)
    return lines


def _fiqa_rows(path: Path, cfg: PrepareConfig, taskname: str, data) -> Iterator[dict | BadRow]:
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object keyed by id (FiQA task-1 format)")
    lines = _key_lines(read_text(path, "JSON"))
    for key, item in data.items():
        where = f"{at(path, lines.get(key))}: id {key!r}"
        if not isinstance(item, dict) or not isinstance(item.get("sentence"), str) or not isinstance(item.get("info"), list):
            yield BadRow(where, "expected {'sentence': str, 'info': [...]}")
            continue
        sentence = _WS.sub(" ", item["sentence"]).strip()
        for i, info in enumerate(item["info"]):
            target = info.get("target") if isinstance(info, dict) else None
            score = info.get("sentiment_score") if isinstance(info, dict) else None
            try:  # a number, or the number as a string (the original release); never true/false
                value = math.nan if isinstance(score, bool) else float(score)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):  # NaN would compare as "positive"
                yield BadRow(f"{where}: info[{i}]", f"sentiment_score {score!r} is not a number")
                continue
            if not isinstance(target, str) or not target.strip():
                yield BadRow(f"{where}: info[{i}]", "missing target")
                continue
            rec = {
                "taskname": taskname,
                "sentence": f"{sentence} Sentiment for {target.strip()}",
                "label": fiqa_label(value, cfg.neutral_band),
            }
            # one id per text: its targets share it, so `kfold --group-field` keeps them together
            yield _with_id(rec, cfg, f"{path.stem}:{key}")


_TEXT_READERS = {"nlu-eval": _nlu_eval_rows, "phrasebank": _phrasebank_rows}


def _rows(path: Path, cfg: PrepareConfig, seen_ids: set[str]) -> tuple[str, Iterator]:
    """``(source, rows)`` of one input; a JSON file is read once, strictly (duplicate keys,
    NaN, nesting: one line), and is SQuAD or FiQA by its structure."""
    source = cfg.source_of(path)
    if source in _TEXT_READERS:
        return source, _TEXT_READERS[source](path, cfg, cfg.taskname or DEFAULT_TASKNAMES[source])
    data = read_json(path, "JSON")
    if source == "json":
        source = "squad" if is_squad(data) else "fiqa"
    taskname = cfg.taskname or DEFAULT_TASKNAMES[source]
    if source == "squad":
        return source, squad_rows(path, data, cfg, taskname, BadRow, seen_ids)
    return source, _fiqa_rows(path, cfg, taskname, data)


def _count_key(source: str, rec: dict, cfg: PrepareConfig) -> str:
    """The stratum a record is counted under: intent for intent/slot, (un)answerable for QA."""
    if source == "squad":
        return count_key(rec, cfg.no_answer)
    return parse_intent_slot(rec["label"]).intent if source == "nlu-eval" else rec["label"]


def iter_prepared(cfg: PrepareConfig, result: PrepareResult) -> Iterator[dict]:
    """Converted records of every input in order; bad rows raise or go to ``result.skipped``."""
    seen_ids: set[str] = set()  # SQuAD question ids over every input
    for path in cfg.inputs:
        path = Path(path)
        source, rows = _rows(path, cfg, seen_ids)
        n = 0
        for rec in rows:
            if isinstance(rec, LeftOut):
                result.left_out[rec.reason] += 1
                continue
            if isinstance(rec, Noted):
                result.noted[rec.reason] += 1
                continue
            if isinstance(rec, BadRow):
                if not cfg.skip_bad:
                    raise UserError(f"{rec} (fix the row, or pass --skip-bad to leave it out)")
                result.skipped.append(rec)
                continue
            n += 1
            result.labels[_count_key(source, rec, cfg)] += 1
            yield rec
        result.per_input[str(path)] = n
    if not sum(result.per_input.values()):
        # raised inside the writer, so no output file is left behind
        raise UserError(f"{', '.join(map(str, cfg.inputs))}: no records converted")


def run_prepare(cfg: PrepareConfig) -> PrepareResult:
    """Convert ``cfg.inputs`` into one JSONL file at ``cfg.output`` (atomic; ``-`` = stdout)."""
    validate(cfg)
    inputs = [("INPUT", p) for p in cfg.inputs]
    check_distinct_inputs(inputs)  # the same file twice would duplicate every record
    check_outputs({"-o": cfg.output}, inputs)
    result = PrepareResult()
    result.records = write_records(cfg.output, iter_prepared(cfg, result))
    return result
