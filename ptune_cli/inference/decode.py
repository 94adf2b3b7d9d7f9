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
order. ``encs[i] is None`` (a record that cannot fit) gives an empty prediction. The records of a
batch may belong to different tasks (:func:`generate_rows`, :func:`rank_rows`: one
:class:`~.setting.DecodeSetting` per record): each row gets its task's prompt, limits, stop
tokens and candidates in the same forward passes (:mod:`.prefill`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ptune_cli.errors import UserError
from ptune_cli.inference.prefill import left_pad, prefill, shared_prefix_len, window_split
from ptune_cli.inference.setting import DecodeSetting
from ptune_cli.ptuning.lm import check_gathered_head, head_logits, run_cached, sliding_window
from ptune_cli.ptuning.template import Encoded, TaskTemplate, encode_example

__all__ = ["left_pad", "shared_prefix_len", "sliding_window"]  # kept importable from here

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


def _prefill(model, encs: Sequence[Encoded], prompt, pad_id: int, *, horizon: int = 0, head: bool = True):
    """:func:`~.prefill.prefill` (its name before tasks could mix; structured decoding calls it)."""
    return prefill(model, encs, prompt, pad_id, horizon=horizon, head=head)


def _window_groups(model, encs: Sequence[Encoded | None], idx: list[int], prompt, horizon: int) -> list[list[int]]:
    """:func:`~.prefill.window_split` for records of one prompt (its name before tasks could mix)."""
    return window_split(model, encs, idx, [prompt] * len(encs), horizon)


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


def generate_ids(model, tokenizer, encs: Sequence[Encoded], prompt, *, max_new_tokens: int | Sequence[int],
                 stop_ids: Sequence[int] | Sequence[Sequence[int]], keep_ids: Sequence[int] = ()) -> list[list[int]]:
    """One batch: greedy new token ids per encoding (KV cache), up to the first stop id.

    ``prompt``, ``max_new_tokens`` and ``stop_ids`` are one for every row, or one per row (rows
    of different tasks). A stop id in ``keep_ids`` ends its row but is kept: a newline-bearing
    token may carry answer text before its newline (cut by :func:`decode_prediction`). Rows that
    stop leave the batch, so a long answer does not keep short ones computing.
    """
    n = len(encs)
    limits = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
    per_row_stops = stop_ids and not isinstance(next(iter(stop_ids)), int)
    row_stops = [tuple(sorted(set(s))) for s in stop_ids] if per_row_stops else [tuple(sorted(set(stop_ids)))] * n
    kept_stops = set(keep_ids)
    steps = max(limits)
    logits, cache, mask, last = prefill(model, encs, prompt, tokenizer.pad_token_id, horizon=steps)
    device = logits.device
    stop_sets = [(torch.tensor(s, dtype=torch.long, device=device),
                  torch.tensor([r == s for r in row_stops], device=device)) for s in dict.fromkeys(row_stops)]
    limit = torch.tensor(limits, device=device)
    out: list[list[int]] = [[] for _ in encs]
    alive = torch.arange(n, device=device)  # batch rows still generating
    for step in range(steps):
        nxt = logits.argmax(-1)
        done = torch.zeros_like(nxt, dtype=torch.bool)
        for stops, rows in stop_sets:
            done |= torch.isin(nxt, stops) & rows[alive]
        for row, tok, stop in zip(alive.tolist(), nxt.tolist(), done.tolist(), strict=True):
            if not stop or tok in kept_stops:
                out[row].append(tok)
        done |= limit[alive] <= step + 1  # a row's own limit reached
        keep = (~done).nonzero().squeeze(-1)
        if keep.numel() == 0 or step == steps - 1:
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
def generate_rows(model, tokenizer, encs: Sequence[Encoded | None], settings: Sequence[DecodeSetting], *,
                  batch_size: int = 32, on_progress: Progress = None, on_batch: OnBatch = None) -> list[str]:
    """Greedy predictions for every encoding, each with its record's task setting (input
    order; records of different tasks share batches); ``None`` encodings give ``""``.

    ``on_batch(indices, texts)`` sees each finished batch (for resumable output)."""
    stops = {s.stop_at_newline: stop_token_ids(tokenizer, s.stop_at_newline) for s in settings}
    keep = [i for i in stops.get(True, []) if i != tokenizer.eos_token_id]  # newline tokens: text before "\n" counts
    preds = [""] * len(encs)
    prompts = [s.prompt for s in settings]
    longest = max((s.max_new_tokens for s, e in zip(settings, encs, strict=True) if e is not None), default=1)
    # one decoding step of a batch costs about as much as ~16 prompt tokens of prefill (measured
    # on CPU: weights are read once per step); a batch may decode up to max_new_tokens steps
    for idx in _batches(encs, batch_size, batch_cost=16.0 * longest):
        horizon = max(settings[i].max_new_tokens for i in idx)
        for sub in window_split(model, encs, idx, prompts, horizon):
            rows = generate_ids(model, tokenizer, [encs[i] for i in sub], [prompts[i] for i in sub],
                                max_new_tokens=[settings[i].max_new_tokens for i in sub],
                                stop_ids=[stops[settings[i].stop_at_newline] for i in sub], keep_ids=keep)
            for i, ids in zip(sub, rows, strict=True):
                preds[i] = decode_prediction(tokenizer, ids, settings[i].stop_at_newline)
        if on_batch:
            on_batch(idx, [preds[i] for i in idx])
        if on_progress:
            on_progress(len(idx))
    return preds


def generate_texts(model, tokenizer, encs: Sequence[Encoded | None], prompt, *, batch_size: int = 32,
                   max_new_tokens: int = 32, stop_at_newline: bool = True,
                   on_progress: Progress = None, on_batch: OnBatch = None) -> list[str]:
    """:func:`generate_rows` for records of one task (``prompt`` and limits shared)."""
    setting = DecodeSetting(None, prompt, max_new_tokens, stop_at_newline)
    return generate_rows(model, tokenizer, encs, [setting] * len(encs), batch_size=batch_size,
                         on_progress=on_progress, on_batch=on_batch)


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


def _rank_batch(model, pad_id: int, encs, prompts, cands: list[list[list[int]]]) -> list[torch.Tensor]:
    """Per row [K] summed log-probabilities of each of its candidates' tokens after its prompt,
    normalised over the tokens its candidates use (rows of different tasks have different
    candidates; only the logits of the candidates' tokens are computed)."""
    vocab = sorted({t for row in cands for c in row for t in c})
    col = {t: i for i, t in enumerate(vocab)}
    n_b = len(encs)
    allowed = torch.zeros(n_b, len(vocab), dtype=torch.bool)
    for b, row in enumerate(cands):
        allowed[b, [col[t] for c in row for t in c]] = True
    width = max(len(c) for row in cands for c in row) - 1
    hidden, cache, mask, last = prefill(model, encs, prompts, pad_id, horizon=width + 1, head=False)
    device = hidden.device
    allowed = allowed.to(device)
    first = torch.log_softmax(_label_logits(model, hidden, vocab).masked_fill(~allowed, float("-inf")), -1)
    scores = [first[b, [col[c[0]] for c in row]] for b, row in enumerate(cands)]
    if width == 0:
        return scores
    rows = [b for b, row in enumerate(cands) for _ in row]  # one continuation row per (prompt, candidate)
    sel = torch.tensor(rows, device=device)
    cache.batch_select_indices(sel)
    n = len(rows)
    cont = torch.full((n, width), pad_id, dtype=torch.long)
    target = torch.zeros((n, width), dtype=torch.long)  # column in vocab
    cmask = torch.zeros((n, width), dtype=torch.bool)
    for r, c in enumerate(c for row in cands for c in row):
        cont[r, : len(c) - 1] = torch.tensor(c[:-1])
        target[r, : len(c) - 1] = torch.tensor([col[t] for t in c[1:]])
        cmask[r, : len(c) - 1] = True
    cont, target, cmask = (t.to(device) for t in (cont, target, cmask))
    full_mask = torch.cat([mask[sel], cmask.long()], dim=1)
    cpos = last[sel][:, None] + 1 + torch.arange(width, device=device)
    out2, _ = run_cached(model.base_model, cache, input_ids=cont, attention_mask=full_mask, position_ids=cpos)
    logits = _label_logits(model, out2.last_hidden_state, vocab).masked_fill(~allowed[sel][:, None], float("-inf"))
    logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    rest = torch.where(cmask, logp, 0.0).sum(-1).split([len(row) for row in cands])
    return [s + r for s, r in zip(scores, rest, strict=True)]


def require_gathered_head(model, tokenizer, mode: str = "rank") -> None:
    """UserError unless candidate-only logits reproduce the model's head (``--decode rank`` and
    ``structured`` compute no others; :func:`check_gathered_head`: a full-vocabulary forward
    pass; serve runs it at load)."""
    if not check_gathered_head(model, tokenizer):  # refuse rather than rank wrongly
        raise UserError(f"--decode {mode}: the LM head of {type(model).__name__} post-processes logits in a way "
                        "ptune does not reproduce; use --decode generate")


@torch.inference_mode()
def rank_rows(model, tokenizer, records: Sequence[dict], encs: Sequence[Encoded | None],
              settings: Sequence[DecodeSetting], *, batch_size: int = 32, on_progress: Progress = None,
              on_batch: OnBatch = None, head_checked: bool = False) -> tuple[list[str], list[list[float] | None]]:
    """The most likely candidate of its task per record, and every candidate's log-likelihood
    (input order; records of different tasks share batches).

    ``None`` encodings give ``""`` and no scores. ``on_batch(indices, preds, scores)`` sees
    each finished batch. ``head_checked``: the caller ran :func:`require_gathered_head` on this
    model already (serve, once at load).
    """
    preds: list[str] = [""] * len(encs)
    all_scores: list[list[float] | None] = [None] * len(encs)
    cands: dict[int, list[list[int]]] = {}  # per setting: token ids, from its first record
    for i, (e, s) in enumerate(zip(encs, settings, strict=True)):
        if e is not None and id(s) not in cands:
            cands[id(s)] = candidate_ids(s.template, tokenizer, records[i], s.candidates)
    if not cands:
        return preds, all_scores
    if not head_checked:
        require_gathered_head(model, tokenizer)
    prompts = [s.prompt for s in settings]
    for idx in _batches(encs, batch_size, batch_cost=32.0):  # one continuation pass per batch
        horizon = max(len(c) for i in idx for c in cands[id(settings[i])])
        for sub in window_split(model, encs, idx, prompts, horizon):
            scores = _rank_batch(model, tokenizer.pad_token_id, [encs[i] for i in sub], [prompts[i] for i in sub],
                                 [cands[id(settings[i])] for i in sub])
            for row, i in zip(scores, sub, strict=True):
                preds[i] = settings[i].candidates[int(row.argmax())]
                all_scores[i] = [round(float(x), 4) for x in row]
        if on_batch:
            on_batch(idx, [preds[i] for i in idx], [all_scores[i] for i in idx])
        if on_progress:
            on_progress(len(idx))
    return preds, all_scores


def rank_labels(model, tokenizer, tpl: TaskTemplate, records: Sequence[dict], encs: Sequence[Encoded | None],
                prompt, candidates: Sequence[str], *, batch_size: int = 32,
                on_progress: Progress = None, on_batch: OnBatch = None) -> tuple[list[str], list[list[float] | None]]:
    """:func:`rank_rows` for records of one task."""
    setting = DecodeSetting(tpl, prompt, candidates=list(candidates))
    return rank_rows(model, tokenizer, records, encs, [setting] * len(encs), batch_size=batch_size,
                     on_progress=on_progress, on_batch=on_batch)
