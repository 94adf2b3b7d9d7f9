"""Structured decoding (``--decode structured``): greedy generation that can only write an
answer of the task's grammar, so every prediction parses.

For an intent/slot task (the label grammar of :mod:`ptune_cli.labels`) the answer is written in
segments, each a choice among token sequences kept in a trie:

1. ``"\\nIntent: NAME\\nSlots:"`` for each intent NAME the run was trained on;
2. ``" None"`` + EOS, or ``" TYPE("`` for each known slot type;
3. ``"VALUE)"`` + EOS or ``"VALUE),"`` where VALUE is a span of the record's own words (its
   input fields, at most the longest value seen in training), so values are copied, not made up;
4. after ``"),"``: ``" TYPE("`` again (at most the most slots seen in training, then EOS).

A closed label set (``answers`` stored in the run) is one segment: ``ANSWER`` + EOS.

Segments are tokenized on their own and cut where the tokenizers split text anyway (before a
space + word, after ``(``), so the tokens are the ones the training labels were made of.
Where a trie node has one child the token is forced: no logits are computed for it, and
forced runs go through the model several tokens per pass (as many as every row of the batch
has pending: no padding, which on a CPU costs as much as real tokens). At a choice only the
allowed tokens' rows of the LM head are computed (``head_logits``), not the whole vocabulary.

Why not a library: xgrammar, outlines, transformers-cfg and lm-format-enforcer constrain a
``generate``-style loop with a logits processor over the full vocabulary and compile a grammar
per tokenizer; our loop feeds ``inputs_embeds`` with soft prompts and prefix KV caches, drops
finished rows from the cache, and needs a different grammar per record (the slot values are
that record's spans), which would mean compiling a grammar per record. The grammar here is
small enough that a token trie per segment is simpler, exact and cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ptune_cli.errors import UserError
from ptune_cli.inference.decode import (
    OnBatch,
    Progress,
    _batches,
    _prefill,
    _window_groups,
    decode_prediction,
)
from ptune_cli.ptuning.model import check_gathered_head, head_logits, run_cached
from ptune_cli.ptuning.prefix import as_prompt
from ptune_cli.ptuning.template import TaskTemplate

END = -1  # trie key of a finished sequence; its value is what comes next
DONE = ("done",)


def build_trie(seqs: Sequence[tuple[list[int], tuple]]) -> dict:
    """``{token: child, END: next}`` from ``(token ids, next)`` pairs (the first of equal ones wins)."""
    root: dict = {}
    for ids, nxt in seqs:
        node = root
        for t in ids:
            node = node.setdefault(t, {})
        node.setdefault(END, nxt)
    return root


def answer_lead(tpl: TaskTemplate) -> str:
    """Spaces the template puts before the answer (they are tokenized with it; see template.py)."""
    body = tpl.prompt_template.removesuffix("{" + tpl.answer_field + "}")
    return body[len(body.rstrip(" ")):] if not body.endswith("|>") else ""


def value_spans(text: str, max_words: int) -> list[str]:
    """Every run of up to ``max_words`` whitespace-separated words of ``text`` (also without
    trailing punctuation); none with parentheses (they would break the grammar)."""
    words = text.split()
    out: dict[str, None] = {}
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + max_words) + 1):
            span = " ".join(words[i:j])
            for s in (span, span.rstrip(".,!?;:")):
                if s and "(" not in s and ")" not in s:
                    out[s] = None
    return list(out)


@dataclass
class Grammar:
    """The tries of one task (built once) and the per-record value tries (built per record)."""

    tokenizer: object
    eos: int
    start: dict  # the first segment's trie
    types: dict = field(default_factory=dict)  # " TYPE(" after "Slots:" and after "),"
    first: dict = field(default_factory=dict)  # " None" + EOS, or a first type
    none: dict = field(default_factory=dict)  # " None" + EOS only
    max_slots: int = 0
    max_words: int = 1
    fields: tuple[str, ...] = ()

    def tok(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    def values(self, record: dict, last: bool) -> dict:
        """The trie of ``VALUE)`` + EOS and (unless ``last``) ``VALUE),`` for this record's spans."""
        spans = [s for f in self.fields for s in value_spans(str(record.get(f) or ""), self.max_words)]
        spans = list(dict.fromkeys(spans)) or [""]  # no words at all: "type()" still parses
        ends = [(e + [self.eos], DONE) for e in self.tok([s + ")" for s in spans])]
        more = [] if last else [(m, ("type",)) for m in self.tok([s + ")," for s in spans])]
        return build_trie(ends + more)


def intent_slot_grammar(tokenizer, tpl: TaskTemplate, labels: dict) -> Grammar:
    lead = answer_lead(tpl)
    eos = tokenizer.eos_token_id
    tok = lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
    intents, types = list(labels["intents"]), list(labels.get("slot_types") or [])
    start = build_trie([(ids, ("first",)) for ids in tok([f"{lead}\nIntent: {n}\nSlots:" for n in intents])])
    type_seqs = [(ids, ("value",)) for ids in tok([f" {t}(" for t in types])] if types else []
    none = (tok([" None"])[0] + [eos], DONE)
    max_slots = int(labels.get("max_slots", 8)) if types else 0
    return Grammar(tokenizer, eos, start, build_trie(type_seqs), build_trie([none, *type_seqs]), build_trie([none]),
                   max_slots, int(labels.get("max_value_words") or 8), tuple(tpl.input_fields))


def answers_grammar(tokenizer, tpl: TaskTemplate, answers: Sequence[str]) -> Grammar:
    lead = answer_lead(tpl)
    eos = tokenizer.eos_token_id
    ids = tokenizer([lead + a for a in answers], add_special_tokens=False)["input_ids"]
    return Grammar(tokenizer, eos, build_trie([(x + [eos], DONE) for x in ids]))


def grammar_for(tokenizer, tpl: TaskTemplate, labels: dict) -> Grammar:
    """The task's grammar from its stored labels; UserError when the run knows neither."""
    if tokenizer.eos_token_id is None:
        raise UserError("--decode structured: the tokenizer has no EOS token to end an answer with")
    if labels.get("grammar") == "intent-slot" and labels.get("intents"):
        return intent_slot_grammar(tokenizer, tpl, labels)
    if labels.get("answers"):
        return answers_grammar(tokenizer, tpl, labels["answers"])
    raise UserError(f"--decode structured: the run stores no intents or answers for task '{tpl.taskname}' "
                    "(retrain with this version, or use --decode generate)")


def resolve_decode(decode: str, labels: dict) -> str:
    """``auto``: structured for an intent/slot task whose intents the run knows, else generate."""
    if decode != "auto":
        return decode
    return "structured" if labels.get("grammar") == "intent-slot" and labels.get("intents") else "generate"


class _Row:
    """One record's walk: the trie node, the tokens written, those not yet run through the model."""

    def __init__(self, grammar: Grammar, record: dict):
        self.g, self.record = grammar, record
        self.node, self.out, self.pending, self.slots, self.done = grammar.start, [], [], 0, False
        self._values: dict[bool, dict] = {}  # the record's value tries (built once each)

    def _next(self, step: tuple) -> dict | None:
        kind = step[0]
        if kind == "first":
            return self.g.first if self.g.max_slots > 0 else self.g.none
        if kind == "value":
            self.slots += 1
            last = self.slots >= self.g.max_slots
            if last not in self._values:
                self._values[last] = self.g.values(self.record, last)
            return self._values[last]
        if kind == "type":  # after "VALUE),": only written while more slots are allowed
            return self.g.types
        return None

    def take(self, token: int) -> None:
        self.out.append(token)
        self.pending.append(token)
        self.node = self.node[token]
        self.advance()

    def advance(self) -> None:
        """Follow forced tokens (one child) and segment ends until a choice or the end."""
        while not self.done:
            if END in self.node:
                nxt = self._next(self.node[END])
                if nxt is None:  # the answer is complete (EOS taken, or no more slots allowed)
                    self.done = True
                    return
                self.node = nxt
                continue
            if len(self.node) != 1:
                return
            tok = next(iter(self.node))
            self.out.append(tok)
            self.pending.append(tok)
            self.node = self.node[tok]

    def choices(self) -> list[int]:
        return [t for t in self.node if t != END]


def _feed(model, rows: list[_Row], cache, mask, last):
    """The first ``w`` pending tokens of every row in one forward pass, ``w`` the fewest any row
    has: no padding (a row with more keeps the rest for the next pass). A row whose pending
    tokens are all run is at a choice, and the returned hidden state is its last token's."""
    w = min(len(r.pending) for r in rows)
    ids = torch.tensor([r.pending[:w] for r in rows], dtype=torch.long, device=mask.device)
    for r in rows:
        del r.pending[:w]
    pos = last[:, None] + 1 + torch.arange(w, device=mask.device)
    mask = torch.cat([mask, mask.new_ones(len(rows), w)], dim=1)
    out, cache = run_cached(model.base_model, cache, input_ids=ids, attention_mask=mask, position_ids=pos)
    return out.last_hidden_state[:, -1], cache, mask, pos[:, -1]


def _choose(model, rows: list[_Row], hidden) -> None:
    """Each row's greedy choice among its allowed tokens: only those rows of the LM head."""
    choices = [r.choices() for r in rows]
    vocab = sorted({t for c in choices for t in c})
    col = {t: j for j, t in enumerate(vocab)}
    allowed = torch.zeros((len(rows), len(vocab)), dtype=torch.bool)
    for k, c in enumerate(choices):
        allowed[k, [col[t] for t in c]] = True
    logits = head_logits(model, hidden, vocab).float().masked_fill(~allowed.to(hidden.device), float("-inf"))
    for r, j in zip(rows, logits.argmax(-1).tolist(), strict=True):
        r.take(vocab[j])


def structured_ids(model, tokenizer, grammar: Grammar, records: Sequence[dict], encs, prompt,
                   horizon: int = 64) -> list[list[int]]:
    """One batch: the grammar's greedy walk per record (new token ids, EOS included).

    Every pass feeds each row the same number of tokens, so the cache never holds padding
    between a row's tokens (sliding windows see what they see one record at a time); forced
    runs every row shares (``\nIntent:``) go in one pass, and a row at a choice waits for no one."""
    rows = [_Row(grammar, r) for r in records]
    hidden, cache, mask, last = _prefill(model, encs, prompt, tokenizer.pad_token_id, horizon=horizon, head=False)
    alive = list(range(len(rows)))
    for r in rows:
        r.advance()
    while True:
        ready = [k for k, i in enumerate(alive) if not rows[i].pending and not rows[i].done]
        if ready:  # their hidden state is their last token's
            _choose(model, [rows[alive[k]] for k in ready], hidden[ready])
        keep = [k for k, i in enumerate(alive) if not rows[i].done]
        if not keep:
            break
        if len(keep) < len(alive):
            sel = torch.tensor(keep, device=mask.device)
            alive, mask, last = [alive[k] for k in keep], mask[sel], last[sel]
            cache.batch_select_indices(sel)
        hidden, cache, mask, last = _feed(model, [rows[i] for i in alive], cache, mask, last)
    return [r.out for r in rows]


@torch.inference_mode()
def structured_texts(model, tokenizer, template: TaskTemplate, labels: dict, records: Sequence[dict],
                     encs, prompt, *, batch_size: int = 32, horizon: int = 64, on_progress: Progress = None,
                     on_batch: OnBatch = None) -> list[str]:
    """Predictions that follow the task's grammar (input order); ``None`` encodings give ``""``.
    ``horizon``: the most answer tokens expected. ``on_batch(indices, texts)`` sees each finished batch."""
    grammar = grammar_for(tokenizer, template, labels)
    if not check_gathered_head(model, tokenizer):
        raise UserError(f"--decode structured: the LM head of {type(model).__name__} post-processes logits in a way "
                        "ptune does not reproduce; use --decode generate")
    preds = [""] * len(encs)
    prompt = as_prompt(prompt)
    for idx in _batches(encs, batch_size, batch_cost=16.0 * 8):  # a few choices per answer
        for sub in _window_groups(model, encs, idx, prompt, horizon):
            outs = structured_ids(model, tokenizer, grammar, [records[i] for i in sub], [encs[i] for i in sub], prompt,
                                  horizon)
            for i, ids in zip(sub, outs, strict=True):
                preds[i] = decode_prediction(tokenizer, ids, False)
        if on_batch:
            on_batch(idx, [preds[i] for i in idx])
        if on_progress:
            on_progress(len(idx))
    return preds
