"""Side-by-side table of several `ptune report` summaries (used by `make demo` and `make baseline`).

    python pipelines/compare.py -o DIR/results --plot DIR/plots/comparison.png \
        "p-tuned=DIR/summary.json" "zero-shot=DIR/zero/summary.json"

Writes RESULTS.md (a markdown table: setting, results, mean ± sample std, per-fold values) and
RESULTS.json ({"metric", "key", "rows": [{"setting", "results", "mean", "std", "per_fold"}]}),
and a PNG bar chart with the std as error bars. Entries whose file is missing are an error, so a
table never silently drops a setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ptune_cli.evaluate.report import pct
from ptune_cli.io import atomic_output


def load_entry(spec: str, key: str | None) -> tuple[dict, str]:
    """``"label=summary.json"`` → a row for the table (first group: the full training data)."""
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        sys.exit(f"error: entry {spec!r} is not LABEL=SUMMARY.json")
    p = Path(path)
    if not p.is_file():
        sys.exit(f"error: {p}: no such summary (run its make target first)")
    summary = json.loads(p.read_text(encoding="utf-8"))
    key = key or summary["keys"][0]
    group = max(summary["groups"], key=lambda g: g["train_fraction"])
    rows = [r for r in summary["rows"] if r["train_fraction"] == group["train_fraction"]]
    return {
        "setting": label,
        "metric": summary["metric"],
        "results": group["results"],
        "mean": group["mean"][key],
        "std": group["std"][key],
        "per_fold": [r[key] for r in sorted(rows, key=lambda r: (r["fold"], str(r["sample"])))],
        "summary": str(p),
    }, key


def to_markdown(rows: list[dict], key: str) -> str:
    lines = [f"| setting | results | {key} (%) mean ± std | per fold (%) |", "| --- | ---: | ---: | --- |"]
    for r in rows:
        std = "" if r["std"] is None else f" ± {pct(r['std'])}"
        lines.append(f"| {r['setting']} | {r['results']} | **{pct(r['mean'])}**{std} | {', '.join(pct(v) for v in r['per_fold'])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(rows), 3.6))
    means = [100 * r["mean"] for r in rows]
    errs = [0 if r["std"] is None else 100 * r["std"] for r in rows]
    ax.bar([r["setting"] for r in rows], means, yerr=errs, capsize=6, color="#4c78a8")
    for i, r in enumerate(rows):
        ax.scatter([i] * len(r["per_fold"]), [100 * v for v in r["per_fold"]], color="black", s=12, zorder=3)
    ax.set_ylabel(f"{key} (%)")
    ax.set_ylim(0, 100)
    ax.set_title("mean ± sample std over folds (dots: folds)")
    fig.tight_layout()
    with atomic_output(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("entries", nargs="+", help="LABEL=SUMMARY.json (from `ptune report -o`)")
    ap.add_argument("-o", "--output", required=True, help="output stem: writes STEM.md and STEM.json")
    ap.add_argument("--key", help="metric key (default: the summary's first key)")
    ap.add_argument("--plot", help="PNG bar chart")
    args = ap.parse_args(argv)
    rows, key = [], args.key
    for spec in args.entries:
        row, key = load_entry(spec, key)
        rows.append(row)
    stem = Path(args.output)
    # atomic writes: an interrupted run leaves no half table
    for suffix, text in ((".md", to_markdown(rows, key)),
                         (".json", json.dumps({"metric": rows[0]["metric"], "key": key, "rows": rows}, indent=2) + "\n")):
        with atomic_output(stem.with_name(stem.name + suffix)) as fh:
            fh.write(text)
    if args.plot:
        plot(rows, key, Path(args.plot))


if __name__ == "__main__":
    main()
