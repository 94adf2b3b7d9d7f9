"""Time per training step and peak memory: `ptune train` vs PEFT, same model and data.

Two sections (``--section``): ``ptuning`` — input prompts, ptune mlp/lstm vs PEFT P-tuning —
and ``prefix`` — P-tuning v2 deep prompts, ptune ``--encoder prefix`` (with and without
``--prefix-projection``) vs PEFT ``PrefixTuningConfig`` (``prefix_projection`` the same),
T = 10 at every layer, everything else as below. PEFT's prefix tuning runs on transformers 5.24
without gradient checkpointing only (with it, the decoder layers drop the cache that holds the
prefix and the attention mask no longer matches: "The size of tensor a (5) must match the size
of tensor b (15)"); both sides are benched without it.

Both sides p-tune the real SmolLM2-135M (the packaged default, ``models.load_causal_lm(None)``)
on the same Financial PhraseBank records from ../shared/data, batch size 8, the same number of
steps, 10 virtual tokens, an MLP prompt encoder (PEFT ``PromptEncoderConfig`` with MLP
reparameterisation; ptune ``--encoder mlp``, plus its default ``lstm``), answer-only loss,
AdamW. Time per step: all sides in one subprocess with their steps interleaved (so a shared,
busy machine slows them alike), median after warm-up. Memory: each side in its own subprocess
(ptune through the real ``run_train``), peak RSS and its growth during training.

    .venv/bin/python bench/bench_train.py              # ~2 min on 2 idle CPU cores
    .venv/bin/python bench/bench_train.py --steps 30 --records 400
    .venv/bin/python bench/bench_train.py --section prefix
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
    from ptune_cli.training import Started, TrainConfig, run_train

    rss = RssPeak()
    base = {}

    def on_event(event):
        if isinstance(event, Started):
            base["rss"] = RssPeak.now()
            rss.reset()

    with tempfile.TemporaryDirectory() as out:
        kind, proj = ("prefix", encoder == "prefix-proj") if encoder.startswith("prefix") else (encoder, False)
        cfg = TrainConfig(train=records_path, output=out + "/run", template=str(TEMPLATE), encoder=kind,
                          prefix_projection=proj, lr=3e-3, batch_size=args.batch_size, max_steps=args.steps, seed=0,
                          save_every=10**6)
        run_train(cfg, on_event=on_event)
        log = [json.loads(x) for x in Path(out, "run", "log.jsonl").read_text().splitlines()]
    timed = sorted(r["step_s"] for r in log[args.warmup:])
    return {
        "step_s": timed[len(timed) // 2],
        "peak_rss": rss.peak, "train_rss": rss.peak - base["rss"],
        "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"],
    }


def _peft_config(kind: str, hidden: int):
    """``ptuning``: P-tuning with an MLP encoder; ``prefix`` / ``prefix-proj``: prefix tuning."""
    from peft import PrefixTuningConfig, PromptEncoderConfig

    if kind.startswith("prefix"):
        return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=10, prefix_projection=kind == "prefix-proj",
                                  encoder_hidden_size=hidden)
    return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=10, encoder_reparameterization_type="MLP",
                               encoder_hidden_size=hidden)


class PeftStepper:
    """PEFT P-tuning or prefix tuning as its docs show it: random batches padded to the
    longest, full logits."""

    def __init__(self, model, tok, records: list[dict], batch_size: int, kind: str = "ptuning"):
        import torch
        from peft import get_peft_model

        self.tok, self.batch_size = tok, batch_size
        self.examples = []
        for r in records:  # the ptune template's text: " {sentence}:{label}" + EOS, loss on label+EOS
            p = tok(" " + r["sentence"] + ":", add_special_tokens=False)["input_ids"]
            a = tok(r["label"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            self.examples.append((p + a, [-100] * len(p) + a))
        cfg = _peft_config(kind, model.config.hidden_size)
        # prompt learning wraps the model without changing it, so ptune can share the same one
        self.pm = get_peft_model(model, cfg)
        self.params = [p for p in self.pm.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=3e-3, weight_decay=0.01)
        self.order = list(range(len(self.examples)))
        random.Random(0).shuffle(self.order)

    def step(self, k: int) -> tuple[float, float]:
        import torch

        n = self.batch_size
        idx = [self.order[(k * n + j) % len(self.order)] for j in range(n)]
        width = max(len(self.examples[i][0]) for i in idx)
        ids = torch.full((n, width), self.tok.pad_token_id)
        labels = torch.full((n, width), -100)
        attn = torch.zeros((n, width), dtype=torch.long)
        t0 = time.perf_counter()
        for r, i in enumerate(idx):
            x, y = self.examples[i]
            ids[r, : len(x)], labels[r, : len(y)], attn[r, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        loss = self.pm(input_ids=ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, float(loss)


class PtuneStepper:
    """ptune's training step (the body of TrainRecipe._optimizer_step without accelerate)."""

    def __init__(self, model, tok, records_path: str, batch_size: int, encoder: str):
        import torch

        from ptune_cli.ptuning.data import load_examples, make_batches
        from ptune_cli.ptuning.encoders import build_encoder
        from ptune_cli.ptuning.model import check_gathered_head
        from ptune_cli.ptuning.prefix_encoder import build_prefix_encoder
        from ptune_cli.ptuning.template import load_templates

        tpl = load_templates(TEMPLATE)
        self.model, self.tok = model, tok
        self.data = load_examples(records_path, tpl, tok, 1024)
        self.batches = make_batches(self.data, batch_size, seed=0)
        torch.manual_seed(0)
        if encoder.startswith("prefix"):
            self.encoder = build_prefix_encoder(model, tpl, tok, projection=encoder == "prefix-proj")
        else:
            self.encoder = build_encoder(encoder, tpl, tok, model.get_input_embeddings())
        self.opt = torch.optim.AdamW(self.encoder.parameters(), lr=3e-3, weight_decay=0.01)
        self.gathered = check_gathered_head(model, tok)

    def step(self, k: int) -> tuple[float, float]:
        import torch

        from ptune_cli.ptuning.data import collate
        from ptune_cli.ptuning.model import answer_loss

        t0 = time.perf_counter()
        idx = self.batches[k % len(self.batches)]
        batch = collate(self.data, idx, self.tok.pad_token_id)
        loss, _ = answer_loss(self.model, **batch, prompts=self.encoder(0), gathered=self.gathered)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.encoder.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, float(loss)


def worker_time(args, records_path: str) -> dict:
    """All sides in one process, steps interleaved, so they share whatever load the machine has."""
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(None)
    recs = [json.loads(x) for x in Path(records_path).read_text().splitlines()]
    if args.section == "prefix":
        sides = {}
        for kind in ("prefix", "prefix-proj"):  # each PEFT model wraps the frozen LM without changing it
            sides[f"peft-{kind}"] = PeftStepper(model, tok, recs, args.batch_size, kind)
            sides[f"ptune-{kind}"] = PtuneStepper(model, tok, records_path, args.batch_size, kind)
    else:
        sides = {"peft": PeftStepper(model, tok, recs, args.batch_size),
                 "ptune-mlp": PtuneStepper(model, tok, records_path, args.batch_size, "mlp"),
                 "ptune-lstm": PtuneStepper(model, tok, records_path, args.batch_size, "lstm")}
    times: dict[str, list[float]] = {k: [] for k in sides}
    for k in range(args.steps):
        for name, side in sides.items():
            times[name].append(side.step(k)[0])
    med = {}
    for name, ts in times.items():
        timed = sorted(ts[args.warmup:])
        med[name] = timed[len(timed) // 2]
    return med


def worker_peft(args, records_path: str, kind: str = "ptuning") -> dict:
    import torch

    from ptune_cli.models import load_causal_lm

    rss = RssPeak()
    torch.manual_seed(0)
    model, tok = load_causal_lm(None)
    recs = [json.loads(x) for x in Path(records_path).read_text().splitlines()]
    side = PeftStepper(model, tok, recs, args.batch_size, kind)
    base = RssPeak.now()
    rss.reset()
    results = [side.step(k) for k in range(args.steps)]
    timed = sorted(t for t, _ in results[args.warmup:])
    return {"step_s": timed[len(timed) // 2], "peak_rss": rss.peak, "train_rss": rss.peak - base,
            "loss_first": results[0][1], "loss_last": results[-1][1]}


def run_worker(side: str, args, records_path: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--section", args.section, "--records-file", records_path,
           "--steps", str(steps), "--batch-size", str(args.batch_size), "--warmup", str(min(args.warmup, steps - 1))]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{side} worker failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side (interleaved, one process)")
    ap.add_argument("--mem-steps", type=int, default=3, help="steps of each memory subprocess")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--section", choices=["all", "ptuning", "prefix"], default="all")
    ap.add_argument("--worker", choices=["time", "ptune-mlp", "ptune-lstm", "peft", "peft-prefix", "peft-prefix-proj",
                                         "ptune-prefix", "ptune-prefix-proj"])
    ap.add_argument("--records-file")
    args = ap.parse_args()
    if args.worker:
        if args.worker == "time":
            res = worker_time(args, args.records_file)
        elif args.worker.startswith("peft"):
            res = worker_peft(args, args.records_file, args.worker.removeprefix("peft-") if "-" in args.worker else "ptuning")
        else:
            res = worker_ptune(args, args.records_file, args.worker.removeprefix("ptune-"))
        print(json.dumps(res))
        return
    if not FPB.is_file():
        print(f"bench_train: skipped ({FPB} not found)")
        return
    recs = [json.loads(x) for x in FPB.read_text(encoding="utf-8").splitlines() if x.strip()]
    random.Random(0).shuffle(recs)
    t0 = time.perf_counter()
    sections = ["ptuning", "prefix"] if args.section == "all" else [args.section]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "records.jsonl")
        path.write_text("".join(json.dumps(r) + "\n" for r in recs[: args.records]), encoding="utf-8")
        for section in sections:
            args.section = section
            _section(args, str(path))
    print(f"bench took {time.perf_counter() - t0:.0f} s")


SECTIONS = {
    "ptuning": ({"peft": "PEFT p-tuning mlp", "ptune-mlp": "ptune mlp", "ptune-lstm": "ptune lstm"},
                {"peft": "peft", "ptune-mlp": "peft", "ptune-lstm": "peft"}),
    "prefix": ({"peft-prefix": "PEFT prefix tuning", "ptune-prefix": "ptune prefix",
                "peft-prefix-proj": "PEFT prefix, projection", "ptune-prefix-proj": "ptune prefix, projection"},
               {"peft-prefix": "peft-prefix", "ptune-prefix": "peft-prefix",
                "peft-prefix-proj": "peft-prefix-proj", "ptune-prefix-proj": "peft-prefix-proj"}),
}


def _section(args, path: str) -> None:
    """One comparison table: interleaved step times, then each side's memory in its own process."""
    from rich.console import Console
    from rich.table import Table

    names, peer = SECTIONS[args.section]
    load0 = os.getloadavg()[0]
    timing = run_worker("time", args, path, args.steps)
    mem = {side: run_worker(side, args, path, args.mem_steps) for side in names}
    load1 = os.getloadavg()[0]
    what = "10 virtual tokens" if args.section == "ptuning" else "prefix T=10 at every layer"
    table = Table(title=f"train step: SmolLM2-135M, Financial PhraseBank ({args.records} records), batch {args.batch_size}, "
                  f"{what}, fp32, {os.cpu_count()} CPUs; time: median of {args.steps - args.warmup} interleaved steps; "
                  f"memory: own process, {args.mem_steps} steps, peak RSS sampled every 5 ms (end-to-end `run_train` "
                  "for ptune); train RSS = peak − RSS before the first step")
    for col in ("", "s/step", "× PEFT", "peak RSS MB", "train RSS MB", "× PEFT", "loss 1st→last"):
        table.add_column(col, justify="right")
    for side in names:
        r, t, p = mem[side], timing[side], peer[side]
        table.add_row(names[side], f"{t:.3f}", f"{t / timing[p]:.2f}", f"{r['peak_rss'] / 2**20:.0f}",
                      f"{r['train_rss'] / 2**20:.0f}", f"{r['train_rss'] / max(mem[p]['train_rss'], 1):.2f}",
                      f"{r['loss_first']:.1f}→{r['loss_last']:.1f}")
    Console(width=110).print(table)
    goal = "no more memory" if args.section == "ptuning" else "peak training memory ≤ 0.75× PEFT"
    print(f"goal: ptune ≤ 0.75× PEFT time/step, {goal}")
    if max(load0, load1) > (os.cpu_count() or 1):
        print(f"note: load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} CPUs: other jobs share the machine; "
              "absolute times are inflated, the interleaved ratios much less")


if __name__ == "__main__":
    main()
