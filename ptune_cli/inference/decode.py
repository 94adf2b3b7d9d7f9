"""Predictions from a frozen causal LM with (or without) p-tuned virtual tokens.

* :func:`generate_texts` — batched greedy generation with a KV cache from ``inputs_embeds``
  (the task's prompt rows injected at the virtual positions), left padding, stopping at EOS and,
  for one-line answers, at the first token that contains a newline. Only the new tokens are
  decoded, so no prompt text can leak into a prediction. The loop is ours rather than
  ``model.generate`` so that the prefix every prompt shares (virtual tokens, fixed template
  text) is run once per batch and finished rows leave the batch; tests check it against
  ``model.generate`` one record at a time, token for token.
* :func:`rank_labels` — closed label sets: each candidate label is scored by the log-likelihood
  of its answer tokens + EOS (how the answer was trained) after the prompt, normalised over the
  tokens the candidates use — the only rows of the LM head computed (Gemma's head has 262k
  rows); the prompt is run once per record and its KV cache is shared by every candidate.

Records are sorted by prompt length before batching (less padding); results come back in input
order. ``encs[i] is None`` (a record that cannot fit) gives an empty prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ptune_cli.errors import UserError
from ptune_cli.ptuning.model import (
    check_gathered_head,
    head_logits,
    inject_prompts,
    run_cached,
    sliding_window,
)
from ptune_cli.ptuning.prefix import Prefix, as_prompt, split_virtual, start_cache
from ptune_cli.ptuning.template import Encoded, TaskTemplate, encode_example

Progress = Callable[[int], None] | None
OnBatch = Callable[..., None] | None  # (indices, predictions[, scores]) after each batch
_NEWLINE_IDS: dict[int, tuple[object, list[int]]] = {}


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of every vocabulary token whose text contains a newline (cached per tokenizer)."""
    hit = _NEWLINE_IDS.get(id(tokenizer))
    if hit is not None and hit[0] is tokenizer:
        return hit[1]
    ids = list(range(len(tokenizer)))
    texts = tokenizer.batch_decode([[i] for i in ids])
    found = [i for i, t in zip(ids, texts, strict=True) if "\n" in t]
    _NEWLINE_IDS[id(tokenizer)] = (tokenizer, found)
    return found


def stop_token_ids(tokenizer, stop_at_newline: bool) -> list[int]:
    """EOS, plus every newline-bearing token when the answer is one line."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if stop_at_newline:
        stops += [i for i in newline_token_ids(tokenizer) if i not in stops]
    return stops


def left_pad(encs: Sequence[Encoded], pad_id: int, device=None):
    """``(input_ids, attention_mask, virtual_mask)`` left-padded to the longest encoding."""
    width = max(len(e.input_ids) for e in encs)
    ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encs), width), dtype=torch.long)
    vmask = torch.zeros((len(encs), width), dtype=torch.bool)
    for b, e in enumerate(encs):
        n = len(e.input_ids)
        ids[b, width - n :] = torch.tensor(e.input_ids)
        mask[b, width - n :] = 1
        vmask[b, width - n :] = torch.tensor(e.virtual_mask, dtype=torch.bool)
    return ids.to(device), mask.to(device), vmask.to(device)


def shared_prefix_len(encs: Sequence[Encoded]) -> int:
    """Leading positions equal in every encoding (token and virtual flag), keeping at least one
    own token per encoding. Virtual tokens and fixed template text usually start every prompt:
    their keys and values are computed once per batch instead of once per record."""
    first = encs[0]
    limit = min(len(e.input_ids) for e in encs) - 1
    k = 0
    while k < limit and all(
        e.input_ids[k] == first.input_ids[k] and e.virtual_mask[k] == first.virtual_mask[k] for e in encs
    ):
        k += 1
    return k


def _window_needs_left_padding(model, encs: Sequence[Encoded], horizon: int) -> bool:
    """True when a shared prefix would put padding *inside* a sliding-attention window.

    Sliding layers see the last W cache positions, padding included: with the prefix first and
    the padding after it, a padded row's window reaches fewer real tokens than the same record
    alone. Plain left padding keeps every row's window the same, so the prefix is not shared
    when rows differ in length and prompt + new tokens may exceed W.
    """
    window = sliding_window(model)
    lens = {len(e.input_ids) for e in encs}
    return window is not None and len(lens) > 1 and max(lens) + horizon > window


def _prefill(model, encs: Sequence[Encoded], prompt, pad_id: int, *, horizon: int = 0, head: bool = True):
    """Run a batch of prompts: the shared prefix once (then repeated over the batch), each row's
    own tokens left-padded after it; ``horizon``: tokens that will follow (see
    :func:`_window_needs_left_padding`). A deep prompt (:class:`Prefix`) starts the cache: BOS,
    then its keys/values, the placeholders dropped (:mod:`ptune_cli.ptuning.prefix`). Returns
    ``(last logits [B, V] — or last hidden states [B, h] without ``head`` —, cache, attention
    mask [B, C+L], position of each row's last token [B])``."""
    emb = model.get_input_embeddings()
    device = emb.weight.device
    prompt = as_prompt(prompt)
    cache, offset = None, 0  # offset: cache positions before the rows' own tokens (BOS + prefix)
    if isinstance(prompt, Prefix):
        before, _ = split_virtual(encs[0])
        cache = start_cache(model, before, prompt.kv, 1)
        offset = len(before) + prompt.length
        encs = [Encoded(r, [False] * len(r), [], 0, False) for r in (split_virtual(e)[1] for e in encs)]
        prompt = None
    prompt = (torch.zeros(0, emb.weight.shape[1]) if prompt is None else prompt).to(device)
    n_pre = 0 if _window_needs_left_padding(model, encs, horizon) else shared_prefix_len(encs)
    n_virt = sum(encs[0].virtual_mask[:n_pre])  # prompt rows that belong to the prefix
    if n_pre:
        ids = torch.tensor([encs[0].input_ids[:n_pre]], device=device)
        vmask = torch.tensor([encs[0].virtual_mask[:n_pre]], device=device)
        kw = {}
        if offset:
            kw = dict(attention_mask=torch.ones(1, offset + n_pre, dtype=torch.long, device=device),
                      position_ids=offset + torch.arange(n_pre, device=device)[None])
        _, cache = run_cached(model.base_model, cache, inputs_embeds=inject_prompts(model, ids, vmask, prompt[:n_virt]),
                              **kw)
    if cache is not None:
        cache.batch_repeat_interleave(len(encs))
    rest = [Encoded(e.input_ids[n_pre:], e.virtual_mask[n_pre:], [], 0, False) for e in encs]
    ids, own_mask, vmask = left_pad(rest, pad_id, device)
    embeds = inject_prompts(model, ids, vmask, prompt[n_virt:])
    mask = torch.cat([torch.ones(len(encs), offset + n_pre, dtype=own_mask.dtype, device=device), own_mask], dim=1)
    pos = offset + n_pre + (own_mask.cumsum(-1) - 1).clamp(min=0)
    kw = dict(inputs_embeds=embeds, attention_mask=mask, position_ids=pos)
    if head:
        out, cache = run_cached(model, cache, logits_to_keep=1, **kw)
        last = out.logits[:, -1].float()
    else:
        out, cache = run_cached(model.base_model, cache, **kw)
        last = out.last_hidden_state[:, -1]
    return last, cache, mask, pos[:, -1]


def _window_groups(model, encs: Sequence[Encoded | None], idx: list[int], prompt, horizon: int) -> list[list[int]]:
    """``idx`` split so a prefix batch never puts padding inside a sliding window: a prefix
    cannot be left-padded (it opens the cache), so rows are grouped by length when the window
    matters (:func:`_window_needs_left_padding`); else the batch as is."""
    if not isinstance(prompt, Prefix) or not _window_needs_left_padding(model, [encs[i] for i in idx], horizon):
        return [idx]
    groups: dict[int, list[int]] = {}
    for i in idx:
        groups.setdefault(len(encs[i].input_ids), []).append(i)
    return list(groups.values())


def _batches(encs: Sequence[Encoded | None], batch_size: int, batch_cost: float = 0.0) -> list[list[int]]:
    """Indices of the encodable records, longest first, in batches of at most ``batch_size``.

    Batches are contiguous runs of the length-sorted records chosen to minimise padded prompt
    tokens + ``batch_cost`` per batch (the fixed work of one batch, e.g. its decoding steps, in
    prompt-token equivalents): a few long prompts do not pad a whole batch of short ones.
    """
    order = sorted((i for i, e in enumerate(encs) if e is not None), key=lambda i: -len(encs[i].input_ids))
    lens = [len(encs[i].input_ids) for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of batching the first j records
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - batch_size), j):
            cost = best[i] + (j - i) * lens[i] + batch_cost  # lens[i]: the batch's longest prompt
            if cost < best[j]:
                best[j], start[j] = cost, i
    cuts, j = [], n
    while j:
        cuts.append((start[j], j))
        j = start[j]
    return [order[i:j] for i, j in reversed(cuts)]


def cut_at_stop(ids: Sequence[int], stops: set[int]) -> list[int]:
    """New token ids up to (not including) the first stop token."""
    out = []
    for t in ids:
        if t in stops:
            break
        out.append(int(t))
    return out


def generate_ids(model, tokenizer, encs: Sequence[Encoded], prompt, *, max_new_tokens: int,
                 stop_ids: Sequence[int], keep_ids: Sequence[int] = ()) -> list[list[int]]:
    """One batch: greedy new token ids per encoding (KV cache), up to the first stop id.

    A stop id in ``keep_ids`` ends its row but is kept: a newline-bearing token may carry answer
    text before its newline (cut by :func:`decode_prediction`). Rows that stop leave the batch,
    so a long answer does not keep short ones computing.
    """
    kept_stops = set(keep_ids)
    logits, cache, mask, last = _prefill(model, encs, prompt, tokenizer.pad_token_id, horizon=max_new_tokens)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=logits.device)
    out: list[list[int]] = [[] for _ in encs]
    alive = torch.arange(len(encs), device=logits.device)  # batch rows still generating
    for step in range(max_new_tokens):
        nxt = logits.argmax(-1)
        done = torch.isin(nxt, stops)
        for row, tok, stop in zip(alive.tolist(), nxt.tolist(), done.tolist(), strict=True):
            if not stop or tok in kept_stops:
                out[row].append(tok)
        keep = (~done).nonzero().squeeze(-1)
        if keep.numel() == 0 or step == max_new_tokens - 1:
            break
        if keep.numel() < alive.numel():
            alive, nxt, mask, last = alive[keep], nxt[keep], mask[keep], last[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        last = last + 1
        step_out, cache = run_cached(model, cache, input_ids=nxt[:, None], attention_mask=mask,
                                     position_ids=last[:, None], logits_to_keep=1)
        logits = step_out.logits[:, -1].float()
    return out


def decode_prediction(tokenizer, ids: Sequence[int], stop_at_newline: bool) -> str:
    """Text of the new tokens: special tokens dropped, cut at the first newline for one-line
    answers (a stop token may carry text before its newline), surrounding whitespace stripped."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    if stop_at_newline:
        text = text.split("\n", 1)[0]
    return text.strip()


@torch.inference_mode()
def generate_texts(model, tokenizer, encs: Sequence[Encoded | None], prompt, *, batch_size: int = 32,
                   max_new_tokens: int = 32, stop_at_newline: bool = True,
                   on_progress: Progress = None, on_batch: OnBatch = None) -> list[str]:
    """Greedy predictions for every encoding (input order); ``None`` encodings give ``""``.

    ``on_batch(indices, texts)`` sees each finished batch (for resumable output)."""
    stops = stop_token_ids(tokenizer, stop_at_newline)
    keep = [i for i in stops if i != tokenizer.eos_token_id]  # newline tokens: text before "\n" counts
    preds = [""] * len(encs)
    prompt = as_prompt(prompt)
    # one decoding step of a batch costs about as much as ~16 prompt tokens of prefill (measured
    # on CPU: weights are read once per step); a batch may decode up to max_new_tokens steps
    for idx in _batches(encs, batch_size, batch_cost=16.0 * max_new_tokens):
        for sub in _window_groups(model, encs, idx, prompt, max_new_tokens):
            rows = generate_ids(model, tokenizer, [encs[i] for i in sub], prompt,
                                max_new_tokens=max_new_tokens, stop_ids=stops, keep_ids=keep)
            for i, ids in zip(sub, rows, strict=True):
                preds[i] = decode_prediction(tokenizer, ids, stop_at_newline)
        if on_batch:
            on_batch(idx, [preds[i] for i in idx])
        if on_progress:
            on_progress(len(idx))
    return preds


def candidate_ids(tpl: TaskTemplate, tokenizer, record: dict, candidates: Sequence[str]) -> list[list[int]]:
    """Answer tokens + EOS of each candidate, exactly as the template encodes a training answer."""
    out = []
    for c in candidates:
        enc = encode_example(tpl, {**record, tpl.answer_field: c}, tokenizer, include_answer=True)
        out.append(enc.input_ids[enc.answer_start :])
    return out


def _label_logits(model, hidden, vocab):
    """Logits of the ``vocab`` tokens only (see :func:`head_logits`)."""
    return head_logits(model, hidden, vocab).float()


def _rank_batch(model, tokenizer, encs, prompt, cands: list[list[int]]) -> torch.Tensor:
    """[B, K] summed log-probabilities of each candidate's tokens after each prompt, normalised
    over the candidates' tokens (the only logits computed)."""
    pad_id = tokenizer.pad_token_id
    vocab = sorted({t for c in cands for t in c})
    col = {t: i for i, t in enumerate(vocab)}
    width = max(len(c) for c in cands) - 1
    hidden, cache, mask, last = _prefill(model, encs, prompt, pad_id, horizon=width + 1, head=False)
    device = hidden.device
    first = torch.log_softmax(_label_logits(model, hidden, vocab), -1)  # [B, |vocab|]
    n_b, n_k = len(encs), len(cands)
    scores = first[:, [col[c[0]] for c in cands]]  # [B, K]
    if width == 0:
        return scores
    cache.batch_repeat_interleave(n_k)  # row b*K + k: prompt b with candidate k
    cont = torch.full((n_k, width), pad_id, dtype=torch.long)
    target = torch.zeros((n_k, width), dtype=torch.long)  # column in vocab
    cmask = torch.zeros((n_k, width), dtype=torch.long)
    for k, c in enumerate(cands):
        cont[k, : len(c) - 1] = torch.tensor(c[:-1])
        target[k, : len(c) - 1] = torch.tensor([col[t] for t in c[1:]])
        cmask[k, : len(c) - 1] = 1
    cont, target, cmask = (t.to(device).repeat(n_b, 1) for t in (cont, target, cmask))
    full_mask = torch.cat([mask.repeat_interleave(n_k, 0), cmask], dim=1)
    cpos = last[:, None].repeat_interleave(n_k, 0) + 1 + torch.arange(width, device=device)
    out2, _ = run_cached(model.base_model, cache, input_ids=cont, attention_mask=full_mask, position_ids=cpos)
    logits = _label_logits(model, out2.last_hidden_state, vocab)
    logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    rest = (logp * cmask).sum(-1).view(n_b, n_k)
    return scores + rest


@torch.inference_mode()
def rank_labels(model, tokenizer, tpl: TaskTemplate, records: Sequence[dict], encs: Sequence[Encoded | None],
                prompt, candidates: Sequence[str], *, batch_size: int = 32,
                on_progress: Progress = None, on_batch: OnBatch = None) -> tuple[list[str], list[list[float] | None]]:
    """The most likely candidate per record, and every candidate's log-likelihood (input order).

    ``None`` encodings give ``""`` and no scores. ``on_batch(indices, preds, scores)`` sees
    each finished batch.
    """
    preds: list[str] = [""] * len(encs)
    all_scores: list[list[float] | None] = [None] * len(encs)
    first = next((i for i, e in enumerate(encs) if e is not None), None)
    if first is None:
        return preds, all_scores
    cands = candidate_ids(tpl, tokenizer, records[first], candidates)
    if not check_gathered_head(model, tokenizer):
        # candidate-only logits need the head reproduced exactly: refuse rather than rank wrongly
        raise UserError(f"--decode rank: the LM head of {type(model).__name__} post-processes logits in a way "
                        "ptune does not reproduce; use --decode generate")
    prompt = as_prompt(prompt)
    horizon = max(len(c) for c in cands)
    for idx in _batches(encs, batch_size, batch_cost=32.0):  # one continuation pass per batch
        for sub in _window_groups(model, encs, idx, prompt, horizon):
            scores = _rank_batch(model, tokenizer, [encs[i] for i in sub], prompt, cands)
            best = scores.argmax(-1).tolist()
            for row, i in enumerate(sub):
                preds[i] = candidates[best[row]]
                all_scores[i] = [round(float(s), 4) for s in scores[row]]
        if on_batch:
            on_batch(idx, [preds[i] for i in idx], [all_scores[i] for i in idx])
        if on_progress:
            on_progress(len(idx))
    return preds, all_scores
