"""One table and plot of the results, used by `make assistant-demo` (pipelines/assistant-demo.mk).

    python pipelines/assistant_demo_table.py RESULTS_DIR [--shots 5]

Reads RESULTS_DIR/sentiment/{before,after}.json (+ .pred.jsonl) and RESULTS_DIR/assistant/
{p-tuned,zero-shot,N-shot}.json (`ptune eval -o` files) and the intent/slot run's log.jsonl;
writes RESULTS_DIR/results.{md,json} and RESULTS_DIR/plots/assistant.png. Retention is
byte-identity of the sentiment predictions before and after intent/slot was added.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptune_cli.evaluate.metrics import headline
from ptune_cli.evaluate.report import pct
from ptune_cli.io import atomic_output

INTENT_SLOT_KEYS = ("intent.accuracy", "slot.f1", "exact_match")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def train_minutes(run: Path) -> float:
    """Seconds spent in optimizer steps (log.jsonl's step_s), in minutes."""
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    return sum(s.get("step_s", 0.0) for s in steps) / 60


def collect(d: Path, shots: int) -> dict:
    rows = []
    for setting, name in (("p-tuned", "p-tuned"), ("zero-shot", "zero-shot"), (f"{shots}-shot", f"{shots}-shot")):
        res = load(d / "assistant" / f"{name}.json")
        h = headline(res)
        rows.append({"setting": setting, "n": res.get("n"), **{k: h[k] for k in INTENT_SLOT_KEYS}})
    before, after = (load(d / "sentiment" / f"{w}.json") for w in ("before", "after"))
    same = (d / "sentiment" / "before.pred.jsonl").read_bytes() == (d / "sentiment" / "after.pred.jsonl").read_bytes()
    return {
        "intent_slot": rows,
        "sentiment": {"before": before["accuracy"], "after": after["accuracy"], "predictions_identical": same},
        "train_minutes": {"sentiment": round(train_minutes(d / "sentiment" / "run"), 2),
                          "intent_slot": round(train_minutes(d / "assistant" / "run"), 2)},
    }


def markdown(r: dict) -> str:
    lines = ["| intent/slot (held-out sample) | records | intent accuracy (%) | slot F1 (%) | exact match (%) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in r["intent_slot"]:
        lines.append(f"| {row['setting']} | {row['n']} | " + " | ".join(pct(row[k]) for k in INTENT_SLOT_KEYS) + " |")
    s, t = r["sentiment"], r["train_minutes"]
    lines += ["", "| sentiment (held-out demo sample) | accuracy (%) |", "| --- | ---: |",
              f"| p-tuned alone | {pct(s['before'])} |", f"| after intent/slot was added | {pct(s['after'])} |", "",
              f"retention: sentiment predictions {'byte-identical' if s['predictions_identical'] else 'CHANGED'} "
              f"after adding intent/slot; training: sentiment {t['sentiment']:.1f} min, intent/slot {t['intent_slot']:.1f} min "
              "(optimizer steps)"]
    return "\n".join(lines) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(r["intent_slot"])
    for i, row in enumerate(r["intent_slot"]):
        xs = [k + i * width for k in range(len(INTENT_SLOT_KEYS))]
        a.bar(xs, [100 * row[k] for k in INTENT_SLOT_KEYS], width, label=row["setting"])
    a.set_xticks([k + 0.4 - width / 2 for k in range(len(INTENT_SLOT_KEYS))], ["intent accuracy", "slot F1", "exact match"])
    a.set_ylabel("%")
    a.set_ylim(0, 100)
    a.legend()
    a.set_title("intent/slot, held-out sample")
    s = r["sentiment"]
    b.bar(["alone", "+ intent/slot"], [100 * s["before"], 100 * s["after"]], color=["tab:blue", "tab:green"])
    b.set_ylim(0, 100)
    b.set_title("sentiment retained")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--shots", type=int, default=5)
    a = ap.parse_args(argv)
    r = collect(a.results_dir, a.shots)
    with atomic_output(a.results_dir / "results.json") as f:
        f.write(json.dumps(r, indent=2) + "\n")
    with atomic_output(a.results_dir / "results.md") as f:
        f.write(markdown(r))
    plot(r, a.results_dir / "plots" / "assistant.png")


if __name__ == "__main__":
    main()
