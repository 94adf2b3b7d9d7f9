"""The training loop (accelerate): frozen LM, trainable prompt encoder, checkpoints, early
stopping on val loss, NaN guard, per-step JSONL log, export of the prompt table."""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ptune_cli.errors import UserError
from ptune_cli.io import write_json
from ptune_cli.options import validate
from ptune_cli.ptuning.data import collate, make_batches, shard
from ptune_cli.ptuning.model import answer_loss
from ptune_cli.training.accelerator import make_accelerator
from ptune_cli.training.checkpoint import save_checkpoint, set_rng_state
from ptune_cli.training.config import TrainConfig
from ptune_cli.training.export import export_table, param_counts
from ptune_cli.training.setup import CONFIG_FILE, LOG_FILE, Setup, build, check_run_dir


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
    info: dict = field(default_factory=dict)


@dataclass
class _State:
    step: int = 0
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    best_prompts: dict | None = None
    last_loss: float | None = None
    stopped_early: bool = False


def _restore(s: Setup, acc, ckpt: dict) -> _State:
    acc.unwrap_model(s.encoder).load_state_dict(ckpt["encoder"])
    if "optimizer" in ckpt:  # absent once the run is done
        s.optimizer.load_state_dict(ckpt["optimizer"])
        s.scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    st = _State(**ckpt["state"])
    return st


def _checkpoint(s: Setup, acc, st: _State, cfg: TrainConfig, done: bool = False) -> None:
    acc.wait_for_everyone()
    if acc.is_main_process:
        state = {k: getattr(st, k) for k in _State.__dataclass_fields__}
        ckpt = {"done": done, "encoder": acc.unwrap_model(s.encoder).state_dict(), "state": state}
        if not done:  # a finished run keeps no optimizer state (it can be 2× the encoder)
            ckpt.update(optimizer=s.optimizer.state_dict(), scheduler=s.scheduler.state_dict())
        save_checkpoint(cfg.output, ckpt)
    acc.wait_for_everyone()


def _optimizer_step(s: Setup, acc, micro: list[list[int]], cfg: TrainConfig) -> tuple[float, int]:
    """Forward/backward over the micro-batches of one step; returns (mean loss, tokens)."""
    s.encoder.train()
    pad = s.tokenizer.pad_token_id
    stats = torch.zeros(3, dtype=torch.float64)  # loss sum, micro-batches, tokens
    for j, idx in enumerate(micro):
        batch = {k: v.to(acc.device) for k, v in collate(s.train, idx, pad).items()}
        task = s.train.task_index[idx[0]]
        sync = contextlib.nullcontext() if j == len(micro) - 1 else acc.no_sync(s.encoder)
        with sync, acc.autocast():
            loss, _ = answer_loss(s.model, **batch, prompts=s.encoder(task), gathered=s.gathered)
            acc.backward(loss / len(micro))
        stats += torch.tensor([loss.item(), 1.0, float(batch["attention_mask"].sum())], dtype=torch.float64)
    stats = acc.reduce(stats.to(acc.device), reduction="sum").cpu()
    mean = float(stats[0] / stats[1])
    if not math.isfinite(mean):
        raise UserError(
            f"loss became {mean} at step {s.scheduler.last_epoch + 1} (lr {s.scheduler.get_last_lr()[0]:.3g}): "
            f"training diverged; lower --lr (now {cfg.lr}) or use --precision fp32. "
            f"The last good checkpoint is in {cfg.output}/checkpoint (--resume continues from it)"
        )
    if cfg.grad_clip > 0:
        acc.clip_grad_norm_(s.encoder.parameters(), cfg.grad_clip)
    s.optimizer.step()
    s.scheduler.step()
    s.optimizer.zero_grad(set_to_none=True)
    return mean, int(stats[2])


@torch.no_grad()
def _val_loss(s: Setup, acc, cfg: TrainConfig) -> float:
    enc = acc.unwrap_model(s.encoder)
    enc.eval()
    prompts = {i: enc(i) for i in range(len(enc.tasknames))}
    stats = torch.zeros(2, dtype=torch.float64)
    batches = shard(make_batches(s.val, cfg.batch_size, 0, shuffle=False), acc.process_index, acc.num_processes, pad=False)
    for idx in batches:
        batch = {k: v.to(acc.device) for k, v in collate(s.val, idx, s.tokenizer.pad_token_id).items()}
        with acc.autocast():
            loss, n = answer_loss(s.model, **batch, prompts=prompts[s.val.task_index[idx[0]]], reduction="sum", gathered=s.gathered)
        stats += torch.tensor([float(loss), n], dtype=torch.float64)
    stats = acc.reduce(stats.to(acc.device), reduction="sum").cpu()
    return float(stats[0] / max(1.0, float(stats[1])))


def _evaluate(s: Setup, acc, st: _State, cfg: TrainConfig) -> float:
    val = _val_loss(s, acc, cfg)
    if st.best_val is None or val < st.best_val - cfg.min_delta:
        st.best_val, st.best_step, st.bad_evals = val, st.step, 0
        st.best_prompts = acc.unwrap_model(s.encoder).table()
    else:
        st.bad_evals += 1
        if cfg.early_stopping_patience and st.bad_evals >= cfg.early_stopping_patience:
            st.stopped_early = True
    return val


def _epoch_steps(s: Setup, acc, cfg: TrainConfig, epoch: int) -> list[list[list[int]]]:
    batches = shard(make_batches(s.train, cfg.batch_size, cfg.seed + epoch), acc.process_index, acc.num_processes, cfg.grad_accum)
    return [batches[k * cfg.grad_accum : (k + 1) * cfg.grad_accum] for k in range(s.steps_per_epoch)]


def _loop(s: Setup, acc, st: _State, cfg: TrainConfig, log, emit) -> None:
    while st.step < s.total_steps and not st.stopped_early:
        epoch, offset = divmod(st.step, s.steps_per_epoch)
        steps = _epoch_steps(s, acc, cfg, epoch)
        for k in range(offset, s.steps_per_epoch):
            t0 = time.perf_counter()
            lr = s.scheduler.get_last_lr()[0]
            loss, tokens = _optimizer_step(s, acc, steps[k], cfg)
            st.step += 1
            st.last_loss = loss
            dt = time.perf_counter() - t0
            rec = {"step": st.step, "epoch": epoch + 1, "loss": round(loss, 6), "lr": lr, "val_loss": None,
                   "tokens_per_s": round(tokens / max(dt, 1e-9), 1), "step_s": round(dt, 4)}
            last = st.step >= s.total_steps
            due = (st.step % cfg.eval_every == 0) if cfg.eval_every else k == s.steps_per_epoch - 1
            if s.val is not None and (due or last):
                rec["val_loss"] = round(_evaluate(s, acc, st, cfg), 6)
            log(rec)
            emit("step", rec)
            if st.step % cfg.save_every == 0 or rec["val_loss"] is not None:
                _checkpoint(s, acc, st, cfg)
            if last or st.stopped_early:
                return


def _open_log(cfg: TrainConfig, acc, resumed_step: int | None):
    path = Path(cfg.output) / LOG_FILE
    if not acc.is_main_process:
        return lambda rec: None
    keep = []
    if resumed_step is not None and path.exists():
        keep = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and json.loads(ln)["step"] <= resumed_step]
    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def log(rec: dict) -> None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        if cfg.report_to != "none":
            acc.log({k: v for k, v in rec.items() if v is not None and k != "step"}, step=rec["step"])

    return log


def run_train(cfg: TrainConfig, on_event=None) -> TrainResult:
    """Train prompts for the tasks in ``cfg.template``; write the prompt table to ``cfg.output``.

    ``on_event(kind, data)`` (main process only) gets ``"start"`` (sizes, counts), ``"step"``
    (the log record of each optimizer step) and ``"end"``.
    """
    validate(cfg)
    t_start = time.perf_counter()
    ckpt = check_run_dir(cfg)
    acc = make_accelerator(cfg)
    emit = on_event if (on_event is not None and acc.is_main_process) else (lambda kind, data: None)
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    s = build(cfg, acc.device, acc.num_processes)
    s.encoder, s.optimizer = acc.prepare(s.encoder, s.optimizer)
    st = _restore(s, acc, ckpt) if ckpt else _State()
    info = _describe(s, acc, cfg, ckpt)
    if acc.is_main_process:
        write_json(Path(cfg.output) / CONFIG_FILE, {"config": cfg.to_dict(), "resolved": info})
    if cfg.report_to != "none":
        acc.init_trackers("ptune-train", config={k: v for k, v in cfg.to_dict().items() if v is not None})
    emit("start", info)
    if not (ckpt and ckpt.get("done")):
        log = _open_log(cfg, acc, st.step if ckpt else None)
        _loop(s, acc, st, cfg, log, emit)
    prompts = st.best_prompts if st.best_prompts is not None else acc.unwrap_model(s.encoder).table()
    if acc.is_main_process:
        export_table(cfg, s, prompts, info, st)
    _checkpoint(s, acc, st, cfg, done=True)
    if cfg.report_to != "none":
        acc.end_training()
    result = TrainResult(
        run_dir=cfg.output, tasks=list(s.templates), existing_tasks=info["existing_tasks"], steps=st.step,
        total_steps=s.total_steps, final_loss=st.last_loss, best_val_loss=st.best_val, best_step=st.best_step,
        stopped_early=st.stopped_early, resumed_from=info["resumed_from"], examples=s.train.counts,
        skipped=s.train.skipped, truncated=s.train.truncated, trainable_params=info["trainable_params"],
        total_params=info["total_params"], table_bytes=info["table_bytes"], seconds=time.perf_counter() - t_start, info=info,
    )
    emit("end", result)
    return result


def _describe(s: Setup, acc, cfg: TrainConfig, ckpt) -> dict:
    trainable, total = param_counts(s.model, acc.unwrap_model(s.encoder))
    existing = list(s.existing.prompts) if s.existing else []
    h = s.model.get_input_embeddings().weight.shape[1]
    rows = sum(t.total_virtual_tokens for t in s.templates.values()) + sum(int(p.shape[0]) for p in (s.existing.prompts.values() if s.existing else []))
    return {
        "model_id": s.model_id, "tasks": list(s.templates), "existing_tasks": existing,
        "examples": s.train.counts, "skipped": s.train.skipped, "truncated": s.train.truncated,
        "val_examples": s.val.counts if s.val else None, "val_skipped": s.val.skipped if s.val else None,
        "max_length": s.max_length, "steps_per_epoch": s.steps_per_epoch, "total_steps": s.total_steps,
        "warmup_steps": s.warmup_steps, "num_processes": acc.num_processes,
        "effective_batch_size": cfg.batch_size * cfg.grad_accum * acc.num_processes,
        "trainable_params": trainable, "total_params": total, "hidden_size": h,
        "table_bytes": rows * h * 4, "gathered_logits": s.gathered,
        "resumed_from": ckpt["state"]["step"] if ckpt else None, "device": str(acc.device),
    }
