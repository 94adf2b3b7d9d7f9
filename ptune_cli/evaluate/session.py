"""Model side of ``ptune eval``: load the model and the task's prompts (or a baseline template),
read the test records, encode them and predict (generation or rank decoding)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.evaluate.metrics import resolve_metric
from ptune_cli.io import display_name, iter_records
from ptune_cli.ptuning.template import TaskTemplate

_DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class TaskSetup:
    """What prediction needs for one task: template, prompt rows (None for a baseline), the
    model to load and a transform applied to each record before encoding."""

    template: TaskTemplate
    prompt: object  # torch.Tensor [T, h] or None
    model: str | None
    extra: dict
    prepare: object = None  # callable(record) -> record, or None


def _data_tasknames(cfg) -> list[str]:
    names = []
    for _, r in iter_records(cfg.data, {}):
        t = r.get("taskname")
        if t is not None and t not in names:
            names.append(t)
    return names


def pick_task(cfg, known: list[str], where: str) -> str:
    """``--task``, else the data's single ``taskname``, else the only known task."""
    if cfg.task:
        return cfg.task
    in_data = _data_tasknames(cfg)
    if len(in_data) == 1:
        return in_data[0]
    if len(in_data) > 1:
        raise UserError(f"{display_name(cfg.data)}: records of several tasks ({', '.join(in_data)}): pass --task NAME")
    if len(known) == 1:
        return known[0]
    raise UserError(f"{where} has several tasks ({', '.join(known)}): pass --task NAME")


def load_task(cfg) -> tuple[TaskTemplate, object]:
    """The task's template and, for ``--run``, its prompt table (before loading any model, so
    bad options and data fail fast)."""
    if cfg.mode == "run":
        from ptune_cli.ptuning.table import load_prompt_table

        table = load_prompt_table(cfg.run)
        return table.template(pick_task(cfg, table.tasknames, f"{cfg.run}: the prompt table")), table
    from ptune_cli.ptuning.template import load_templates

    templates = load_templates(cfg.template)
    task = pick_task(cfg, list(templates), str(cfg.template))
    if task not in templates:
        raise UserError(f"{cfg.template}: no template for task '{task}' (known: {', '.join(templates)})")
    return templates[task], None


def _setup(cfg, tpl: TaskTemplate, table, one_line: bool) -> TaskSetup:
    if table is not None:
        model = cfg.model or table.meta.get("base_model")
        extra = {"task": tpl.taskname, "model": model, "run_meta": table.meta}
        return TaskSetup(tpl, table.prompts[tpl.taskname], model, extra)
    from ptune_cli.evaluate.baseline import build_baseline, draw_shots, shots_for

    k = shots_for(cfg.baseline, cfg.shots)
    shots = draw_shots(cfg.train, tpl, k, cfg.seed) if k else []
    base = build_baseline(tpl, shots, one_line=one_line)
    extra = {"task": tpl.taskname, "model": cfg.model, "baseline": cfg.baseline, "shots": k,
             "shot_lines": base.shot_lines, "train": cfg.train, "seed": cfg.seed}
    return TaskSetup(base.template, None, cfg.model, extra, base.apply)


def _read_test(cfg, tpl: TaskTemplate) -> list[dict]:
    required = {f: None for f in tpl.input_fields}
    required[tpl.answer_field] = str
    return [r for _, r in iter_records(cfg.data, required)]


def _candidates(cfg, setup: TaskSetup, golds: list[str]) -> list[str]:
    """Labels for rank decoding: --labels, else the answers of the training file (the run's
    saved --train, or the baseline's --train), else the gold labels of the test data."""
    if cfg.labels:
        return list(dict.fromkeys(cfg.labels))
    run_meta = setup.extra.get("run_meta") or {}
    train = (run_meta.get("hyperparameters") or {}).get("train") if cfg.mode == "run" else cfg.train
    task, answer = setup.extra["task"], setup.template.answer_field
    if isinstance(train, str) and Path(train).is_file():
        seen = {
            r[answer] for _, r in iter_records(train, {}, allow_empty=True)
            if isinstance(r.get(answer), str) and r.get("taskname", task) == task
        }
        if seen:
            return sorted(seen)
    return sorted(set(golds))


def predict_records(cfg, on_progress=None, on_total=None, partial=None) -> tuple[list[dict], list[str], dict]:
    """-> (records with ``prediction``, gold labels, meta). The prompt never enters a prediction.

    ``partial`` (a :class:`~ptune_cli.evaluate.resume.PartialPredictions`) keeps finished
    batches so that a killed run resumes where it stopped.
    """
    from ptune_cli.models import load_causal_lm, model_id, resolve_device, torch_dtype
    from ptune_cli.ptuning.template import encode_example

    tpl, table = load_task(cfg)
    records = _read_test(cfg, tpl)
    golds = [r[tpl.answer_field] for r in records]
    metric = resolve_metric(cfg.metric, golds)
    if cfg.decode == "rank" and metric != "accuracy":
        raise UserError("--decode rank scores a closed label set: use it for classification (--metric accuracy)")
    one_line = cfg.stop_at_newline if cfg.stop_at_newline is not None else not any("\n" in g for g in golds)
    setup = _setup(cfg, tpl, table, one_line)
    device = resolve_device(cfg.device)
    dtype = torch_dtype(cfg.precision, device)
    model, tok = load_causal_lm(setup.model, dtype=dtype, device=device)
    hidden = model.get_input_embeddings().weight.shape[1]
    if setup.prompt is not None and setup.prompt.shape[-1] != hidden:
        raise UserError(f"{cfg.run}: prompts have hidden size {setup.prompt.shape[-1]} but the model has "
                        f"{hidden} (evaluate with the base model the run was trained on; --model)")
    max_new = cfg.max_new_tokens or _auto_max_new_tokens(tok, golds)
    limit = _max_positions(model) - (max_new if cfg.decode == "generate" else 0)
    prepared = [setup.prepare(r) if setup.prepare else r for r in records]
    encs = [encode_example(setup.template, r, tok, include_answer=False, max_length=limit) for r in prepared]
    done = partial.load() if partial else {}
    todo = [None if i in done else e for i, e in enumerate(encs)]
    if on_total:
        on_total(sum(e is not None for e in todo))
    extra = {**setup.extra, "model": model_id(setup.model), "metric": metric, "decode": cfg.decode,
             "skipped": sum(e is None for e in encs), "resumed": len(done), "batch_size": cfg.batch_size,
             "device": device, "dtype": str(dtype).removeprefix("torch.")}
    if cfg.decode == "generate":
        extra.update(max_new_tokens=max_new, stop_at_newline=one_line)
    t0 = time.perf_counter()
    fields = _predict(cfg, model, tok, setup, prepared, todo, golds, extra, max_new, one_line,
                      on_progress, partial)
    seconds = time.perf_counter() - t0
    n_new = sum(e is not None for e in todo)
    extra.update(seconds=round(seconds, 3), records_per_s=round(n_new / seconds, 3) if n_new and seconds else None)
    out = []
    for i, rec in enumerate(records):
        out.append({**rec, **done.get(i, fields[i])})
    return out, golds, extra


def _predict(cfg, model, tok, setup, prepared, encs, golds, extra, max_new, one_line, on_progress, partial):
    """Per record ``{"prediction": …}`` (+ ``"scores"`` with rank decoding)."""
    from ptune_cli.evaluate.predict import generate_texts, rank_labels

    def keep(idx, preds, scores=None):
        if partial is not None:
            partial.append([(i, _fields(p, scores[k] if scores else None, cands))
                            for k, (i, p) in enumerate(zip(idx, preds, strict=True))])

    if cfg.decode == "rank":
        cands = _candidates(cfg, setup, golds)
        extra["candidates"] = cands
        preds, scores = rank_labels(model, tok, setup.template, prepared, encs, setup.prompt, cands,
                                    batch_size=cfg.batch_size, on_progress=on_progress, on_batch=keep)
        return [_fields(p, s, cands) for p, s in zip(preds, scores, strict=True)]
    cands = None
    preds = generate_texts(model, tok, encs, setup.prompt, batch_size=cfg.batch_size, max_new_tokens=max_new,
                           stop_at_newline=one_line, on_progress=on_progress, on_batch=keep)
    return [{"prediction": p} for p in preds]


def _fields(pred: str, scores, cands) -> dict:
    out = {"prediction": pred}
    if scores is not None:
        out["scores"] = dict(zip(cands, scores, strict=True))
    return out


def _auto_max_new_tokens(tok, golds: list[str]) -> int:
    """Longest gold answer in tokens + 8 (room for a wrong but longer answer and EOS)."""
    if not golds:
        return _DEFAULT_MAX_NEW_TOKENS
    longest = max(len(tok(g, add_special_tokens=False)["input_ids"]) for g in set(golds))
    return longest + 8


def _max_positions(model) -> int:
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return 4096
