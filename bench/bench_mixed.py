"""Mixed-task batches: throughput of a stream that interleaves 4 tasks of one prompt table vs
the same number of records of one task, same model, in one run (goal: >= 0.9x).

The table holds 4 tasks on the packaged SmolLM2-135M, all with the English intent/slot template
(``templates/en-intent-slot.json``, T = 10) and random-init prompts — 2 input prompts and 2
deep prefixes (a random prompt decodes as long as a trained one at a fixed --max-new-tokens,
so speed is what is measured, not answers). Records are utterances of
../shared/data/assistant/assistant_test.jsonl (synthetic ones when absent). The stream goes
through predict's core (:class:`ptune_cli.inference.router.Router`) in chunks of
--batch-size records, as serve's worker hands its batches over. Streams compared:

* input: records cycling over the 2 input tasks vs records of input task 0 alone;
* prefix: records cycling over the 2 prefix tasks vs prefix task 0 alone;
* all 4: records cycling over all 4 tasks vs input task 0 alone and prefix task 0 alone
  (reference: the time of half the records on each, i.e. the same mix run one task at a time
  with full batches); and the same 4-task stream with each chunk split by task first (how
  predict and serve decoded before tasks could share a batch).

Each stream runs --repeats times (alternating), best time kept. ``--serve`` also starts a real
``ptune serve`` on the table and prints, for a mixed stream, concurrent (8 clients) vs
sequential requests, and mixed vs one-task concurrent streams.

    nice -n 15 .venv/bin/python bench/bench_mixed.py                 # ~2-4 min, 1 torch thread
    nice -n 15 .venv/bin/python bench/bench_mixed.py --serve          # + the serve load test
    nice -n 15 .venv/bin/python bench/bench_mixed.py --records 128 --batch-size 32 --threads 0
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
ASSISTANT = DATA / "assistant" / "assistant_test.jsonl"
TEMPLATE = REPO / "templates" / "en-intent-slot.json"
TASKS = ["input_0", "input_1", "prefix_0", "prefix_1"]


def make_run(run_dir: Path, model: str, seed: int) -> None:
    """A 4-task table: 2 random input prompts, 2 random prefixes (at the scale of the model's
    own embeddings and keys/values)."""
    import torch

    from ptune_cli.models import load_causal_lm, model_id
    from ptune_cli.ptuning.prefix import kv_layout, token_kv
    from ptune_cli.ptuning.table import save_prompt_table
    from ptune_cli.ptuning.template import load_templates, template_from_dict

    lm, tok = load_causal_lm(model)
    emb = lm.get_input_embeddings().weight
    tpl = next(iter(load_templates(TEMPLATE).values()))
    t = tpl.total_virtual_tokens
    kv_scale = token_kv(lm, [], tok("set an alarm for seven am", add_special_tokens=False)["input_ids"]).std()
    n_layers, n_kv, d = kv_layout(lm)
    g = torch.Generator().manual_seed(seed)
    prompts, templates = {}, {}
    for name in TASKS:
        templates[name] = template_from_dict({**tpl.to_dict(), "taskname": name}, name).to_dict()
        if name.startswith("input"):
            prompts[name] = torch.randn(t, emb.shape[1], generator=g) * emb.std()
        else:
            prompts[name] = torch.randn(n_layers, 2, n_kv, t, d, generator=g) * kv_scale
    save_prompt_table(run_dir, prompts, {"base_model": model_id(model), "templates": templates})


def utterances(n: int) -> list[str]:
    if ASSISTANT.is_file():
        recs = [json.loads(line) for line in ASSISTANT.read_text(encoding="utf-8").splitlines() if line.strip()]
        texts = [r["utterance"] for r in recs]
    else:
        texts = ["wake me up at seven am tomorrow", "what is the weather like in stockholm today",
                 "make me a coffee please", "turn off the lights in the kitchen", "play some jazz music"]
    return [texts[i % len(texts)] for i in range(n)]


def stream(texts: list[str], tasks: list[str]) -> list[tuple[str, dict]]:
    """Record i of task ``tasks[i % len(tasks)]``: the tasks interleaved record by record."""
    return [(tasks[i % len(tasks)], {"taskname": tasks[i % len(tasks)], "utterance": u}) for i, u in enumerate(texts)]


def timed(router, items, chunk: int, grouped: bool = False) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) to predict ``items`` in chunks of ``chunk`` (serve's
    batches); ``grouped``: each chunk split by task first, one call per task — how batches were
    decoded before tasks mixed. With one torch thread the CPU time is the work done, whatever
    else loads the machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(items), chunk):
        part = items[i : i + chunk]
        if grouped:
            for name in dict.fromkeys(n for n, _ in part):
                router.predict([x for x in part if x[0] == name])
        else:
            router.predict(part)
    return time.perf_counter() - t0, time.process_time() - c0


def in_process(args, run_dir: Path) -> None:
    import torch

    from ptune_cli.inference.predict import PredictConfig
    from ptune_cli.inference.router import Router
    from ptune_cli.ptuning.table import load_prompt_table

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = PredictConfig(run=str(run_dir), data="-", batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                        stop_at_newline=False)
    router = Router(cfg, load_prompt_table(run_dir))
    texts = utterances(args.records)
    streams = {
        "input_0 alone": stream(texts, ["input_0"]),
        "prefix_0 alone": stream(texts, ["prefix_0"]),
        "input_0+input_1 mixed": stream(texts, ["input_0", "input_1"]),
        "prefix_0+prefix_1 mixed": stream(texts, ["prefix_0", "prefix_1"]),
        "all 4 mixed": stream(texts, TASKS),
        "all 4 grouped (before)": stream(texts, TASKS),
    }
    timed(router, streams["all 4 mixed"][: args.batch_size], args.batch_size)  # warm-up
    best = {k: float("inf") for k in streams}
    cpu = {k: float("inf") for k in streams}
    for _ in range(args.repeats):
        for k, items in streams.items():
            wall, used = timed(router, items, args.batch_size, grouped="grouped" in k)
            best[k], cpu[k] = min(best[k], wall), min(cpu[k], used)
    print(f"mixed-task batches: {args.model}, 4-task random-init table (2 input, 2 prefix, T=10), "
          f"{args.records} records per stream, chunks of {args.batch_size}, {args.max_new_tokens} new tokens, "
          f"best of {args.repeats}, {torch.get_num_threads()} torch thread(s)")
    for k, s in best.items():
        print(f"  {k:<26} {s:8.2f} s wall {args.records / s:7.2f} records/s   {cpu[k]:8.2f} s CPU "
              f"{args.records / cpu[k]:7.2f} records/CPU-s")
    for name, t in (("wall", best), ("CPU", cpu)):
        one_mix = (t["input_0 alone"] + t["prefix_0 alone"]) / 2  # half the records on each, full batches
        print(f"[{name}] throughput ratio input 2-task mixed / one task:  {t['input_0 alone'] / t['input_0+input_1 mixed']:.2f}x")
        print(f"[{name}] throughput ratio prefix 2-task mixed / one task: {t['prefix_0 alone'] / t['prefix_0+prefix_1 mixed']:.2f}x")
        print(f"[{name}] throughput ratio 4-task mixed / one task at a time (same records): "
              f"{one_mix / t['all 4 mixed']:.2f}x   (goal >= 0.9x)")
        print(f"[{name}] throughput ratio 4-task grouped by task (before) / one task at a time: "
              f"{one_mix / t['all 4 grouped (before)']:.2f}x")


def through_serve(args, run_dir: Path) -> None:
    from bench.bench_serve import free_port, report, run_clients, start_server, wait_healthy

    ns = argparse.Namespace(max_batch_size=args.batch_size, max_wait_ms=5.0, max_new_tokens=args.max_new_tokens,
                            threads=args.threads)
    texts = utterances(64)
    mixed = [rec for _, rec in stream(texts, TASKS)]
    one = [rec for _, rec in stream(texts, ["input_0"])]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(ns, run_dir, port)
    try:
        wait_healthy(url, proc)
        run_clients(url, mixed, 1, 4, time.time() + 60)  # warm-up
        deadline = time.time() + args.max_seconds
        seq = run_clients(url, mixed, 1, args.sequential, deadline)
        conc = run_clients(url, mixed, 8, args.requests, deadline)
        conc_one = run_clients(url, one, 8, args.requests, deadline)
    finally:
        proc.terminate()
        proc.wait(60)
    print(f"ptune serve, same table: --max-batch-size {args.batch_size} --max-wait-ms 5, 8 clients, "
          f"{args.threads or 'default'} torch thread(s)")
    print(f"{'':<34} {'reqs':>5} {'errors':>6} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>8}")
    s = report("mixed, sequential (1 client)", seq)
    c = report(f"mixed, concurrent (8 x {args.requests})", conc)
    c1 = report(f"input_0 alone, concurrent (8 x {args.requests})", conc_one)
    print(f"serve mixed concurrent / sequential: {c / s if s else float('nan'):.2f}x")
    print(f"serve mixed / one-task (concurrent): {c / c1 if c1 else float('nan'):.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="packaged:smollm2-135m")
    ap.add_argument("--records", type=int, default=64, help="records per stream")
    ap.add_argument("--batch-size", type=int, default=16, help="records per chunk (serve: --max-batch-size)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--serve", action="store_true", help="also the load test through ptune serve")
    ap.add_argument("--requests", type=int, default=6, help="serve: requests per concurrent client")
    ap.add_argument("--sequential", type=int, default=12, help="serve: requests of the sequential client")
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptune-bench-mixed-") as tmp:
        run_dir = Path(tmp) / "run"
        make_run(run_dir, args.model, args.seed)
        in_process(args, run_dir)
        if args.serve:
            through_serve(args, run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
