"""Export: the prompt table (earlier --existing tasks copied unchanged) and its metadata."""

from __future__ import annotations

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


def export_table(cfg, s, prompts: dict, info: dict, st) -> None:
    """Write RUN_DIR/prompt_table.{safetensors,json}: new tasks' prompts plus, byte for byte,
    every task of the --existing table."""
    table: dict = {}
    templates: dict = {}
    tasks: dict = {}
    if s.existing is not None:
        table.update(s.existing.prompts)  # loaded tensors, written back unchanged
        templates.update(s.existing.meta.get("templates", {}))
        for name, entry in s.existing.meta.get("tasks", {}).items():
            tasks[name] = {**entry, "from_existing": entry.get("from_existing") or str(cfg.existing)}
    for name, tpl in s.templates.items():
        table[name] = prompts[name]
        templates[name] = tpl.to_dict()
        tasks[name] = {
            "total_virtual_tokens": tpl.total_virtual_tokens,
            "encoder": cfg.encoder,
            "train_examples": s.train.counts[name],
            "skipped_too_long": s.train.skipped[name],
            "truncated": s.train.truncated[name],
            "steps": st.step,
            "best_val_loss": st.best_val,
            "best_step": st.best_step,
        }
    meta = {
        "base_model": s.model_id,
        "tokenizer": _tokenizer_meta(s.tokenizer),
        "hidden_size": info["hidden_size"],
        "templates": templates,
        "tasks": tasks,
        "hyperparameters": {**cfg.to_dict(), "total_steps": info["total_steps"], "warmup_steps": info["warmup_steps"],
                            "effective_batch_size": info["effective_batch_size"], "max_length": info["max_length"]},
        "created_by": "ptune train",
        "ptune_version": __version__,
    }
    save_prompt_table(cfg.output, table, meta)
