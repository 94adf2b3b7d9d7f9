"""Structured decoding vs free generation on one trained intent/slot run: accuracy and speed.

Same model, same prompt table, same records, measured in one process and interleaved chunk by
chunk (other jobs on a shared machine slow both alike); speed is records per CPU second of
this process (``time.process_time``), so a loaded machine changes it less than wall time.
Free generation stops at EOS or the longest gold answer + 8 tokens (eval's default).

    .venv/bin/python bench/bench_structured.py --run runs/assistant --data test.jsonl
    .venv/bin/python bench/bench_structured.py --run runs/assistant --data test.jsonl --n 100 --threads 1

Without --run it says so and exits 0 (``make bench`` has no trained run to give it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained intent/slot run (prompt_table.json)")
    ap.add_argument("--data", help="held-out intent/slot records (JSONL with labels)")
    ap.add_argument("--n", type=int, default=0, help="first N records (0: all)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if not a.run or not a.data:
        print("bench_structured: needs --run RUN_DIR --data TEST.jsonl (a trained intent/slot run); skipped")
        return 0
    import torch

    from ptune_cli.evaluate.config import EvalConfig
    from ptune_cli.evaluate.metrics import headline, score_intent_slot
    from ptune_cli.inference.job import (
        TestData,
        build_job,
        decode,
        load_model,
        load_task,
        stored_labels,
        task_template,
    )
    from ptune_cli.io import iter_records
    from ptune_cli.labels import parse_intent_slot

    if a.threads:
        torch.set_num_threads(a.threads)
    numbered = list(iter_records(a.data, {}))
    numbered = numbered[: a.n] if a.n else numbered
    records, golds = [r for _, r in numbered], [r["label"] for _, r in numbered]
    modes = ("structured", "generate")
    cfg = {m: EvalConfig(run=a.run, data=a.data, decode=m, batch_size=a.batch_size) for m in modes}
    tpl, table = task_template(cfg["generate"], TestData(a.data, numbered))
    task = load_task(cfg["generate"], tpl, table, False)
    loaded = load_model(cfg["generate"], task.model)
    preds = {m: [""] * len(records) for m in modes}
    cpu = dict.fromkeys(modes, 0.0)
    for start in range(0, len(records), a.batch_size):  # interleaved: both see the same load
        chunk = list(range(start, min(len(records), start + a.batch_size)))
        for m in modes:
            job = build_job(cfg[m], task, [records[i] for i in chunk], golds, False, loaded=loaded)
            t0 = time.process_time()
            out = decode(job, [True] * len(chunk))
            cpu[m] += time.process_time() - t0
            for k, i in enumerate(chunk):
                preds[m][i] = out[k]["prediction"]
    known = {x.lower() for x in stored_labels(task).get("intents", [])}
    n = len(records)
    print(f"{n} records of {a.data}, run {a.run}, batch {a.batch_size}, threads {torch.get_num_threads()}")
    print(f"{'decode':<11} {'intent acc':>10} {'slot F1':>8} {'exact':>7} {'records/CPU s':>14} {'invented':>9}")
    for m in modes:
        res = score_intent_slot(golds, preds[m])
        h = headline(res)
        other = sum(parse_intent_slot(p).intent not in known for p in preds[m])
        print(f"{m:<11} {100 * h['intent.accuracy']:>9.1f}% {100 * h['slot.f1']:>7.1f}% {100 * h['exact_match']:>6.1f}% "
              f"{n / cpu[m]:>14.2f} {other:>9}")
    print(f"structured / generate records per CPU second: {cpu['generate'] / cpu['structured']:.2f}x "
          "(invented: predictions whose intent the run was not trained on)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
