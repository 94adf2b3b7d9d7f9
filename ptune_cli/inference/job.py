"""What ``ptune eval`` predicts with: the task (template + the run's prompts, or a baseline),
then the typed :class:`EvalJob` (model, encoded records, decoding settings) and its decoding.

``load_task`` runs before any model is loaded, so bad options and data fail in a second;
``build_job`` loads the model and encodes; ``decode`` runs :mod:`.decode` on the records
still to do and hands every finished batch to ``on_batch`` (the resumable partial file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptune_cli.errors import UserError
from ptune_cli.io import display_name
from ptune_cli.ptuning.template import TaskTemplate

_DEFAULT_MAX_NEW_TOKENS = 64


@dataclass
class TestData:
    """The test file, read once: its records with their line numbers."""

    path: str
    numbered: list[tuple[int, dict]]

    @property
    def records(self) -> list[dict]:
        return [r for _, r in self.numbered]

    def tasknames(self) -> list[str]:
        return list(dict.fromkeys(r["taskname"] for r in self.records if r.get("taskname") is not None))


@dataclass
class Task:
    """The task to predict: the template the records are encoded with (a baseline's has no
    virtual tokens and carries the shots), its prompt rows (None for a baseline), the model
    to load, the run's saved metadata and the baseline's shots."""

    template: TaskTemplate
    prompt: Any = None  # torch.Tensor [T, h] (input), ptuning.prefix.Prefix (prefix), or None
    model: str | None = None
    run_meta: dict = field(default_factory=dict)
    shots: int | None = None
    shot_lines: list[int] = field(default_factory=list)
    prepare: Callable[[dict], dict] | None = None  # record -> record (the baseline's shots)
    labels: dict | None = None  # what the run knows of the answers (read once, see stored_labels)


def pick_task(cfg, data: TestData, known: list[str], where: str) -> str:
    """``--task``, else the data's single ``taskname``, else the only known task."""
    if cfg.task:
        return cfg.task
    in_data = data.tasknames()
    if len(in_data) == 1:
        return in_data[0]
    if len(in_data) > 1:
        raise UserError(f"{display_name(data.path)}: records of several tasks ({', '.join(in_data)}): pass --task NAME")
    if len(known) == 1:
        return known[0]
    raise UserError(f"{where} has several tasks ({', '.join(known)}): pass --task NAME")


def task_template(cfg, data: TestData) -> tuple[TaskTemplate, Any]:
    """The task's template and, for ``--run``, the prompt table."""
    if cfg.mode == "run":
        from ptune_cli.ptuning.table import load_prompt_table

        table = load_prompt_table(cfg.run)
        return table.template(pick_task(cfg, data, table.tasknames, f"{cfg.run}: the prompt table")), table
    from ptune_cli.ptuning.template import load_templates

    templates = load_templates(cfg.template)
    name = pick_task(cfg, data, list(templates), str(cfg.template))
    if name not in templates:
        raise UserError(f"{cfg.template}: no template for task '{name}' (known: {', '.join(templates)})")
    return templates[name], None


def load_task(cfg, tpl: TaskTemplate, table, one_line: bool) -> Task:
    """The run's prompts for ``tpl``, or the baseline built from it (shots drawn here)."""
    if table is not None:
        return Task(tpl, table.prompt(tpl.taskname), cfg.model or table.meta.get("base_model"), table.meta)
    from ptune_cli.inference.baseline import build_baseline, draw_shots, shots_for

    k = shots_for(cfg.baseline, cfg.shots)
    shots = draw_shots(cfg.train, tpl, k, cfg.seed) if k else []
    base = build_baseline(tpl, shots, one_line=one_line)
    return Task(base.template, None, cfg.model, {}, k, base.shot_lines, base.apply)


def candidates(cfg, task: Task, golds: list[str]) -> list[str]:
    """Labels for rank decoding: --labels, else the answers the run knows (:func:`run_answers`;
    a baseline: its --train's), else the gold labels of the test data."""
    if cfg.labels:
        return list(dict.fromkeys(x for x in cfg.labels if x))
    known = run_answers(task) if cfg.mode == "run" else _file_answers(cfg.train, task)
    return known or sorted(set(golds))


def run_answers(task: Task) -> list[str]:
    """The task's answers stored in the run, else those of the run's saved --train file when it
    is still there (an older table), else ``[]``."""
    stored = stored_labels(task).get("answers")
    if stored:  # written by ptune train: no need for the training file to still be there
        return list(stored)
    return _file_answers((task.run_meta.get("hyperparameters") or {}).get("train"), task)


def _file_answers(train, task: Task) -> list[str]:
    from ptune_cli.ptuning.labelset import answers_in_file

    if not (isinstance(train, str) and Path(train).is_file()):
        return []
    return sorted(set(answers_in_file(train, task.template.taskname, task.template.answer_field)))


def stored_labels(task: Task) -> dict:
    """What the run knows of the task's answers (:mod:`ptune_cli.ptuning.labelset`); ``{}`` for a baseline."""
    from ptune_cli.ptuning.labelset import task_labels

    if task.labels is None:
        task.labels = task_labels(task.run_meta, task.template.taskname, task.template.answer_field) \
            if task.run_meta else {}
    return task.labels


@dataclass
class EvalJob:
    """Everything decoding needs, typed: the model, the records as encoded, and per record its
    task's :class:`~.setting.DecodeSetting` (records of several tasks decode together)."""

    model: Any
    tokenizer: Any
    records: list[dict]  # as encoded (a baseline's carry its shots)
    encodings: list  # per record an Encoded, or None when it does not fit the model
    settings: list  # per record its task's DecodeSetting (its decoding mode included)
    batch_size: int
    device: str = "cpu"
    dtype: str = "float32"
    head_checked: bool = False  # rank: the model's head was checked once already (the Router)

    @property
    def setting(self):
        """The first record's setting (a one-task job's only one)."""
        return self.settings[0] if self.settings else None

    @property
    def decode(self) -> str:
        """The records' decoding mode (``--decode auto`` resolved per task); a job of tasks
        decoded differently names each, joined by ``+``."""
        return "+".join(dict.fromkeys(s.decode for s in self.settings)) or "generate"


def load_model(cfg, name: str | None):
    """``(model, tokenizer)`` on ``--device`` in ``--precision``."""
    from ptune_cli.models import load_causal_lm, resolve_device, torch_dtype

    device = resolve_device(cfg.device)
    return load_causal_lm(name, dtype=torch_dtype(cfg.precision, device), device=device)


def resolve_setting(cfg, task: Task, model, tok, golds: list[str], one_line: bool):
    """The task's decoding, resolved once: the mode (``--decode auto``: structured for an
    intent/slot task whose labels the run stores, else generate), the generation limit
    (``--max-new-tokens``, else from ``golds``, else from the stored labels' longest answer),
    candidates (rank: --labels, else the stored answers, ...), the stored labels (structured)
    and the longest prompt that fits the model."""
    from ptune_cli.inference.setting import DecodeSetting
    from ptune_cli.inference.structured import resolve_decode

    check_prompt_fits(model, task.prompt, cfg.run)
    max_new = cfg.max_new_tokens or auto_max_new_tokens(tok, task, golds)
    mode = resolve_decode(cfg.decode, stored_labels(task))
    limit = _max_positions(model) - (max_new if mode != "rank" else 0)
    cands = candidates(cfg, task, golds) if mode == "rank" else None
    horizon = max_new  # positions that follow the prompt: new tokens, or the longest candidate + EOS
    if cands:
        horizon = 2 + max(len(tok(" " + c, add_special_tokens=False)["input_ids"]) for c in cands)
    limit = min(limit, _prefix_window_limit(model, task.prompt, horizon))
    return DecodeSetting(task.template, task.prompt, max_new, one_line, cands, limit, mode,
                         stored_labels(task) if mode == "structured" else {})


def auto_max_new_tokens(tok, task: Task, golds: list[str]) -> int:
    """The generation limit without ``--max-new-tokens``: from ``golds`` (eval's gold answers, or
    the training answers predict, serve and export know), else the longest answer the run stores
    (``answer_tokens``) + 8."""
    known = stored_labels(task).get("answer_tokens") if not golds else None
    return known + 8 if isinstance(known, int) else _auto_max_new_tokens(tok, golds)


def make_job(cfg, model, tok, records: list[dict], settings: list, prepare=None, head_checked: bool = False) -> EvalJob:
    """Encode each record with its task's setting (``prepare``: the baseline's shots)."""
    from ptune_cli.models import resolve_device, torch_dtype
    from ptune_cli.ptuning.template import encode_example

    device = resolve_device(cfg.device)
    dtype = torch_dtype(cfg.precision, device)
    prepared = [prepare(r) if prepare else r for r in records]
    encs = [encode_example(s.template, r, tok, include_answer=False, max_length=s.limit)
            for r, s in zip(prepared, settings, strict=True)]
    return EvalJob(model, tok, prepared, encs, list(settings), cfg.batch_size, device,
                   str(dtype).removeprefix("torch."), head_checked)


def build_job(cfg, task: Task, records: list[dict], golds: list[str], one_line: bool,
              loaded: tuple | None = None) -> EvalJob:
    """Load the model on ``--device`` in ``--precision`` and encode every record of one task;
    ``loaded``: ``(model, tokenizer)`` already loaded that way."""
    model, tok = loaded if loaded is not None else load_model(cfg, task.model)
    setting = resolve_setting(cfg, task, model, tok, golds, one_line)
    return make_job(cfg, model, tok, records, [setting] * len(records), task.prepare)


OnBatch = Callable[[list[tuple[int, dict]]], None]


def decode(job: EvalJob, todo: list[bool], on_progress=None, on_batch: OnBatch | None = None) -> dict[int, dict]:
    """``{index: {"prediction": …}}`` (+ ``"scores"`` with rank decoding) for the records with
    ``todo[i]``; the others (done in an earlier run) are not decoded. Records of different
    tasks share batches."""
    from ptune_cli.inference.decode import generate_rows, rank_rows

    encs = [e if want else None for e, want in zip(job.encodings, todo, strict=True)]
    cands = [s.candidates for s in job.settings]

    def keep(idx, preds, scores=None):
        if on_batch is not None:
            on_batch([(i, _fields(p, scores[k] if scores else None, cands[i]))
                      for k, (i, p) in enumerate(zip(idx, preds, strict=True))])

    modes = [s.decode for s in job.settings]
    out: list[dict] = [{"prediction": ""} for _ in encs]

    def only(mode: str) -> list:  # the records of one mode; the others are left out of its pass
        return [e if m == mode else None for e, m in zip(encs, modes, strict=True)]

    # each mode's records in one pass over the job (records of different tasks share its batches)
    if "structured" in modes:
        from ptune_cli.inference.structured import structured_rows

        sel = only("structured")
        preds = structured_rows(job.model, job.tokenizer, job.records, sel, job.settings, batch_size=job.batch_size,
                                on_progress=on_progress, on_batch=keep, head_checked=job.head_checked)
        out = [{"prediction": p} if e is not None else o for p, e, o in zip(preds, sel, out, strict=True)]
    if "rank" in modes:
        sel = only("rank")
        preds, scores = rank_rows(job.model, job.tokenizer, job.records, sel, job.settings,
                                  batch_size=job.batch_size, on_progress=on_progress, on_batch=keep,
                                  head_checked=job.head_checked)
        out = [_fields(p, sc, c) if m == "rank" else o
               for p, sc, c, m, o in zip(preds, scores, cands, modes, out, strict=True)]
    if "generate" in modes:
        sel = only("generate")
        preds = generate_rows(job.model, job.tokenizer, sel, job.settings, batch_size=job.batch_size,
                              on_progress=on_progress, on_batch=keep)
        out = [{"prediction": p} if m == "generate" else o for p, m, o in zip(preds, modes, out, strict=True)]
    return {i: f for i, f in enumerate(out) if todo[i]}


PREDICTION_FIELDS = ("prediction", "scores", "skipped")  # what decoding adds to a record


def with_prediction(record: dict, fields: dict) -> dict:
    """``record`` plus this run's ``fields``; what an earlier run added (a stale ``skipped`` or
    ``scores`` in a predictions file fed back in) is dropped first."""
    return {**{k: v for k, v in record.items() if k not in PREDICTION_FIELDS}, **fields}


def _fields(pred: str, scores, cands) -> dict:
    out = {"prediction": pred}
    if scores is not None:
        out["scores"] = dict(zip(cands, scores, strict=True))
    return out


def check_prompt_fits(model, prompt, where) -> None:
    """UserError when a table's prompt was made for another model (hidden size, or a prefix's
    layers × KV heads × head dim)."""
    from ptune_cli.ptuning.model import kind_of

    problem = None if prompt is None else kind_of(prompt).fit_problem(model, prompt)
    if problem:
        raise UserError(f"{where}: {problem} (evaluate with the base model the run was trained on; --model)")


def _prefix_window_limit(model, prompt, horizon: int) -> int:
    """The longest prompt that keeps ``prompt`` usable with ``horizon`` tokens to follow (a
    prefix stays inside every sliding window, as in training)."""
    from ptune_cli.ptuning.model import kind_of

    return kind_of(prompt).position_limit(model, prompt, horizon)


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
