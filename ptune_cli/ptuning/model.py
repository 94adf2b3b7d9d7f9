"""The prompt kinds, in one home: input prompts and deep prefix prompts behind one small
interface, so no caller asks which kind it holds.

A task's prompt is an input prompt — rows [T, h] that replace the template's virtual positions in
``inputs_embeds`` (:mod:`.lm`) — or a deep prompt, a :class:`~.prefix.Prefix` of per-layer
keys/values that opens the KV cache (:mod:`.prefix`); None is a baseline (no prompt).
:func:`kind_of` picks the implementation once; each answers:

* ``loss`` — the answer-only training loss (:func:`answer_loss`);
* ``fit_problem`` — why the prompt does not fit a model (made for another one), or None;
* ``position_limit`` — the longest prompt that keeps the prompt usable with ``horizon`` tokens
  to follow (a prefix must stay inside every sliding window);
* ``own`` / ``offset`` — inference prefill: a row's tokens after its prompt, and the cache
  positions before them (:mod:`ptune_cli.inference.prefill`).

The LM plumbing every kind uses (:mod:`.lm`) stays importable from here.
"""

from __future__ import annotations

from ptune_cli.ptuning.lm import (
    check_gathered_head,
    head_logits,
    hidden_states,
    inject_prompts,
    input_loss,
    run_cached,
    sliding_window,
)
from ptune_cli.ptuning.prefix import Prefix, as_prompt, kv_layout, prefix_loss, split_virtual
from ptune_cli.ptuning.template import Encoded

__all__ = ["check_gathered_head", "head_logits", "hidden_states", "inject_prompts", "run_cached", "sliding_window",
           "InputKind", "PrefixKind", "kind_of", "answer_loss", "as_prompt"]

_NO_LIMIT = 1 << 30


class InputKind:
    """Rows [T, h] at the virtual positions (None: a baseline, no rows)."""

    name = "input"

    @staticmethod
    def loss(model, input_ids, attention_mask, virtual_mask, labels, prompt, *, reduction="mean", gathered=True):
        return input_loss(model, input_ids, attention_mask, virtual_mask, labels, prompt,
                          reduction=reduction, gathered=gathered)

    @staticmethod
    def fit_problem(model, prompt) -> str | None:
        hidden = model.get_input_embeddings().weight.shape[1]
        if prompt is not None and prompt.shape[-1] != hidden:
            return f"prompts have hidden size {prompt.shape[-1]} but the model has {hidden}"
        return None

    @staticmethod
    def position_limit(model, prompt, horizon: int) -> int:
        return _NO_LIMIT  # left padding keeps every window exact (inference.prefill)

    @staticmethod
    def own(enc: Encoded, prompt) -> Encoded:
        return enc

    @staticmethod
    def offset(before: list[int], prompt) -> int:
        return 0


class PrefixKind:
    """Per-layer keys/values after BOS; the template's placeholders are dropped."""

    name = "prefix"

    @staticmethod
    def loss(model, input_ids, attention_mask, virtual_mask, labels, prompt, *, reduction="mean", gathered=True):
        return prefix_loss(model, input_ids, attention_mask, virtual_mask, labels, prompt,
                           reduction=reduction, gathered=gathered)

    @staticmethod
    def fit_problem(model, prompt) -> str | None:
        want = kv_layout(model)
        got = (prompt.kv.shape[0], prompt.kv.shape[2], prompt.kv.shape[4])
        if got != want:
            return f"the prefix has (layers, kv heads, head dim) {got} but the model has {want}"
        return None

    @staticmethod
    def position_limit(model, prompt, horizon: int) -> int:
        """Sliding layers keep the last W-1 positions: prompt + ``horizon`` must fit, or the
        prefix drops out of them (such records do not fit rather than lose the prefix)."""
        w = sliding_window(model)
        return _NO_LIMIT if w is None else w - 1 - horizon

    @staticmethod
    def own(enc: Encoded, prompt) -> Encoded:
        rest = split_virtual(enc)[1]
        return Encoded(rest, [False] * len(rest), [], 0, False)

    @staticmethod
    def offset(before: list[int], prompt) -> int:
        return len(before) + prompt.length


def kind_of(prompt) -> type[InputKind] | type[PrefixKind]:
    """The implementation for ``prompt`` (a table tensor, a typed prompt, or None)."""
    return PrefixKind if isinstance(as_prompt(prompt), Prefix) else InputKind


def answer_loss(model, input_ids, attention_mask, virtual_mask, labels, prompts, *, reduction="mean", gathered=True):
    """Cross-entropy on the labelled positions only (labels != -100, shifted by one), for a
    prompt of either kind (an input prompt [T, h], a :class:`~.prefix.Prefix` or its 5-D tensor).

    Returns ``(loss, n_tokens)``; ``reduction="sum"`` gives the summed loss (for val averages).
    ``gathered=False`` falls back to the model's full logits (architectures whose head
    post-processing :func:`check_gathered_head` could not reproduce).
    """
    prompts = as_prompt(prompts)
    return kind_of(prompts).loss(model, input_ids, attention_mask, virtual_mask, labels, prompts,
                                 reduction=reduction, gathered=gathered)
