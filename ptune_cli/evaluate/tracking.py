"""``ptune eval --report-to``: headline metrics and a predictions table, logged to a tracker
(:mod:`ptune_cli.tracking`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ptune_cli.evaluate.metrics import headline
from ptune_cli.tracking import open_tracker


def log_eval(kind: str, output: str | None, results: dict, records: list[dict], columns: list[str]) -> None:
    """Headline metrics (as summary values) and a predictions table of ``columns``."""
    out = Path(output) if output and output != "-" else Path.cwd() / "eval.json"
    meta = results.get("meta") or {}
    config = {k: v for k, v in meta.items() if v is not None and not isinstance(v, list)}
    tracker = open_tracker(kind, "eval", out.parent if kind == "wandb" else out.parent / "tensorboard" / out.stem,
                           config)
    try:
        tracker.log({f"eval/{k}": v for k, v in headline(results).items()} | {"eval/n": results["n"]}, step=0)
        rows = [[_cell(r.get(c)) for c in columns] for r in records]
        tracker.table("predictions", columns, rows)
    except BaseException:
        tracker.finish(ok=False)
        raise
    tracker.finish()


def _cell(value) -> Any:
    """Table cells: strings and numbers as they are, anything else (lists of answers) as JSON."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return json.dumps(value, ensure_ascii=False)
