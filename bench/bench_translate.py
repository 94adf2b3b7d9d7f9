"""Bench `ptune translate`: records/s vs a naive per-record `generate` loop, CTranslate2 vs HF.

One run, one model, the same records: a random opus-mt-sized Marian (d512, 6+6 layers, 8
heads, FFN 2048, 58,101-entry output layer) translates real utterances from
../shared/data/assistant. A random model loops instead of ending (final_logits_bias[eos] = 1.0
is not enough at this vocabulary size), so every variant runs each sentence to the same
per-sentence cap (2 x input tokens + 10): about 2.5x a real translation's length, identical
work for all variants. Each variant runs in its own subprocess so that peak memory
(ru_maxrss) is its own; model loading is excluded from records/s (reported apart).

    .venv/bin/python bench/bench_translate.py                # 100 records, 1 thread, ~3-4 min
    .venv/bin/python bench/bench_translate.py --records 300  # bigger

Variants: naive (tokenize → generate → decode, one record at a time, as the transformers
translation pipeline did), ptune-hf (the translate core: dedup, length-sorted batches under a
token budget, flags), ptune-ct2 (the same core on the CTranslate2 engine, int8), and for
information ptune-hf with intent/slot projection (more strings per record).
Goals from the issue: ptune-hf >= 4x naive, ptune-ct2 >= 3x ptune-hf.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("PTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
VARIANTS = ("naive", "ptune-hf", "ptune-ct2", "ptune-hf-slots")


def pick_records(n: int) -> list[dict]:
    """Every k-th assistant test record (spread over intents and lengths)."""
    lines = (DATA / "assistant" / "assistant_test.jsonl").read_text(encoding="utf-8").splitlines()
    step = max(1, len(lines) // n)
    return [json.loads(line) for line in lines[::step][:n]]


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's,
    which Linux carries across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(variant: str, model: str, data: Path, cache_dir: Path, threads: int) -> dict:
    """Run one variant; returns timings (load excluded), peak RSS and the outputs."""
    import torch

    torch.set_num_threads(threads)
    records = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    if variant == "naive":
        return naive(model, records)
    from ptune_cli.translate import TranslateConfig, run_translate
    from ptune_cli.translate.engines import load_engine

    cfg = TranslateConfig(
        model=model, engine="ctranslate2" if variant == "ptune-ct2" else "transformers",
        label_format="intent-slot" if variant == "ptune-hf-slots" else "keep",
        use_cache=False, cache=str(cache_dir / "translate.sqlite"), threads=threads,
    )
    t0 = time.perf_counter()
    engine = load_engine(cfg)
    load = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp()) / "out.jsonl"
    t0 = time.perf_counter()
    report = run_translate(data, out, cfg, engine=engine)
    seconds = time.perf_counter() - t0
    outputs = [json.loads(line)["utterance"] for line in out.read_text(encoding="utf-8").splitlines()]
    return {"load_s": load, "seconds": seconds, "strings": report["strings"], "outputs": outputs,
            "flags": report["flags"], "peak_mb": peak_mb()}


def naive(model: str, records: list[dict]) -> dict:
    """The per-record loop users write (and the translation pipeline did)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from ptune_cli.translate.quality import length_cap

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model)
    m = AutoModelForSeq2SeqLM.from_pretrained(model).eval()
    load = time.perf_counter() - t0
    import torch

    outputs = []
    m.generation_config.forced_eos_token_id = None  # as ptune does; outputs comparable token for token
    t0 = time.perf_counter()
    with torch.inference_mode():
        for r in records:
            enc = tok(r["utterance"], return_tensors="pt")
            cap = length_cap(enc["input_ids"].shape[1], 2.0, 256)  # the same cap as ptune's
            gen = m.generate(**enc, max_new_tokens=cap, num_beams=1, do_sample=False)
            outputs.append(tok.decode(gen[0], skip_special_tokens=True).strip())
    seconds = time.perf_counter() - t0
    return {"load_s": load, "seconds": seconds, "strings": len(records), "outputs": outputs,
            "flags": {}, "peak_mb": peak_mb()}


def build(workdir: Path) -> tuple[Path, float]:
    from tests.tiny_marian import build_tiny_marian

    lines = [r["utterance"] for r in pick_records(2000)]
    model = build_tiny_marian(workdir / "marian-512", d_model=512, layers=6, heads=8, ffn=2048,
                              vocab_size=4000, eos_bias=1.0, init_std=0.02, corpus=lines,
                              pad_vocab_to=58101)
    from ptune_cli.translate import TranslateConfig
    from ptune_cli.translate.ct2 import converted_dir

    t0 = time.perf_counter()  # the one-time conversion, cached for later runs
    converted_dir(TranslateConfig(model=str(model), cache=str(workdir / "cache" / "t.sqlite")), "int8")
    return model, time.perf_counter() - t0


def run_variant(variant: str, model: Path, data: Path, workdir: Path, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--model", str(model), "--data", str(data),
           "--cache-dir", str(workdir / "cache"), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    if proc.returncode != 0:
        sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (1: steady numbers on a shared machine)")
    ap.add_argument("--worker", choices=VARIANTS)
    ap.add_argument("--model")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--cache-dir", type=Path)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.data, args.cache_dir, args.threads)))
        return
    if not (DATA / "assistant" / "assistant_test.jsonl").is_file():
        print(f"skip: real data not found at {DATA}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-translate-") as tmp:
        workdir = Path(tmp)
        data = workdir / "records.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in pick_records(args.records)), encoding="utf-8")
        t0 = time.perf_counter()
        model, convert_s = build(workdir)
        print(f"built opus-mt-sized random Marian in {time.perf_counter() - t0:.1f}s "
              f"(CTranslate2 int8 conversion {convert_s:.1f}s, once, cached); {args.records} records, {args.threads} threads")
        results = {v: run_variant(v, model, data, workdir, args.threads) for v in VARIANTS}
    report(results, args.records)


def report(results: dict, n: int) -> None:
    from rich.console import Console
    from rich.table import Table

    base = results["naive"]
    table = Table(title=f"ptune translate bench: {n} assistant utterances, random opus-mt-sized Marian", title_justify="left")
    for col in ("variant", "strings", "load s", "run s", "records/s", "x naive", "x ptune-hf", "peak MB", "words", "= naive"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for v, r in results.items():
        rps = n / r["seconds"]
        same = sum(a == b for a, b in zip(r["outputs"], base["outputs"], strict=True)) / n
        words = sum(len(o.split()) for o in r["outputs"]) / n
        table.add_row(v, str(r["strings"]), f"{r['load_s']:.1f}", f"{r['seconds']:.1f}", f"{rps:.1f}",
                      f"{base['seconds'] / r['seconds']:.1f}x", f"{results['ptune-hf']['seconds'] / r['seconds']:.1f}x",
                      f"{r['peak_mb']:.0f}", f"{words:.1f}", f"{same:.0%}")
    Console(width=130).print(table)
    hf = base["seconds"] / results["ptune-hf"]["seconds"]
    ct2 = results["ptune-hf"]["seconds"] / results["ptune-ct2"]["seconds"]
    print(f"goal ptune-hf >= 4x naive: {hf:.1f}x ({'met' if hf >= 4 else 'NOT met'}); "
          f"goal ptune-ct2 >= 3x ptune-hf: {ct2:.1f}x ({'met' if ct2 >= 3 else 'NOT met'})")
    print("run s: translation only (load apart); peak MB: the run's own peak RSS; words: mean output words;\n"
          "= naive: outputs identical to the per-record loop (greedy fp32; CT2 is int8, so it differs).")


if __name__ == "__main__":
    main()
