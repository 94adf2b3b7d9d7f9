"""Aggregate many results files (one per fold, per training fraction, per sample) into a summary.

``summarize`` groups rows by training fraction and reports per-fold values plus mean ± sample
standard deviation over the group's results; with repeated random samples at one fraction it
also reports the spread of the per-sample means (what the data-reduction curve shows).
Markdown renderers for one results dict and for a summary live here too (the CLI prints them).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from ptune_cli.errors import UserError, at
from ptune_cli.evaluate.meta import fold_in_path
from ptune_cli.evaluate.metrics import DEFAULT_PLOT_KEYS, PRIMARY_KEY, headline, key_title

__all__ = ["DEFAULT_PLOT_KEYS", "PRIMARY_KEY", "key_title"]  # declared in metrics (plots reads them too)


def run_report(cfg) -> tuple[dict, str]:
    """``ptune report``: read, summarize, write ``-o`` / ``--markdown`` / the plots; returns the
    summary and its markdown (the CLI prints one of them)."""
    from ptune_cli.io import atomic_output, check_outputs, write_json
    from ptune_cli.options import validate

    validate(cfg)
    check_outputs({"-o": cfg.output, "--markdown": cfg.markdown, "--plot": cfg.plot,
                   "--reduction-plot": cfg.reduction_plot},
                  [("RESULTS", p) for p in cfg.results])
    summary = summarize(load_results(cfg.results))
    if cfg.plot or cfg.reduction_plot:
        from ptune_cli.evaluate.plots import plot_folds, plot_reduction

        if cfg.plot:
            plot_folds(summary, cfg.plot, cfg.key or None)
        if cfg.reduction_plot:
            plot_reduction(summary, cfg.reduction_plot, cfg.key[0] if cfg.key else None)
    if cfg.output:
        write_json(cfg.output, summary)
    md = summary_markdown(summary)
    if cfg.markdown and cfg.markdown != "-":
        with atomic_output(cfg.markdown) as fh:
            fh.write(md)
    return summary, md


def load_results(paths: Sequence[str | Path]) -> list[tuple[str, dict]]:
    """Read results JSON files written by ``ptune eval``; UserError naming the bad file (and
    field). The same file given twice (overlapping globs, a symlink, a hard link) is refused: it
    would count as two folds and shrink the std."""
    from ptune_cli.io import check_distinct_inputs, read_json

    if not paths:
        raise UserError("no results files given (pass one or more RESULTS.json)")
    for p in paths:
        if not Path(p).is_file():
            raise UserError(f"{p}: no such results file")
    check_distinct_inputs([("RESULTS", p) for p in paths])
    out: list[tuple[str, dict]] = []
    for p in paths:
        path = Path(p)
        data = read_json(path, "results file")  # no NaN literals, no duplicate keys, one line
        if not isinstance(data, dict) or data.get("metric") not in DEFAULT_PLOT_KEYS:
            raise UserError(f"{path}: not a results file of `ptune eval` (no 'metric' accuracy/intent-slot/squad)")
        _check_results(path, data)
        out.append((str(path), data))
    return out


# the numbers a summary reads, per metric (nested keys as "intent.f1"); all fractions in [0, 1]
_REQUIRED = {
    "accuracy": ("accuracy", "macro_f1"),
    "intent-slot": ("intent.accuracy", "intent.precision", "intent.recall", "intent.f1",
                    "slot.precision", "slot.recall", "slot.f1", "exact_match"),
    "squad": ("exact_match", "f1"),
}


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_results(path: Path, data: dict) -> None:
    """Every number the summary reads is there and in range: metrics are fractions in [0, 1]
    (a missing one is never taken as 0), ``n`` and ``meta.fold`` are counts, ``meta.train_fraction``
    is in (0, 1] (one line naming the file and the field)."""
    for key in _REQUIRED[data["metric"]]:
        value = data
        for part in key.split("."):
            value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            raise UserError(f"{at(path, field=key)}: missing (not a complete results file of `ptune eval`; "
                            "score it again with `ptune eval --predictions`)")
        if not _number(value):
            raise UserError(f"{at(path, field=key)}: expected a number, got {_type(value)}")
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{at(path, field=key)}: {value} is not a fraction in [0, 1]")
    meta = data.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise UserError(f"{at(path, field='meta')}: expected an object, got {_type(meta)}")
    checks = (("n", data.get("n"), _integer, lambda v: v >= 0, "a count >= 0"),
              ("meta.fold", (meta or {}).get("fold"), _integer, lambda v: v >= 0, "a fold number >= 0"),
              ("meta.train_fraction", (meta or {}).get("train_fraction"), _number, lambda v: 0 < v <= 1,
               "a fraction in (0, 1]"))
    for key, v, typed, in_range, want in checks:
        if v is None:
            continue
        if not typed(v):
            raise UserError(f"{at(path, field=key)}: expected a number, got {_type(v)}")
        if not in_range(v):
            raise UserError(f"{at(path, field=key)}: {v} is not {want}")


_MISSING = object()


def _type(value) -> str:
    return "null" if value is None else type(value).__name__


def _row(index: int, path: str, res: dict) -> dict:
    meta = res.get("meta") or {}
    fold = meta.get("fold")
    if fold is None:
        fold = fold_in_path(path)
        fold = index if fold is None else fold
    frac = meta.get("train_fraction")
    return {
        "file": path,
        "fold": fold,
        "train_fraction": 1.0 if frac is None else float(frac),
        "sample": meta.get("sample"),
        "n": res.get("n", 0),
        **headline(res),
    }


def _check_folds_once(rows: list[dict], results: list[tuple[str, dict]]) -> None:
    """Two results files claiming the same fold of the same training fraction and sample (a
    copied file, a re-run in another folder) would count twice: refuse, naming both."""
    named = {p: (res.get("meta") or {}).get("fold") is not None or fold_in_path(p) is not None for p, res in results}
    seen: dict[tuple, str] = {}
    for r in rows:
        if not named[r["file"]]:
            continue  # no fold given: numbered by position, cannot clash
        key = (r["train_fraction"], str(r["sample"]), r["fold"])
        if key in seen:
            raise UserError(f"{r['file']}: fold {r['fold']} again (also {seen[key]}, same training fraction and "
                            "sample); each fold counts once")
        seen[key] = r["file"]


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std (None with fewer than two values)."""
    mean = statistics.fmean(values) if values else 0.0
    return mean, (statistics.stdev(values) if len(values) >= 2 else None)


def _group(rows: list[dict], keys: list[str]) -> dict:
    by_sample: dict[str, list[dict]] = {}
    for r in rows:
        by_sample.setdefault(str(r["sample"]), []).append(r)
    stats = {k: _mean_std([r[k] for r in rows]) for k in keys}
    per_sample = []
    for srows in by_sample.values():
        per_sample.append({"sample": srows[0]["sample"], "results": len(srows),
                           "mean": {k: statistics.fmean(r[k] for r in srows) for k in keys}})
    between = {k: _mean_std([ps["mean"][k] for ps in per_sample])[1] for k in keys}
    return {
        "train_fraction": rows[0]["train_fraction"],
        "results": len(rows),
        "samples": len(per_sample),
        "mean": {k: v[0] for k, v in stats.items()},
        "std": {k: v[1] for k, v in stats.items()},
        "per_sample": per_sample,
        "std_between_samples": between,
    }


def summarize(results: list[tuple[str, dict]]) -> dict:
    """Per-result rows and per-training-fraction groups (mean ± sample std over results)."""
    metrics = {res["metric"] for _, res in results}
    if len(metrics) > 1:
        raise UserError(f"results mix metrics ({', '.join(sorted(metrics))}): report them separately")
    metric = metrics.pop()
    rows = [_row(i, p, res) for i, (p, res) in enumerate(results)]
    _check_folds_once(rows, results)
    rows.sort(key=lambda r: (-r["train_fraction"], str(r["sample"]), r["fold"]))
    keys = list(headline(results[0][1]))
    fractions = sorted({r["train_fraction"] for r in rows}, reverse=True)
    groups = [_group([r for r in rows if r["train_fraction"] == f], keys) for f in fractions]
    return {"metric": metric, "keys": keys, "rows": rows, "groups": groups}


# ---------------------------------------------------------------------------------------------
# Markdown


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals ('–' for None)."""
    return "–" if x is None else f"{100 * x:.2f}"


def _table(header: list[str], rows: list[list[str]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", "\\n")


def result_notes(results: dict) -> list[str]:
    """What the headline numbers alone hide: predictions outside the label set (accuracy) and
    the scorer's warnings (intent-slot on data without intents)."""
    notes = list(results.get("warnings") or [])
    out_of_set = results.get("out_of_set") or 0
    if out_of_set:
        notes.insert(0, f"{out_of_set} of {results['n']} predictions are none of the gold labels (out of set)")
    return notes


def results_markdown(results: dict) -> str:
    """One results dict as markdown: the headline numbers (in %), notes, the per-label rows."""
    head = headline(results)
    lines = [f"**{results['metric']}** on {results['n']} records", ""]
    lines += [f"_{note}_" for note in result_notes(results)] + ([""] if result_notes(results) else [])
    lines += _table(["metric", "value (%)"], [[key_title(k), pct(v)] for k, v in head.items()])
    rows = results.get("per_label") or []
    if rows:
        has_kind = "kind" in rows[0]
        header = (["kind"] if has_kind else []) + ["label", "precision", "recall", "F1", "support"]
        body = [
            ([r["kind"]] if has_kind else [])
            + [_cell(r["label"]), pct(r["precision"]), pct(r["recall"]), pct(r["f1"]), str(r["support"])]
            for r in rows
        ]
        lines += ["", *_table(header, body, right_from=2 if has_kind else 1)]
    return "\n".join(lines) + "\n"


def mean_std_text(mean: float, std: float | None) -> str:
    return pct(mean) if std is None else f"{pct(mean)} ± {pct(std)}"


def summary_markdown(summary: dict) -> str:
    """A summary as markdown: per-fold rows with mean ± std per training fraction, then (with
    several fractions) the data-reduction table."""
    keys = summary["keys"]
    header = ["fold", "train %", "sample", "n"] + [f"{key_title(k)} (%)" for k in keys]
    lines = [f"## {summary['metric']}: {len(summary['rows'])} results", ""]
    for g in summary["groups"]:
        rows = [r for r in summary["rows"] if r["train_fraction"] == g["train_fraction"]]
        body = [
            [str(r["fold"]), f"{100 * r['train_fraction']:g}", "–" if r["sample"] is None else str(r["sample"]),
             str(r["n"])] + [pct(r[k]) for k in keys]
            for r in rows
        ]
        body.append([f"**mean ± std** ({g['results']})", f"{100 * g['train_fraction']:g}", "", ""]
                    + [f"**{mean_std_text(g['mean'][k], g['std'][k])}**" for k in keys])
        lines += [*_table(header, body), ""]
    if len(summary["groups"]) > 1:
        header = ["train %", "results", "samples"] + [f"{key_title(k)} (%)" for k in keys]
        body = [
            [f"{100 * g['train_fraction']:g}", str(g["results"]), str(g["samples"])]
            + [mean_std_text(g["mean"][k], g["std_between_samples"][k] if g["samples"] > 1 else g["std"][k]) for k in keys]
            for g in summary["groups"]
        ]
        lines += ["### data reduction (± std between samples; over folds when one sample)", "",
                  *_table(header, body), ""]
    return "\n".join(lines)
