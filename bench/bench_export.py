"""Exported folder vs ``ptune predict``: the same records, the same greedy answers, how fast.

A run on the packaged SmolLM2-135M (its prompt rows: the embeddings of an instruction, as
``--init text:`` starts training) is exported with ``ptune export``; then, in one process:

* ptune predict — :class:`~ptune_cli.inference.router.Router` (what ``ptune predict`` runs:
  batched KV-cache decoding, shared prefix, ``--batch-size``);
* the exported folder with plain ``transformers``: ``AutoModelForCausalLM.from_pretrained`` and
  ``generate`` one record at a time, prompts from ``ptune_tasks.json`` — what a client without
  a serving engine does;
* the same folder, ``generate`` on left-padded batches of ``--batch-size``.

Records: Financial PhraseBank sentences from ../shared/data when present, else built-in
sentences. Each method's decoding is timed apart from its loading; load times are printed too.

    nice -n 15 .venv/bin/python bench/bench_export.py               # ~2-3 min, 1 torch thread
    nice -n 15 .venv/bin/python bench/bench_export.py --n 96 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("PTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
FPB = DATA / "financial_phrasebank" / "fpb_allagree_sentiment.jsonl"
INIT = "Is the sentence positive, negative or neutral? Answer with one word."
TEMPLATE = "<|VIRTUAL_PROMPT_0|>\nSentence: {sentence}\nAnswer: {label}"
FALLBACK = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "The company cut 30 jobs in Finland.",
            "The annual general meeting will be held on 24 March.", "Sales fell by 10 % in the third quarter.",
            "Net sales increased strongly thanks to new orders."]


def _records(n: int) -> tuple[list[dict], list[dict]]:
    """(records to predict, training records giving the labels and max_new_tokens)."""
    if FPB.is_file():
        rows = [json.loads(x) for x in FPB.read_text(encoding="utf-8").splitlines()[: 2 * n]]
        rows = [{"sentence": r["sentence"], "label": r["label"]} for r in rows if isinstance(r.get("sentence"), str)]
    else:
        rows = [{"sentence": f"{s} ({i})", "label": "neutral"} for i in range(n) for s in FALLBACK][: 2 * n]
    train = rows[n:] or rows[:3]
    return [{"taskname": "sentiment", "sentence": r["sentence"]} for r in rows[:n]], \
        [{"taskname": "sentiment", **r} for r in train]


def _make_run(root: Path, train: list[dict]) -> str:
    import torch

    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.table import save_prompt_table
    from ptune_cli.ptuning.template import TaskTemplate

    model, tok = load_causal_lm("packaged:smollm2-135m")
    ids = tok(INIT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        rows = model.get_input_embeddings()(torch.tensor(ids)).float()
    tpl = TaskTemplate("sentiment", TEMPLATE, len(ids), [len(ids)], "label", "sentence")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    save_prompt_table(root / "run", {"sentiment": rows}, {
        "base_model": "packaged:smollm2-135m", "templates": {"sentiment": tpl.to_dict()},
        "hyperparameters": {"train": str(root / "train.jsonl")}})
    return str(root / "run")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _client_text(tok, new_ids, stops) -> str:
    text = tok.decode(new_ids, skip_special_tokens=True)
    for s in stops:
        text = text.split(s, 1)[0]
    return text.strip()


def _folder_generate(model, tok, task: dict, records: list[dict], batch_size: int) -> list[str]:
    import torch

    prompts = [task["prompt"].format(**{f: r[f] for f in task["input_fields"]}) for r in records]
    out = []
    tok.padding_side = "left"
    with torch.inference_mode():
        for k in range(0, len(prompts), batch_size):
            enc = tok(prompts[k: k + batch_size], return_tensors="pt", padding=True)
            gen = model.generate(**enc, max_new_tokens=task["max_new_tokens"], stop_strings=task["stop"] or None,
                                 tokenizer=tok, pad_token_id=tok.pad_token_id)
            out += [_client_text(tok, row[enc["input_ids"].shape[1]:].tolist(), task["stop"]) for row in gen]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="records (default 64)")
    ap.add_argument("--batch-size", type=int, default=32, help="ptune predict's default")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ptune_cli.inference.export import ExportConfig, run_export
    from ptune_cli.inference.predict import PredictConfig
    from ptune_cli.inference.router import Router
    from ptune_cli.ptuning.table import load_prompt_table

    if args.threads:
        torch.set_num_threads(args.threads)
    records, train = _records(args.n)
    root = Path(tempfile.mkdtemp(prefix="bench-export-"))
    run = _make_run(root, train)
    _, t_export = _timed(lambda: run_export(ExportConfig(run=run, output=str(root / "exported"))))
    cfg = PredictConfig(run=run, data="-", device="cpu", batch_size=args.batch_size)
    router, t_load_ptune = _timed(lambda: Router(cfg, load_prompt_table(run)))
    items = [("sentiment", r) for r in records]
    fields, t_ptune = _timed(lambda: router.predict(items))
    ours = [fields[i]["prediction"] for i in range(len(records))]

    def load_folder():
        return (AutoModelForCausalLM.from_pretrained(root / "exported").eval(),
                AutoTokenizer.from_pretrained(root / "exported"))

    (model, tok), t_load_folder = _timed(load_folder)
    task = json.loads((root / "exported" / "ptune_tasks.json").read_text())["tasks"]["sentiment"]
    one, t_one = _timed(lambda: _folder_generate(model, tok, task, records, 1))
    batched, t_batched = _timed(lambda: _folder_generate(model, tok, task, records, args.batch_size))

    n = len(records)
    print(f"{n} records ({'Financial PhraseBank' if FPB.is_file() else 'built-in sentences'}), SmolLM2-135M, "
          f"torch threads {torch.get_num_threads()}, max_new_tokens {task['max_new_tokens']}, export took {t_export:.1f} s")
    print(f"non-empty predictions: {sum(bool(p) for p in ours)}/{n}, distinct: {len(set(ours))}")
    print(f"{'method':<58} {'load s':>7} {'decode s':>9} {'rec/s':>6} {'vs predict':>10} {'same text':>9}")
    for name, load, t, preds in (
            (f"ptune predict (Router, batch {args.batch_size})", t_load_ptune, t_ptune, ours),
            ("exported folder, transformers generate, 1 record at a time", t_load_folder, t_one, one),
            (f"exported folder, transformers generate, batch {args.batch_size}", t_load_folder, t_batched, batched)):
        same = sum(a == b for a, b in zip(preds, ours, strict=True))
        print(f"{name:<58} {load:>7.1f} {t:>9.1f} {n / t:>6.2f} {t_ptune / t:>9.2f}x {same:>5}/{n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
