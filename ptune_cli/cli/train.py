"""``ptune train``: p-tune a frozen causal LM on one or more tasks (thin wrapper over
:func:`ptune_cli.training.run_train`)."""

from __future__ import annotations

from ptune_cli.cli._app import app, example, progress, stderr_console
from ptune_cli.options import typer_command
from ptune_cli.training.config import TrainConfig


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


_HELP = """P-tune a frozen causal LM: train virtual-token prompts for the template's tasks.

Writes RUN_DIR/prompt_table.safetensors (taskname → [T, hidden]) + prompt_table.json
(base model, templates, hyperparameters) for `ptune eval`, plus config.json, log.jsonl
(step, loss, lr, val_loss, tokens/s) and checkpoint/ (for --resume). Works on CPU and
under `accelerate launch`.
"""


def _train(cfg) -> None:
    from ptune_cli.training import run_train

    reporter = _Reporter()
    try:
        run_train(cfg, on_event=reporter)
    finally:
        if reporter.bar is not None:
            reporter.bar.stop()


typer_command(
    app, "train", TrainConfig, _train, help=_HELP,
    epilog=example(
        "ptune train --train folds/fold_00/train.jsonl --val folds/fold_00/val.jsonl --template templates/sv-sentiment.json -o runs/sent-00",
        "ptune train --train assistant.jsonl --template templates/sv-intent-slot.json --existing runs/sent-00 -o runs/sent+intent",
        "accelerate launch -m ptune_cli train --train t.jsonl --template templates/en-sentiment.json --model HuggingFaceTB/SmolLM2-135M -o runs/x",
    ),
)
