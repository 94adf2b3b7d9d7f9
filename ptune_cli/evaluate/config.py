"""Options of ``ptune eval`` and ``ptune report``: each declared once, here.

Every field's help, default, flag and choices (``Literal``) live in its :func:`option`; the
typer commands in ``ptune_cli/cli`` are built from these classes. ``affects_output`` says
whether a field changes the *predictions*: a resumed ``ptune eval`` must match those (scoring
options, metadata and output paths may differ, the scores are recomputed anyway).

Kept free of heavy imports: ``ptune --help`` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ptune_cli.inference.options import DecodeOptions
from ptune_cli.options import option

_PRED = "Prediction"
_BASE = "Baseline (frozen model, no prompts)"
_META = "Results metadata (for ptune report)"


@dataclass
class EvalConfig(DecodeOptions):
    """Options of ``ptune eval``. Three modes: ``--run`` + ``--data`` (the run's prompts),
    ``--baseline`` + ``--template`` + ``--data`` (the frozen model), ``--predictions`` (score only)."""

    run: str | None = option(None, help="Run folder with the prompt table (from ptune train).")
    data: str | None = option(None, help="Test JSONL with gold labels in the template's answer field.")
    output: str | None = option(None, short="-o", flag="--output", affects_output=False,
                                help="Results JSON (metrics, per-label rows, meta).")
    predictions_out: str | None = option(None, affects_output=False,
                                         help="Write each input record plus its 'prediction' (JSONL).")
    markdown: bool = option(False, affects_output=False, show_default=False,
                            help="Print a markdown table instead of the rich table.")
    metric: Literal["auto", "accuracy", "intent-slot", "squad"] = option(
        "auto", affects_output=False,
        help="auto: squad for QA records (an 'answers' list), intent-slot when gold labels contain 'Intent:', "
        "else accuracy. squad: exact match and token F1 of the official SQuAD v1.1 script, max over 'answers'.")
    lang: Literal["en", "sv"] = option(
        "en", affects_output=False,
        help="--metric squad: the articles removed before comparing (en: a/an/the, official; sv: en/ett/den/det/de).")
    normalize: str | None = option(None, affects_output=False,
                                   help="Label map folding variants before scoring: sv-sentiment, en-sentiment or a JSON/YAML file.")
    task: str | None = option(None, panel=_PRED,
                              help="Task name in the prompt table / template file (default: the data's taskname).")
    report_to: Literal["none", "tensorboard", "wandb"] = option(
        "none", affects_output=False,
        help="Also log the metrics and (wandb) a predictions table (input fields, gold, prediction); extra 'track'.")
    predictions: str | None = option(None, affects_output=False, help="Score this predictions JSONL without any model.")
    label_field: str | None = option(None, affects_output=False, help="Gold field with --predictions (default: label).")
    prediction_field: str = option("prediction", affects_output=False, help="Prediction field with --predictions.")
    baseline: Literal["zero", "one", "few"] | None = option(
        None, panel=_BASE, help="The frozen model with the template's text, no virtual tokens.")
    shots: int | None = option(None, panel=_BASE, help="Examples for --baseline few (default 5).")
    train: str | None = option(None, panel=_BASE, help="Training JSONL the shots are drawn from.")
    template: str | None = option(None, panel=_BASE, help="Template JSON of the task (templates/*.json).")
    seed: int = option(0, panel=_BASE, help="Seed for drawing the shots.")
    fold: int | None = option(None, panel=_META, affects_output=False,
                              help="Fold id (default: from a fold_XX folder in --data).")
    train_fraction: float | None = option(None, panel=_META, affects_output=False,
                                          help="Training fraction (default: from the kfold manifest).")
    sample: int | None = option(None, panel=_META, affects_output=False,
                                help="Sample id of a repeated data-reduction draw (default: the kfold seed).")

    @property
    def mode(self) -> str:
        return "predictions" if self.predictions else "baseline" if self.baseline else "run"

    def problems(self) -> list[str]:
        """Cross-field checks (``options.validate`` adds the choices' own)."""
        p = []
        modes = [f for f, v in (("--run", self.run), ("--predictions", self.predictions), ("--baseline", self.baseline)) if v]
        if len(modes) != 1:
            p.append("give exactly one of --run RUN_DIR, --predictions PRED.jsonl, --baseline zero|one|few"
                     + (f" (got {', '.join(modes)})" if modes else ""))
        if (self.run or self.baseline) and not self.data:
            p.append("--data TEST.jsonl is required with --run and --baseline")
        p += self.decode_problems()
        if self.train_fraction is not None and not 0 < self.train_fraction <= 1:
            p.append(f"--train-fraction must be in (0, 1] (got {self.train_fraction})")
        if self.baseline in ("zero", "one", "few"):
            p += self._baseline_problems()
        return p

    def _baseline_problems(self) -> list[str]:
        from ptune_cli.errors import UserError
        from ptune_cli.inference.baseline import shots_for

        p = []
        try:
            k = shots_for(self.baseline, self.shots)
        except UserError as e:
            p.append(str(e))
            k = 0
        if not self.template:
            p.append("--baseline needs --template FILE (the task's template)")
        if k > 0 and not self.train:
            p.append(f"--baseline {self.baseline} needs --train TRAIN.jsonl to draw shots from")
        return p


@dataclass
class ReportConfig:
    """Options of ``ptune report``."""

    results: list[str] = option([], argument=True, help="Results JSON files written by `ptune eval -o`.")
    output: str | None = option(None, short="-o", flag="--output",
                                help="Summary JSON (per-fold rows, mean ± sample std per training fraction); - for stdout.")
    markdown: str | None = option(None, help="Write the summary as markdown to this file (- for stdout).")
    plot: str | None = option(None, help="PNG: per-fold bars with the mean line and ± std band.")
    reduction_plot: str | None = option(None, help="PNG: metric vs training fraction with the spread over samples.")
    key: list[str] | None = option(None, help="Metric key(s) to plot, e.g. accuracy, intent.f1, slot.f1, exact_match (repeatable).")
