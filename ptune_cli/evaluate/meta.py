"""The ``meta`` of a results file: what was evaluated, how, and which fold / training fraction /
sample it belongs to (``ptune report`` groups by the last three).

:class:`ResultsMeta` is filled in one place (:mod:`.runner`) and written as the results JSON's
``meta`` object; its keys and their order are the results format, read by ``ptune report`` and
the pipelines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ptune_cli.strict_json import loads_strict

_FOLD = re.compile(r"fold[_-]?(\d+)", re.IGNORECASE)


def fold_in_path(path: str | Path, *, folder_only: bool = False) -> int | None:
    """The fold number a path names: its parent folder ``fold_XX`` (``folder_only``), else any
    ``foldXX`` / ``fold_XX`` / ``fold-XX`` part of the path. The one place that reads it."""
    if folder_only:
        m = _FOLD.fullmatch(Path(path).resolve().parent.name)
    else:
        m = _FOLD.search(str(path))
    return int(m.group(1)) if m else None


def _from_path(path: str | None) -> dict:
    """Fold id from a ``fold_XX`` folder; training fraction and sample (its ``sample_seed``,
    else its ``seed``) from the ``manifest.json`` that ``ptune kfold`` writes beside the folds."""
    out: dict = {"fold": None, "train_fraction": None, "sample": None}
    if not path or path == "-":
        return out
    out["fold"] = fold_in_path(path, folder_only=True)
    if out["fold"] is None:
        return out
    manifest = Path(path).resolve().parent.parent / "manifest.json"
    try:  # best effort: a manifest that is not kfold's adds nothing (never a traceback)
        opts = loads_strict(manifest.read_text(encoding="utf-8")).get("options", {})
    except (OSError, ValueError, AttributeError):
        return out
    if not isinstance(opts, dict) or not isinstance(opts.get("train_fraction"), (int, float)):
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


# Keys written only in some modes / decodings (the rest always appear).
_BASELINE_ONLY = ("baseline", "shots", "shot_lines", "train", "seed")
_SCORING_ONLY = ("label_field", "prediction_field")
_MODEL_ONLY = ("task", "model", "metric", "decode", "skipped", "truncated", "resumed", "batch_size", "device", "dtype",
               "max_new_tokens", "stop_at_newline", "candidates", "seconds", "records_per_s")


@dataclass
class ResultsMeta:
    """The results JSON's ``meta``, in its key order."""

    command: str = "ptune eval"
    mode: str = "run"
    data: str | None = None
    predictions: str | None = None
    run: str | None = None
    normalize: str | None = None
    task: str | None = None
    model: str | None = None
    baseline: str | None = None
    shots: int | None = None
    shot_lines: list[int] = field(default_factory=list)
    train: str | None = None
    seed: int | None = None
    label_field: str | None = None
    prediction_field: str | None = None
    metric: str | None = None
    decode: str | None = None
    skipped: int = 0  # records that did not fit the model (scored as empty predictions)
    truncated: int = 0  # records whose template's truncate_field was cut to fit the model
    resumed: int = 0  # predictions taken from an interrupted run's partial file
    batch_size: int | None = None
    device: str | None = None
    dtype: str | None = None
    max_new_tokens: int | None = None  # generate only
    stop_at_newline: bool | None = None  # generate only
    candidates: list[str] | None = None  # rank only
    seconds: float | None = None
    records_per_s: float | None = None
    fold: int | None = None
    train_fraction: float | None = None
    sample: int | None = None
    ptune_version: str = ""

    def to_dict(self) -> dict:
        """The ``meta`` object: the keys of this mode (and decoding) only."""
        skip = set()
        if self.mode != "baseline":
            skip.update(_BASELINE_ONLY)
        if self.mode == "predictions":
            skip.update(_MODEL_ONLY)
        else:
            skip.update(_SCORING_ONLY)
            skip.update(("max_new_tokens", "stop_at_newline") if self.decode != "generate" else ())
            skip.update(("candidates",) if self.decode != "rank" else ())
        return {k: v for k, v in self.__dict__.items() if k not in skip}
