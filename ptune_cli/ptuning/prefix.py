"""Deep prompts (P-tuning v2): per-layer key/value prefixes fed as a pre-filled KV cache.

A task's prefix is one float32 tensor ``[L, 2, n_kv, T, d]`` (layers, key/value, KV heads,
virtual tokens, head dim) — already in the form the attention layers cache, so it carries no
position of its own (rotary models cache rotated keys). A forward pass with a prefix:

1. the tokens before the first marker (BOS, nothing else: see :func:`template_problem`) run
   through the frozen model into its own cache class (``DynamicCache`` with sliding or full
   layers as the config says); then every layer's cache gets the task's T keys/values appended;
2. the template's virtual-token placeholders are dropped from the input — the prefix
   conditions every later position at every layer, so no input rows are needed — and the
   remaining tokens run on that cache at positions shifted by ``nb + T``, with the attention
   mask extended over the cache.

So a prefix taken from the frozen model's own keys/values for a text X (``--init text:X``)
gives exactly the logits of the hard prompt ``BOS X …`` — tested for every family.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ptune_cli.ptuning.lm import head_logits, run_cached, sliding_window
from ptune_cli.ptuning.template import MARKER_RE, Encoded, TaskTemplate

_LAYOUT: dict[int, tuple[object, tuple[int, int, int]]] = {}


@dataclass
class Prefix:
    """A task's deep prompt: ``kv`` [L, 2, n_kv, T, d] (the table's tensor for a prefix task)."""

    kv: torch.Tensor

    @property
    def length(self) -> int:
        return int(self.kv.shape[3])

    kind = "prefix"


def as_prompt(p):
    """The typed prompt of a table tensor: a 5-D tensor is a :class:`Prefix`, a [T, h] one an
    input prompt (returned as is); None stays None."""
    if isinstance(p, torch.Tensor) and p.dim() == 5:
        return Prefix(p)
    return p


def template_problem(tpl: TaskTemplate) -> str | None:
    """Why ``tpl`` cannot carry a prefix, or None. The prefix sits before all text (after BOS):
    the template must start with ``<|VIRTUAL_PROMPT_0|>``; T = total_virtual_tokens, and later
    markers' placeholders are dropped too (their tokens are part of the same prefix); some text
    must come before the answer (it is predicted from a real token's hidden state)."""
    body = tpl.prompt_template[: -len("{" + tpl.answer_field + "}")]
    if not tpl.prompt_template.startswith("<|VIRTUAL_PROMPT_0|>"):
        return (f"template '{tpl.taskname}': --encoder prefix needs prompt_template to start with "
                "<|VIRTUAL_PROMPT_0|> (the prefix comes before all text)")
    if not MARKER_RE.sub("", body).strip():
        return f"template '{tpl.taskname}': --encoder prefix needs some text between the markers and {{{tpl.answer_field}}}"
    return None


def kv_layout(model) -> tuple[int, int, int]:
    """(layers, KV heads, head dim) of ``model``'s cache, read from one real forward pass (GQA,
    GPT-2's fused attention, Gemma's head_dim all come out as the model caches them)."""
    hit = _LAYOUT.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    dev = model.get_input_embeddings().weight.device
    with torch.no_grad():
        _, cache = run_cached(model.base_model, input_ids=torch.zeros(1, 1, dtype=torch.long, device=dev))
    k = cache.layers[0].keys
    layout = (len(cache.layers), int(k.shape[1]), int(k.shape[3]))
    _LAYOUT[id(model)] = (model, layout)
    return layout


def window_problem(model, length: int, what: str) -> str | None:
    """Sliding layers keep the last W-1 cache entries: a sequence of ``length`` (BOS + prefix +
    tokens) that does not fit would push the prefix out of them. Refused, not dropped."""
    w = sliding_window(model)
    if w is not None and length >= w:
        return (f"{what}: {length} positions (prefix included) do not fit the {w}-token sliding window of "
                f"{type(model).__name__}; the prefix would drop out of its sliding layers (shorten --max-length or T)")
    return None


def cache_dtype(model, device) -> torch.dtype:
    dev = torch.device(device).type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return model.get_input_embeddings().weight.dtype


def start_cache(model, before: list[int], kv: torch.Tensor, batch: int):
    """The model's own cache holding the keys/values of ``before`` (BOS), then the prefix ``kv``
    in every layer, for ``batch`` rows."""
    device = model.get_input_embeddings().weight.device
    cache = None
    if before:
        with torch.no_grad():
            _, cache = run_cached(model.base_model, input_ids=torch.tensor([before], device=device))
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        dtype = cache.layers[0].keys.dtype
    else:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
        dtype = cache_dtype(model, device)
    kv = kv.to(device=device, dtype=dtype)
    for i in range(kv.shape[0]):
        k, v = (kv[i, j].unsqueeze(0).expand(batch, -1, -1, -1) for j in (0, 1))
        cache.update(k, v, i)
    return cache


def split_virtual(enc: Encoded) -> tuple[list[int], list[int]]:
    """(tokens before the first virtual position, the tokens after it without any virtual one)."""
    nb = enc.virtual_mask.index(True) if True in enc.virtual_mask else 0
    rest = [t for t, v in zip(enc.input_ids[nb:], enc.virtual_mask[nb:], strict=True) if not v]
    return enc.input_ids[:nb], rest


@torch.no_grad()
def token_kv(model, before: list[int], ids: list[int]) -> torch.Tensor:
    """The frozen model's own keys/values for ``ids`` read after ``before``: [L, 2, n_kv, T, d]
    float32 on CPU (``--init text:X`` and the random init of a prefix)."""
    device = model.get_input_embeddings().weight.device
    _, cache = run_cached(model.base_model, input_ids=torch.tensor([before + ids], device=device))
    nb, n = len(before), len(ids)
    out = []
    for layer in cache.layers:
        k, v = layer.keys[0, :, nb:], layer.values[0, :, nb:]
        if k.shape[1] != n:  # a sliding layer kept fewer: callers check window_problem first
            raise ValueError(f"cache kept {k.shape[1]} of {n} prefix positions")
        out.append(torch.stack([k, v]))
    return torch.stack(out).float().cpu()


def prefix_loss(model, input_ids, attention_mask, virtual_mask, labels, prefix: Prefix, *,
                reduction="mean", gathered=True):
    """:func:`~ptune_cli.ptuning.model.answer_loss` for a prefix task (right-padded batch; every
    row has its T placeholders, which are dropped, and the same tokens before them)."""
    b = input_ids.shape[0]
    vm = virtual_mask.to(torch.bool)
    nb = int(vm[0].nonzero()[0]) if vm[0].any() else 0
    keep = ~vm
    keep[:, :nb] = False
    ids, att, lab = (t[keep].view(b, -1) for t in (input_ids, attention_mask, labels))
    offset = nb + prefix.length
    target = lab[:, 1:]
    sel = target != -100
    last = int(sel.any(0).nonzero().max()) + 1 if sel.any() else 1
    sel = sel[:, :last]
    cache = start_cache(model, input_ids[0, :nb].tolist(), prefix.kv, b)
    mask = torch.cat([att.new_ones(b, offset), att[:, :last]], dim=1)
    pos = (offset + torch.arange(last, device=ids.device)).unsqueeze(0).expand(b, -1)
    kw = dict(input_ids=ids[:, :last], attention_mask=mask, position_ids=pos)
    if gathered:
        out, _ = run_cached(model.base_model, cache, **kw)
        logits = head_logits(model, out.last_hidden_state[sel])
    else:
        out, _ = run_cached(model, cache, **kw)
        logits = out.logits[sel]
    loss = F.cross_entropy(logits.float(), target[:, :last][sel], reduction=reduction)
    return loss, int(sel.sum())
