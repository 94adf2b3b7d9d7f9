"""PNG plots of a report summary (matplotlib, Agg backend: no display needed).

* :func:`plot_folds` — per-fold bars for each metric, with the mean as a dashed line and the
  ± sample std as a band (the group with the largest training fraction).
* :func:`plot_reduction` — the data-reduction curve: metric vs training fraction (log x), one dot
  per random sample (its mean over folds), the mean line with ± std error bars.
"""

from __future__ import annotations

from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.evaluate.metrics import DEFAULT_PLOT_KEYS, PRIMARY_KEY, key_title
from ptune_cli.io import atomic_output


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError("plots need matplotlib (pip install 'ptune-cli[plots]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_keys(summary: dict, keys: list[str]) -> None:
    unknown = [k for k in keys if k not in summary["keys"]]
    if unknown:
        raise UserError(f"--key: unknown metric key(s) {', '.join(unknown)} (known: {', '.join(summary['keys'])})")


def _save(fig, path: str | Path) -> None:
    with atomic_output(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")


def plot_folds(summary: dict, path: str | Path, keys: list[str] | None = None) -> None:
    """Per-fold bars with mean line and ± std band, one panel per metric key."""
    keys = keys or DEFAULT_PLOT_KEYS[summary["metric"]]
    _check_keys(summary, keys)
    plt = _pyplot()
    group = summary["groups"][0]  # largest training fraction
    rows = [r for r in summary["rows"] if r["train_fraction"] == group["train_fraction"]]
    several = group["samples"] > 1
    names = [f"{r['fold']}" + (f"/s{r['sample']}" if several else "") for r in rows]
    fig, axes = plt.subplots(1, len(keys), figsize=(max(4.0, 0.45 * len(rows) + 1.5) * len(keys), 3.6),
                             squeeze=False, layout="constrained")  # narrow panels: no label overlap
    for ax, key in zip(axes[0], keys, strict=True):
        vals = [100 * r[key] for r in rows]
        mean, std = 100 * group["mean"][key], group["std"][key]
        ax.bar(range(len(vals)), vals, color="#4c72b0")
        ax.axhline(mean, color="#c44e52", linestyle="--", label=f"mean {mean:.2f}")
        if std is not None:
            ax.axhspan(mean - 100 * std, mean + 100 * std, color="#c44e52", alpha=0.12,
                       label=f"± std {100 * std:.2f}")
        ax.set_xticks(range(len(vals)), names, rotation=90 if several else 0)
        ax.set_xlabel("fold" + ("/sample" if several else ""))
        ax.set_ylabel(f"{key_title(key)} (%)")
        ax.set_ylim(0, 100)
        ax.legend(loc="lower right", fontsize=8)
    frac = f"{100 * group['train_fraction']:g}% train"
    fig.suptitle(f"{summary['metric']}: {group['results']} results, {frac}")
    _save(fig, path)
    plt.close(fig)


def plot_reduction(summary: dict, path: str | Path, key: str | None = None) -> None:
    """Metric vs training fraction with the spread over repeated samples (needs ≥ 2 fractions)."""
    key = key or PRIMARY_KEY[summary["metric"]]
    _check_keys(summary, [key])
    groups = summary["groups"]
    if len(groups) < 2:
        fr = ", ".join(f"{g['train_fraction']:g}" for g in groups)
        raise UserError(
            f"--reduction-plot needs results at two or more training fractions (found {fr}); "
            "eval reads train_fraction from the kfold manifest, or pass `ptune eval --train-fraction`"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs = [100 * g["train_fraction"] for g in groups]
    means = [100 * g["mean"][key] for g in groups]
    errs = []
    for g in groups:
        spread = g["std_between_samples"][key] if g["samples"] > 1 else g["std"][key]
        errs.append(0.0 if spread is None else 100 * spread)
        for ps in g["per_sample"]:
            ax.plot(100 * g["train_fraction"], 100 * ps["mean"][key], "o", color="#555555",
                    alpha=0.7, markersize=4, zorder=3)
    ax.errorbar(xs, means, yerr=errs, color="#4c72b0", marker="s", capsize=4,
                label="mean ± std between samples")
    # the fold-level spread (every result at that fraction) shows how unstable small samples are
    spread_all = [100 * (g["std"][key] or 0.0) for g in groups]
    ax.fill_between(xs, [m - s for m, s in zip(means, spread_all, strict=True)],
                    [m + s for m, s in zip(means, spread_all, strict=True)],
                    color="#4c72b0", alpha=0.12, label="± std over all results")
    ax.set_xscale("log")
    ax.minorticks_off()  # only the measured fractions as ticks
    ax.set_xticks(xs, [f"{x:g}%" for x in xs])
    ax.set_xlabel("training data (% of each fold's train split)")
    ax.set_ylabel(f"{key_title(key)} (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.plot([], [], "o", color="#555555", alpha=0.7, markersize=4, label="one sample (mean over folds)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{summary['metric']}: data reduction")
    _save(fig, path)
    plt.close(fig)
