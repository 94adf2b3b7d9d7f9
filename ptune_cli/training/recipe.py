"""The training recipe (in the style of torchtune's recipes): one object that holds a run's
state and goes ``setup()`` → ``train()`` → ``save()``.

A frozen causal LM, a trainable prompt encoder, accelerate for devices, precision and several
processes; checkpoints every --save-every steps and at each evaluation, early stopping on val
loss, a NaN guard, one JSONL line per step. :func:`run_train` is the plain entry point.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ptune_cli.errors import UserError
from ptune_cli.models import set_threads
from ptune_cli.options import validate
from ptune_cli.ptuning.data import EncodedSet, collate, load_examples, make_batches, shard
from ptune_cli.ptuning.labelset import describe_answers, label_listing
from ptune_cli.ptuning.model import answer_loss
from ptune_cli.ptuning.table import PromptTable
from ptune_cli.ptuning.template import TaskTemplate, load_templates
from ptune_cli.training.accelerator import make_accelerator
from ptune_cli.training.checkpoint import save_checkpoint, set_rng_state
from ptune_cli.training.config import TrainConfig
from ptune_cli.training.events import (
    Evaluated,
    Event,
    Finished,
    Started,
    Step,
    TrainResult,
    listener,
)
from ptune_cli.training.export import export_table, param_counts, step_dir
from ptune_cli.training.rundir import StepLog, load_existing, resume_checkpoint, write_config

if TYPE_CHECKING:
    from accelerate import Accelerator

# the progress a checkpoint saves and --resume restores (attributes of TrainRecipe)
PROGRESS = ("step", "best_val", "best_step", "bad_evals", "best_prompts", "last_loss", "stopped_early")


def run_train(cfg: TrainConfig, on_event: Callable[[Event], None] | None = None) -> TrainResult:
    """Train prompts for the tasks in ``cfg.template``; write the prompt table to ``cfg.output``.

    ``on_event`` (main process only) gets :class:`~ptune_cli.training.events.Started`, then a
    :class:`Step` per optimizer step (an :class:`Evaluated` before the steps that ran a
    validation), then :class:`Finished`.
    """
    validate(cfg)
    set_threads(cfg.threads)
    from ptune_cli.training.tracking import TrainTracking  # --report-to: a listener on the events

    with TrainTracking(cfg, on_event) as tracking:
        recipe = TrainRecipe(cfg, tracking)
        recipe.setup()
        recipe.train()
        return recipe.save()


class TrainRecipe:
    """One ``ptune train`` run. Attributes are set by :meth:`setup`; the progress attributes
    (:data:`PROGRESS`) change with each step and are what a checkpoint keeps."""

    accelerator: Accelerator
    model: torch.nn.Module  # the frozen LM
    tokenizer: object
    model_id: str
    templates: dict[str, TaskTemplate]
    existing: PromptTable | None  # --existing: prompts exported unchanged
    train_data: EncodedSet
    val_data: EncodedSet | None
    encoder: torch.nn.Module  # the only trainable module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    max_length: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    gathered: bool  # the LM head runs on answer positions only
    labels: dict[str, dict]  # per new task: what its answers look like (ptuning.labelset), stored in the table
    started: Started

    def __init__(self, cfg: TrainConfig, on_event: Callable[[Event], None] | None = None):
        self.cfg = cfg
        self._on_event = listener(on_event)
        self._checkpoint_in: dict | None = None  # the checkpoint resumed from
        self._t0 = time.perf_counter()
        self.step = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.best_prompts: dict | None = None  # the encoder's output at the best val loss
        self.last_loss: float | None = None
        self.stopped_early = False

    # -- setup ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Check the run dir, load model, templates, data; build encoder, optimizer, schedule;
        restore a checkpoint on --resume; write config.json; emit :class:`Started`."""
        cfg = self.cfg
        self._t0 = time.perf_counter()
        self._checkpoint_in = resume_checkpoint(cfg)
        self.accelerator = acc = make_accelerator(cfg)
        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        self._load_model_and_data()
        self._build_encoder()
        self.encoder, self.optimizer = acc.prepare(self.encoder, self.optimizer)
        if self._checkpoint_in:
            self._restore(self._checkpoint_in)
        self.started = self._describe()
        if acc.is_main_process:
            write_config(cfg, self.started.to_dict())
        self._emit(self.started)

    def _load_model_and_data(self) -> None:
        from ptune_cli.models import load_causal_lm, model_id
        from ptune_cli.ptuning.model import check_gathered_head

        cfg = self.cfg
        self.templates = load_templates(cfg.template)
        empty = [n for n, t in self.templates.items() if t.total_virtual_tokens == 0]
        if empty:
            raise UserError(f"--template {cfg.template}: task(s) {', '.join(empty)} have no virtual tokens to train")
        if cfg.max_length:  # before the model loads: 10^9 virtual tokens must not start to allocate
            _check_room(self.templates, cfg.template, cfg.max_length, "--max-length")
        self.existing, model_name = load_existing(cfg, list(self.templates))
        self.model, self.tokenizer = load_causal_lm(model_name, device=self.accelerator.device)
        self.model_id = model_id(model_name)
        hidden = self.hidden_size
        if self.existing is not None and self.existing.meta.get("hidden_size") not in (None, hidden):
            raise UserError(f"--existing {cfg.existing}: hidden size {self.existing.meta['hidden_size']} ≠ model's {hidden}")
        ctx = int(getattr(self.model.config, "max_position_embeddings", None) or 1024)
        if cfg.max_length and cfg.max_length > ctx:
            raise UserError(f"--max-length {cfg.max_length}: the model has {ctx} positions; give at most {ctx}")
        self.max_length = cfg.max_length or min(ctx, 1024)
        _check_room(self.templates, cfg.template, self.max_length, f"the model's {ctx} positions (--max-length)")
        self.train_data = load_examples(cfg.train, self.templates, self.tokenizer, self.max_length, flag="--train")
        self.val_data = load_examples(cfg.val, self.templates, self.tokenizer, self.max_length, flag="--val") if cfg.val else None
        self.labels = {name: describe_answers(self.train_data.answers.get(name, []), self.tokenizer)
                       for name in self.templates}
        self.gathered = check_gathered_head(self.model, self.tokenizer)
        if cfg.encoder == "prefix":
            self._check_prefix()
        if cfg.gradient_checkpointing:
            from ptune_cli.ptuning.checkpointing import enable_checkpointing

            enable_checkpointing(self.model)

    def _check_prefix(self) -> None:
        """Refuse, in one line, templates and sequence lengths a prefix cannot serve."""
        from ptune_cli.ptuning.prefix import template_problem, window_problem

        cfg = self.cfg
        for tpl in self.templates.values():
            problem = template_problem(tpl)
            if problem:
                raise UserError(f"--template {cfg.template}: {problem}")
        for flag, data in (("--train", self.train_data), ("--val", self.val_data)):
            if data is not None:
                longest = max(len(e.input_ids) for e in data.examples)
                problem = window_problem(self.model, longest, f"{flag} {cfg.train if flag == '--train' else cfg.val}")
                if problem:
                    raise UserError(problem)

    def _build_encoder(self) -> None:
        from ptune_cli.ptuning.encoders import build_encoder
        from ptune_cli.ptuning.prefix_encoder import build_prefix_encoder

        cfg, acc = self.cfg, self.accelerator
        embed = self.model.get_input_embeddings()
        init = self._init()
        if cfg.encoder == "prefix":
            enc = build_prefix_encoder(self.model, self.templates, self.tokenizer, init=init,
                                       projection=cfg.prefix_projection, hidden=cfg.encoder_hidden)
        else:
            enc = build_encoder(cfg.encoder, self.templates, self.tokenizer, embed, init=init, hidden=cfg.encoder_hidden)
        self.encoder = enc.to(acc.device)
        self.optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_batches = len(shard(make_batches(self.train_data, cfg.batch_size, cfg.seed), 0, acc.num_processes, cfg.grad_accum))
        self.steps_per_epoch = n_batches // cfg.grad_accum
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.warmup_steps = cfg.warmup_steps if cfg.warmup_steps is not None else min(50, self.total_steps // 10)
        self.scheduler = _warmup_cosine(self.optimizer, self.warmup_steps, self.total_steps)

    def _init(self) -> str | dict[str, str]:
        """--init, with ``labels`` resolved to each new task's answers in --train, listed."""
        cfg = self.cfg
        if cfg.init != "labels":
            return cfg.init
        inits = {}
        for name in self.templates:
            text = label_listing(self.labels[name])
            if text is None:
                raise UserError(f"--init labels: task '{name}' in --train {cfg.train} has no closed set of answers to "
                                "list (free-text answers such as QA); use --init text:\"…\" or random")
            inits[name] = "text:" + text
        return inits

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    def _describe(self) -> Started:
        acc, cfg = self.accelerator, self.cfg
        trainable, total = param_counts(self.model, acc.unwrap_model(self.encoder))
        kept = self.existing.prompts if self.existing else {}
        # floats per task: T·h for an input prompt, L·2·d_kv·T for a prefix
        new = acc.unwrap_model(self.encoder).table()
        floats = sum(t.numel() for t in new.values()) + sum(p.numel() for p in kept.values())
        val = self.val_data
        return Started(
            model_id=self.model_id, tasks=list(self.templates), existing_tasks=list(kept),
            examples=self.train_data.counts, skipped=self.train_data.skipped, truncated=self.train_data.truncated,
            val_examples=val.counts if val else None, val_skipped=val.skipped if val else None,
            max_length=self.max_length, steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
            warmup_steps=self.warmup_steps, num_processes=acc.num_processes,
            effective_batch_size=cfg.batch_size * cfg.grad_accum * acc.num_processes,
            trainable_params=trainable, total_params=total, hidden_size=self.hidden_size,
            table_bytes=floats * 4, gathered_logits=self.gathered,
            resumed_from=self._checkpoint_in["state"]["step"] if self._checkpoint_in else None, device=str(acc.device),
            task_shapes={n: list(t.shape) for n, t in new.items()},
        )

    # -- train ---------------------------------------------------------------------------

    def train(self) -> None:
        """Optimizer steps until --max-steps/--epochs or early stopping (nothing to do when
        resuming a finished run)."""
        if self._checkpoint_in and self._checkpoint_in.get("done"):
            return
        cfg, acc = self.cfg, self.accelerator
        log = StepLog(cfg, self.step if self._checkpoint_in else None) if acc.is_main_process else None
        while self.step < self.total_steps and not self.stopped_early:
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            steps = self._epoch_steps(epoch)
            for k in range(offset, self.steps_per_epoch):
                t0 = time.perf_counter()
                lr = self.scheduler.get_last_lr()[0]
                loss, tokens = self._optimizer_step(steps[k])
                self.step += 1
                self.last_loss = loss
                dt = time.perf_counter() - t0
                last = self.step >= self.total_steps
                due = (self.step % cfg.eval_every == 0) if cfg.eval_every else k == self.steps_per_epoch - 1
                val = round(self._evaluate(), 6) if self.val_data is not None and (due or last) else None
                step = Step(step=self.step, epoch=epoch + 1, loss=round(loss, 6), lr=lr, val_loss=val,
                            tokens_per_s=round(tokens / max(dt, 1e-9), 1), step_s=round(dt, 4))
                self._log(log, step)
                if self.step % cfg.save_every == 0 or val is not None:
                    self._checkpoint()
                if last or self.stopped_early:
                    return

    def _epoch_steps(self, epoch: int) -> list[list[list[int]]]:
        """This process's micro-batches of each step of ``epoch`` (the order is seeded by epoch)."""
        cfg, acc = self.cfg, self.accelerator
        batches = shard(make_batches(self.train_data, cfg.batch_size, cfg.seed + epoch), acc.process_index,
                        acc.num_processes, cfg.grad_accum)
        return [batches[k * cfg.grad_accum : (k + 1) * cfg.grad_accum] for k in range(self.steps_per_epoch)]

    def _optimizer_step(self, micro: list[list[int]]) -> tuple[float, int]:
        """Forward/backward over the micro-batches of one step; returns (mean loss, tokens)."""
        cfg, acc = self.cfg, self.accelerator
        self.encoder.train()
        pad = self.tokenizer.pad_token_id
        stats = torch.zeros(3, dtype=torch.float64)  # loss sum, micro-batches, tokens
        for j, idx in enumerate(micro):
            batch = {k: v.to(acc.device) for k, v in collate(self.train_data, idx, pad).items()}
            task = self.train_data.task_index[idx[0]]
            sync = contextlib.nullcontext() if j == len(micro) - 1 else acc.no_sync(self.encoder)
            with sync, acc.autocast():
                loss, _ = answer_loss(self.model, **batch, prompts=self.encoder(task), gathered=self.gathered)
                acc.backward(loss / len(micro))
            stats += torch.tensor([loss.item(), 1.0, float(batch["attention_mask"].sum())], dtype=torch.float64)
        stats = acc.reduce(stats.to(acc.device), reduction="sum").cpu()
        mean = float(stats[0] / stats[1])
        if not math.isfinite(mean):
            raise UserError(
                f"loss became {mean} at step {self.scheduler.last_epoch + 1} (lr {self.scheduler.get_last_lr()[0]:.3g}): "
                f"training diverged; lower --lr (now {cfg.lr}) or use --precision fp32. "
                f"The last good checkpoint is in {cfg.output}/checkpoint (--resume continues from it)"
            )
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(self.encoder.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean, int(stats[2])

    @torch.no_grad()
    def _val_loss(self) -> float:
        """Mean answer-token loss over --val (every process a shard, summed)."""
        acc = self.accelerator
        enc = acc.unwrap_model(self.encoder)
        enc.eval()
        prompts = {i: enc(i) for i in range(len(enc.tasknames))}
        stats = torch.zeros(2, dtype=torch.float64)
        batches = shard(make_batches(self.val_data, self.cfg.batch_size, 0, shuffle=False), acc.process_index,
                        acc.num_processes, pad=False)
        for idx in batches:
            batch = {k: v.to(acc.device) for k, v in collate(self.val_data, idx, self.tokenizer.pad_token_id).items()}
            with acc.autocast():
                loss, n = answer_loss(self.model, **batch, prompts=prompts[self.val_data.task_index[idx[0]]],
                                      reduction="sum", gathered=self.gathered)
            stats += torch.tensor([float(loss), n], dtype=torch.float64)
        stats = acc.reduce(stats.to(acc.device), reduction="sum").cpu()
        return float(stats[0] / max(1.0, float(stats[1])))

    def _evaluate(self) -> float:
        """Val loss now; keeps the best prompts, counts evaluations without improvement."""
        cfg = self.cfg
        val = self._val_loss()
        if self.best_val is None or val < self.best_val - cfg.min_delta:
            self.best_val, self.best_step, self.bad_evals = val, self.step, 0
            self.best_prompts = self.accelerator.unwrap_model(self.encoder).table()
        else:
            self.bad_evals += 1
            if cfg.early_stopping_patience and self.bad_evals >= cfg.early_stopping_patience:
                self.stopped_early = True
        self._emit(Evaluated(step=self.step, val_loss=val, best_val_loss=self.best_val, best_step=self.best_step,
                             stopping=self.stopped_early))
        return val

    def _log(self, log: StepLog | None, step: Step) -> None:
        if log is not None:  # main process only
            log.write(step.to_dict())
        self._emit(step)

    # -- checkpoints and export ----------------------------------------------------------

    def _checkpoint(self, done: bool = False) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {k: getattr(self, k) for k in PROGRESS}
            ckpt = {"done": done, "encoder": acc.unwrap_model(self.encoder).state_dict(), "state": state}
            if not done:  # a finished run keeps no optimizer state (it can be 2× the encoder)
                ckpt.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict())
            save_checkpoint(self.cfg.output, ckpt)
            if self.cfg.keep_steps and not done:  # an intermediate step can be evaluated
                self._export(acc.unwrap_model(self.encoder).table(), intermediate=True)
        acc.wait_for_everyone()

    def _restore(self, ckpt: dict) -> None:
        self.accelerator.unwrap_model(self.encoder).load_state_dict(ckpt["encoder"])
        if "optimizer" in ckpt:  # absent once the run is done
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        for k in PROGRESS:
            setattr(self, k, ckpt["state"][k])

    def save(self) -> TrainResult:
        """Export the prompt table (the best val prompts, else the last), mark the checkpoint
        done, emit :class:`Finished`."""
        acc = self.accelerator
        prompts = self.best_prompts if self.best_prompts is not None else acc.unwrap_model(self.encoder).table()
        if acc.is_main_process:
            self._export(prompts)
        self._checkpoint(done=True)
        s, data = self.started, self.train_data
        result = TrainResult(
            run_dir=self.cfg.output, tasks=list(self.templates), existing_tasks=s.existing_tasks, steps=self.step,
            total_steps=self.total_steps, final_loss=self.last_loss, best_val_loss=self.best_val,
            best_step=self.best_step, stopped_early=self.stopped_early, resumed_from=s.resumed_from,
            examples=data.counts, skipped=data.skipped, truncated=data.truncated, trainable_params=s.trainable_params,
            total_params=s.total_params, table_bytes=s.table_bytes, seconds=time.perf_counter() - self._t0, started=s,
        )
        self._emit(Finished(result))
        return result

    def _export(self, prompts: dict, intermediate: bool = False) -> None:
        """The prompt table into RUN_DIR, or (``intermediate``) this step's into RUN_DIR/steps/."""
        cfg, s, data = self.cfg, self.started, self.train_data
        training = {name: {"train_examples": data.counts[name], "skipped_too_long": data.skipped[name],
                           "truncated": data.truncated[name], "steps": self.step, "best_val_loss": self.best_val,
                           "best_step": self.best_step,
                           "labels": self.labels[name]}  # eval/predict/serve need no training file
                    for name in self.templates}
        hyper = {**cfg.to_dict(), "total_steps": s.total_steps, "warmup_steps": s.warmup_steps,
                 "effective_batch_size": s.effective_batch_size, "max_length": s.max_length}
        export_table(step_dir(cfg.output, self.step) if intermediate else cfg.output, prompts, self.templates,
                     training=training, encoder=cfg.encoder, prefix_projection=cfg.prefix_projection,
                     base_model=self.model_id, tokenizer=self.tokenizer, hidden_size=s.hidden_size,
                     hyperparameters=hyper, existing=self.existing, existing_path=cfg.existing,
                     intermediate_step=self.step if intermediate else None)

    def _emit(self, event: Event) -> None:
        if self.accelerator.is_main_process:  # one report, not one per process
            self._on_event(event)


def _check_room(templates: dict[str, TaskTemplate], path, max_length: int, limit: str) -> None:
    """One line for a task whose virtual tokens leave no room in an example (BOS, one answer
    token and EOS at least): it could never train, and 10^9 tokens would fill the memory."""
    for name, tpl in templates.items():
        if tpl.total_virtual_tokens + 3 > max_length:
            raise UserError(f"--template {path}: task '{name}': total_virtual_tokens {tpl.total_virtual_tokens} "
                            f"does not fit in {max_length} tokens per example ({limit}); use fewer virtual tokens")


def _warmup_cosine(optimizer, warmup: int, total: int):
    """Linear warmup to the peak lr, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
