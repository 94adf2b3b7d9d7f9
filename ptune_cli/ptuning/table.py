"""The prompt table: taskname -> float32 tensor (safetensors) + JSON metadata.

A task is of one of two kinds, named in ``tasks[name]["kind"]``: ``input`` — the [T, hidden]
rows injected at the template's virtual positions — or ``prefix`` — per-layer keys/values
[L, 2, n_kv, T, d] (:mod:`ptune_cli.ptuning.prefix`). One table may hold both. This is the
contract between ``ptune train`` and ``ptune eval``: the encoder that produced the prompts is
not needed at inference; :meth:`PromptTable.prompt` gives each task's typed prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.io import atomic_output, read_json, write_json
from ptune_cli.ptuning.template import TaskTemplate, template_from_dict

PROMPT_TABLE_FILE = "prompt_table.safetensors"
PROMPT_META_FILE = "prompt_table.json"


def save_prompt_table(run_dir, prompts: dict, meta: dict) -> None:
    """Write ``prompts`` (taskname -> [T, hidden]) and ``meta`` atomically into ``run_dir``."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").float().contiguous() for k, v in prompts.items()}
    meta = dict(meta)
    tasks = dict(meta.get("tasks", {}))
    for name, t in tensors.items():
        tasks.setdefault(name, {})
        kind = "prefix" if t.dim() == 5 else "input"
        tasks[name] = {**tasks[name], "kind": kind, "total_virtual_tokens": int(t.shape[3] if kind == "prefix" else t.shape[0])}
    meta["tasks"] = tasks
    inputs = [t for t in tensors.values() if t.dim() == 2]
    if inputs:
        meta.setdefault("hidden_size", int(inputs[0].shape[1]))
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / PROMPT_TABLE_FILE, "wb") as fh:
        # one metadata key: safetensors writes its metadata map in per-process hash order, so
        # two keys made identical tables different files (who wrote it is in prompt_table.json)
        fh.write(save(tensors, metadata={"format": "pt"}))
    write_json(out / PROMPT_META_FILE, meta)


@dataclass
class PromptTable:
    """Prompts per task and the metadata saved with them."""

    prompts: dict
    meta: dict

    def template(self, taskname: str) -> TaskTemplate:
        """The template a task was trained with; UserError naming the known tasks if absent."""
        templates = self.meta.get("templates", {})
        if taskname not in templates or taskname not in self.prompts:
            known = ", ".join(sorted(self.prompts)) or "none"
            raise UserError(f"task '{taskname}' is not in the prompt table (known tasks: {known})")
        return template_from_dict(templates[taskname], f"{PROMPT_META_FILE}: {taskname}")

    def kind(self, taskname: str) -> str:
        """``input`` or ``prefix`` (tables written before prefixes existed hold input prompts)."""
        entry = self.meta.get("tasks", {}).get(taskname, {})
        return entry.get("kind") or ("prefix" if self.prompts[taskname].dim() == 5 else "input")

    def prompt(self, taskname: str):
        """The task's typed prompt: a [T, h] tensor (input) or a :class:`~ptune_cli.ptuning.prefix.Prefix`."""
        from ptune_cli.ptuning.prefix import Prefix

        t = self.prompts[taskname]
        kind = self.kind(taskname)
        if (kind == "prefix") != (t.dim() == 5):
            raise UserError(f"{PROMPT_META_FILE}: task '{taskname}' is of kind {kind} but its tensor has shape {list(t.shape)}")
        rows = int(t.shape[3] if kind == "prefix" else t.shape[0])
        declared = self.template(taskname).total_virtual_tokens
        if rows != declared:  # an edited template must not make eval encode 10^9 virtual tokens
            raise UserError(f"{PROMPT_META_FILE}: task '{taskname}': its template has total_virtual_tokens "
                            f"{declared} but the table holds {rows}")
        return Prefix(t) if kind == "prefix" else t

    @property
    def tasknames(self) -> list[str]:
        return list(self.prompts)


def load_prompt_table(run_dir) -> PromptTable:
    """Load the table written by :func:`save_prompt_table`; damaged or foreign metadata is one
    :class:`UserError` line (serve's reload answers it with 409)."""
    from safetensors.torch import load_file

    d = Path(run_dir)
    table, meta_file = d / PROMPT_TABLE_FILE, d / PROMPT_META_FILE
    if not table.is_file():
        raise UserError(f"{d}: no prompt table ({PROMPT_TABLE_FILE}) — run `ptune train` first")
    if not meta_file.is_file():
        raise UserError(f"{d}: {PROMPT_META_FILE} missing next to {PROMPT_TABLE_FILE} (copy the whole run folder)")
    meta = read_json(meta_file, "prompt table metadata")  # strict: one line for any damage
    for key, value in (("", meta), ("templates", meta.get("templates") if isinstance(meta, dict) else None),
                       ("tasks", meta.get("tasks", {}) if isinstance(meta, dict) else None),
                       ("hyperparameters", meta.get("hyperparameters", {}) if isinstance(meta, dict) else None)):
        if not isinstance(value, dict):
            got = "null" if value is None else type(value).__name__
            raise UserError(f"{meta_file}: {key + ': ' if key else ''}expected a JSON object, got {got} "
                            "(the metadata `ptune train` writes)")
    try:
        prompts = load_file(str(table))
    except Exception as e:  # noqa: BLE001 - a damaged file is a user-level problem
        raise UserError(f"{d}: cannot read the prompt table ({type(e).__name__}: {e})") from None
    return PromptTable(prompts=prompts, meta=meta)
