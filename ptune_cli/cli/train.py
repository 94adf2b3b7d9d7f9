"""``ptune train``: p-tune a frozen causal LM on one or more tasks (thin wrapper over
:func:`ptune_cli.training.run_train`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ptune_cli.cli._app import app, example, progress, stderr_console


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


class _Reporter:
    """Prints the start summary, drives the progress bar, prints the end summary (stderr)."""

    def __init__(self):
        self.console = stderr_console()
        self.bar = None
        self.task = None

    def __call__(self, kind: str, data) -> None:
        getattr(self, f"_{kind}")(data)

    def _start(self, info: dict) -> None:
        c = self.console
        t, tot = info["trainable_params"], info["total_params"]
        c.print(f"model {info['model_id']} · tasks {', '.join(info['tasks'])}"
                + (f" · kept from --existing: {', '.join(info['existing_tasks'])}" if info["existing_tasks"] else ""))
        c.print(f"trainable params: {t:,} || all params: {tot:,} || trainable%: {100 * t / tot:.4f}")
        c.print(f"prompt table: {_mb(info['table_bytes'])} (float32, hidden {info['hidden_size']})")
        for name, n in info["examples"].items():
            extra = []
            if info["truncated"][name]:
                extra.append(f"{info['truncated'][name]} truncated")
            if info["skipped"][name]:
                extra.append(f"[yellow]{info['skipped'][name]} skipped: too long for --max-length {info['max_length']}[/]")
            c.print(f"  {name}: {n} training examples" + (f" ({', '.join(extra)})" if extra else ""))
        for name, n in (info["val_skipped"] or {}).items():
            if n:  # val examples that cannot fit are left out of val_loss: say so
                c.print(f"  [yellow]{name}: {n} validation examples skipped: too long for --max-length {info['max_length']}[/]")
        if info["resumed_from"] is not None:
            c.print(f"resuming from step {info['resumed_from']}")
        self.bar = progress()
        self.bar.start()
        self.task = self.bar.add_task("train", total=info["total_steps"], completed=info["resumed_from"] or 0)

    def _step(self, rec: dict) -> None:
        val = f" val {rec['val_loss']:.4f}" if rec["val_loss"] is not None else ""
        self.bar.update(self.task, completed=rec["step"], description=f"train loss {rec['loss']:.4f}{val}")

    def _end(self, r) -> None:
        if self.bar is not None:
            self.bar.stop()
        c = self.console
        why = "early stop" if r.stopped_early else "done"
        c.print(f"{why}: {r.steps}/{r.total_steps} steps in {r.seconds:.1f} s · last loss "
                + (f"{r.final_loss:.4f}" if r.final_loss is not None else "-")
                + (f" · best val loss {r.best_val_loss:.4f} (step {r.best_step}, exported)" if r.best_val_loss is not None else ""))
        c.print(f"prompt table → {r.run_dir}/prompt_table.safetensors ({', '.join(r.existing_tasks + r.tasks)})")


@app.command(
    "train",
    epilog=example(
        "ptune train --train folds/fold_00/train.jsonl --val folds/fold_00/val.jsonl --template templates/sv-sentiment.json -o runs/sent-00",
        "ptune train --train assistant.jsonl --template templates/sv-intent-slot.json --existing runs/sent-00 -o runs/sent+intent",
        "accelerate launch -m ptune_cli train --train t.jsonl --template templates/en-sentiment.json --model HuggingFaceTB/SmolLM2-135M -o runs/x",
    ),
)
def train_cmd(
    train: Annotated[str, typer.Option("--train", help="Training records (JSONL; 'taskname' picks the template).")],
    output: Annotated[str, typer.Option("-o", "--output", help="Run directory (prompt table, config, log, checkpoint).")],
    template: Annotated[str, typer.Option("--template", help="Task template JSON (NeMo keys), see templates/.")],
    val: Annotated[str | None, typer.Option("--val", help="Validation records: early stopping, best checkpoint exported.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Hub id, local folder or .gguf file. Default: the packaged SmolLM2-135M (offline), or --existing's model.")] = None,
    encoder: Annotated[str, typer.Option("--encoder", help="lstm (BiLSTM+MLP, NeMo) | mlp | embedding (prompt tuning).")] = "lstm",
    encoder_hidden: Annotated[int | None, typer.Option("--encoder-hidden", help="Encoder width (default: h/2 per LSTM direction, h for mlp).")] = None,
    init: Annotated[str, typer.Option("--init", help="random (task name in the first rows) or text:\"…\" (vocabulary embeddings of the text).")] = "random",
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over --train.")] = 10,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Optimizer steps (overrides --epochs).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (3e-3 suits lstm/mlp on small models; try 3e-2 for embedding).")] = 3e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay")] = 0.01,
    warmup_steps: Annotated[int | None, typer.Option("--warmup-steps", help="Linear warmup, then cosine decay (default min(50, 10% of steps)).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per process and micro-batch.")] = 8,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches per optimizer step.")] = 1,
    grad_clip: Annotated[float, typer.Option("--grad-clip")] = 1.0,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per example incl. virtual ones (default min(context, 1024)); longer: truncate_field is cut, else skipped.")] = None,
    precision: Annotated[str, typer.Option("--precision", help="no | fp16 | bf16 (autocast).")] = "no",
    seed: Annotated[int, typer.Option("--seed")] = 42,
    eval_every: Annotated[int | None, typer.Option("--eval-every", help="Steps between val evaluations (default: each epoch).")] = None,
    early_stopping_patience: Annotated[int | None, typer.Option("--early-stopping-patience", help="Stop after this many evaluations without val improvement (0: off).")] = 10,
    min_delta: Annotated[float, typer.Option("--min-delta", help="Val improvement that counts.")] = 0.001,
    save_every: Annotated[int, typer.Option("--save-every", help="Steps between checkpoints.")] = 50,
    existing: Annotated[str | None, typer.Option("--existing", help="Earlier run dir: its tasks' prompts are kept (byte-identical), new tasks trained.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in -o from its last checkpoint.")] = False,
    report_to: Annotated[str, typer.Option("--report-to", help="none | tensorboard | wandb.")] = "none",
) -> None:
    """P-tune a frozen causal LM: train virtual-token prompts for the template's tasks.

    Writes RUN_DIR/prompt_table.safetensors (taskname → [T, hidden]) + prompt_table.json
    (base model, templates, hyperparameters) for `ptune eval`, plus config.json, log.jsonl
    (step, loss, lr, val_loss, tokens/s) and checkpoint/ (for --resume). Works on CPU and
    under `accelerate launch`.
    """
    from ptune_cli.training import TrainConfig, run_train

    cfg = TrainConfig(
        train=train, output=output, template=template, val=val, model=model, encoder=encoder,
        encoder_hidden=encoder_hidden, init=init, epochs=epochs, max_steps=max_steps, lr=lr,
        weight_decay=weight_decay, warmup_steps=warmup_steps, batch_size=batch_size,
        grad_accum=grad_accum, grad_clip=grad_clip, max_length=max_length, precision=precision,
        seed=seed, eval_every=eval_every, early_stopping_patience=early_stopping_patience,
        min_delta=min_delta, save_every=save_every, existing=existing, resume=resume, report_to=report_to,
    )
    reporter = _Reporter()
    try:
        run_train(cfg, on_event=reporter)
    finally:
        if reporter.bar is not None:
            reporter.bar.stop()
