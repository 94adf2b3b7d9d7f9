"""Prompt encoders: one module for the tasks trained together, conditioned on the task name.

Every task owns a learnable input table [T, h]. ``lstm`` and ``mlp`` run it through a network
shared by all tasks (NeMo's P-tuning reparameterisation), after adding a fixed vector for the
task name (the mean of its word embeddings) so the shared network knows which task it encodes.
``embedding`` is prompt tuning: the table itself is the prompt.

After training, :meth:`PromptEncoder.table` runs the encoder once per task; that [T, h] output
is all inference needs. The lstm/mlp output is residual (input table + network): see
:meth:`PromptEncoder.forward`.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("lstm", "mlp", "embedding")


class PromptEncoder(nn.Module):
    """Maps a task index to its virtual-token embeddings [T, h]."""

    def __init__(
        self,
        kind: str,
        tasknames: list[str],
        inputs: list[torch.Tensor],
        task_vectors: torch.Tensor,
        hidden: int | None = None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown encoder {kind!r}")
        self.kind = kind
        self.tasknames = list(tasknames)
        h = inputs[0].shape[1]
        self.inputs = nn.ParameterList([nn.Parameter(x.detach().clone().float()) for x in inputs])
        self.register_buffer("task_vectors", task_vectors.detach().clone().float())
        if kind == "lstm":
            # BiLSTM with hidden h/2 per direction (not h: PEFT's choice blows up on big models)
            eh = hidden or max(1, h // 2)
            self.lstm = nn.LSTM(h, eh, num_layers=2, bidirectional=True, batch_first=True)
            self.head = nn.Sequential(nn.Linear(2 * eh, h), nn.ReLU(), nn.Linear(h, h))
        elif kind == "mlp":
            eh = hidden or h
            self.head = nn.Sequential(
                nn.Linear(h, eh), nn.ReLU(), nn.Linear(eh, eh), nn.ReLU(), nn.Linear(eh, h)
            )
        if kind in ("lstm", "mlp"):
            # The head's last layer starts at zero (as LoRA's B): an untrained encoder returns
            # its input table exactly, so a --init text:X prompt starts as the hard prompt X
            # (with random weights it started X + noise of the embeddings' own size).
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, task: int) -> torch.Tensor:
        # Always float32, outside any autocast: the encoder is tiny, and CPU autocast has no
        # bf16 LSTM kernel (--precision bf16 crashed). inject_prompts casts to the LM's dtype.
        with torch.autocast(self.inputs[task].device.type, enabled=False):
            return self._encode(task)

    def _encode(self, task: int) -> torch.Tensor:
        x = self.inputs[task]
        if self.kind == "embedding":
            return x
        h = x + self.task_vectors[task]
        if self.kind == "lstm":
            h = self.lstm(h.unsqueeze(0))[0].squeeze(0)
        # Residual (unlike NeMo): training starts from the input table, i.e. from prompts that
        # look like real token embeddings, and --init text:… means something for lstm/mlp too.
        return x + self.head(h)

    def table(self) -> dict[str, torch.Tensor]:
        """Run the encoder once per task: taskname -> float32 [T, h] on CPU."""
        return run_table(self)


def _rows(embed, ids) -> torch.Tensor:
    """What the LM's own embedding module returns for ``ids``, as float32 rows on CPU.

    Not ``embed.weight[ids]``: Gemma's embedding module multiplies by sqrt(hidden) in forward,
    so weight rows are 25x smaller than what the model sees (virtual tokens then start far off
    the real-token scale, and ``--init text:X`` would not mean X).
    """
    device = next(embed.parameters()).device
    with torch.no_grad():
        return embed(torch.as_tensor(ids, dtype=torch.long, device=device)).detach().float().cpu()


def _token_rows(text: str, tokenizer, embed) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"text {text!r} has no tokens")
    return _rows(embed, ids)


def initial_inputs(
    taskname: str, total: int, init: str, tokenizer, embed, *, name_first: bool
) -> torch.Tensor:
    """The starting input table [T, h] of one task (``embed``: the LM's input embedding module).

    ``init="text:…"``: the text's token embeddings, repeated to fill T (prompt-tuning init).
    ``init="random"``: embeddings of tokens drawn at random from the first 5,000 vocabulary
    entries (BPE ids there are frequent pieces; real-token rows start better than noise);
    with ``name_first`` (lstm/mlp, as NeMo) the first rows are the task name's embeddings.
    """
    if init.startswith("text:"):
        rows = _token_rows(init[5:], tokenizer, embed)
        reps = -(-total // rows.shape[0])
        return rows.repeat(reps, 1)[:total].clone()
    ids = torch.randint(0, min(embed.num_embeddings, 5000), (total,))
    table = _rows(embed, ids).clone()
    if name_first:
        rows = _token_rows(taskname, tokenizer, embed)[:total]
        table[: rows.shape[0]] = rows
    return table


def task_init(init: str | dict[str, str], taskname: str) -> str:
    """One task's ``--init``: ``init`` is one setting for all tasks or a setting per task."""
    return init[taskname] if isinstance(init, dict) else init


def build_encoder(kind, templates, tokenizer, embed, *, init="random", hidden=None) -> PromptEncoder:
    """A fresh encoder for ``templates`` (taskname -> TaskTemplate); ``embed`` is the LM's input
    embedding module (``model.get_input_embeddings()``), used for initialisation and task-name
    vectors exactly as the model embeds real tokens."""
    names = list(templates)
    inputs = [
        initial_inputs(n, templates[n].total_virtual_tokens, task_init(init, n), tokenizer, embed,
                       name_first=kind != "embedding")
        for n in names
    ]
    vectors = torch.stack([_token_rows(n, tokenizer, embed).mean(0) for n in names])
    return PromptEncoder(kind, names, inputs, vectors, hidden=hidden)


@torch.no_grad()
def run_table(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The encoder run once per task in eval mode: taskname -> float32 tensor on CPU."""
    was = encoder.training
    encoder.eval()
    out = {name: encoder(i).detach().float().cpu().clone() for i, name in enumerate(encoder.tasknames)}
    encoder.train(was)
    return out
