"""The frozen causal LM's plumbing: prompt rows injected into ``inputs_embeds``, the KV cache
argument, the sliding window, the gathered LM head, and the answer-only loss of an input prompt.

The LM never computes logits over the whole vocabulary at every position: it runs to hidden
states, the positions that carry a label are gathered, and only those go through ``lm_head``.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

_CACHE_ARG: dict[type, str] = {}


def inject_prompts(model, input_ids, virtual_mask, prompts):
    """``inputs_embeds`` = embeddings of ``input_ids`` with the rows where ``virtual_mask`` is
    True replaced, in order, by ``prompts[b]`` (each row has exactly T True positions);
    prompts are cast to the embedding dtype."""
    embeds = model.get_input_embeddings()(input_ids)
    if prompts.dim() == 2:
        prompts = prompts.unsqueeze(0).expand(input_ids.shape[0], -1, -1)
    if prompts.shape[1] == 0:
        return embeds
    mask = virtual_mask.to(torch.bool)
    # masked_scatter fills masked positions row by row, in order: exactly prompts[b] per row.
    return embeds.masked_scatter(mask.unsqueeze(-1), prompts.to(embeds.dtype).reshape(-1))


def _body_and_head(model):
    """(decoder body returning hidden states, output projection)."""
    return model.base_model, model.get_output_embeddings()


def run_cached(module, cache=None, **kwargs):
    """``module(**kwargs, use_cache=True)`` with the KV ``cache`` passed under the name this
    transformers release uses (``cache`` since 5.2x, ``past_key_values`` before; the old name
    warns on every call and goes in 5.40). Returns ``(output, cache)``."""
    cls = type(module)
    if cls not in _CACHE_ARG:
        _CACHE_ARG[cls] = "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
    name = _CACHE_ARG[cls]
    if cache is not None:
        kwargs[name] = cache
    out = module(**kwargs, use_cache=True)
    return out, out.get(name)


def sliding_window(model) -> int | None:
    """The attention window of a model with sliding-window layers (Mistral, Gemma 2/3, Phi-3),
    else None. Such layers see the last W cache positions, padding included."""
    cfg = model.config
    w = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None)
    if not w or getattr(cfg, "use_sliding_window", True) is False or (types and "sliding_attention" not in types):
        return None
    return int(w)


def hidden_states(model, inputs_embeds, attention_mask):
    body, _ = _body_and_head(model)
    out = body(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def head_logits(model, hidden, vocab=None):
    """``lm_head`` on gathered hidden states, with the model's own logit post-processing.

    ``vocab`` (token ids): logits of those tokens only, [..., len(vocab)] — rank decoding
    needs no others, and Gemma's 262k-row head is the model's largest matrix.
    """
    _, head = _body_and_head(model)
    if vocab is None:
        logits = head(hidden)
    else:
        idx = torch.as_tensor(vocab, dtype=torch.long, device=head.weight.device)
        bias = head.bias[idx] if getattr(head, "bias", None) is not None else None
        logits = F.linear(hidden, head.weight[idx], bias)
    cfg = model.config
    scale = getattr(cfg, "logit_scale", None)
    if isinstance(scale, (int, float)) and scale != 1:
        logits = logits * scale
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def input_loss(
    model, input_ids, attention_mask, virtual_mask, labels, prompts, *, reduction="mean", gathered=True
):
    """Cross-entropy on the labelled positions only (labels != -100, shifted by one), the prompt
    rows [T, h] injected at the virtual positions.

    Returns ``(loss, n_tokens)``; ``reduction="sum"`` gives the summed loss (for val averages).
    ``gathered=False`` falls back to the model's full logits (architectures whose head
    post-processing :func:`check_gathered_head` could not reproduce).
    """
    embeds = inject_prompts(model, input_ids, virtual_mask, prompts)
    target = labels[:, 1:]
    sel = target != -100
    # Hidden states after the last labelled position are never used: trim the sequence.
    last = int(sel.any(0).nonzero().max()) + 1 if sel.any() else 1
    sel = sel[:, :last]
    if gathered:
        hid = hidden_states(model, embeds[:, :last], attention_mask[:, :last])
        logits = head_logits(model, hid[sel])
    else:
        out = model(inputs_embeds=embeds[:, :last], attention_mask=attention_mask[:, :last], use_cache=False)
        logits = out.logits[sel]
    loss = F.cross_entropy(logits.float(), target[:, :last][sel], reduction=reduction)
    return loss, int(sel.sum())


def check_gathered_head(model, tokenizer) -> bool:
    """True when hidden states + ``head_logits`` reproduce the model's own logits (checked once
    on a short input), so the gathered-logits shortcut is exact for this architecture."""
    ids = torch.tensor([[t for t in tokenizer("ok, check this")["input_ids"]][:8]])
    ids = ids.to(model.get_input_embeddings().weight.device)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits.float()
        emb = model.get_input_embeddings()(ids)
        mine = head_logits(model, hidden_states(model, emb, mask)).float()
    return ref.shape == mine.shape and torch.allclose(ref, mine, atol=1e-3, rtol=1e-3)
