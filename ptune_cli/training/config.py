"""``ptune train``'s options, declared once: each field's default, help and flag (the CLI is
built from this dataclass, see :mod:`ptune_cli.options`).

Defaults are chosen to learn on small models (SmolLM2-135M, a few hundred records): NeMo's
lr 1e-4 is tuned for billions of parameters and barely moves a prompt on a 135M model, so we
use PEFT's range for prompt methods (lr 3e-3 for lstm/mlp; prompt tuning with the
``embedding`` encoder usually wants ~3e-2). Weight decay 0.01, grad clip 1.0, batch 8, linear
warmup then cosine decay and early stopping on val loss follow NeMo.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal

from ptune_cli.options import PRECISION_ALIASES, PRECISION_HELP, Precision, option

_PROMPT, _OPT, _RUN = "Prompt encoder", "Optimization", "Run"


@dataclass
class TrainConfig:
    """Everything one `ptune train` run needs. ``affects_output=False``: may change on --resume."""

    train: str = option(help="Training records (JSONL; 'taskname' picks the template).")
    output: str = option(help="Run directory (prompt table, config, log, checkpoint).", flag="--output", short="-o",
                         affects_output=False)
    template: str | None = option(help="Task template JSON (NeMo keys), see templates/.")
    val: str | None = option(None, help="Validation records: early stopping, best checkpoint exported.")
    model: str | None = option(None, help="Hub id, local folder, .gguf file, or a model shipped in a pip package: "
                               "packaged:smollm2-135m (English, the default) or packaged:gemma3-270m "
                               "(multilingual). Default: packaged:smollm2-135m, or --existing's model.")
    existing: str | None = option(None, help="Earlier run dir: its tasks' prompts are kept (byte-identical), "
                                  "new tasks trained.")
    encoder: Literal["lstm", "mlp", "embedding", "prefix"] = option(
        "lstm", help="lstm (BiLSTM+MLP, NeMo), mlp, embedding (prompt tuning), or prefix (P-tuning v2: "
        "key/value prefixes of length T at every layer; the template must start with <|VIRTUAL_PROMPT_0|>, "
        "all markers' input tokens are dropped).", panel=_PROMPT)
    prefix_projection: bool = option(False, help="prefix: reparameterise through an MLP (embedding → MLP → "
                                     "2·L·d_kv per virtual token).", panel=_PROMPT)
    encoder_hidden: int | None = option(None, help="Encoder width (default: h/2 per LSTM direction, h for mlp and "
                                        "--prefix-projection).", panel=_PROMPT)
    init: str = option("random", help="random (task name in the first rows), text:\"…\" (vocabulary embeddings "
                       "of the text; for prefix: the frozen model's own keys/values of it), or labels (text: the "
                       "task's answers listed from --train, e.g. 'Intents: …. Slot types: ….'; cut or repeated to "
                       "T).", panel=_PROMPT)
    epochs: int = option(10, help="Passes over --train.", panel=_OPT)
    max_steps: int | None = option(None, help="Optimizer steps (overrides --epochs).", panel=_OPT)
    lr: float = option(3e-3, help="Peak learning rate (3e-3 suits lstm/mlp on small models; try 3e-2 for "
                       "embedding).", panel=_OPT)
    weight_decay: float = option(0.01, help="AdamW weight decay.", panel=_OPT)
    warmup_steps: int | None = option(None, help="Linear warmup, then cosine decay (default min(50, 10% of steps)).",
                                      panel=_OPT)
    batch_size: int = option(8, help="Examples per process and micro-batch.", panel=_OPT)
    grad_accum: int = option(1, help="Micro-batches per optimizer step.", panel=_OPT)
    grad_clip: float = option(1.0, help="Gradient norm clip (0: off).", panel=_OPT)
    max_length: int | None = option(None, help="Tokens per example incl. virtual ones (default min(context, 1024)); "
                                    "longer: truncate_field is cut, else skipped.", panel=_OPT)
    gradient_checkpointing: bool = option(False, help="Recompute each layer's activations in the backward "
                                          "pass: less memory, ~30% slower (every encoder).", affects_output=False,
                                          panel=_OPT)
    precision: Precision = option("auto", help="Autocast: " + PRECISION_HELP, aliases=PRECISION_ALIASES, panel=_OPT)
    threads: int | None = option(None, affects_output=False, panel=_OPT, help="CPU threads torch computes with (default: torch's own, one per core). Set it when other jobs share the CPU: a loaded 2-core machine ran 5x slower at the default than at --threads 1.")
    seed: int = option(42, help="Seed for the encoder init and the batch order.", panel=_OPT)
    eval_every: int | None = option(None, help="Steps between val evaluations (default: each epoch).", panel=_RUN)
    early_stopping_patience: int | None = option(
        10, help="Stop after this many evaluations without val improvement (0: off).", panel=_RUN)
    min_delta: float = option(0.001, help="Val improvement that counts.", panel=_RUN)
    save_every: int = option(50, help="Steps between checkpoints.", affects_output=False, panel=_RUN)
    keep_steps: bool = option(True, flag="--keep-steps/--no-keep-steps", affects_output=False, panel=_RUN,
                              help="At each checkpoint also write the prompts of that step as a prompt table in "
                                   "RUN_DIR/steps/step_N (evaluate it with `ptune eval --run RUN_DIR/steps/step_N`).")
    resume: bool = option(False, help="Continue an interrupted run in -o from its last checkpoint.",
                          affects_output=False, panel=_RUN)
    report_to: Literal["none", "tensorboard", "wandb"] = option(
        "none", help="Also log loss, lr, val loss, tokens/s and the resolved config to tensorboard "
        "(RUN_DIR/tensorboard) or wandb (+ the prompt table as an artifact); extra 'track'.",
        affects_output=False, panel=_RUN)

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self) -> list[str]:
        """Every invalid value (choices are checked by :func:`ptune_cli.options.validate`)."""
        p: list[str] = []
        if self.init not in ("random", "labels") and not re.fullmatch(r"text:.*\S.*", self.init, flags=re.S):
            p.append(f"--init must be 'random', 'labels' or 'text:<some words>', got '{self.init}'")
        for flag, v in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                        ("--grad-accum", self.grad_accum), ("--save-every", self.save_every)):
            if v < 1:
                p.append(f"{flag} must be >= 1, got {v}")
        for flag, v in (("--max-steps", self.max_steps), ("--eval-every", self.eval_every), ("--encoder-hidden", self.encoder_hidden),
                        ("--threads", self.threads)):
            if v is not None and v < 1:
                p.append(f"{flag} must be >= 1, got {v}")
        if self.max_length is not None and self.max_length < 4:
            p.append(f"--max-length must be >= 4, got {self.max_length}")
        if not self.lr > 0:
            p.append(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.min_delta < 0:
            p.append("--weight-decay, --grad-clip and --min-delta must be >= 0")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            p.append(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            p.append(f"--early-stopping-patience must be >= 0, got {self.early_stopping_patience}")
        if self.prefix_projection and self.encoder != "prefix":
            p.append("--prefix-projection needs --encoder prefix")
        if self.template is None:
            p.append("--template is required (a JSON file with NeMo task keys, see templates/)")
        return p
