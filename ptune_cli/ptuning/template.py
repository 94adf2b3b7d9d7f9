"""NeMo-style task templates: parse, validate (every problem at once), render and tokenize.

A template such as ``"<|VIRTUAL_PROMPT_0|> {sentence}:{label}"`` is split into text runs and
virtual-token markers. Each text run is tokenized on its own; the answer value is tokenized
separately from the text before it, so a prompt rendered without the answer is an exact token
prefix of the full example (what generation at inference needs).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.io import loads_strict, read_text

MARKER_RE = re.compile(r"<\|VIRTUAL_PROMPT_(\d+)\|>")
FIELD_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")
_KEYS = {
    "taskname",
    "prompt_template",
    "total_virtual_tokens",
    "virtual_token_splits",
    "answer_field",
    "truncate_field",
    "answer_only_loss",
}
_REQUIRED = ("taskname", "prompt_template", "total_virtual_tokens", "virtual_token_splits", "answer_field")


@dataclass
class TaskTemplate:
    """One task's template (NeMo keys)."""

    taskname: str
    prompt_template: str
    total_virtual_tokens: int
    virtual_token_splits: list[int]
    answer_field: str
    truncate_field: str | None = None
    answer_only_loss: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def fields(self) -> list[str]:
        """Record fields the template uses, in order (the answer field last)."""
        return FIELD_RE.findall(self.prompt_template)

    @property
    def input_fields(self) -> list[str]:
        return [f for f in self.fields if f != self.answer_field]


def unbalanced_brace(text: str) -> int | None:
    """Index of the first ``{`` left open (another ``{`` or the end comes first) or ``}`` never
    opened, else None. ``{name}`` fields and other balanced braces are fine."""
    open_at = None
    for i, ch in enumerate(text):
        if ch == "{":
            if open_at is not None:
                return open_at
            open_at = i
        elif ch == "}":
            if open_at is None:
                return i
            open_at = None
    return open_at


_DOUBLED_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*)\s*\}\}")
_BRACED_RE = re.compile(r"\{([^{}]*)\}")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def _near_fields(tpl: str) -> list[str]:
    """Braces that look meant as a field but would stay literal prompt text: ``{ sentence }``
    (spaces) and ``{0}`` (a positional placeholder). Other braced text (``{}``, ``{a b}``) is
    kept as written."""
    out = []
    for m in _BRACED_RE.finditer(tpl):
        inner = m.group(1)
        name = inner.strip()
        if name.isdigit():
            out.append(f"prompt_template: '{m.group(0)}' at character {m.start() + 1} is not a field "
                       "(positional placeholders are not filled; name the record's field, e.g. {sentence})")
        elif name != inner and _NAME_RE.fullmatch(name):
            out.append(f"prompt_template: '{m.group(0)}' at character {m.start() + 1} would stay literal text; "
                       f"write the field without spaces, {{{name}}}")
    return out


def _problems(d: dict) -> list[str]:
    out = []
    unknown = sorted(k for k in d if k not in _KEYS and not str(k).startswith("_"))
    if unknown:
        out.append(f"unknown key(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(_KEYS))})")
    for k in _REQUIRED:
        if k not in d:
            out.append(f"missing key '{k}'")
    types = {
        "taskname": str,
        "prompt_template": str,
        "answer_field": str,
        "total_virtual_tokens": int,
        "virtual_token_splits": list,
        "answer_only_loss": bool,
    }
    for k, typ in types.items():
        if k in d and (not isinstance(d[k], typ) or (typ is int and isinstance(d[k], bool))):
            out.append(f"'{k}' must be {typ.__name__}, got {type(d[k]).__name__}")
    if d.get("truncate_field") is not None and not isinstance(d["truncate_field"], str):
        out.append("'truncate_field' must be a string or null")
    if out:
        return out
    tpl, total, splits = d["prompt_template"], d["total_virtual_tokens"], d["virtual_token_splits"]
    doubled = _DOUBLED_RE.search(tpl)
    if doubled:  # Jinja/format habit: not an unbalanced brace, a field written twice over
        return [f"prompt_template {tpl!r}: '{doubled.group(0)}' at character {doubled.start() + 1}: fields are "
                f"written with single braces, {{{doubled.group(1)}}}"]
    brace = unbalanced_brace(tpl)
    if brace is not None:
        # the fields cannot be read: checks of answer_field/truncate_field would only mislead
        return [f"prompt_template {tpl!r} has an unbalanced '{tpl[brace]}' at character {brace + 1} "
                "(fields are written {name})"]
    out += _near_fields(tpl)
    if not d["taskname"].strip():
        out.append("'taskname' is empty")
    if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in splits):
        out.append(f"'virtual_token_splits' must be positive integers, got {splits}")
    elif sum(splits) != total:
        out.append(f"virtual_token_splits {splits} sum to {sum(splits)}, not total_virtual_tokens {total}")
    if total < 0:
        out.append(f"'total_virtual_tokens' must be >= 0, got {total}")
    markers = [int(m) for m in MARKER_RE.findall(tpl)]
    if len(markers) != len(splits):
        out.append(f"prompt_template has {len(markers)} <|VIRTUAL_PROMPT_i|> marker(s) but {len(splits)} virtual_token_splits")
    elif markers != list(range(len(markers))):
        out.append(f"markers must be numbered 0, 1, … in order, got {markers}")
    fields = FIELD_RE.findall(tpl)
    ans = d["answer_field"]
    if ans not in fields:
        out.append(f"answer_field '{ans}' does not appear as {{{ans}}} in prompt_template")
    elif not tpl.endswith("{" + ans + "}"):
        out.append(f"the answer field {{{ans}}} must end prompt_template (it is generated at inference)")
    elif fields.count(ans) > 1:
        out.append(f"the answer field {{{ans}}} appears more than once")
    trunc = d.get("truncate_field")
    if trunc is not None and trunc not in fields:
        out.append(f"truncate_field '{trunc}' does not appear in prompt_template")
    elif trunc is not None and trunc == ans:
        out.append("truncate_field must not be the answer field")
    return out


def template_from_dict(d: dict, source: str = "<dict>") -> TaskTemplate:
    """Validate a template dict; :class:`UserError` lists every problem at once."""
    if not isinstance(d, dict):
        raise UserError(f"{source}: expected a template object, got {type(d).__name__}")
    problems = _problems(d)
    if problems:
        name = d.get("taskname", "?")
        raise UserError(f"{source}: template '{name}': " + "; ".join(problems))
    return TaskTemplate(
        taskname=d["taskname"],
        prompt_template=d["prompt_template"],
        total_virtual_tokens=d["total_virtual_tokens"],
        virtual_token_splits=list(d["virtual_token_splits"]),
        answer_field=d["answer_field"],
        truncate_field=d.get("truncate_field"),
        answer_only_loss=d.get("answer_only_loss", True),
    )


def load_templates(path) -> dict[str, TaskTemplate]:
    """Templates from a JSON file: one template object, or a list of them under ``"tasks"``
    (or a top-level list). ``"_comment"`` keys are ignored. Every problem is reported at once."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such template file")
    try:
        data = loads_strict(read_text(p, "template file"))
    except ValueError as e:  # JSONDecodeError, NaN, duplicate keys
        raise UserError(f"{p}: invalid JSON ({e})") from None
    items = data.get("tasks") if isinstance(data, dict) and "tasks" in data else data
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise UserError(f"{p}: expected a template object or a non-empty list under 'tasks'")
    problems, out = [], {}
    for i, d in enumerate(items):
        where = f"{p}: tasks[{i}]" if len(items) > 1 else str(p)
        try:
            t = template_from_dict(d, where)
        except UserError as e:
            problems.append(str(e))
            continue
        if t.taskname in out:
            problems.append(f"{where}: duplicate taskname '{t.taskname}'")
        out[t.taskname] = t
    if problems:
        raise UserError(" | ".join(problems))
    return out


@dataclass
class Encoded:
    """One tokenized example (see :func:`encode_example`)."""

    input_ids: list[int]
    virtual_mask: list[bool]
    labels: list[int]
    answer_start: int
    truncated: bool
    taskname: str = field(default="")


_BOS_CACHE: dict[int, tuple[object, bool]] = {}


def uses_bos(tokenizer) -> bool:
    """True when the tokenizer defines a BOS token and adds it to encoded text."""
    hit = _BOS_CACHE.get(id(tokenizer))
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    bos = tokenizer.bos_token_id
    flag = bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    _BOS_CACHE[id(tokenizer)] = (tokenizer, flag)
    return flag


def _text(record: dict, name: str, tpl: TaskTemplate) -> str:
    """A field's text; readers check with io.text_field_problem first (file:line), this is the
    last guard against encoding str() of null, a number or a list."""
    value = record[name]
    if not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        raise UserError(f"field '{name}': expected a string, got {got} (template '{tpl.taskname}' uses {{{name}}})")
    return value


def _segments(tpl: TaskTemplate, record: dict, include_answer: bool) -> list[tuple[str, object]]:
    """``[("virtual", n) | ("text", s) | ("answer", s)]`` for one record."""
    body = tpl.prompt_template[: -len("{" + tpl.answer_field + "}")]
    if not tpl.prompt_template.endswith("{" + tpl.answer_field + "}"):
        body = tpl.prompt_template  # zero-shot templates may omit the answer field

    def fill(text: str) -> str:
        def sub(m):
            name = m.group(1)
            if name not in record:
                raise UserError(f"record has no field '{name}' (template '{tpl.taskname}' uses {{{name}}})")
            return _text(record, name, tpl)

        return FIELD_RE.sub(sub, text)

    segs: list[tuple[str, object]] = []
    pos = 0
    for m in MARKER_RE.finditer(body):
        if m.start() > pos:
            segs.append(("text", fill(body[pos : m.start()])))
        segs.append(("virtual", tpl.virtual_token_splits[int(m.group(1))]))
        pos = m.end()
    if pos < len(body):
        segs.append(("text", fill(body[pos:])))
    # "Sentiment: {label}": the space goes with the answer, as the tokenizer would split the
    # whole string (' positiv' is one word token; ' ' + 'posit' + 'iv' is what no text looks like)
    lead = ""
    if segs and segs[-1][0] == "text" and segs[-1][1].endswith(" "):
        text = segs[-1][1].rstrip(" ")
        lead = segs[-1][1][len(text):]
        segs[-1] = ("text", text)
        if not text:
            segs.pop()
    if include_answer:
        if tpl.answer_field not in record:
            raise UserError(f"record has no answer field '{tpl.answer_field}'")
        segs.append(("answer", lead + _text(record, tpl.answer_field, tpl)))
    return segs


def _build(segs, tokenizer, tpl: TaskTemplate, truncated: bool) -> Encoded:
    ids: list[int] = []
    vmask: list[bool] = []
    labels: list[int] = []
    answer_start = None
    if uses_bos(tokenizer):
        ids.append(tokenizer.bos_token_id)
        vmask.append(False)
        labels.append(-100)
    placeholder = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for kind, val in segs:
        if kind == "virtual":
            ids += [placeholder] * val
            vmask += [True] * val
            labels += [-100] * val
            continue
        toks = tokenizer(val, add_special_tokens=False)["input_ids"] if val else []
        if kind == "answer":
            answer_start = len(ids)
            toks = toks + [tokenizer.eos_token_id]
        ids += toks
        vmask += [False] * len(toks)
        on = kind == "answer" or not tpl.answer_only_loss
        labels += list(toks) if on else [-100] * len(toks)
    if answer_start is None:
        answer_start = len(ids)
        labels = [-100] * len(ids)
    return Encoded(ids, vmask, labels, answer_start, truncated, tpl.taskname)


def encode_example(
    tpl: TaskTemplate,
    record: dict,
    tokenizer,
    *,
    include_answer: bool = True,
    max_length: int | None = None,
) -> Encoded | None:
    """Tokenize one record through its template.

    Virtual positions hold ``tokenizer.pad_token_id`` and are marked in ``virtual_mask``.
    With ``include_answer`` the answer tokens + EOS carry labels (or every non-virtual token
    when ``answer_only_loss`` is false); without it, the prompt up to the answer is returned
    with all labels -100. Longer than ``max_length``: ``truncate_field`` is cut from its end
    until the example fits; returns None when it cannot fit (the caller skips and counts).
    """
    enc = _build(_segments(tpl, record, include_answer), tokenizer, tpl, False)
    if max_length is None or len(enc.input_ids) <= max_length:
        return enc
    field_name = tpl.truncate_field
    if field_name is None or field_name not in record:
        return None
    value_ids = tokenizer(str(record[field_name]), add_special_tokens=False)["input_ids"]
    keep = len(value_ids) - (len(enc.input_ids) - max_length)
    # Re-tokenizing the cut text can merge differently; shrink until it really fits.
    while keep >= 0:
        cut = dict(record)
        cut[field_name] = tokenizer.decode(value_ids[:keep]) if keep > 0 else ""
        enc = _build(_segments(tpl, cut, include_answer), tokenizer, tpl, True)
        if len(enc.input_ids) <= max_length:
            return enc
        keep -= max(1, len(enc.input_ids) - max_length)
    return None
