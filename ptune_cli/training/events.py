"""What a training run tells its caller: typed events for ``run_train(cfg, on_event=...)``
(the CLI draws its progress bar and summaries from them) and the :class:`TrainResult`.

Kept free of torch: ``ptune --help`` imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Started:
    """The run is set up, before its first step (also RUN_DIR/config.json's ``resolved``)."""

    model_id: str
    tasks: list[str]
    existing_tasks: list[str]  # kept unchanged from --existing
    examples: dict[str, int]  # training examples per task
    skipped: dict[str, int]  # too long for --max-length, left out
    truncated: dict[str, int]  # cut in the template's truncate_field
    val_examples: dict[str, int] | None
    val_skipped: dict[str, int] | None
    max_length: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    num_processes: int
    effective_batch_size: int
    trainable_params: int
    total_params: int  # frozen LM + encoder
    hidden_size: int
    table_bytes: int  # the exported prompt table, float32
    gathered_logits: bool
    resumed_from: int | None  # the checkpoint's step, None on a fresh start
    device: str
    # per new task: its kind ("input" [T, h] or "prefix" [L, 2, n_kv, T, d]) and table shape
    task_shapes: dict[str, list[int]] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Evaluated:
    """Validation loss after a step (emitted before that step's :class:`Step`)."""

    step: int
    val_loss: float
    best_val_loss: float
    best_step: int
    stopping: bool  # early stopping: patience used up


@dataclass(frozen=True)
class Step:
    """One optimizer step: a line of RUN_DIR/log.jsonl."""

    step: int
    epoch: int
    loss: float
    lr: float
    val_loss: float | None
    tokens_per_s: float
    step_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a run did (also in RUN_DIR/config.json, log.jsonl and prompt_table.json)."""

    run_dir: str
    tasks: list[str]
    existing_tasks: list[str]
    steps: int
    total_steps: int
    final_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    resumed_from: int | None
    examples: dict[str, int]
    skipped: dict[str, int]
    truncated: dict[str, int]
    trainable_params: int
    total_params: int
    table_bytes: int
    seconds: float
    started: Started


@dataclass(frozen=True)
class Finished:
    """The prompt table is exported."""

    result: TrainResult


Event = Started | Evaluated | Step | Finished


def listener(on_event):
    """``on_event`` or, when None, a listener that ignores every event."""
    return on_event if on_event is not None else (lambda event: None)
