"""``ptune eval``: predict with a run's prompt table (or a frozen-model baseline), then score.

Three modes, one config:

* ``--run RUN_DIR --data TEST.jsonl`` — the base model + the run's prompts for the task;
* ``--baseline zero|one|few --template FILE --data TEST.jsonl`` — the frozen model alone;
* ``--predictions PRED.jsonl`` — score an existing predictions file, no model.

:func:`run_eval` returns the results dict (metrics + ``meta``) and writes the requested files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.evaluate.metrics import METRICS, resolve_metric, score
from ptune_cli.io import display_name, iter_records, write_json, write_records

DECODES = ("generate", "rank")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_FOLD_DIR = re.compile(r"^fold[_-]?(\d+)$", re.IGNORECASE)


@dataclass
class EvalConfig:
    """Options of ``ptune eval`` (names match the CLI flags)."""

    data: str | None = field(default=None, metadata={"help": "test JSONL (gold in the answer field)"})
    run: str | None = field(default=None, metadata={"help": "run folder with the prompt table"})
    predictions: str | None = field(default=None, metadata={"help": "score this predictions JSONL"})
    output: str | None = None
    predictions_out: str | None = None
    metric: str = "auto"
    normalize: str | None = None
    decode: str = "generate"
    batch_size: int = 32
    task: str | None = None
    model: str | None = None
    label_field: str | None = None
    prediction_field: str = "prediction"
    max_new_tokens: int | None = None
    labels: list[str] | None = None
    stop_at_newline: bool | None = None
    baseline: str | None = None
    shots: int | None = None
    train: str | None = None
    template: str | None = None
    seed: int = 0
    fold: int | None = None
    train_fraction: float | None = None
    sample: int | None = None
    device: str = "auto"  # --device: auto (cuda when available), cpu, cuda, cuda:N, mps
    precision: str = "auto"  # --precision: auto (fp32 on CPU, bf16/fp16 on GPU), fp32, fp16, bf16

    @property
    def mode(self) -> str:
        return "predictions" if self.predictions else "baseline" if self.baseline else "run"

    def validate(self) -> None:
        """Raise one UserError listing every problem."""
        p = []
        modes = [f for f, v in (("--run", self.run), ("--predictions", self.predictions), ("--baseline", self.baseline)) if v]
        if len(modes) != 1:
            p.append("give exactly one of --run RUN_DIR, --predictions PRED.jsonl, --baseline zero|one|few"
                     + (f" (got {', '.join(modes)})" if modes else ""))
        if (self.run or self.baseline) and not self.data:
            p.append("--data TEST.jsonl is required with --run and --baseline")
        if self.metric not in METRICS:
            p.append(f"--metric must be one of {', '.join(METRICS)} (got {self.metric})")
        if self.decode not in DECODES:
            p.append(f"--decode must be generate or rank (got {self.decode})")
        if self.batch_size < 1:
            p.append(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            p.append(f"--max-new-tokens must be at least 1 (got {self.max_new_tokens})")
        if self.precision not in PRECISIONS:
            p.append(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision})")
        if self.train_fraction is not None and not 0 < self.train_fraction <= 1:
            p.append(f"--train-fraction must be in (0, 1] (got {self.train_fraction})")
        if self.baseline:
            from ptune_cli.evaluate.baseline import shots_for

            try:
                k = shots_for(self.baseline, self.shots)
            except UserError as e:
                p.append(str(e))
                k = 0
            if not self.template:
                p.append("--baseline needs --template FILE (the task's template)")
            if k > 0 and not self.train:
                p.append(f"--baseline {self.baseline} needs --train TRAIN.jsonl to draw shots from")
        if p:
            raise UserError("; ".join(p))


# ---------------------------------------------------------------------------------------------
# Metadata: which fold / training fraction / sample a results file belongs to


def _from_path(path: str | None) -> dict:
    """Fold id from a ``fold_XX`` folder; training fraction and sample (its ``sample_seed``,
    else its ``seed``) from the ``manifest.json`` that ``ptune kfold`` writes beside the folds."""
    out: dict = {"fold": None, "train_fraction": None, "sample": None}
    if not path or path == "-":
        return out
    fold_dir = Path(path).resolve().parent
    m = _FOLD_DIR.match(fold_dir.name)
    if not m:
        return out
    out["fold"] = int(m.group(1))
    try:
        opts = json.loads((fold_dir.parent / "manifest.json").read_text(encoding="utf-8")).get("options", {})
    except (OSError, ValueError, AttributeError):
        return out
    if opts.get("train_fraction") is not None:
        out["train_fraction"] = opts["train_fraction"]
        sample = opts.get("sample_seed")
        out["sample"] = opts.get("seed") if sample is None else sample
    return out


def split_meta(data: str | None, run_meta: dict | None = None) -> dict:
    """Fold, training fraction and sample of an evaluation: the fold from the test file's path,
    fraction and sample from the kfold manifest of the run's training file (saved by
    ``ptune train``), else of the test file."""
    test = _from_path(data)
    hp = (run_meta or {}).get("hyperparameters") or {}
    train = _from_path(hp.get("train")) if isinstance(hp.get("train"), str) else _from_path(None)
    src = train if train["train_fraction"] is not None else test
    return {
        "fold": test["fold"] if test["fold"] is not None else train["fold"],
        "train_fraction": src["train_fraction"],
        "sample": src["sample"],
    }


def _meta(cfg: EvalConfig, extra: dict) -> dict:
    from ptune_cli import __version__

    inferred = split_meta(cfg.data, extra.pop("run_meta", None))
    for k in ("fold", "train_fraction", "sample"):
        if getattr(cfg, k) is not None:
            inferred[k] = getattr(cfg, k)
    return {
        "command": "ptune eval",
        "mode": cfg.mode,
        "data": display_name(cfg.data) if cfg.data else None,
        "predictions": cfg.predictions,
        "run": cfg.run,
        "normalize": cfg.normalize,
        **extra,
        **inferred,
        "ptune_version": __version__,
    }


# ---------------------------------------------------------------------------------------------
# Scoring only


def score_predictions_file(cfg: EvalConfig) -> tuple[dict, list[dict]]:
    """Score ``cfg.predictions`` (gold from its label field, or from ``cfg.data`` when given)."""
    label_field = cfg.label_field or "label"
    pf = cfg.prediction_field
    if cfg.data:
        golds = [r[label_field] for _, r in iter_records(cfg.data, {label_field: str})]
        pred_recs = [r for _, r in iter_records(cfg.predictions, {pf: str})]
        if len(golds) != len(pred_recs):
            raise UserError(
                f"{display_name(cfg.predictions)}: {len(pred_recs)} predictions but "
                f"{display_name(cfg.data)} has {len(golds)} gold records (they must pair line by line)"
            )
    else:
        pred_recs = [r for _, r in iter_records(cfg.predictions, {label_field: str, pf: str})]
        golds = [r[label_field] for r in pred_recs]
    preds = [r[pf] for r in pred_recs]
    results = score(golds, preds, cfg.metric, _label_map(cfg))
    results["meta"] = _meta(cfg, {"label_field": label_field, "prediction_field": pf})
    return results, pred_recs


def _label_map(cfg: EvalConfig):
    if not cfg.normalize:
        return None
    from ptune_cli.labels import load_label_map

    try:
        return load_label_map(cfg.normalize)
    except UserError as e:
        raise UserError(str(e).replace("--map", "--normalize")) from None


def run_eval(cfg: EvalConfig, on_progress=None, on_total=None) -> dict:
    """Predict (unless scoring a predictions file), score, write ``-o`` / ``--predictions-out``.

    ``on_total(n)`` is called once with the number of records to predict, ``on_progress(k)``
    after each batch. Returns the results dict.
    """
    cfg.validate()
    if cfg.mode == "predictions":
        results, pred_recs = score_predictions_file(cfg)
    else:
        from ptune_cli.evaluate.resume import PartialPredictions
        from ptune_cli.evaluate.session import predict_records

        partial = PartialPredictions.for_config(cfg)
        pred_recs, golds, extra = predict_records(cfg, on_progress=on_progress, on_total=on_total, partial=partial)
        results = score(golds, [r["prediction"] for r in pred_recs], extra["metric"], _label_map(cfg))
        results["meta"] = _meta(cfg, extra)
    if cfg.predictions_out:
        write_records(cfg.predictions_out, pred_recs)
    if cfg.output:
        write_json(cfg.output, results)
    if cfg.mode != "predictions" and partial is not None:
        partial.remove()  # outputs are complete: nothing left to resume
    return results


__all__ = ["EvalConfig", "run_eval", "score_predictions_file", "split_meta", "resolve_metric"]
