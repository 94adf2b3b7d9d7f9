"""Export: the prompt table (earlier --existing tasks copied unchanged) and its metadata."""

from __future__ import annotations

from pathlib import Path

from ptune_cli import __version__
from ptune_cli.ptuning.table import save_prompt_table


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


def export_table(output, prompts: dict, templates: dict, *, training: dict[str, dict], encoder: str,
                 prefix_projection: bool, base_model: str, tokenizer, hidden_size: int, hyperparameters: dict,
                 existing=None, existing_path: str | None = None, intermediate_step: int | None = None) -> None:
    """Write ``output``/prompt_table.{safetensors,json}: the new tasks' ``prompts`` (with their
    ``templates`` and ``training`` figures: train_examples, skipped_too_long, truncated, steps,
    best_val_loss, best_step, and the ``labels`` the recipe described once from the encoded
    training records) plus, byte for byte, every task of the ``existing`` table (a
    :class:`~ptune_cli.ptuning.table.PromptTable` read from ``existing_path``).
    ``intermediate_step``: ``output`` is a ``--keep-steps`` table (:func:`step_dir`) of that step.
    Plain values: the training recipe hands them over, export needs nothing else of it."""
    table: dict = {}
    all_templates: dict = {}
    tasks: dict = {}
    if existing is not None:
        table.update(existing.prompts)  # loaded tensors, written back unchanged
        all_templates.update(existing.meta.get("templates", {}))
        for name, entry in existing.meta.get("tasks", {}).items():
            tasks[name] = {**entry, "from_existing": entry.get("from_existing") or str(existing_path)}
    for name, tpl in templates.items():
        table[name] = prompts[name]
        all_templates[name] = tpl.to_dict()
        tasks[name] = {
            "total_virtual_tokens": tpl.total_virtual_tokens,
            "kind": "prefix" if encoder == "prefix" else "input",
            "encoder": encoder,
            **({"prefix_projection": prefix_projection} if encoder == "prefix" else {}),
            **training[name],
        }
    meta = {
        "base_model": base_model,
        "tokenizer": _tokenizer_meta(tokenizer),
        "hidden_size": hidden_size,
        "templates": all_templates,
        "tasks": tasks,
        "hyperparameters": hyperparameters,
        "created_by": "ptune train",
        "ptune_version": __version__,
    }
    if intermediate_step is not None:
        meta["intermediate_step"] = intermediate_step
    save_prompt_table(output, table, meta)
