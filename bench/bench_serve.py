"""Load test of ``ptune serve`` (run by ``make bench``): C concurrent clients × N requests
against sequential requests, on the same server process, in one run.

The server is a real ``ptune serve`` subprocess on 127.0.0.1 (loopback only) serving the
packaged SmolLM2-135M with a random-init prompt table for the English intent/slot template
(``templates/en-intent-slot.json``; a random table decodes as long as a trained one at the
same --max-new-tokens, so the speed is what is measured, not the answers). Each request is
one utterance of ../shared/data/assistant/assistant_test.jsonl (skipped cleanly when absent).
Sequential: one client, one request at a time — each decoded alone. Concurrent: C clients
— the server batches their records dynamically (--max-batch-size, --max-wait-ms). Printed:
errors, p50/p99 latency, requests/s, and the throughput ratio concurrent / sequential.

    .venv/bin/python bench/bench_serve.py                      # ~1-2 min on 2 shared CPU cores, 1 torch thread
    .venv/bin/python bench/bench_serve.py --threads 0          # torch's default threads
    .venv/bin/python bench/bench_serve.py --clients 16 --requests 8 --sequential 32
    .venv/bin/python bench/bench_serve.py --max-new-tokens 24 --max-batch-size 32

Bounded: at most --clients × --requests + --sequential requests, and clients stop sending
after --max-seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("PTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
ASSISTANT = DATA / "assistant" / "assistant_test.jsonl"
TEMPLATE = REPO / "templates" / "en-intent-slot.json"


def make_run(run_dir: Path, model: str, seed: int) -> None:
    """A random-init prompt table for the template's task on ``model``'s hidden size."""
    import torch

    from ptune_cli.models import load_causal_lm, model_id
    from ptune_cli.ptuning.table import save_prompt_table
    from ptune_cli.ptuning.template import load_templates

    lm, _ = load_causal_lm(model)
    hidden = lm.get_input_embeddings().weight.shape[1]
    tpl = next(iter(load_templates(TEMPLATE).values()))
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randn(tpl.total_virtual_tokens, hidden, generator=g) * lm.get_input_embeddings().weight.std()
    save_prompt_table(run_dir, {tpl.taskname: prompt},
                      {"base_model": model_id(model), "templates": {tpl.taskname: tpl.to_dict()}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, run_dir: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ptune_cli", "serve", "--run", str(run_dir), "--host", "127.0.0.1",
           "--port", str(port), "--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms),
           "--max-new-tokens", str(args.max_new_tokens), "--no-stop-at-newline"]
    env = dict(os.environ)
    if args.threads:
        # one torch thread: on a shared machine spinning OpenMP threads cost more than they give
        env["OMP_NUM_THREADS"] = str(args.threads)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ptune serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("ptune serve did not become healthy")


def run_clients(url: str, records: list[dict], clients: int, per_client: int, deadline: float) -> dict:
    """``clients`` threads, each sending ``per_client`` one-record requests back to back."""
    import httpx

    latencies, errors, lock = [], [], threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(timeout=120) as c:
            for j in range(per_client):
                if time.time() > deadline:
                    return
                rec = records[(k * per_client + j) % len(records)]
                t0 = time.perf_counter()
                try:
                    r = c.post(f"{url}/v1/predict", json={"taskname": rec["taskname"], "utterance": rec["utterance"]})
                    ok = r.status_code == 200 and isinstance(r.json().get("prediction"), str)
                except httpx.HTTPError as e:
                    ok, r = False, e
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if ok else errors).append(dt if ok else repr(r)[:200])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"requests": len(latencies), "errors": errors, "wall": wall, "latencies": sorted(latencies)}


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def report(name: str, res: dict) -> float:
    lat, n = res["latencies"], res["requests"]
    rps = n / res["wall"] if res["wall"] else 0.0
    print(f"{name:<34} {n:>5} {len(res['errors']):>6} {percentile(lat, 0.5) * 1000:>9.0f} "
          f"{percentile(lat, 0.99) * 1000:>9.0f} {rps:>8.2f}")
    for e in res["errors"][:3]:
        print(f"    error: {e}")
    return rps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="packaged:smollm2-135m")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (C)")
    ap.add_argument("--requests", type=int, default=6, help="requests per concurrent client (N)")
    ap.add_argument("--sequential", type=int, default=16, help="requests of the sequential client")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--max-seconds", type=float, default=90, help="clients stop sending after this")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server (0: torch's default)")
    args = ap.parse_args()
    if not ASSISTANT.is_file():
        print(f"skipped: {ASSISTANT} not found")
        return 0
    records = [json.loads(line) for line in ASSISTANT.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="ptune-bench-serve-") as tmp:
        run_dir = Path(tmp) / "run"
        make_run(run_dir, args.model, args.seed)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(args, run_dir, port)
        try:
            wait_healthy(url, proc)
            run_clients(url, records, 1, 2, time.time() + 60)  # warm-up (first-call allocations)
            deadline = time.time() + args.max_seconds
            seq = run_clients(url, records, 1, args.sequential, deadline)
            conc = run_clients(url, records, args.clients, args.requests, deadline)
        finally:
            proc.terminate()
            code = proc.wait(60)
    print(f"ptune serve load test: {args.model}, random-init intent/slot table, {args.max_new_tokens} new tokens, "
          f"--max-batch-size {args.max_batch_size} --max-wait-ms {args.max_wait_ms:g}, loopback, "
          f"{os.cpu_count()} CPUs, {args.threads or 'default'} torch thread(s)")
    print(f"{'':<34} {'reqs':>5} {'errors':>6} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>8}")
    base = report("sequential (1 client)", seq)
    ours = report(f"concurrent ({args.clients} clients x {args.requests})", conc)
    ratio = ours / base if base else float("nan")
    print(f"throughput concurrent / sequential: {ratio:.2f}x   (server exit code after SIGTERM: {code})")
    return 0 if not (seq["errors"] or conc["errors"]) and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
