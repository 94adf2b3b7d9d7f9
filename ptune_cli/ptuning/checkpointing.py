"""``--gradient-checkpointing`` for a frozen LM, every encoder included (prefix too).

transformers' own checkpointing runs only in train mode (the frozen LM is in eval mode: no
dropout) and drops the KV cache — where a prefix lives (PEFT's prefix tuning raises for that
reason, peft#869). Here each decoder layer's ``forward`` runs under non-reentrant
``torch.utils.checkpoint`` (no input needs ``requires_grad``, the prompt's gradient reaches it
through the closure), and a cache the layer appends to is rewound to what it held before the
layer ran when the backward pass recomputes it, so the recompute sees the same keys/values.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def _layers(model) -> list[torch.nn.Module]:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def _layer_index(layer) -> int | None:
    for m in layer.modules():
        idx = getattr(m, "layer_idx", None)
        if isinstance(idx, int):
            return idx
    return None


def _wrap(layer, idx: int | None):
    from transformers.cache_utils import Cache

    orig = layer.forward

    def forward(*args, **kwargs):
        if not torch.is_grad_enabled():
            return orig(*args, **kwargs)
        cache = next((a for a in (*args, *kwargs.values()) if isinstance(a, Cache)), None)
        slot = cache.layers[idx] if cache is not None and idx is not None and idx < len(cache.layers) else None
        saved = dict(vars(slot)) if slot is not None else None  # keys, values, lengths before the layer
        calls = [0]

        def run(*a):
            if calls[0] and saved is not None:  # the backward's recompute: same cache as the first call
                vars(slot).update(saved)
            calls[0] += 1
            return orig(*a, **kwargs)

        return checkpoint(run, *args, use_reentrant=False)

    layer.forward = forward


def enable_checkpointing(model) -> int:
    """Checkpoint every decoder layer of ``model``; returns how many layers."""
    layers = _layers(model)
    for layer in layers:
        if not getattr(layer, "_ptune_checkpointed", False):
            _wrap(layer, _layer_index(layer))
            layer._ptune_checkpointed = True
    return len(layers)
