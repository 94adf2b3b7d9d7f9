"""Everything a run needs before its first step: run-dir checks, model, templates, the
--existing table, data, encoder, optimizer and schedule."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ptune_cli.errors import UserError
from ptune_cli.ptuning.data import EncodedSet, load_examples, make_batches, shard
from ptune_cli.ptuning.table import PROMPT_TABLE_FILE, PromptTable, load_prompt_table
from ptune_cli.ptuning.template import TaskTemplate, load_templates
from ptune_cli.training.checkpoint import load_checkpoint
from ptune_cli.training.config import TrainConfig

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
# options that may change between a killed run and its --resume
_RESUME_FREE = {"resume", "report_to", "save_every"}


@dataclass
class Setup:
    model: object
    tokenizer: object
    model_id: str
    templates: dict[str, TaskTemplate]
    existing: PromptTable | None
    train: EncodedSet
    val: EncodedSet | None
    encoder: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    max_length: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    gathered: bool


def check_run_dir(cfg: TrainConfig) -> dict | None:
    """The checkpoint to resume from (None = fresh start); refuses to overwrite a run."""
    run = Path(cfg.output)
    if run.exists() and not run.is_dir():
        raise UserError(f"-o {run}: exists and is not a directory")
    ckpt = load_checkpoint(run) if cfg.resume else None
    if cfg.resume and ckpt is not None:
        conf = run / CONFIG_FILE
        saved = json.loads(conf.read_text(encoding="utf-8"))["config"] if conf.is_file() else cfg.to_dict()
        now = cfg.to_dict()
        diff = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k])
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in diff)
            raise UserError(f"--resume {run}: options differ from the interrupted run ({detail}); use the same options or a new -o")
        return ckpt
    if not cfg.resume and ((run / "checkpoint").exists() or (run / PROMPT_TABLE_FILE).exists()):
        raise UserError(f"-o {run}: already holds a run; pass --resume to continue it, or choose a new -o")
    return None


def load_existing(cfg: TrainConfig, templates: dict) -> tuple[PromptTable | None, str | None]:
    if cfg.existing is None:
        return None, cfg.model
    if Path(cfg.existing).resolve() == Path(cfg.output).resolve():
        raise UserError("--existing must be another run directory than -o")
    table = load_prompt_table(cfg.existing)
    clash = sorted(set(templates) & set(table.prompts))
    if clash:
        raise UserError(f"--existing {cfg.existing}: task(s) {', '.join(clash)} already trained there; give new tasks a new taskname")
    from ptune_cli.models import model_id

    base = table.meta.get("base_model")
    if cfg.model is not None and base is not None and model_id(cfg.model) != base:
        raise UserError(f"--existing {cfg.existing} was trained on {base}, but --model is {model_id(cfg.model)}")
    return table, cfg.model if cfg.model is not None else base


def _schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _max_length(cfg: TrainConfig, model) -> int:
    ctx = getattr(model.config, "max_position_embeddings", None) or 1024
    return cfg.max_length or min(int(ctx), 1024)


def build(cfg: TrainConfig, device, num_processes: int) -> Setup:
    """Load the frozen LM, templates, data and a fresh encoder/optimizer/schedule."""
    from ptune_cli.models import load_causal_lm, model_id
    from ptune_cli.ptuning.encoders import build_encoder
    from ptune_cli.ptuning.model import check_gathered_head

    templates = load_templates(cfg.template)
    empty = [n for n, t in templates.items() if t.total_virtual_tokens == 0]
    if empty:
        raise UserError(f"--template {cfg.template}: task(s) {', '.join(empty)} have no virtual tokens to train")
    existing, model_name = load_existing(cfg, templates)
    model, tok = load_causal_lm(model_name, device=device)
    embed = model.get_input_embeddings()
    hidden = embed.weight.shape[1]
    if existing is not None and existing.meta.get("hidden_size") not in (None, hidden):
        raise UserError(f"--existing {cfg.existing}: hidden size {existing.meta['hidden_size']} ≠ model's {hidden}")
    max_len = _max_length(cfg, model)
    train = load_examples(cfg.train, templates, tok, max_len, flag="--train")
    val = load_examples(cfg.val, templates, tok, max_len, flag="--val") if cfg.val else None
    encoder = build_encoder(cfg.encoder, templates, tok, embed, init=cfg.init, hidden=cfg.encoder_hidden).to(device)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_batches = len(shard(make_batches(train, cfg.batch_size, cfg.seed), 0, num_processes, cfg.grad_accum))
    steps_per_epoch = n_batches // cfg.grad_accum
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else min(50, total // 10)
    return Setup(
        model=model, tokenizer=tok, model_id=model_id(model_name), templates=templates, existing=existing,
        train=train, val=val, encoder=encoder, optimizer=optimizer, scheduler=_schedule(optimizer, warmup, total),
        max_length=max_len, steps_per_epoch=steps_per_epoch, total_steps=total, warmup_steps=warmup,
        gathered=check_gathered_head(model, tok),
    )
