"""The resumable translate run: read → plan → translate in chunks → write → report.

Every record is planned (and validated) before the model is loaded, so bad input fails in a
second with ``file:line: field``. Records are then processed in chunks of ``chunk_records``;
each chunk's unique strings go through :class:`Translator` (memo → persistent cache → engine)
and the finished records are appended to the partial output and fsynced. See
:mod:`ptune_cli.resumable` for how a killed run continues.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ptune_cli.io import STDIO, check_outputs, display_name, iter_records, write_records, writing
from ptune_cli.labels import load_label_map
from ptune_cli.options import output_settings, validate
from ptune_cli.resumable import (
    SUFFIX,
    ResumableJSONL,
    file_digest,
    fingerprint,
    partial_path,
    read_partial,
    records_digest,
)
from ptune_cli.translate.cache import TranslationCache, namespace
from ptune_cli.translate.config import TranslateConfig
from ptune_cli.translate.fields import RecordPlan, assemble, first_pass, plan_record, second_pass
from ptune_cli.translate.quality import Translation
from ptune_cli.translate.shard import merge_shards, process_context, shard_device, shard_indices

# Test/demo hook: seconds to sleep after each written chunk (makes kill -9 tests deterministic).
DELAY_ENV = "PTUNE_TRANSLATE_CHUNK_DELAY"


class Translator:
    """Unique strings → translations, via an in-run memo, the persistent cache, then the engine."""

    def __init__(self, engine, cache: TranslationCache):
        self.engine, self.cache = engine, cache
        self.memo: dict[str, Translation] = {}
        self.stats: Counter = Counter()

    def translate(self, texts: Sequence[str]) -> dict[str, Translation]:
        self.stats["strings"] += len(texts)
        unique = list(dict.fromkeys(texts))
        out = {t: self.memo[t] for t in unique if t in self.memo}
        misses = [t for t in unique if t not in out]
        cached = self.cache.get_many(misses)
        self.stats["cache_hits"] += len(cached)
        out.update(cached)
        todo = [t for t in misses if t not in cached]
        self.stats["deduplicated"] += len(texts) - len(todo) - len(cached)
        if todo:
            start = time.perf_counter()

            def store(idx: list[int], results: list[Translation]) -> None:
                # committed per batch: a kill -9 loses at most the batch in flight
                self.cache.put_many((todo[i], r) for i, r in zip(idx, results, strict=True))

            for t, r in zip(todo, self.engine.translate(todo, on_batch=store), strict=True):
                out[t] = r
            self.stats["translate_seconds"] += time.perf_counter() - start
            self.stats["translated"] += len(todo)
        self.memo.update(out)
        return out


def translate_chunk(plans: list[RecordPlan], translator: Translator, cfg: TranslateConfig) -> tuple[list[dict], Counter]:
    """Finished records for ``plans`` (in order) and projection counts."""
    got = translator.translate([t for p in plans for t in first_pass(p)])
    more = [t for p in plans for t in second_pass(p, got)]
    if more:
        got.update(translator.translate(more))
    records, how = [], Counter()
    for p in plans:
        rec, flags, projected = assemble(p, got, cfg.label_field)
        if flags:
            rec[cfg.flags_field] = flags
        records.append(rec)
        how[projected] += 1
        translator.stats["empty_skipped"] += sum(1 for piece in p.pieces if not piece.core)
    return records, how


def _fingerprint(cfg: TranslateConfig, records: list[dict], world: int) -> str:
    """What a resumed run must match: the input records, the options that change the output
    and the number of processes (each shard's records depend on it)."""
    return fingerprint(output_settings(cfg), {"input": records_digest(records), "processes": world,
                                              "lexicon_file": file_digest(cfg.lexicon)})


def _partial_path(output: str | os.PathLike, rank: int, world: int) -> Path:
    if str(output) == STDIO:
        return Path(tempfile.mkdtemp(prefix="ptune-translate-")) / "stdout.partial"
    return partial_path(output, SUFFIX if world == 1 else f".shard{rank}of{world}{SUFFIX}")


def flag_kind(flag: str) -> str:
    """``"label:slot_projection:date"`` -> ``"slot_projection"``."""
    parts = flag.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


class FlagTally:
    """Flagged records and flag kinds over everything written (resumed records included)."""

    def __init__(self, flags_field: str):
        self.flags_field, self.counts, self.records = flags_field, Counter(), 0

    def add(self, records: list[dict]) -> None:
        for rec in records:
            flags = rec.get(self.flags_field) or []
            self.records += bool(flags)
            self.counts.update(flag_kind(f) for f in flags)


def run_translate(
    input: str | os.PathLike,
    output: str | os.PathLike,
    cfg: TranslateConfig,
    *,
    engine=None,
    reference: str | os.PathLike | None = None,
    reference_field: str | None = None,
    report: str | os.PathLike | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Translate ``input`` to ``output`` (resuming an interrupted run of the same command);
    returns the run report. ``on_progress(advance, total)`` is called as records finish.
    ``report``: where the caller will write the report (checked with the output, up front)."""
    validate(cfg)
    check_outputs({"-o": output, "--report": report},
                  {"INPUT": input, "--reference": reference, "--lexicon": cfg.lexicon, "--cache": cfg.cache})
    t0 = time.perf_counter()
    lexicon = load_label_map(cfg.lexicon, flag="--lexicon")
    source = display_name(input)
    numbered = list(iter_records(input))
    plans = [plan_record(r, ln, source, cfg, lexicon) for ln, r in numbered]
    ctx = process_context()
    pairs = [(i, pc.field) for i, p in enumerate(plans) for pc in p.pieces if pc.core]
    gold = None
    if reference is not None and ctx.is_main:
        from ptune_cli.translate.score import reference_texts

        gold = reference_texts(reference, len(plans), pairs, reference_field)
    mine = shard_indices(len(plans), ctx.rank, ctx.world)
    partial = ResumableJSONL(_partial_path(output, ctx.rank, ctx.world),
                             _fingerprint(cfg, [r for _, r in numbered], ctx.world), created_by="ptune translate")
    tally = FlagTally(cfg.flags_field)
    tally.add(partial.open())
    resumed = partial.done
    if on_progress:
        on_progress(resumed, len(mine))
    stats, how = Counter(), Counter()
    todo = mine[resumed:]
    if todo:
        engine, stats, how = _translate_todo(plans, todo, engine, cfg, ctx, partial, tally, output, on_progress)
    totals = {"resumed_records": resumed, "records_written": partial.done,
              "flagged_records": tally.records, "flags": dict(tally.counts),
              "stats": dict(stats), "slot_projection": dict(how)}
    final, totals = _finish(partial, output, ctx, len(plans), totals)
    report = _report(cfg, source, output, engine, len(plans), totals, ctx, time.perf_counter() - t0)
    if reference is not None and ctx.is_main:
        from ptune_cli.translate.score import score_records

        report["score"] = score_records(final if final is not None else read_partial(Path(output)),
                                        reference, pairs, reference_field, gold=gold)
        # an empty source is not translated (it stays empty): not scored, and said so
        report["score"]["empty_sources_left_out"] = sum(not pc.core for p in plans for pc in p.pieces)
    if ctx.world > 1:
        ctx.close()
    return report


def _translate_todo(plans, todo, engine, cfg, ctx, partial, tally, output, on_progress):
    """Load the engine (unless given) and translate ``todo``; on failure leave no stray files
    when there is nothing to resume from (or the output is stdout, which can't resume)."""
    try:
        if engine is None:
            from ptune_cli.translate.engines import load_engine

            cfg.device = shard_device(cfg.device, ctx)
            engine = load_engine(cfg)
        return (engine, *_translate_all(plans, todo, engine, cfg, partial, tally, on_progress))
    except BaseException:
        if partial.done == 0 or str(output) == STDIO:
            partial.discard()
            if str(output) == STDIO:
                shutil.rmtree(partial.path.parent, ignore_errors=True)
        raise


def _translate_all(plans, todo, engine, cfg, partial, tally, on_progress):
    cache = TranslationCache(cfg.cache_path() if cfg.use_cache else None,
                             namespace(engine.fingerprint, cfg.decoding_options()))
    translator = Translator(engine, cache)
    how: Counter = Counter()
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    try:
        for start in range(0, len(todo), cfg.chunk_records):
            chunk = [plans[i] for i in todo[start : start + cfg.chunk_records]]
            records, chunk_how = translate_chunk(chunk, translator, cfg)
            partial.append(records)
            tally.add(records)
            how.update(chunk_how)
            if on_progress:
                on_progress(len(records), 0)
            if delay:
                time.sleep(delay)
    finally:
        cache.close()
        partial.close()
    return translator.stats, how


def _sum_totals(parts: list[dict]) -> dict:
    out: dict = {"flags": Counter(), "stats": Counter(), "slot_projection": Counter()}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                out[key].update(value)
            else:
                out[key] = out.get(key, 0) + value
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in out.items()}


def _finish(partial: ResumableJSONL, output, ctx, n: int, totals: dict) -> tuple[list[dict] | None, dict]:
    """Put the output in place (rank 0 merges the shards); returns the records when they went
    to stdout, and the totals over all processes (rank 0; other ranks: their own)."""
    if str(output) == STDIO:
        records = read_partial(partial.path)
        write_records(STDIO, records)
        partial.discard()
        partial.path.parent.rmdir()
        return records, totals
    if ctx.world == 1:
        partial.finish(Path(output))
        return None, totals
    partial.finish(None)
    stats_path = partial.path.with_name(partial.path.name + ".totals.json")
    with writing(stats_path):
        stats_path.write_text(json.dumps(totals), encoding="utf-8")
    ctx.barrier()
    if ctx.is_main:
        paths = [_partial_path(output, r, ctx.world) for r in range(ctx.world)]
        write_records(output, merge_shards([read_partial(p) for p in paths], n))
        sidecars = [p.with_name(p.name + ".totals.json") for p in paths]
        totals = _sum_totals([json.loads(s.read_text(encoding="utf-8")) for s in sidecars])
        for p, s in zip(paths, sidecars, strict=True):
            ResumableJSONL(p, "").discard()
            s.unlink(missing_ok=True)
    ctx.barrier()
    return None, totals


def _report(cfg, source, output, engine, n_records, totals, ctx, seconds) -> dict:
    stats = totals["stats"]
    tr_s = stats.get("translate_seconds", 0.0)
    done_now = totals["records_written"] - totals["resumed_records"]
    return {
        "input": source,
        "output": "<stdout>" if str(output) == STDIO else str(output),
        "model": cfg.model,
        "engine": cfg.engine,
        "processes": ctx.world,
        "is_main": ctx.is_main,  # under accelerate launch only rank 0 reports on all shards
        "records": n_records,
        "resumed_records": totals["resumed_records"],
        "strings": stats.get("strings", 0),
        "translated": stats.get("translated", 0),
        "cache_hits": stats.get("cache_hits", 0),
        "deduplicated": stats.get("deduplicated", 0),
        "empty_skipped": stats.get("empty_skipped", 0),
        "seconds": round(seconds, 2),
        "sentences_per_s": round(stats.get("translated", 0) / tr_s, 2) if tr_s else None,
        "records_per_s": round(done_now / seconds, 2) if seconds else None,
        "flagged_records": totals["flagged_records"],
        "flags": dict(sorted(totals["flags"].items())),
        "slot_projection": {k: v for k, v in sorted(totals["slot_projection"].items())
                            if k != "none" and not k.startswith("qa:") and v},
        # QA records: how the answers came into the translated context (marked / fallback);
        # the ones that did not are flags["answer_projection"]
        "answer_projection": {k[3:]: v for k, v in sorted(totals["slot_projection"].items())
                              if k.startswith("qa:") and k != "qa:none" and v},
        "flags_field": cfg.flags_field,
        "cache": str(cfg.cache_path()) if cfg.use_cache else None,
        "model_fingerprint": getattr(engine, "fingerprint", None),
    }


def write_report(path: str | os.PathLike, report: dict) -> None:
    """The run report as pretty JSON (atomic)."""
    from ptune_cli.io import write_json

    write_json(path, json.loads(json.dumps(report)))
