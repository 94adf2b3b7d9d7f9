"""The run directory (-o) and what a run reads before loading a model: refusing to overwrite a
run, the resume check against RUN_DIR/config.json, the step log, the --existing table."""

from __future__ import annotations

import json
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.io import check_outputs, read_json, write_json, writing
from ptune_cli.options import apply_aliases, output_fields
from ptune_cli.ptuning.table import (
    PROMPT_META_FILE,
    PROMPT_TABLE_FILE,
    PromptTable,
    load_prompt_table,
)
from ptune_cli.training.checkpoint import CHECKPOINT_DIR, STATE_FILE, load_checkpoint
from ptune_cli.training.config import TrainConfig

CONFIG_FILE = "config.json"
LOG_FILE = "log.jsonl"
# what train writes into -o: an input among them would be overwritten
RUN_FILES = (CONFIG_FILE, LOG_FILE, PROMPT_TABLE_FILE, PROMPT_META_FILE, f"{CHECKPOINT_DIR}/{STATE_FILE}",
             "wandb_run_id.txt")


def _inputs(cfg: TrainConfig) -> dict[str, str | None]:
    return {"--train": cfg.train, "--val": cfg.val, "--template": cfg.template}


def input_digests(cfg: TrainConfig) -> dict[str, str | None]:
    """sha256 of each input file's contents (and of --existing's table): what a --resume must
    still find, as translate, eval and predict fingerprint theirs."""
    from ptune_cli.resumable import file_digest

    digests = {flag: file_digest(path) for flag, path in _inputs(cfg).items()}
    if cfg.existing:
        digests["--existing"] = "/".join(str(file_digest(Path(cfg.existing) / f))
                                         for f in (PROMPT_TABLE_FILE, PROMPT_META_FILE))
    return digests


def resume_checkpoint(cfg: TrainConfig) -> dict | None:
    """The checkpoint to resume from (None = fresh start); refuses to overwrite a run, and to
    resume one whose output-affecting options (:func:`ptune_cli.options.output_fields`) differ."""
    run = Path(cfg.output)
    if run.exists() and not run.is_dir():
        raise UserError(f"-o {run}: exists and is not a directory")
    check_outputs([("-o", run / f) for f in RUN_FILES], _inputs(cfg))
    ckpt = load_checkpoint(run) if cfg.resume else None
    if ckpt is not None:
        conf = run / CONFIG_FILE
        written = read_json(conf, "run config") if conf.is_file() else {}
        saved = written.get("config", cfg.to_dict()) if isinstance(written, dict) else cfg.to_dict()
        saved = apply_aliases(cfg, saved)  # a run saved with --precision no resumes as fp32
        now = cfg.to_dict()
        diff = sorted(k for k in output_fields(cfg) if saved.get(k) != now[k])
        if diff:
            detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in diff)
            raise UserError(f"--resume {run}: options differ from the interrupted run ({detail}); use the same options or a new -o")
        before = written.get("inputs") if isinstance(written, dict) else None  # runs written before this check lack it
        changed = [flag for flag, digest in input_digests(cfg).items() if before and before.get(flag) != digest]
        if changed:
            raise UserError(f"--resume {run}: {', '.join(changed)} changed since the interrupted run (its contents "
                            "differ); restore the files, or train into a new -o")
        return ckpt
    if not cfg.resume and ((run / CHECKPOINT_DIR).exists() or (run / PROMPT_TABLE_FILE).exists()):
        raise UserError(f"-o {run}: already holds a run; pass --resume to continue it, or choose a new -o")
    return None


def write_config(cfg: TrainConfig, resolved: dict) -> None:
    """RUN_DIR/config.json: the options as given and the sizes resolved at start."""
    write_json(Path(cfg.output) / CONFIG_FILE, {"config": cfg.to_dict(), "resolved": resolved,
                                                "inputs": input_digests(cfg)})


def load_existing(cfg: TrainConfig, tasks: list[str]) -> tuple[PromptTable | None, str | None]:
    """(the --existing prompt table or None, the model to load: --model, else --existing's)."""
    if cfg.existing is None:
        return None, cfg.model
    if Path(cfg.existing).resolve() == Path(cfg.output).resolve():
        raise UserError("--existing must be another run directory than -o")
    table = load_prompt_table(cfg.existing)
    for name in table.tasknames:  # copied into the new table: a broken template fails now, not in eval
        try:
            table.template(name)
        except UserError as e:
            raise UserError(f"--existing {cfg.existing}: {e}") from None
    clash = sorted(set(tasks) & set(table.prompts))
    if clash:
        raise UserError(f"--existing {cfg.existing}: task(s) {', '.join(clash)} already trained there; give new tasks a new taskname")
    from ptune_cli.models import model_id

    base = table.meta.get("base_model")
    if cfg.model is not None and base is not None and model_id(cfg.model) != base:
        raise UserError(f"--existing {cfg.existing} was trained on {base}, but --model is {model_id(cfg.model)}")
    return table, cfg.model if cfg.model is not None else base


class StepLog:
    """RUN_DIR/log.jsonl, one line per optimizer step; on resume, cut back to the checkpoint's
    step (a torn last line, from a kill -9 mid-write, is cut as in every resumable file)."""

    def __init__(self, cfg: TrainConfig, resumed_step: int | None):
        from ptune_cli.resumable import recover_jsonl

        self.path = Path(cfg.output) / LOG_FILE
        keep = []
        if resumed_step is not None and self.path.exists():
            keep = [r for r in recover_jsonl(self.path) if isinstance(r.get("step"), int) and r["step"] <= resumed_step]
        with writing(self.path):
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")

    def write(self, record: dict) -> None:
        with writing(self.path), self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
