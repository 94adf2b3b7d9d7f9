"""The ``prefix`` encoder (P-tuning v2): each task's deep prompt [L, 2, n_kv, T, d].

Without ``--prefix-projection`` the prefix itself is the parameter (as prompt tuning is for
input prompts). With it, the paper's reparameterisation: a [T, h] embedding (+ the task-name
vector, so tasks trained together share the MLP) → MLP (h → width → 2·L·n_kv·d, tanh) added to
the starting prefix, the MLP's last layer zero at the start (as the lstm/mlp encoders), so an
untrained text-init prefix is exactly the text's keys/values either way. The starting prefix is
the frozen model's own keys/values for ``--init text:X`` or for random vocabulary tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from ptune_cli.ptuning.encoders import _token_rows, initial_inputs, run_table, task_init
from ptune_cli.ptuning.prefix import kv_layout, token_kv


class PrefixEncoder(nn.Module):
    """Maps a task index to its prefix [L, 2, n_kv, T, d] (float32)."""

    kind = "prefix"

    def __init__(self, tasknames, starts: list[torch.Tensor], embeds: list[torch.Tensor] | None,
                 task_vectors: torch.Tensor | None, hidden: int | None = None):
        super().__init__()
        self.tasknames = list(tasknames)
        self.projection = embeds is not None
        if not self.projection:
            self.inputs = nn.ParameterList([nn.Parameter(s.detach().clone().float()) for s in starts])
            return
        self.starts = nn.ParameterList([nn.Parameter(s.detach().clone().float(), requires_grad=False) for s in starts])
        self.inputs = nn.ParameterList([nn.Parameter(e.detach().clone().float()) for e in embeds])
        self.register_buffer("task_vectors", task_vectors.detach().clone().float())
        h = embeds[0].shape[1]
        out = starts[0][:, :, :, 0].numel()  # 2·L·n_kv·d per virtual token
        width = hidden or h
        self.head = nn.Sequential(nn.Linear(h, width), nn.Tanh(), nn.Linear(width, out))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, task: int) -> torch.Tensor:
        with torch.autocast(self.inputs[task].device.type, enabled=False):
            if not self.projection:
                return self.inputs[task]
            start = self.starts[task]
            n_layers, _, n_kv, t, d = start.shape
            delta = self.head(self.inputs[task] + self.task_vectors[task])  # [T, 2·L·n_kv·d]
            return start + delta.view(t, n_layers, 2, n_kv, d).permute(1, 2, 3, 0, 4)

    def table(self) -> dict[str, torch.Tensor]:
        """taskname -> float32 [L, 2, n_kv, T, d] on CPU."""
        return run_table(self)


def _start_ids(total: int, init: str, tokenizer, vocab: int) -> list[int]:
    """Token ids whose keys/values start the prefix: the text repeated to fill T, or random
    ids from the first 5,000 vocabulary entries (frequent BPE pieces)."""
    if init.startswith("text:"):
        ids = tokenizer(init[5:], add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"text {init[5:]!r} has no tokens")
        return (ids * -(-total // len(ids)))[:total]
    return torch.randint(0, min(vocab, 5000), (total,)).tolist()


def build_prefix_encoder(model, templates, tokenizer, *, init="random", projection=False,
                         hidden=None) -> PrefixEncoder:
    """A fresh prefix encoder for ``templates`` (taskname -> TaskTemplate) on ``model``."""
    from ptune_cli.ptuning.template import uses_bos

    before = [tokenizer.bos_token_id] if uses_bos(tokenizer) else []
    embed = model.get_input_embeddings()
    kv_layout(model)  # fails early on a model without a layer-wise cache
    names = list(templates)
    starts, embeds = [], []
    for n in names:
        total = templates[n].total_virtual_tokens
        ids = _start_ids(total, task_init(init, n), tokenizer, embed.num_embeddings)
        starts.append(token_kv(model, before, ids))
        if projection:
            embeds.append(initial_inputs(n, total, task_init(init, n), tokenizer, embed, name_first=False))
    vectors = torch.stack([_token_rows(n, tokenizer, embed).mean(0) for n in names]) if projection else None
    return PrefixEncoder(names, starts, embeds if projection else None, vectors, hidden=hidden)
