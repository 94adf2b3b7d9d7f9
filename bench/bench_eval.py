"""Eval speed: ptune's batched generation vs `model.generate` one example at a time, and rank
decoding vs generation, on the real SmolLM2-135M with a random prompt table.

Same model, same prompts (template + injected virtual tokens), same records, same stopping rule,
measured in one run and interleaved batch by batch (other jobs on a shared machine slow all
methods alike). Two workloads from ../shared/data (skipped cleanly when absent):

* sentiment — Financial PhraseBank, 3 labels, one-line answers (stop at newline/EOS): prompt
  prefill dominates; rank decoding is compared here too.
* intent/slot — Assistant utterances, multi-line answers (stop at EOS, up to the longest gold
  answer + 8 tokens): token-by-token decoding dominates.

    .venv/bin/python bench/bench_eval.py                 # ~4-5 min, 1 torch thread (steady when shared)
    .venv/bin/python bench/bench_eval.py --threads 0     # torch's default threads (slow when the box is busy)
    .venv/bin/python bench/bench_eval.py --n 96 --n-intent 48 --batch-size 32
    .venv/bin/python bench/bench_eval.py --n-gemma 0      # skip the Gemma rank-decoding section
    .venv/bin/python bench/bench_eval.py --n 0 --n-intent 0   # only the Gemma section

* rank decoding on Gemma 3 270M (packaged:gemma3-270m, 262k vocabulary): logits of the
  candidate labels' tokens only (ptune) vs the full LM head then the same columns (the peer),
  same scores — the speed-up is the head rows not computed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("PTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))
FPB = DATA / "financial_phrasebank" / "fpb_allagree_sentiment.jsonl"
ASSISTANT = DATA / "assistant" / "assistant_test.jsonl"
LABELS = ["positive", "negative", "neutral"]
PEER = "model.generate, one record at a time"


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process). On a machine shared with other jobs
    CPU time is the steadier measure of the work done (use --threads 1: no spin-waiting)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _one_at_a_time(model, tok, encs, prompt, max_new, stops, one_line):
    """The peer: model.generate per record (no batching), same embeddings and stops."""
    import torch

    from ptune_cli.inference.decode import cut_at_stop, decode_prediction
    from ptune_cli.ptuning.model import inject_prompts

    out = []
    with torch.inference_mode():
        for e in encs:
            ids = torch.tensor([e.input_ids])
            embeds = inject_prompts(model, ids, torch.tensor([e.virtual_mask]), prompt)
            gen = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max_new, eos_token_id=stops, pad_token_id=tok.pad_token_id)
            out.append(decode_prediction(tok, cut_at_stop(gen[0].tolist(), set(stops)), one_line))
    return out


def _workload(model, tok, tpl, records, prompt, one_line, batch_size, rank):
    """Run the peer, ptune generate (and rank) batch by batch; -> {method: (preds, wall, cpu)}."""
    from ptune_cli.inference.decode import generate_texts, rank_labels, stop_token_ids
    from ptune_cli.ptuning.template import encode_example

    encs = [encode_example(tpl, r, tok, include_answer=False) for r in records]
    golds = [r[tpl.answer_field] for r in records]
    max_new = max(len(tok(g, add_special_tokens=False)["input_ids"]) for g in golds) + 8  # as ptune eval
    stops = stop_token_ids(tok, one_line)
    ours = f"ptune eval --decode generate (batch {batch_size})"
    jobs = {
        PEER: lambda e, r: _one_at_a_time(model, tok, e, prompt, max_new, stops, one_line),
        ours: lambda e, r: generate_texts(model, tok, e, prompt, batch_size=batch_size,
                                          max_new_tokens=max_new, stop_at_newline=one_line),
    }
    if rank:
        jobs[f"ptune eval --decode rank (batch {batch_size}, {len(LABELS)} labels)"] = (
            lambda e, r: rank_labels(model, tok, tpl, r, e, prompt, LABELS, batch_size=batch_size)[0])
    res = {name: [[], 0.0, 0.0] for name in jobs}
    for k in range(0, len(records), batch_size):
        chunk_e, chunk_r = encs[k : k + batch_size], records[k : k + batch_size]
        for name, job in jobs.items():
            out, w, c = _timed(lambda job=job, e=chunk_e, r=chunk_r: job(e, r))
            res[name][0] += out
            res[name][1] += w
            res[name][2] += c
    n = len(records)
    print(f"  {n} records, mean prompt {sum(len(e.input_ids) for e in encs) / n:.0f} tokens, "
          f"max_new_tokens {max_new}, stop at newline: {one_line}")
    return res, golds


def _table(title, res, golds, metric):
    from ptune_cli.evaluate.metrics import headline, score

    n = len(golds)
    _, p_w, p_c = res[PEER]
    print(f"\n{title}\n{'method':<50} {'wall s':>7} {'rec/s':>6} {'vs peer':>8} {'CPU s':>7} {'vs peer':>8} {'score':>6}")
    for name, (preds, w, c) in res.items():
        h = headline(score(golds, preds, metric))
        val = h.get("accuracy", h.get("intent.accuracy"))
        print(f"{name:<50} {w:>7.1f} {n / w:>6.2f} {p_w / w:>7.1f}x {c:>7.1f} {p_c / c:>7.1f}x {100 * val:>5.1f}%")
    ours = [k for k in res if "generate (batch" in k][0]
    same = sum(a == b for a, b in zip(res[ours][0], res[PEER][0], strict=True))
    print(f"batched predictions identical to one-at-a-time: {same}/{n}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="sentiment records (default 48; 0 = skip)")
    ap.add_argument("--n-intent", type=int, default=48, help="intent/slot records (default 48; 0 = skip)")
    ap.add_argument("--batch-size", type=int, default=32, help="ptune eval's default")
    ap.add_argument("--n-gemma", type=int, default=48, help="records for rank decoding on Gemma 3 270M (0 = skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: steady on a shared machine; 0 = torch's choice)")
    args = ap.parse_args()
    if not FPB.is_file():
        print(f"skip: {FPB} not found (set PTUNE_SHARED_DATA)")
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ptune_cli.errors import UserError
    from ptune_cli.io import read_records
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.template import TaskTemplate

    try:
        (model, tok), load_s, _ = _timed(lambda: load_causal_lm(None))
    except UserError as e:
        print(f"skip: {e}")
        return 0
    torch.manual_seed(args.seed)
    emb = model.get_input_embeddings().weight
    prompt = torch.randn(10, emb.shape[1]) * emb.std()  # one random prompt-table entry
    load0 = os.getloadavg()[0]
    print(f"SmolLM2-135M loaded in {load_s:.1f}s; torch threads {torch.get_num_threads()}; "
          f"load average {load0:.1f} on {os.cpu_count()} cores")
    rng = random.Random(args.seed)
    sent = TaskTemplate("sentiment-task", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 10, [10], "label", "sentence")
    if args.n:
        records = rng.sample(read_records(FPB), args.n)
        print("sentiment (Financial PhraseBank):")
        res, golds = _workload(model, tok, sent, records, prompt, True, args.batch_size, rank=True)
        _table("sentiment, 3 labels", res, golds, "accuracy")
    if args.n_intent and ASSISTANT.is_file():
        islot = TaskTemplate("intent_and_slot", "<|VIRTUAL_PROMPT_0|> Utterance: {utterance}<|VIRTUAL_PROMPT_1|>{label}",
                             10, [7, 3], "label", "utterance")
        records = rng.sample(read_records(ASSISTANT), args.n_intent)
        print("\nintent/slot (Assistant):")
        res2, golds2 = _workload(model, tok, islot, records, prompt, False, args.batch_size, rank=False)
        _table("intent/slot, multi-line answers", res2, golds2, "intent-slot")
    if args.n_gemma:
        _gemma_rank(args, rng, sent)
    print(f"\nload average {load0:.1f} -> {os.getloadavg()[0]:.1f}; random prompts: scores only show that "
          "every method predicts the same thing")
    return 0


def _gemma_rank(args, rng, tpl) -> None:
    """Rank decoding on Gemma 3 270M: candidate-token logits vs the full 262k-row head."""
    import torch

    from ptune_cli.errors import UserError
    from ptune_cli.inference import decode as predict
    from ptune_cli.io import read_records
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.model import head_logits
    from ptune_cli.ptuning.template import encode_example

    try:
        (model, tok), load_s, _ = _timed(lambda: load_causal_lm("packaged:gemma3-270m"))
    except UserError as e:
        print(f"\nskip Gemma rank decoding: {e}")
        return
    ids = torch.arange(1000, 3000)
    prompt = torch.randn(10, model.config.hidden_size) * model.get_input_embeddings()(ids).std()
    records = rng.sample(read_records(FPB), args.n_gemma)
    encs = [encode_example(tpl, r, tok, include_answer=False) for r in records]
    ours = predict._label_logits

    def full_head(model, hidden, vocab):  # the peer: every row of the head, then the columns
        return head_logits(model, hidden).float()[..., vocab]

    res = {}
    for name, fn in (("full LM head (262k rows), then the candidates", full_head), ("candidate tokens only (ptune)", ours)):
        predict._label_logits = fn
        try:
            (out, w, c) = _timed(lambda: predict.rank_labels(model, tok, tpl, records, encs, prompt, LABELS,
                                                             batch_size=args.batch_size))
        finally:
            predict._label_logits = ours
        res[name] = (out, w, c)
    (p_out, p_w, p_c), (o_out, o_w, o_c) = res.values()
    print(f"\nrank decoding on Gemma 3 270M (loaded in {load_s:.1f}s), {len(records)} FPB records, "
          f"batch {args.batch_size}, {len(LABELS)} labels")
    print(f"{'method':<50} {'wall s':>7} {'CPU s':>7} {'vs peer':>8}")
    for name, (_, w, c) in res.items():
        print(f"{name:<50} {w:>7.1f} {c:>7.1f} {p_c / c:>7.1f}x")
    same = sum(a == b for a, b in zip(p_out[0], o_out[0], strict=True))
    close = all(torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-2) for a, b in zip(p_out[1], o_out[1], strict=True))
    print(f"same predictions: {same}/{len(records)}; same scores (±0.01): {close}")


if __name__ == "__main__":
    sys.exit(main())
