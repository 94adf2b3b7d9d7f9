"""P-tuning against LoRA, full fine-tuning and the frozen model, on the same folds; used by `make compare-methods`.

    python pipelines/compare_methods.py finetune --method lora|full --model M --template T \
        --train FOLD/train.jsonl --test FOLD/test.jsonl --predictions-out PRED.jsonl --stats S.json \
        --steps N --lr LR --batch-size B --seed S [--decode rank --labels a,b,c]
    python pipelines/compare_methods.py measure --stats S.json [--run RUN_DIR] -- ptune train …
    python pipelines/compare_methods.py peak -o peak.json
    python pipelines/compare_methods.py summarize -o DIR/summary.json --markdown DIR/results.md \
        --plot DIR/plots/accuracy-vs-bytes.png --peak peak.json METHOD:DATA:KEY=SUMMARY.json …

``finetune`` trains with the batches, schedule (AdamW, linear warmup then cosine), gradient clip
and step budget of ``ptune train`` (its own data encoding and answer-only loss; the template's
text without virtual tokens, as the zero-shot baseline reads it), then predicts the test file with
``ptune eval``'s own decoding: the scores come from ``ptune eval --predictions``, the same metric
code for every method. ``measure`` wraps a ``ptune`` command (peak memory of the process, and for
a training run its step time, trainable parameters, bytes per task and FLOPs per step).
``summarize`` writes one row per method and data set, a markdown table and a plot of accuracy
against bytes stored per task. Training and measuring run on the thread count torch is given
(``OMP_NUM_THREADS``; the make target sets ``THREADS``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import load_entry  # noqa: E402  (pipelines/compare.py: one report summary → a row)

from ptune_cli.evaluate.report import pct  # noqa: E402
from ptune_cli.io import atomic_output, iter_records, write_json, write_records  # noqa: E402

METHODS = ("p-tuning", "p-tuning-v2", "lora", "full", "zero-shot", "few-shot")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
FLOP_STEPS = 2  # optimizer steps counted by torch's FLOP counter (excluded from the step time)
ADD_LATER = {
    "p-tuning": "yes: a row of the prompt table (`--existing`)",
    "p-tuning-v2": "yes: a row of the prompt table (`--existing`)",
    "lora": "a separate adapter per task (not one table: mixed-task batches need multi-adapter serving)",
    "full": "no: a whole model copy per task",
    "zero-shot": "yes: nothing trained",
    "few-shot": "yes: shots per task",
}


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MiB (Linux reports KiB)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def count_flops(fn) -> int:
    """FLOPs torch's counter sees while ``fn()`` runs (matmuls, attention, convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def timing_stats(step_s: list[float], flops: list[int]) -> dict:
    """Mean step time of the steps after the counted ones (all steps when there are no others)
    and the achieved GFLOP/s: mean counted FLOPs per step / mean step time."""
    timed = step_s[len(flops):] or step_s
    mean_s = statistics.fmean(timed) if timed else None
    fps = statistics.fmean(flops) if flops else None
    return {"step_seconds": round(mean_s, 4) if mean_s else None, "timed_steps": len(timed),
            "flops_per_step": int(fps) if fps else None,
            "gflops": round(fps / mean_s / 1e9, 3) if fps and mean_s else None}


# -- LoRA and full fine-tuning -------------------------------------------------------------------


def plain_template(tpl):
    """The task's template without virtual tokens: the text the zero-shot baseline reads."""
    from ptune_cli.inference.baseline import plain_text
    from ptune_cli.ptuning.template import TaskTemplate

    return TaskTemplate(taskname=tpl.taskname, prompt_template=plain_text(tpl), total_virtual_tokens=0,
                        virtual_token_splits=[], answer_field=tpl.answer_field,
                        truncate_field=tpl.truncate_field, answer_only_loss=tpl.answer_only_loss)


def prepare_model(model, method: str, r: int, alpha: int, dropout: float):
    """(module to train and to compute the loss with, trainable parameters)."""
    if method == "full":
        model.requires_grad_(True)
        model.train()
        return model, [p for p in model.parameters() if p.requires_grad]
    from peft import LoraConfig, get_peft_model

    targets = [t for t in LORA_TARGETS if any(n.endswith(t) for n, _ in model.named_modules())]
    if not targets:
        sys.exit(f"error: the model has none of the attention projections {LORA_TARGETS} for LoRA")
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                                  target_modules=targets, bias="none"))
    peft_model.train()
    # the causal LM with LoRA layers inside: ptune's loss calls its body and head directly
    return peft_model, [p for p in peft_model.parameters() if p.requires_grad]


def finetune(args) -> None:
    import torch
    from accelerate.utils import set_seed

    from ptune_cli.evaluate.config import EvalConfig
    from ptune_cli.inference.job import (
        TestData,
        build_job,
        decode,
        load_task,
        task_template,
        with_prediction,
    )
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.data import collate, load_examples, make_batches, shard
    from ptune_cli.ptuning.model import answer_loss, check_gathered_head
    from ptune_cli.training.recipe import _warmup_cosine

    set_seed(args.seed)
    cfg = EvalConfig(baseline="zero", template=args.template, data=args.test, model=args.model,
                     decode=args.decode, labels=args.labels.split(",") if args.labels else None,
                     batch_size=args.eval_batch_size, device="cpu")
    test = TestData(args.test, list(iter_records(args.test, {})))
    tpl, _ = task_template(cfg, test)
    plain = plain_template(tpl)
    model, tok = load_causal_lm(args.model, device="cpu")
    ctx = int(getattr(model.config, "max_position_embeddings", None) or 1024)
    data = load_examples(args.train, {plain.taskname: plain}, tok, min(ctx, 1024), flag="--train")
    gathered = check_gathered_head(model, tok)
    hidden = model.get_input_embeddings().weight.shape[1]
    no_prompt = torch.zeros(0, hidden)
    total_params = sum(p.numel() for p in model.parameters())
    module, params = prepare_model(model, args.method, args.lora_r, args.lora_alpha, args.lora_dropout)
    lm = module.base_model.model if args.method == "lora" else module
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(shard(make_batches(data, args.batch_size, args.seed), 0, 1, 1))
    warmup = min(50, args.steps // 10)
    scheduler = _warmup_cosine(optimizer, warmup, args.steps)

    def one_step(idx) -> float:
        batch = collate(data, idx, tok.pad_token_id)
        loss, _ = answer_loss(lm, **batch, prompts=no_prompt, gathered=gathered)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    step_s, flops, losses, t_train = [], [], [], time.perf_counter()
    for step in range(args.steps):
        epoch, k = divmod(step, steps_per_epoch)
        idx = shard(make_batches(data, args.batch_size, args.seed + epoch), 0, 1, 1)[k]
        t0 = time.perf_counter()
        if step < FLOP_STEPS:
            flops.append(count_flops(lambda idx=idx: losses.append(one_step(idx))))
        else:
            losses.append(one_step(idx))
        step_s.append(time.perf_counter() - t0)
        if not losses[-1] == losses[-1]:  # NaN
            sys.exit(f"error: {args.method}: loss became NaN at step {step + 1} (lr {args.lr}); lower --lr")
        if (step + 1) % 10 == 0 or step + 1 == args.steps:
            print(f"{args.method}: step {step + 1}/{args.steps} loss {losses[-1]:.4f} ({step_s[-1]:.2f} s)", flush=True)
    train_seconds = time.perf_counter() - t_train
    peak = peak_rss_mb()

    # predict with ptune eval's decoding: the trained model as the frozen model of a zero-shot job
    if args.method == "lora":
        module = module.merge_and_unload()
    module.eval()
    module.requires_grad_(False)
    records = test.records
    golds = [r[tpl.answer_field] for r in records]
    one_line = not any("\n" in g for g in golds)
    job = build_job(cfg, load_task(cfg, tpl, None, one_line), records, golds, one_line, loaded=(module, tok))
    with torch.no_grad():
        out = decode(job, [True] * len(records))
    write_records(args.predictions_out, [with_prediction(r, out[i]) for i, r in enumerate(records)])
    stats = {"method": args.method, "trainable_params": trainable, "total_params": total_params,
             # fp32 storage: LoRA's A and B matrices; full fine-tuning a whole model per task
             "bytes_per_task": 4 * (trainable if args.method == "lora" else total_params),
             "peak_memory_mb": peak, "steps": args.steps, "train_seconds": round(train_seconds, 2),
             "first_loss": losses[0], "last_loss": losses[-1], "lr": args.lr, "batch_size": args.batch_size,
             "threads": torch.get_num_threads(), **timing_stats(step_s, flops)}
    if args.method == "lora":
        stats.update(lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout)
    write_json(args.stats, stats)


# -- measuring ptune's own commands ---------------------------------------------------------------


def run_flops(run: Path) -> list[int]:
    """FLOPs of the first optimizer steps of a finished ``ptune train`` run, recomputed with its
    own recipe (same model, encoder, batches) in a scratch folder."""
    from ptune_cli.training.config import TrainConfig
    from ptune_cli.training.recipe import TrainRecipe

    conf = json.loads((run / "config.json").read_text(encoding="utf-8"))["config"]
    names = {f.name for f in fields(TrainConfig)}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(**{k: v for k, v in conf.items() if k in names})
        cfg.output, cfg.val, cfg.resume, cfg.report_to = tmp, None, False, "none"
        recipe = TrainRecipe(cfg)
        recipe.setup()
        steps = recipe._epoch_steps(0)
        return [count_flops(lambda s=s: recipe._optimizer_step(s)) for s in steps[:FLOP_STEPS]]


def run_stats(run: Path) -> dict:
    """Trainable parameters, bytes per task, step time and GFLOP/s of a ``ptune train`` run."""
    import torch

    resolved = json.loads((run / "config.json").read_text(encoding="utf-8"))["resolved"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines() if line]
    step_s = [r["step_s"] for r in log if isinstance(r.get("step_s"), (int, float))]
    flops = run_flops(run)
    # the first FLOP_STEPS steps are left out of the time, as for LoRA/full (warm-up)
    return {"trainable_params": resolved["trainable_params"], "bytes_per_task": resolved["table_bytes"],
            "steps": len(step_s), "first_loss": log[0].get("loss") if log else None,
            "last_loss": log[-1].get("loss") if log else None, "threads": torch.get_num_threads(),
            **timing_stats(step_s, flops)}


def shots_bytes(template: str, train: str, shots: int, seed: int) -> int:
    """UTF-8 bytes of the few-shot examples put before every prompt (what a task stores)."""
    from ptune_cli.inference.baseline import build_baseline, draw_shots
    from ptune_cli.ptuning.template import load_templates

    tpl = next(iter(load_templates(template).values()))
    drawn = draw_shots(train, tpl, shots, seed)
    one_line = not any("\n" in str(r.get(tpl.answer_field, "")) for _, r in drawn)  # as ptune eval separates them
    base = build_baseline(tpl, drawn, one_line=one_line)
    return len(base.prefix.encode("utf-8"))


def measure(args) -> None:
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        sys.exit("error: measure: no command after --")
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    if rc != 0:
        sys.exit(rc)
    stats = {"command": cmd[1] if len(cmd) > 1 else cmd[0], "seconds": round(time.perf_counter() - t0, 2),
             "peak_memory_mb": peak_rss_mb(resource.RUSAGE_CHILDREN)}
    if args.run:
        stats.update(run_stats(Path(args.run)))
    elif args.shots:
        stats.update(trainable_params=0, bytes_per_task=shots_bytes(args.template, args.train, args.shots, args.seed))
    else:
        stats.update(trainable_params=0, bytes_per_task=0)
    write_json(args.stats, stats)


def peak(args) -> None:
    """Best of 3: GFLOP/s of an fp32 n×n matmul on torch's current threads."""
    import torch

    a, b = torch.randn(args.n, args.n), torch.randn(args.n, args.n)
    best = 0.0
    for _ in range(3):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            torch.mm(a, b)
            reps += 1
        best = max(best, 2 * args.n**3 * reps / (time.perf_counter() - t0) / 1e9)
    write_json(args.output, {"matmul_gflops": round(best, 2), "n": args.n, "threads": torch.get_num_threads(),
                             "dtype": "float32"})


# -- the table ------------------------------------------------------------------------------------


def method_row(spec: str) -> dict:
    """``METHOD:DATA:KEY=SUMMARY.json`` (+ the per-fold stats in the summary's stats/ folder)."""
    head, sep, path = spec.partition("=")
    parts = head.split(":")
    if not sep or len(parts) != 3 or parts[0] not in METHODS:
        sys.exit(f"error: entry {spec!r} is not METHOD:DATA:KEY=SUMMARY.json (METHOD one of {', '.join(METHODS)})")
    method, data, key = parts
    entry, _ = load_entry(f"{method}={path}", key)
    stats_dir = Path(path).parent / "stats"
    stats = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(stats_dir.glob("fold_*.json"))]
    if not stats:
        sys.exit(f"error: {stats_dir}: no fold_*.json stats (run the target's measured steps first)")

    def mean_of(k):
        vals = [s[k] for s in stats if s.get(k) is not None]
        return round(statistics.fmean(vals), 4) if vals else None

    return {"method": method, "data": data, "metric": key, "mean": entry["mean"], "std": entry["std"],
            "folds": len(entry["per_fold"]), "per_fold": entry["per_fold"],
            "trainable_params": stats[0].get("trainable_params"), "bytes_per_task": stats[0].get("bytes_per_task"),
            "step_seconds": mean_of("step_seconds"), "gflops": mean_of("gflops"),
            "flops_per_step": mean_of("flops_per_step"),
            "peak_memory_mb": max((s["peak_memory_mb"] for s in stats if s.get("peak_memory_mb")), default=None),
            "add_tasks_later": ADD_LATER[method], "summary": path}


def _num(n) -> str:
    return "—" if n is None else f"{n:,}"


def _bytes(n) -> str:
    if n is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def to_markdown(rows: list[dict], peak_gflops: float | None, threads: int | None) -> str:
    peak_txt = f"{peak_gflops:g} GFLOP/s" if peak_gflops else "not measured"
    lines = [f"| data | method | metric (%) mean ± std | folds | trainable params | bytes per task | "
             f"step (s) | GFLOP/s (% of matmul peak {peak_txt}) | peak memory (MB) | tasks added later without touching earlier ones |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        std = "" if r["std"] is None else f" ± {pct(r['std'])}"
        g = r["gflops"]
        gtxt = "—" if g is None else f"{g:.2f}" + (f" ({100 * g / peak_gflops:.0f} %)" if peak_gflops else "")
        step = "—" if r["step_seconds"] is None else f"{r['step_seconds']:.2f}"
        mem = "—" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:,.0f}"
        lines.append(f"| {r['data']} | {r['method']} | {r['metric']} **{pct(r['mean'])}**{std} | {r['folds']} | "
                     f"{_num(r['trainable_params'])} | {_bytes(r['bytes_per_task'])} | {step} | {gtxt} | {mem} | "
                     f"{r['add_tasks_later']} |")
    note = (f"\nThreads: {threads}. Step time: mean over the steps after the first {FLOP_STEPS} (those are "
            f"counted by torch's FLOP counter); GFLOP/s = counted FLOPs per step / step time. Peak memory: "
            "peak resident memory of the training process (zero/few-shot: of the evaluation).\n")
    return "\n".join(lines) + "\n" + note


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 3.8), squeeze=False)
    for ax, data in zip(axes[0], datasets):
        for r in (r for r in rows if r["data"] == data):
            x = max(r["bytes_per_task"] or 0, 1)  # log axis: the zero-shot row sits at 1 byte
            y, e = 100 * r["mean"], 100 * (r["std"] or 0)
            ax.errorbar([x], [y], yerr=[e], fmt="o", capsize=4)
            ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("bytes stored per task (log; zero-shot at 1)")
        ax.set_ylabel(f"{rows[0]['metric'] if len(datasets) == 1 else 'score'} (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{data}: mean ± std over folds")
    fig.tight_layout()
    with atomic_output(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


def summarize(args) -> None:
    rows = [method_row(s) for s in args.entries]
    peak_info = json.loads(Path(args.peak).read_text(encoding="utf-8")) if args.peak else {}
    peak_gflops = peak_info.get("matmul_gflops")
    for r in rows:
        r["gflops_share_of_peak"] = round(r["gflops"] / peak_gflops, 4) if r["gflops"] and peak_gflops else None
    write_json(args.output, {"rows": rows, "matmul_peak": peak_info or None,
                             "methods": list(dict.fromkeys(r["method"] for r in rows))})
    if args.markdown:
        with atomic_output(Path(args.markdown)) as fh:
            fh.write(to_markdown(rows, peak_gflops, peak_info.get("threads")))
    if args.plot:
        plot(rows, Path(args.plot))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("finetune", help="LoRA or full fine-tuning on one fold, then predictions")
    f.add_argument("--method", choices=["lora", "full"], required=True)
    f.add_argument("--model")
    f.add_argument("--template", required=True)
    f.add_argument("--train", required=True)
    f.add_argument("--test", required=True)
    f.add_argument("--predictions-out", required=True)
    f.add_argument("--stats", required=True)
    f.add_argument("--steps", type=int, required=True)
    f.add_argument("--lr", type=float, required=True)
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--eval-batch-size", type=int, default=32)
    f.add_argument("--seed", type=int, default=42)
    f.add_argument("--weight-decay", type=float, default=0.01)
    f.add_argument("--grad-clip", type=float, default=1.0)
    f.add_argument("--decode", choices=["generate", "rank"], default="generate")
    f.add_argument("--labels", help="comma-separated candidates for rank decoding")
    f.add_argument("--lora-r", type=int, default=8)
    f.add_argument("--lora-alpha", type=int, default=16)
    f.add_argument("--lora-dropout", type=float, default=0.05)
    m = sub.add_parser("measure", help="run a ptune command; write its peak memory (and a run's step stats)")
    m.add_argument("--stats", required=True)
    m.add_argument("--run", help="the ptune train run folder the command writes")
    m.add_argument("--template")
    m.add_argument("--train")
    m.add_argument("--shots", type=int)
    m.add_argument("--seed", type=int, default=42)
    m.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("peak", help="this machine's fp32 matmul GFLOP/s on torch's threads")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=2.0)
    s = sub.add_parser("summarize", help="summary.json, results.md and the plot")
    s.add_argument("entries", nargs="+", help="METHOD:DATA:KEY=SUMMARY.json (from `ptune report -o`)")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--markdown")
    s.add_argument("--plot")
    s.add_argument("--peak", help="JSON from the peak subcommand")
    args = ap.parse_args(argv)
    {"finetune": finetune, "measure": measure, "peak": peak, "summarize": summarize}[args.cmd](args)


if __name__ == "__main__":
    main()
