"""Typed training configuration with validation that names the flag (all problems at once).

Defaults are chosen to learn on small models (SmolLM2-135M, a few hundred records): NeMo's
lr 1e-4 is tuned for billions of parameters and barely moves a prompt on a 135M model, so we
use PEFT's range for prompt methods (lr 3e-3 for lstm/mlp; prompt tuning with the
``embedding`` encoder usually wants ~3e-2). Weight decay 0.01, grad clip 1.0, batch 8, linear
warmup then cosine decay and early stopping on val loss follow NeMo.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ptune_cli.errors import UserError

ENCODERS = ("lstm", "mlp", "embedding")
PRECISIONS = ("no", "fp16", "bf16")
REPORTERS = ("none", "tensorboard", "wandb")


@dataclass
class TrainConfig:
    """Everything one `ptune train` run needs; field names follow the CLI flags."""

    train: str  # --train: JSONL training records
    output: str  # -o: the run directory
    template: str | None = None  # --template: task template JSON (required)
    val: str | None = None  # --val: JSONL validation records (early stopping, best checkpoint)
    model: str | None = None  # --model: hub id, folder, .gguf; None = packaged SmolLM2-135M
    encoder: str = "lstm"  # --encoder: lstm | mlp | embedding
    encoder_hidden: int | None = None  # --encoder-hidden: lstm h/2 per direction, mlp h
    init: str = "random"  # --init: random | text:"…"
    epochs: int = 10  # --epochs
    max_steps: int | None = None  # --max-steps: overrides --epochs
    lr: float = 3e-3  # --lr: peak learning rate
    weight_decay: float = 0.01  # --weight-decay
    warmup_steps: int | None = None  # --warmup-steps: default min(50, 10 % of the steps)
    batch_size: int = 8  # --batch-size (per process)
    grad_accum: int = 1  # --grad-accum
    grad_clip: float = 1.0  # --grad-clip
    max_length: int | None = None  # --max-length: default min(model context, 1024)
    precision: str = "no"  # --precision: no | fp16 | bf16
    seed: int = 42  # --seed
    eval_every: int | None = None  # --eval-every: steps between val evaluations (default: each epoch)
    early_stopping_patience: int | None = 10  # --early-stopping-patience: evaluations; 0/None = off
    min_delta: float = 0.001  # --min-delta
    save_every: int = 50  # --save-every: steps between checkpoints
    existing: str | None = None  # --existing: run dir whose prompts are kept frozen
    resume: bool = False  # --resume: continue from RUN_DIR/checkpoint
    report_to: str = "none"  # --report-to: none | tensorboard | wandb

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Raise one UserError listing every invalid option."""
        p: list[str] = []
        if self.encoder not in ENCODERS:
            p.append(f"--encoder must be one of {', '.join(ENCODERS)}, got '{self.encoder}'")
        if self.precision not in PRECISIONS:
            p.append(f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        if self.report_to not in REPORTERS:
            p.append(f"--report-to must be one of {', '.join(REPORTERS)}, got '{self.report_to}'")
        if self.init != "random" and not re.fullmatch(r"text:.*\S.*", self.init, flags=re.S):
            p.append(f"--init must be 'random' or 'text:<some words>', got '{self.init}'")
        for flag, v, lo in (
            ("--epochs", self.epochs, 1),
            ("--batch-size", self.batch_size, 1),
            ("--grad-accum", self.grad_accum, 1),
            ("--save-every", self.save_every, 1),
        ):
            if v < lo:
                p.append(f"{flag} must be >= {lo}, got {v}")
        for flag, v in (("--max-steps", self.max_steps), ("--eval-every", self.eval_every), ("--encoder-hidden", self.encoder_hidden)):
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
        if self.template is None:
            p.append("--template is required (a JSON file with NeMo task keys, see templates/)")
        if p:
            raise UserError("invalid options: " + "; ".join(p))
