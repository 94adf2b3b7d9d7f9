"""The prefill of a batch whose rows may belong to different tasks (one forward pass for all).

Each row carries its task's prompt: an input prompt [T, h] (its rows replace the row's virtual
positions of ``inputs_embeds``), a deep prefix (:class:`~ptune_cli.ptuning.prefix.Prefix`:
keys/values that open the cache) or None (a baseline). Rows with the same prompt form a group.
A group's *head* — BOS and its prefix, then the leading tokens its rows share (virtual tokens,
fixed template text) — is computed once: the heads of all groups are left-padded and stacked
along the batch dimension (one forward pass), every row is given its group's head, and the
rows' own tokens run on it, left-padded after it. Padding is masked and positions are each
row's own, so a row's logits are those of the row alone, up to float rounding. With one task
this is the shared-prefix prefill every batch had before tasks could be mixed.

Sliding-window layers see the last W cache positions, padding included: when the padded layout
and the tokens still to come exceed W, input rows get plain left padding (no head) and prefix
rows must come in batches of one length and prefix (:func:`window_split`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ptune_cli.ptuning.model import PrefixKind, as_prompt, kind_of, run_cached, sliding_window
from ptune_cli.ptuning.prefix import cache_dtype, split_virtual
from ptune_cli.ptuning.template import Encoded


def left_pad(encs: Sequence[Encoded], pad_id: int, device=None):
    """``(input_ids, attention_mask, virtual_mask)`` left-padded to the longest encoding."""
    width = max(len(e.input_ids) for e in encs)
    ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encs), width), dtype=torch.long)
    vmask = torch.zeros((len(encs), width), dtype=torch.bool)
    for b, e in enumerate(encs):
        n = len(e.input_ids)
        if n:
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


def per_row(prompts, n: int) -> list:
    """One typed prompt per row: ``prompts`` is a list of them, or one prompt for every row."""
    if isinstance(prompts, (list, tuple)):
        return [as_prompt(p) for p in prompts]
    return [as_prompt(prompts)] * n


def prompt_key(p) -> int:
    """Rows with the same key share a prompt (a task's tensor is one object for its lifetime)."""
    return id(p.kv) if kind_of(p) is PrefixKind else id(p)


@dataclass
class _Group:
    prompt: Any
    rows: list[int] = field(default_factory=list)
    before: list[int] = field(default_factory=list)  # tokens before a prefix (BOS)
    n_pre: int = 0  # the rows' own leading tokens in the head
    n_virt: int = 0  # input-prompt rows among them

    @property
    def kind(self):
        return kind_of(self.prompt)

    @property
    def offset(self) -> int:
        """Cache positions before the own tokens: BOS + a prefix."""
        return self.kind.offset(self.before, self.prompt)

    @property
    def head_len(self) -> int:
        return self.offset + self.n_pre


def _layout(encs, prompts, share: bool) -> tuple[list[_Group], list[Encoded], int]:
    """Groups, own encodings, and the padded width of the whole batch."""
    own = [kind_of(p).own(e, p) for e, p in zip(encs, prompts, strict=True)]
    groups: dict[int, _Group] = {}
    for b, p in enumerate(prompts):
        groups.setdefault(prompt_key(p), _Group(p)).rows.append(b)
    for g in groups.values():
        first = own[g.rows[0]]
        if g.kind is PrefixKind:
            g.before = split_virtual(encs[g.rows[0]])[0]
        g.n_pre = shared_prefix_len([own[b] for b in g.rows]) if share else 0
        g.n_virt = sum(first.virtual_mask[: g.n_pre])
    gs = list(groups.values())
    width = (max(g.offset for g in gs) + max(g.n_pre for g in gs)
             + max(len(o.input_ids) - g.n_pre for g in gs for o in (own[b] for b in g.rows)))
    return gs, own, width


def window_matters(model, encs: Sequence[Encoded], prompts, horizon: int) -> bool:
    """True when the padded batch plus ``horizon`` tokens would put padding inside a sliding
    window (a row's window would then reach fewer real tokens than the row alone)."""
    w = sliding_window(model)
    if w is None:
        return False
    _, _, width = _layout(encs, per_row(prompts, len(encs)), True)
    return width + horizon > w and any(len(e.input_ids) != width for e in encs)


def window_split(model, encs: Sequence[Encoded | None], idx: list[int], prompts: Sequence, horizon: int) -> list[list[int]]:
    """``idx`` as batches :func:`prefill` keeps exact: the whole batch, unless the window
    matters; then the input rows together (plain left padding) and the prefix rows by prompt and
    length (a prefix opens the cache, so it cannot be left-padded)."""
    rows = [encs[i] for i in idx]
    if not window_matters(model, rows, [prompts[i] for i in idx], horizon):
        return [idx]
    out: dict[tuple, list[int]] = {}
    for i in idx:
        p = as_prompt(prompts[i])
        key = (prompt_key(p), len(encs[i].input_ids)) if kind_of(p) is PrefixKind else ("input",)
        out.setdefault(key, []).append(i)
    return list(out.values())


def _embed(model, ids, vmask, sources: list[torch.Tensor]):
    """Embeddings of ``ids`` with the virtual positions filled, row by row, from ``sources``."""
    embeds = model.get_input_embeddings()(ids)
    sources = [s for s in sources if s is not None and s.shape[0]]
    if not sources:
        return embeds
    flat = torch.cat([s.to(device=embeds.device, dtype=embeds.dtype) for s in sources])
    # masked_scatter fills masked positions in row-major order: each row's prompt rows in turn
    return embeds.masked_scatter(vmask.unsqueeze(-1), flat.reshape(-1))


def _prefix_cache(model, groups: list[_Group], device):
    """A cache of one row per group: BOS + the group's prefix keys/values, right-aligned (an
    input group's row is padding); and its mask. ``(None, [G, 0] mask)`` without prefixes."""
    width = max(g.offset for g in groups)
    mask = torch.zeros(len(groups), width, dtype=torch.long, device=device)
    if not width:
        return None, mask
    from transformers import DynamicCache

    bos: dict[tuple, list] = {}  # before tokens -> per layer (keys, values) [kvh, nb, d]
    dtype = cache_dtype(model, device)
    for g in groups:
        if g.before and tuple(g.before) not in bos:
            with torch.no_grad():
                _, c = run_cached(model.base_model, input_ids=torch.tensor([g.before], device=device))
            bos[tuple(g.before)] = [(layer.keys[0], layer.values[0]) for layer in c.layers]
            dtype = c.layers[0].keys.dtype
    first = next(g.prompt.kv for g in groups if g.kind is PrefixKind)
    n_layers, _, n_kv, _, d = first.shape
    cache = DynamicCache(config=model.config)
    for i in range(n_layers):
        kv = torch.zeros(2, len(groups), n_kv, width, d, dtype=dtype, device=device)
        for r, g in enumerate(groups):
            if g.kind is not PrefixKind:
                continue
            parts = [g.prompt.kv[i].to(device=device, dtype=dtype)]
            if g.before:
                k, v = bos[tuple(g.before)][i]
                parts.insert(0, torch.stack([k, v]).to(dtype))
            seg = torch.cat(parts, dim=2)  # [2, kvh, offset, d]
            kv[:, r, :, width - seg.shape[2] :] = seg
        cache.update(kv[0], kv[1], i)
    for r, g in enumerate(groups):
        if g.offset:
            mask[r, width - g.offset :] = 1
    return cache, mask


def _heads(model, groups: list[_Group], own: list[Encoded], pad_id: int, device):
    """The groups' heads in one forward pass: ``(cache with one row per group, mask [G, C])``."""
    cache, mask = _prefix_cache(model, groups, device)
    width = max(g.n_pre for g in groups)
    if not width:
        return cache, mask
    heads = [Encoded(own[g.rows[0]].input_ids[: g.n_pre], own[g.rows[0]].virtual_mask[: g.n_pre], [], 0, False)
             for g in groups]
    ids, hmask, vmask = left_pad(heads, pad_id, device)
    sources = [g.prompt[: g.n_virt] if g.n_virt else None for g in groups]
    offsets = torch.tensor([g.offset for g in groups], device=device)
    mask = torch.cat([mask, hmask], dim=1)
    pos = offsets[:, None] + (hmask.cumsum(-1) - 1).clamp(min=0)
    _, cache = run_cached(model.base_model, cache, inputs_embeds=_embed(model, ids, vmask, sources),
                          attention_mask=mask, position_ids=pos)
    return cache, mask


def prefill(model, encs: Sequence[Encoded], prompts, pad_id: int, *, horizon: int = 0, head: bool = True):
    """Run a batch of prompts (rows of any tasks; ``prompts``: one per row, or one for all) as
    described above; ``horizon``: tokens that will follow (the window rule). Returns ``(last
    logits [B, V] — or last hidden states [B, h] without ``head`` —, cache, attention mask
    [B, C+L], position of each row's last token [B])``."""
    device = model.get_input_embeddings().weight.device
    prompts = per_row(prompts, len(encs))
    share = not window_matters(model, encs, prompts, horizon)
    groups, own, _ = _layout(encs, prompts, share)
    cache, head_mask = _heads(model, groups, own, pad_id, device)
    group_of = [0] * len(encs)
    for r, g in enumerate(groups):
        for b in g.rows:
            group_of[b] = r
    sel = torch.tensor(group_of, device=device)
    if cache is not None:
        cache.batch_select_indices(sel)
    head_mask, head_len = head_mask[sel], torch.tensor([g.head_len for g in groups], device=device)[sel]
    n_pre = [groups[r].n_pre for r in group_of]
    rest = [Encoded(o.input_ids[k:], o.virtual_mask[k:], [], 0, False) for o, k in zip(own, n_pre, strict=True)]
    ids, own_mask, vmask = left_pad(rest, pad_id, device)
    sources = [None if kind_of(p) is PrefixKind or p is None else p[groups[r].n_virt :]
               for p, r in zip(prompts, group_of, strict=True)]
    mask = torch.cat([head_mask, own_mask], dim=1)
    pos = head_len[:, None] + (own_mask.cumsum(-1) - 1).clamp(min=0)
    kw = dict(inputs_embeds=_embed(model, ids, vmask, sources), attention_mask=mask, position_ids=pos)
    if head:
        out, cache = run_cached(model, cache, logits_to_keep=1, **kw)
        last = out.logits[:, -1].float()
    else:
        out, cache = run_cached(model.base_model, cache, **kw)
        last = out.last_hidden_state[:, -1]
    return last, cache, mask, pos[:, -1]
