"""Three ways to get Swedish prompts, on the same folds (used by `make crosslingual`, defined in
pipelines/assistant-demo.mk):

  sv       trained on Swedish records (the translated / written-in-Swedish training data)
  en→sv    trained on the English records only, applied to Swedish (the published study's
           "skip the translation" future work: labels are class ids, only the text is English)
  en+sv    trained on both

    python pipelines/crosslingual.py sentiment -o DIR [--model M] [--steps N] [--folds K]
    python pipelines/crosslingual.py intent-slot -o DIR --en-train EN.jsonl [--steps N]

sentiment: the demo sample (pipelines/demo/sentiment_{en,sv}.jsonl, parallel line by line), k
folds over line numbers shared by both languages, the demo's Swedish recipe, Swedish test folds.
intent-slot: Swedish test = the held-out sample pipelines/assistant/intent_slot_sv.jsonl; Swedish
training = its separate part pipelines/assistant/dev/intent_slot_sv.jsonl; English training =
--en-train (NLU-Evaluation-Data records); the prefix recipe with --init labels.
Every number comes from `ptune train` / `ptune eval` / `ptune report`; the table from
pipelines/compare.py. Writes DIR/results.{md,json} and DIR/plots/comparison.png.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
# English label → the Swedish class id the Swedish template answers with
SV_SENTIMENT = {"positive": "positiv", "negative": "negativ", "neutral": "neutral"}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return str(path)


def ptune(*args: str) -> None:
    cmd = [str(BIN / "ptune"), *args]
    print("crosslingual: " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def sentiment_folds(k: int, seed: int) -> list[tuple[dict, list[dict]]]:
    """Per fold: ({way: training records}, Swedish test records)."""
    en, sv = read(HERE / "demo" / "sentiment_en.jsonl"), read(HERE / "demo" / "sentiment_sv.jsonl")
    assert len(en) == len(sv), "the demo sample's two sides must be parallel"
    en = [{**r, "label": SV_SENTIMENT[r["label"]]} for r in en]  # class ids in the template's language
    idx = list(range(len(sv)))
    random.Random(seed).shuffle(idx)
    out = []
    for f in range(k):
        test = set(idx[f::k])
        train = [i for i in idx if i not in test]
        ways = {"sv": [sv[i] for i in train], "en→sv": [en[i] for i in train],
                "en+sv": [en[i] for i in train] + [sv[i] for i in train]}
        out.append((ways, [sv[i] for i in sorted(test)]))
    return out


def intent_slot_folds(en_train: Path, n_en: int, seed: int) -> list[tuple[dict, list[dict]]]:
    """One split: Swedish training part, n_en English records, the held-out Swedish sample."""
    sv_train = read(HERE / "assistant" / "dev" / "intent_slot_sv.jsonl")
    en = read(en_train)
    random.Random(seed).shuffle(en)
    en = en[:n_en]
    both = en + sv_train
    random.Random(seed).shuffle(both)
    return [({"sv": sv_train, "en→sv": en, "en+sv": both}, read(HERE / "assistant" / "intent_slot_sv.jsonl"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", choices=["sentiment", "intent-slot"])
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--model", default="packaged:gemma3-270m")
    ap.add_argument("--steps", type=int, default=None, help="sentiment: 100 (the demo's); intent-slot: 150")
    ap.add_argument("--folds", type=int, default=3, help="sentiment only (intent-slot: one split)")
    ap.add_argument("--en-train", type=Path, help="intent-slot: English training records")
    ap.add_argument("--n-en", type=int, default=1200, help="intent-slot: English records used")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    out = Path(a.out)
    if a.task == "sentiment":
        steps = a.steps or 100
        folds = sentiment_folds(a.folds, a.seed)
        train_flags = ["--template", str(HERE.parent / "templates" / "sv-sentiment-demo.json"), "--encoder", "lstm",
                       "--lr", "3e-3", "--init", "text:Är nyheten positiv, negativ eller neutral?"]
        eval_flags = ["--decode", "rank", "--labels", "positiv,negativ,neutral", "--normalize", "sv-sentiment"]
        key = "accuracy"
    else:
        if a.en_train is None:
            ap.error("intent-slot needs --en-train (English NLU-Evaluation-Data records)")
        steps = a.steps or 150
        folds = intent_slot_folds(a.en_train, a.n_en, a.seed)
        train_flags = ["--template", str(HERE.parent / "templates" / "intent-slot-prefix-gemma.json"), "--encoder", "prefix",
                       "--lr", "1e-2", "--init", "labels"]
        eval_flags = ["--metric", "intent-slot"]
        key = "intent.accuracy"
    entries = []
    for way in ("sv", "en→sv", "en+sv"):
        tag = way.replace("→", "-to-").replace("+", "-and-")
        scores = []
        for f, (ways, test) in enumerate(folds):
            d = out / tag / f"fold_{f}"
            train, test_file = write(d / "train.jsonl", ways[way]), write(out / "data" / f"test_{f}.jsonl", test)
            if not (d / "run" / "prompt_table.json").exists():
                ptune("train", "--train", train, "-o", str(d / "run"), "--model", a.model, "--max-steps", str(steps),
                      "--batch-size", "8", "--seed", str(a.seed), *train_flags)
            if not (d / "eval.json").exists():
                ptune("eval", "--run", str(d / "run"), "--data", test_file, "-o", str(d / "eval.json"),
                      "--fold", str(f), *eval_flags)
            scores.append(str(d / "eval.json"))
        ptune("report", *scores, "-o", str(out / tag / "summary.json"), "--markdown", str(out / tag / "summary.md"))
        entries.append(f"{way}={out / tag / 'summary.json'}")
    subprocess.run([sys.executable, str(HERE / "compare.py"), "-o", str(out / "results"), "--key", key,
                    "--plot", str(out / "plots" / "comparison.png"), *entries], check=True)
    print((out / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
