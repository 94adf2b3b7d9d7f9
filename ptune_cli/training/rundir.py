"""The run directory (-o) and what a run reads before loading a model: refusing to overwrite a
run, the resume check against RUN_DIR/config.json, the step log, the --existing table."""

from __future__ import annotations

import json
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.io import write_json
from ptune_cli.options import apply_aliases, output_fields
from ptune_cli.ptuning.table import PROMPT_TABLE_FILE, PromptTable, load_prompt_table
from ptune_cli.training.checkpoint import CHECKPOINT_DIR, load_checkpoint
from ptune_cli.training.config import TrainConfig

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"


def resume_checkpoint(cfg: TrainConfig) -> dict | None:
    """The checkpoint to resume from (None = fresh start); refuses to overwrite a run, and to
    resume one whose output-affecting options (:func:`ptune_cli.options.output_fields`) differ."""
    run = Path(cfg.output)
    if run.exists() and not run.is_dir():
        raise UserError(f"-o {run}: exists and is not a directory")
    ckpt = load_checkpoint(run) if cfg.resume else None
    if ckpt is not None:
        conf = run / CONFIG_FILE
        saved = json.loads(conf.read_text(encoding="utf-8"))["config"] if conf.is_file() else cfg.to_dict()
        saved = apply_aliases(cfg, saved)  # a run saved with --precision no resumes as fp32
        now = cfg.to_dict()
        diff = sorted(k for k in output_fields(cfg) if saved.get(k) != now[k])
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in diff)
            raise UserError(f"--resume {run}: options differ from the interrupted run ({detail}); use the same options or a new -o")
        return ckpt
    if not cfg.resume and ((run / CHECKPOINT_DIR).exists() or (run / PROMPT_TABLE_FILE).exists()):
        raise UserError(f"-o {run}: already holds a run; pass --resume to continue it, or choose a new -o")
    return None


def write_config(cfg: TrainConfig, resolved: dict) -> None:
    """RUN_DIR/config.json: the options as given and the sizes resolved at start."""
    write_json(Path(cfg.output) / CONFIG_FILE, {"config": cfg.to_dict(), "resolved": resolved})


def load_existing(cfg: TrainConfig, tasks: list[str]) -> tuple[PromptTable | None, str | None]:
    """(the --existing prompt table or None, the model to load: --model, else --existing's)."""
    if cfg.existing is None:
        return None, cfg.model
    if Path(cfg.existing).resolve() == Path(cfg.output).resolve():
        raise UserError("--existing must be another run directory than -o")
    table = load_prompt_table(cfg.existing)
    clash = sorted(set(tasks) & set(table.prompts))
    if clash:
        raise UserError(f"--existing {cfg.existing}: task(s) {', '.join(clash)} already trained there; give new tasks a new taskname")
    from ptune_cli.models import model_id

    base = table.meta.get("base_model")
    if cfg.model is not None and base is not None and model_id(cfg.model) != base:
        raise UserError(f"--existing {cfg.existing} was trained on {base}, but --model is {model_id(cfg.model)}")
    return table, cfg.model if cfg.model is not None else base


class StepLog:
    """RUN_DIR/log.jsonl, one line per optimizer step; on resume, cut back to the checkpoint's step."""

    def __init__(self, cfg: TrainConfig, resumed_step: int | None):
        self.path = Path(cfg.output) / LOG_FILE
        keep = []
        if resumed_step is not None and self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            keep = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= resumed_step]
        self.path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
