"""``ptune eval`` top-down: check options and outputs → read the test file once → the task →
the job (model + encodings) → decode, resuming an interrupted run → score → write.

Three modes, one config (:class:`~ptune_cli.evaluate.config.EvalConfig`):

* ``--run RUN_DIR --data TEST.jsonl`` — the base model + the run's prompts for the task; a
  test file of several tasks (no ``--task``) is decoded in shared batches and scored per task;
* ``--baseline zero|one|few --template FILE --data TEST.jsonl`` — the frozen model alone;
* ``--predictions PRED.jsonl`` — score an existing predictions file, no model.

:func:`run_eval` returns the results dict (metrics + ``meta``) and writes the requested files.
"""

from __future__ import annotations

import time
from pathlib import Path

from ptune_cli.errors import UserError, at
from ptune_cli.evaluate.config import EvalConfig
from ptune_cli.evaluate.meta import ResultsMeta, split_meta
from ptune_cli.evaluate.metrics import is_qa, resolve_metric, score
from ptune_cli.inference.job import (
    Task,
    TestData,
    build_job,
    decode,
    load_task,
    task_template,
    with_prediction,
)
from ptune_cli.io import (
    STDIO,
    check_fields,
    check_outputs,
    display_name,
    iter_records,
    write_json,
    write_records,
)
from ptune_cli.models import set_threads
from ptune_cli.options import output_settings, validate
from ptune_cli.resumable import (
    ResumableJSONL,
    file_digest,
    fingerprint,
    keep_batches,
    partial_path,
    records_digest,
    resumable_on_failure,
)
from ptune_cli.tracking import check_available

# Test hook: seconds to sleep after each kept batch (makes kill -9 tests deterministic).
DELAY_ENV = "PTUNE_EVAL_BATCH_DELAY"


def run_eval(cfg: EvalConfig, on_progress=None, on_total=None) -> dict:
    """Predict (unless scoring a predictions file), score, write ``-o`` / ``--predictions-out``.

    ``on_total(n)`` is called once with the number of records to predict, ``on_progress(k)``
    after each batch. Returns the results dict.
    """
    validate(cfg)
    set_threads(cfg.threads)
    check_outputs({"-o": cfg.output, "--predictions-out": cfg.predictions_out},
                  {"--data": cfg.data, "--predictions": cfg.predictions, "--train": cfg.train,
                   "--template": cfg.template, "--normalize": cfg.normalize})
    label_map = _label_map(cfg)  # a bad --normalize fails now, not after the generation
    check_available(cfg.report_to)
    partial = None
    if cfg.mode == "predictions":
        results, pred_recs, columns = score_predictions_file(cfg, label_map)
    else:
        results, pred_recs, partial, columns = _predict_and_score(cfg, label_map, on_progress, on_total)
    if cfg.predictions_out:
        write_records(cfg.predictions_out, pred_recs)
    if cfg.output:
        write_json(cfg.output, results)
    if partial is not None:
        partial.discard()  # outputs are complete: nothing left to resume
    if cfg.report_to != "none":
        from ptune_cli.evaluate.tracking import log_eval

        log_eval(cfg.report_to, cfg.output, results, pred_recs, columns)
    return results


def gold_answers(data_path: str, numbered: list[tuple[int, dict]], answer_field: str) -> list[list[str]]:
    """Every gold answer of each QA record: its ``answers`` list (strings), else its answer."""
    out = []
    for lineno, rec in numbered:
        answers = rec.get("answers", [rec.get(answer_field)])
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise UserError(f"{at(display_name(data_path), lineno, 'answers')}: expected a non-empty list of strings")
        out.append(answers)
    return out


def _table_columns(fields: list[str], gold: str, metric: str, prediction: str = "prediction") -> list[str]:
    """The predictions table: input fields, gold, (all gold answers), prediction."""
    extra = ["answers"] if metric == "squad" and gold != "answers" else []
    return list(dict.fromkeys([*fields, gold, *extra, prediction]))


def _base_meta(cfg: EvalConfig, run_meta: dict | None = None) -> ResultsMeta:
    from ptune_cli import __version__

    split = split_meta(cfg.data, run_meta)
    for k in ("fold", "train_fraction", "sample"):
        if getattr(cfg, k) is not None:
            split[k] = getattr(cfg, k)
    return ResultsMeta(mode=cfg.mode, data=display_name(cfg.data) if cfg.data else None,
                       predictions=cfg.predictions, run=cfg.run, normalize=cfg.normalize,
                       ptune_version=__version__, **split)


def read_test_data(cfg: EvalConfig) -> TestData:
    """The test file, read once (stdin works too)."""
    return TestData(cfg.data, list(iter_records(cfg.data, {})))


def _predict_and_score(cfg: EvalConfig, label_map, on_progress, on_total):
    data = read_test_data(cfg)
    if cfg.mode == "run" and not cfg.task and len(data.tasknames()) > 1:
        return _predict_and_score_tasks(cfg, data, label_map, on_progress, on_total)
    tpl, table = task_template(cfg, data)
    required = {f: str for f in (*tpl.input_fields, tpl.answer_field)}  # io's one rule: text is a string
    for lineno, rec in data.numbered:
        check_fields(rec, data.path, lineno, required)
    records = data.records
    golds = [r[tpl.answer_field] for r in records]
    metric = resolve_metric(cfg.metric, golds, qa=is_qa(records))
    scored = gold_answers(data.path, data.numbered, tpl.answer_field) if metric == "squad" else golds
    if cfg.decode == "rank" and metric != "accuracy":
        raise UserError("--decode rank scores a closed label set: use it for classification (--metric accuracy)")
    one_line = cfg.stop_at_newline if cfg.stop_at_newline is not None else not any("\n" in g for g in golds)
    task = load_task(cfg, tpl, table, one_line)
    job = build_job(cfg, task, records, golds, one_line)
    partial = _partial(cfg, data)
    pred_recs, done, n_new, seconds = _decode_resumable(job, records, partial, on_progress, on_total)
    meta = _model_meta(cfg, task, job, metric, resumed=len(done))
    meta.seconds = round(seconds, 3)
    meta.records_per_s = round(n_new / seconds, 3) if n_new and seconds else None
    results = score(scored, [r["prediction"] for r in pred_recs], metric, label_map, lang=cfg.lang)
    results["meta"] = meta.to_dict()
    return results, pred_recs, partial, _table_columns(list(tpl.input_fields), tpl.answer_field, metric)


def _task_names(cfg: EvalConfig, data: TestData, table) -> list[str]:
    """Each record's ``taskname`` (a test file of several tasks: every record names its own)."""
    names = []
    for lineno, rec in data.numbered:
        name = rec.get("taskname")
        if not isinstance(name, str):
            raise UserError(f"{at(display_name(data.path), lineno, 'taskname')}: the file has records of several "
                            "tasks, so each needs its 'taskname' (or pass --task NAME)")
        if name not in table.tasknames:
            raise UserError(f"{at(display_name(data.path), lineno, 'taskname')}: task '{name}' is not in the prompt "
                            f"table (known tasks: {', '.join(table.tasknames)})")
        names.append(name)
    return names


def _predict_and_score_tasks(cfg: EvalConfig, data: TestData, label_map, on_progress, on_total):
    """A test file of several tasks (no --task): every record decoded with its task's prompts in
    shared batches (one model, one job), then scored per task. The results hold ``tasks``:
    ``{taskname: results}`` (each with its own metric and meta)."""
    from ptune_cli.inference.job import load_model, make_job, resolve_setting
    from ptune_cli.models import model_id
    from ptune_cli.ptuning.table import load_prompt_table

    if cfg.report_to != "none":
        raise UserError(f"--report-to: {display_name(data.path)} has several tasks; track one at a time (--task NAME)")
    table = load_prompt_table(cfg.run)
    names = _task_names(cfg, data, table)
    per: dict[str, dict] = {}
    for name in dict.fromkeys(names):
        tpl = table.template(name)
        idx = [i for i, n in enumerate(names) if n == name]
        numbered = [data.numbered[i] for i in idx]
        for lineno, rec in numbered:
            check_fields(rec, data.path, lineno, {f: str for f in (*tpl.input_fields, tpl.answer_field)})
        recs = [r for _, r in numbered]
        golds = [r[tpl.answer_field] for r in recs]
        metric = resolve_metric(cfg.metric, golds, qa=is_qa(recs))
        if cfg.decode == "rank" and metric != "accuracy":
            raise UserError(f"task '{name}': --decode rank scores a closed label set: use it for classification "
                            "(--metric accuracy), or evaluate this task alone (--task)")
        one_line = cfg.stop_at_newline if cfg.stop_at_newline is not None else not any("\n" in g for g in golds)
        scored = gold_answers(data.path, numbered, tpl.answer_field) if metric == "squad" else golds
        per[name] = dict(tpl=tpl, idx=idx, golds=golds, metric=metric, scored=scored,
                         task=load_task(cfg, tpl, table, one_line), one_line=one_line)
    first = next(iter(per.values()))["task"]
    model, tok = load_model(cfg, first.model)
    for t in per.values():
        t["setting"] = resolve_setting(cfg, t["task"], model, tok, t["golds"], t["one_line"])
    job = make_job(cfg, model, tok, data.records, [per[n]["setting"] for n in names])
    partial = _partial(cfg, data)
    pred_recs, done, n_new, seconds = _decode_resumable(job, data.records, partial, on_progress, on_total)
    results: dict = {"tasks": {}, "n": len(names)}
    for name, t in per.items():
        preds = [pred_recs[i]["prediction"] for i in t["idx"]]
        r = score(t["scored"], preds, t["metric"], label_map, lang=cfg.lang)
        meta = _model_meta(cfg, t["task"], job, t["metric"], sum(i in done for i in t["idx"]),
                           encs=[job.encodings[i] for i in t["idx"]], setting=t["setting"])
        r["meta"] = meta.to_dict()
        results["tasks"][name] = r
    meta = _base_meta(cfg, table.meta)
    meta.model, meta.decode, meta.resumed, meta.batch_size = model_id(first.model), job.decode, len(done), cfg.batch_size
    meta.device, meta.dtype, meta.seconds = job.device, job.dtype, round(seconds, 3)
    meta.records_per_s = round(n_new / seconds, 3) if n_new and seconds else None
    results["meta"] = {**meta.to_dict(), "tasks": list(per)}
    return results, pred_recs, partial, []


def _decode_resumable(job, records: list[dict], partial, on_progress, on_total):
    """Decode the records the partial file does not hold yet; ``(records with their prediction,
    the resumed ones by index, how many were decoded now, seconds)``."""
    done = {int(r.pop("i")): r for r in partial.open()} if partial else {}
    todo = [i not in done for i in range(len(records))]
    n_new = sum(want and e is not None for want, e in zip(todo, job.encodings, strict=True))
    if on_total:
        on_total(n_new)
    t0 = time.perf_counter()
    with resumable_on_failure(partial):
        fields = decode(job, todo, on_progress, keep_batches(partial, DELAY_ENV))
    seconds = time.perf_counter() - t0
    pred_recs = [with_prediction(rec, done[i] if i in done else fields[i]) for i, rec in enumerate(records)]
    return pred_recs, done, n_new, seconds


def _partial(cfg: EvalConfig, data: TestData) -> ResumableJSONL | None:
    """Finished predictions, kept batch by batch beside ``--predictions-out`` (else ``-o``) so
    that a killed run resumes; None when both go to stdout or neither is given. The records
    are ``{"i": index, "prediction": …}``: batches come in length order, not input order."""
    target = next((t for t in (cfg.predictions_out, cfg.output) if t and t != STDIO), None)
    if target is None:
        return None
    inputs = {"data": records_digest(data.records), "template": file_digest(cfg.template),
              "train": file_digest(cfg.train)}
    if cfg.run:
        from ptune_cli.ptuning.table import PROMPT_META_FILE, PROMPT_TABLE_FILE

        inputs["table"] = [file_digest(Path(cfg.run) / f) for f in (PROMPT_TABLE_FILE, PROMPT_META_FILE)]
    return ResumableJSONL(partial_path(target), fingerprint(output_settings(cfg), inputs), created_by="ptune eval")


def _model_meta(cfg: EvalConfig, task: Task, job, metric: str, resumed: int, encs=None, setting=None) -> ResultsMeta:
    """The results' meta for ``task``; ``encs`` / ``setting``: its records' encodings and its
    setting when the job holds several tasks (default: the job's)."""
    from ptune_cli.models import model_id

    encs = job.encodings if encs is None else encs
    meta = _base_meta(cfg, task.run_meta)
    s = setting or job.setting
    meta.task, meta.model, meta.metric = task.template.taskname, model_id(task.model), metric
    meta.decode = s.decode if s is not None else job.decode  # --decode auto as resolved for the task
    if cfg.mode == "baseline":
        meta.baseline, meta.shots, meta.shot_lines = cfg.baseline, task.shots, task.shot_lines
        meta.train, meta.seed = cfg.train, cfg.seed
    meta.skipped = sum(e is None for e in encs)
    meta.truncated = sum(e is not None and e.truncated for e in encs)
    meta.resumed, meta.batch_size, meta.device, meta.dtype = resumed, cfg.batch_size, job.device, job.dtype
    meta.max_new_tokens, meta.stop_at_newline, meta.candidates = s.max_new_tokens, s.stop_at_newline, s.candidates
    return meta


def score_predictions_file(cfg: EvalConfig, label_map=None) -> tuple[dict, list[dict], list[str]]:
    """Score ``cfg.predictions`` (gold from its label field, or from ``cfg.data`` when given);
    returns the results, the records and the predictions table's columns."""
    pf = cfg.prediction_field
    if cfg.data:
        gold_recs = list(iter_records(cfg.data, {}))
        gold_path = cfg.data
        pred_recs = [r for _, r in iter_records(cfg.predictions, {pf: str})]
        if len(gold_recs) != len(pred_recs):
            raise UserError(
                f"{display_name(cfg.predictions)}: {len(pred_recs)} predictions but "
                f"{display_name(cfg.data)} has {len(gold_recs)} gold records (they must pair line by line)"
            )
    else:
        gold_recs = list(iter_records(cfg.predictions, {pf: str}))
        gold_path = cfg.predictions
        pred_recs = [r for _, r in gold_recs]
    qa = is_qa([r for _, r in gold_recs]) or cfg.metric == "squad"
    label_field = cfg.label_field or ("answer" if qa else "label")
    for lineno, rec in gold_recs:
        check_fields(rec, gold_path, lineno, {label_field: str})
    golds = [r[label_field] for _, r in gold_recs]
    metric = resolve_metric(cfg.metric, golds, qa=qa)
    scored = gold_answers(gold_path, gold_recs, label_field) if metric == "squad" else golds
    results = score(scored, [r[pf] for r in pred_recs], metric, label_map, lang=cfg.lang)
    meta = _base_meta(cfg)
    meta.label_field, meta.prediction_field = label_field, pf
    results["meta"] = meta.to_dict()
    skip = {"taskname", label_field, pf, "answers", "_translate_flags"}
    fields = [k for k, v in pred_recs[0].items() if isinstance(v, str) and k not in skip] if pred_recs else []
    return results, pred_recs, _table_columns(fields, label_field, metric, pf)


def _label_map(cfg: EvalConfig):
    if not cfg.normalize:
        return None
    from ptune_cli.labels import load_label_map

    try:
        return load_label_map(cfg.normalize)
    except UserError as e:
        raise UserError(str(e).replace("--map", "--normalize")) from None


__all__ = ["EvalConfig", "run_eval", "score_predictions_file", "split_meta"]
