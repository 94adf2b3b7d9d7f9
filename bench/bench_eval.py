"""Eval speed: ptune's batched generation vs `model.generate` one example at a time, and rank
decoding vs generation, on the real SmolLM2-135M with a random prompt table.

Same model, same prompts (template + injected virtual tokens), same records, same stopping
rule (EOS or newline), measured in one run. Financial PhraseBank records come from
../shared/data (the script skips cleanly when absent).

    .venv/bin/python bench/bench_eval.py            # 48 records, batch 16 (~1-2 min on 2 cores)
    .venv/bin/python bench/bench_eval.py --n 160 --batch-size 32
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
LABELS = ["positive", "negative", "neutral"]


def _records(n: int, seed: int) -> list[dict]:
    from ptune_cli.io import read_records

    recs = read_records(FPB)
    return random.Random(seed).sample(recs, min(n, len(recs)))


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _one_at_a_time(model, tok, encs, prompt, max_new, stops):
    """The peer: model.generate per record (no batching), same embeddings and stops."""
    import torch

    from ptune_cli.evaluate.predict import cut_at_stop, decode_prediction
    from ptune_cli.ptuning.model import inject_prompts

    out = []
    with torch.inference_mode():
        for e in encs:
            ids = torch.tensor([e.input_ids])
            embeds = inject_prompts(model, ids, torch.tensor([e.virtual_mask]), prompt)
            gen = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=max_new, eos_token_id=stops, pad_token_id=tok.pad_token_id)
            out.append(decode_prediction(tok, cut_at_stop(gen[0].tolist(), set(stops)), True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="records (default 48)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not FPB.is_file():
        print(f"skip: {FPB} not found (set PTUNE_SHARED_DATA)")
        return 0
    import torch

    from ptune_cli.errors import UserError
    from ptune_cli.evaluate.metrics import score_accuracy
    from ptune_cli.evaluate.predict import generate_texts, rank_labels, stop_token_ids
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.template import TaskTemplate, encode_example

    try:
        (model, tok), load_s = _timed(lambda: load_causal_lm(None))
    except UserError as e:
        print(f"skip: {e}")
        return 0
    torch.manual_seed(args.seed)
    emb = model.get_input_embeddings().weight
    prompt = torch.randn(10, emb.shape[1]) * emb.std()  # a random prompt table row block
    tpl = TaskTemplate("sentiment-task", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 10, [10], "label", "sentence")
    records = _records(args.n, args.seed)
    encs = [encode_example(tpl, r, tok, include_answer=False) for r in records]
    golds = [r["label"] for r in records]
    max_new = max(len(tok(g, add_special_tokens=False)["input_ids"]) for g in LABELS) + 8  # as ptune eval
    stops = stop_token_ids(tok, True)
    n = len(records)
    print(f"SmolLM2-135M loaded in {load_s:.1f}s; {n} FPB records, mean prompt "
          f"{sum(len(e.input_ids) for e in encs) / n:.0f} tokens, max_new_tokens {max_new}, "
          f"torch threads {torch.get_num_threads()}")
    generate_texts(model, tok, encs[:2], prompt, batch_size=2, max_new_tokens=2)  # warm-up

    # Interleave the three methods chunk by chunk, so that load from other processes on a
    # shared machine hits all of them alike; the chunk is one ptune batch.
    peer, ours, ranked = [], [], []
    peer_s = ours_s = rank_s = 0.0
    for k in range(0, n, args.batch_size):
        chunk_r, chunk_e = records[k : k + args.batch_size], encs[k : k + args.batch_size]
        out, s = _timed(lambda: _one_at_a_time(model, tok, chunk_e, prompt, max_new, stops))  # noqa: B023
        peer += out
        peer_s += s
        out, s = _timed(lambda: generate_texts(model, tok, chunk_e, prompt, batch_size=args.batch_size,  # noqa: B023
                                               max_new_tokens=max_new, stop_at_newline=True))
        ours += out
        ours_s += s
        (out, _), s = _timed(lambda: rank_labels(model, tok, tpl, chunk_r, chunk_e, prompt, LABELS,  # noqa: B023
                                                 batch_size=args.batch_size))
        ranked += out
        rank_s += s
    same = sum(a == b for a, b in zip(ours, peer, strict=True))
    rows = [
        ("model.generate, one record at a time", peer_s, score_accuracy(golds, peer)["accuracy"]),
        (f"ptune eval --decode generate (batch {args.batch_size})", ours_s, score_accuracy(golds, ours)["accuracy"]),
        (f"ptune eval --decode rank (batch {args.batch_size}, 3 labels)", rank_s, score_accuracy(golds, ranked)["accuracy"]),
    ]
    print(f"\n{'method':<48} {'seconds':>8} {'records/s':>10} {'vs peer':>8} {'accuracy':>9}")
    for name, s, acc in rows:
        print(f"{name:<48} {s:>8.2f} {n / s:>10.1f} {peer_s / s:>7.1f}x {100 * acc:>8.1f}%")
    print(f"\nbatched vs one-at-a-time predictions identical: {same}/{n}")
    print(f"rank vs generate (batched): {ours_s / rank_s:.1f}x faster; out-of-set generated answers: "
          f"{score_accuracy(golds, ours)['out_of_set']}/{n} (rank: 0 by construction)")
    print("(random prompts: accuracies are those of an untrained prompt, shown only as a sanity check)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
