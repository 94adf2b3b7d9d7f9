"""Export: the prompt table (earlier --existing tasks copied unchanged) and its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ptune_cli import __version__
from ptune_cli.ptuning.table import save_prompt_table

if TYPE_CHECKING:
    from ptune_cli.training.recipe import TrainRecipe


def param_counts(model, encoder) -> tuple[int, int]:
    """(trainable encoder parameters, total = frozen LM + encoder)."""
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters())
    return trainable, frozen + trainable


def _tokenizer_meta(tok) -> dict:
    return {
        "name_or_path": getattr(tok, "name_or_path", None),
        "class": type(tok).__name__,
        "vocab_size": len(tok),
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
    }


STEPS_DIR = "steps"


def step_dir(run_dir, step: int) -> Path:
    """Where ``--keep-steps`` writes the prompt table of ``step``: RUN_DIR/steps/step_000050."""
    return Path(run_dir) / STEPS_DIR / f"step_{step:06d}"


def export_table(recipe: TrainRecipe, prompts: dict, out_dir=None) -> None:
    """Write RUN_DIR/prompt_table.{safetensors,json} (or into ``out_dir``: an intermediate
    step's table): the new tasks' ``prompts`` plus, byte for byte, every task of the
    --existing table."""
    cfg, existing, started = recipe.cfg, recipe.existing, recipe.started
    table: dict = {}
    templates: dict = {}
    tasks: dict = {}
    if existing is not None:
        table.update(existing.prompts)  # loaded tensors, written back unchanged
        templates.update(existing.meta.get("templates", {}))
        for name, entry in existing.meta.get("tasks", {}).items():
            tasks[name] = {**entry, "from_existing": entry.get("from_existing") or str(cfg.existing)}
    data = recipe.train_data
    for name, tpl in recipe.templates.items():
        table[name] = prompts[name]
        templates[name] = tpl.to_dict()
        tasks[name] = {
            "total_virtual_tokens": tpl.total_virtual_tokens,
            "kind": "prefix" if cfg.encoder == "prefix" else "input",
            "encoder": cfg.encoder,
            **({"prefix_projection": cfg.prefix_projection} if cfg.encoder == "prefix" else {}),
            "train_examples": data.counts[name],
            "skipped_too_long": data.skipped[name],
            "truncated": data.truncated[name],
            "steps": recipe.step,
            "best_val_loss": recipe.best_val,
            "best_step": recipe.best_step,
            "labels": recipe.labels[name],  # eval/predict/serve need no training file
        }
    meta = {
        "base_model": recipe.model_id,
        "tokenizer": _tokenizer_meta(recipe.tokenizer),
        "hidden_size": started.hidden_size,
        "templates": templates,
        "tasks": tasks,
        "hyperparameters": {**cfg.to_dict(), "total_steps": started.total_steps, "warmup_steps": started.warmup_steps,
                            "effective_batch_size": started.effective_batch_size, "max_length": started.max_length},
        "created_by": "ptune train",
        "ptune_version": __version__,
    }
    if out_dir is not None:
        meta["intermediate_step"] = recipe.step
    save_prompt_table(cfg.output if out_dir is None else out_dir, table, meta)

