"""``ptune train``: p-tune a frozen causal LM on one or more tasks (thin wrapper over
:func:`ptune_cli.training.run_train`)."""

from __future__ import annotations

from ptune_cli.cli._app import app, example, progress, stderr_console
from ptune_cli.cli.plain_progress import PlainProgress
from ptune_cli.options import typer_command
from ptune_cli.training.config import TrainConfig
from ptune_cli.training.events import Evaluated, Finished, Started, Step, TrainResult


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


class _Reporter:
    """Renders a run's events on stderr: the start summary, a progress bar, the end summary."""

    def __init__(self):
        self.console = stderr_console()
        self.bar = None
        self.task = None
        self.best = ""

    def __call__(self, event) -> None:
        match event:
            case Started():
                self.started(event)
            case Evaluated():
                self.best = f" (best {event.best_val_loss:.4f} @ {event.best_step})"
            case Step():
                val = f" val {event.val_loss:.4f}{self.best}" if event.val_loss is not None else ""
                self.bar.update(self.task, completed=event.step, description=f"train loss {event.loss:.4f}{val}")
            case Finished():
                self.finished(event.result)

    def started(self, s: Started) -> None:
        c = self.console
        t, tot = s.trainable_params, s.total_params
        c.print(f"model {s.model_id} · tasks {', '.join(s.tasks)}"
                + (f" · kept from --existing: {', '.join(s.existing_tasks)}" if s.existing_tasks else ""))
        c.print(f"trainable params: {t:,} || all params: {tot:,} || trainable%: {100 * t / tot:.4f}")
        c.print(f"prompt table: {_mb(s.table_bytes)} (float32, hidden {s.hidden_size})")
        for name, shape in (s.task_shapes or {}).items():
            if len(shape) == 5:  # a prefix: L·2·d_kv·T floats
                n_layers, _, n_kv, t, d = shape
                c.print(f"  {name}: prefix {n_layers} layers × 2 × d_kv {n_kv * d} × T {t} = "
                        f"{n_layers * 2 * n_kv * d * t:,} floats")
        for name, n in s.examples.items():
            extra = []
            if s.truncated[name]:
                extra.append(f"{s.truncated[name]} truncated")
            if s.skipped[name]:
                extra.append(f"[yellow]{s.skipped[name]} skipped: too long for --max-length {s.max_length}[/]")
            c.print(f"  {name}: {n} training examples" + (f" ({', '.join(extra)})" if extra else ""))
        for name, n in (s.val_skipped or {}).items():
            if n:  # val examples that cannot fit are left out of val_loss: say so
                c.print(f"  [yellow]{name}: {n} validation examples skipped: too long for --max-length {s.max_length}[/]")
        if s.resumed_from is not None:
            c.print(f"resuming from step {s.resumed_from}")
        self.bar = progress()
        self.bar.start()
        self.task = self.bar.add_task("train", total=s.total_steps, completed=s.resumed_from or 0)

    def finished(self, r: TrainResult) -> None:
        self.stop()
        why = "early stop" if r.stopped_early else "done"
        self.console.print(
            f"{why}: {r.steps}/{r.total_steps} steps in {r.seconds:.1f} s · last loss "
            + (f"{r.final_loss:.4f}" if r.final_loss is not None else "-")
            + (f" · best val loss {r.best_val_loss:.4f} (step {r.best_step}, exported)" if r.best_val_loss is not None else ""))
        self.console.print(f"prompt table → {r.run_dir}/prompt_table.safetensors ({', '.join(r.existing_tasks + r.tasks)})")

    def stop(self, failed: bool = False) -> None:
        if self.bar is not None:
            if isinstance(self.bar, PlainProgress):
                self.bar.stop(failed=failed)  # plain lines: an error is the last line
            else:
                self.bar.stop()
            self.bar = None


_HELP = """P-tune a frozen causal LM: train virtual-token prompts for the template's tasks.

Writes RUN_DIR/prompt_table.safetensors (taskname → [T, hidden] input prompt, or with
--encoder prefix per-layer keys/values [L, 2, kv heads, T, head dim]) + prompt_table.json
(kind per task, base model, templates, hyperparameters) for `ptune eval`, plus config.json, log.jsonl
(step, loss, lr, val_loss, tokens/s) and checkpoint/ (for --resume). Works on CPU and
under `accelerate launch`.
"""


def _train(cfg) -> None:
    from ptune_cli.training import run_train

    reporter = _Reporter()
    try:
        run_train(cfg, on_event=reporter)
    except BaseException:
        reporter.stop(failed=True)
        raise


typer_command(
    app, "train", TrainConfig, _train, help=_HELP,
    epilog=example(
        "ptune train --train folds/fold_00/train.jsonl --val folds/fold_00/val.jsonl --template templates/sv-sentiment.json -o runs/sent-00",
        "ptune train --train assistant.jsonl --template templates/sv-intent-slot.json --existing runs/sent-00 -o runs/sent+intent",
        "ptune train --train t.jsonl --template templates/en-sentiment.json --encoder prefix --prefix-projection --lr 3e-4 -o runs/v2",
        "accelerate launch -m ptune_cli train --train t.jsonl --template templates/en-sentiment.json --model HuggingFaceTB/SmolLM2-135M -o runs/x",
    ),
)
