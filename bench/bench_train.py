"""Time per training step and peak memory: `ptune train` vs PEFT P-tuning, same model and data.

Both sides p-tune the real SmolLM2-135M (the packaged default, ``models.load_causal_lm(None)``)
on the same Financial PhraseBank records from ../shared/data, batch size 8, the same number of
steps, 10 virtual tokens, an MLP prompt encoder (PEFT ``PromptEncoderConfig`` with MLP
reparameterisation; ptune ``--encoder mlp``, plus its default ``lstm``), answer-only loss,
AdamW. Each side runs in its own subprocess so peak RSS is its own. The first steps are warm-up
and not timed; the median step time is reported (robust to other jobs' bursts).

    .venv/bin/python bench/bench_train.py              # ~2-3 min on 2 CPU cores
    .venv/bin/python bench/bench_train.py --steps 30 --records 400
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
FPB = DATA / "financial_phrasebank" / "fpb_allagree_sentiment.jsonl"
TEMPLATE = REPO / "templates" / "en-sentiment.json"


class RssPeak:
    """Samples this process's resident memory every few ms; ``peak`` since the last reset."""

    def __init__(self):
        self.peak = 0
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def reset(self):
        self.peak = self.now()


def worker_ptune(args, records_path: str, encoder: str) -> dict:
    from ptune_cli.training import TrainConfig, run_train

    rss = RssPeak()
    base = {}

    def on_event(kind, data):
        if kind == "start":
            base["rss"] = RssPeak.now()
            rss.reset()

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(train=records_path, output=out + "/run", template=str(TEMPLATE), encoder=encoder,
                          lr=3e-3, batch_size=args.batch_size, max_steps=args.steps, seed=0, save_every=10**6)
        run_train(cfg, on_event=on_event)
        log = [json.loads(x) for x in Path(out, "run", "log.jsonl").read_text().splitlines()]
    timed = sorted(r["step_s"] for r in log[args.warmup:])
    return {
        "step_s": timed[len(timed) // 2],
        "peak_rss": rss.peak, "train_rss": rss.peak - base["rss"],
        "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"],
    }


def worker_peft(args, records_path: str) -> dict:
    import torch
    from peft import PromptEncoderConfig, get_peft_model

    from ptune_cli.models import load_causal_lm

    rss = RssPeak()
    torch.manual_seed(0)
    model, tok = load_causal_lm(None)
    recs = [json.loads(x) for x in Path(records_path).read_text().splitlines()]
    examples = []
    for r in recs:  # same text as the ptune template: " {sentence}:{label}" + EOS, loss on label+EOS
        p = tok(" " + r["sentence"] + ":", add_special_tokens=False)["input_ids"]
        a = tok(r["label"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        examples.append((p + a, [-100] * len(p) + a))
    cfg = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=10, encoder_reparameterization_type="MLP",
                              encoder_hidden_size=model.config.hidden_size)
    pm = get_peft_model(model, cfg)
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.01)
    rng = random.Random(0)
    order = list(range(len(examples)))
    rng.shuffle(order)
    base = RssPeak.now()
    rss.reset()
    times, losses = [], []
    for step in range(args.steps):
        idx = [order[(step * args.batch_size + j) % len(order)] for j in range(args.batch_size)]
        width = max(len(examples[i][0]) for i in idx)
        ids = torch.full((len(idx), width), tok.pad_token_id)
        labels = torch.full((len(idx), width), -100)
        attn = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            x, y = examples[i]
            ids[r, : len(x)], labels[r, : len(y)], attn[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        t0 = time.perf_counter()
        loss = pm(input_ids=ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in pm.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    timed = sorted(times[args.warmup:])
    return {"step_s": timed[len(timed) // 2], "peak_rss": rss.peak, "train_rss": rss.peak - base,
            "loss_first": losses[0], "loss_last": losses[-1]}


def run_side(side: str, args, records_path: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--records-file", records_path,
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--warmup", str(args.warmup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{side} worker failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--worker", choices=["ptune-mlp", "ptune-lstm", "peft"])
    ap.add_argument("--records-file")
    args = ap.parse_args()
    if args.worker:
        res = worker_peft(args, args.records_file) if args.worker == "peft" else worker_ptune(args, args.records_file, args.worker.split("-")[1])
        print(json.dumps(res))
        return
    if not FPB.is_file():
        print(f"bench_train: skipped ({FPB} not found)")
        return
    recs = [json.loads(x) for x in FPB.read_text(encoding="utf-8").splitlines() if x.strip()]
    random.Random(0).shuffle(recs)
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "records.jsonl")
        path.write_text("".join(json.dumps(r) + "\n" for r in recs[: args.records]), encoding="utf-8")
        load0 = os.getloadavg()[0]
        results = {side: run_side(side, args, str(path)) for side in ("peft", "ptune-mlp", "ptune-lstm")}
        load1 = os.getloadavg()[0]
    peft = results["peft"]
    table = Table(title=f"train step: SmolLM2-135M, Financial PhraseBank ({args.records} records), batch {args.batch_size}, "
                  f"{args.steps} steps ({args.warmup} warm-up), 10 virtual tokens, {os.cpu_count()} CPUs")
    for col in ("", "median s/step", "× PEFT time", "peak RSS MB", "train RSS MB", "× PEFT train mem", "loss first→last"):
        table.add_column(col, justify="right")
    names = {"peft": "PEFT P-tuning (MLP)", "ptune-mlp": "ptune --encoder mlp", "ptune-lstm": "ptune --encoder lstm"}
    for side, r in results.items():
        table.add_row(names[side], f"{r['step_s']:.3f}", f"{r['step_s'] / peft['step_s']:.2f}", f"{r['peak_rss'] / 2**20:.0f}",
                      f"{r['train_rss'] / 2**20:.0f}", f"{r['train_rss'] / max(peft['train_rss'], 1):.2f}",
                      f"{r['loss_first']:.2f}→{r['loss_last']:.2f}")
    Console().print(table)
    print("goal: ptune ≤ 0.75× PEFT time/step, no more memory")
    if max(load0, load1) > (os.cpu_count() or 1):
        print(f"warning: load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} CPUs: other jobs share the machine, times are inflated")


if __name__ == "__main__":
    main()
