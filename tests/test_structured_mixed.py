"""Structured decoding (issue 20) in i18's mixed-task jobs: each task's setting carries its mode
(``--decode auto`` resolved per task) and its stored labels; structured records of different
tasks (input and prefix prompts, different grammars) share batches and equal one task at a time,
and a job of generate, rank and structured records gives each record what its mode alone gives.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.inference.job import decode, make_job
from ptune_cli.inference.setting import DecodeSetting
from ptune_cli.inference.structured import structured_rows, structured_texts
from ptune_cli.labels import parse_intent_slot
from ptune_cli.ptuning.labelset import describe_answers
from ptune_cli.ptuning.table import save_prompt_table
from ptune_cli.ptuning.template import TaskTemplate, encode_example
from tests.predict_run import read_jsonl, write_jsonl
from tests.test_families import _prompt, _random_prefix, family  # noqa: F401 - the family fixture
from tests.test_structured import GOLD, TPL, UTTERANCES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PREFIX_TPL = TaskTemplate("booking", "<|VIRTUAL_PROMPT_0|> Request: {utterance}{label}", 3, [3], "label", "utterance")
PREFIX_GOLD = ["\nIntent: book_table\nSlots: size(two people)", "\nIntent: greet\nSlots: None"]
SENTIMENT = TaskTemplate("sentiment", "<|VIRTUAL_PROMPT_0|> Text: {utterance} Mood:{label}", 4, [4], "label",
                         "utterance")
MOODS = ["negative", "neutral", "positive"]


def _rows(tok, settings):
    """Every utterance for every setting, the tasks interleaved record by record."""
    records, encs, rows = [], [], []
    for u in UTTERANCES:
        for s in settings:
            rec = {"utterance": u}
            records.append(rec)
            encs.append(encode_example(s.template, rec, tok, include_answer=False))
            rows.append(s)
    return records, encs, rows


@pytest.mark.parametrize("batch_size", [32, 3])
def test_structured_records_of_different_tasks_share_batches(family, batch_size):  # noqa: F811
    _, _, model, tok = family
    settings = [
        DecodeSetting(TPL, _prompt(model, 5, seed=1), 24, False, decode="structured", labels=describe_answers(GOLD)),
        DecodeSetting(PREFIX_TPL, _random_prefix(model, tok, t=3, seed=2), 20, False, decode="structured",
                      labels=describe_answers(PREFIX_GOLD)),
    ]
    records, encs, rows = _rows(tok, settings)
    mixed = structured_rows(model, tok, records, encs, rows, batch_size=batch_size)
    for s in settings:
        idx = [i for i, r in enumerate(rows) if r is s]
        alone = structured_texts(model, tok, s.template, s.labels, [records[i] for i in idx], [encs[i] for i in idx],
                                 s.prompt, horizon=s.max_new_tokens)
        assert [mixed[i] for i in idx] == alone
        assert all(parse_intent_slot(mixed[i]).intent in s.labels["intents"] for i in idx)  # its own grammar


def test_a_job_of_three_modes_gives_each_record_its_mode_alone(tiny_lm_dir):
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(str(tiny_lm_dir))
    cfg = SimpleNamespace(device="cpu", precision="fp32", batch_size=4)
    settings = [
        DecodeSetting(TPL, _prompt(model, 5, seed=1), 24, False, decode="structured", labels=describe_answers(GOLD)),
        DecodeSetting(SENTIMENT, _prompt(model, 4, seed=3), 5, True, decode="generate"),
        DecodeSetting(SENTIMENT, _prompt(model, 4, seed=4), 5, True, MOODS, decode="rank"),
    ]
    records, _, rows = _rows(tok, settings)
    job = make_job(cfg, model, tok, records, rows)
    assert job.decode == "structured+generate+rank"
    seen: list[int] = []
    todo = [i % 4 != 1 for i in range(len(records))]  # some records done in an earlier run
    mixed = decode(job, todo, on_batch=lambda batch: seen.extend(i for i, _ in batch))
    assert sorted(seen) == sorted(mixed) == [i for i, want in enumerate(todo) if want]
    for s in settings:
        idx = [i for i, r in enumerate(rows) if r is s and todo[i]]
        alone = decode(make_job(cfg, model, tok, [records[i] for i in idx], [s] * len(idx)), [True] * len(idx))
        for k, i in enumerate(idx):
            assert mixed[i]["prediction"] == alone[k]["prediction"]
            if s.decode == "rank":
                assert mixed[i]["scores"] == pytest.approx(alone[k]["scores"], abs=1e-3)
            else:
                assert "scores" not in mixed[i]


def _table(root, folder) -> str:
    """An intent/slot task (labels stored: auto → structured) and a sentiment task (answers
    stored: auto → generate), random input prompts."""
    from ptune_cli.models import load_causal_lm

    model, tok = load_causal_lm(str(folder))
    meta = {"base_model": str(folder), "templates": {t.taskname: t.to_dict() for t in (TPL, SENTIMENT)},
            "tasks": {TPL.taskname: {"labels": describe_answers(GOLD, tok)},  # as ptune train stores them
                      SENTIMENT.taskname: {"labels": describe_answers(MOODS, tok)}},
            "hyperparameters": {"train": None}}
    save_prompt_table(root / "run", {TPL.taskname: _prompt(model, 5, seed=1), SENTIMENT.taskname: _prompt(model, 4, seed=3)},
                      meta)
    return str(root / "run")


def test_predict_and_eval_pick_each_tasks_mode_in_a_mixed_file(tiny_lm_dir, tmp_path):
    run = _table(tmp_path, tiny_lm_dir)
    recs = [{"taskname": t, "utterance": u, "label": g}
            for u, g, m in zip(UTTERANCES, GOLD * 2, MOODS * 2, strict=False)
            for t, g in ((TPL.taskname, g), (SENTIMENT.taskname, m))]
    mixed = write_jsonl(tmp_path / "mixed.jsonl", recs)

    def predict(path) -> list[str]:
        out = str(path) + ".pred.jsonl"
        r = CliRunner().invoke(app, ["predict", "--run", run, "--data", str(path), "-o", out, "--max-new-tokens", "6"])
        assert r.exit_code == 0, r.output
        return [x["prediction"] for x in read_jsonl(out)]

    got = predict(mixed)
    for name in (TPL.taskname, SENTIMENT.taskname):
        idx = [i for i, r in enumerate(recs) if r["taskname"] == name]
        alone = predict(write_jsonl(tmp_path / f"{name}.jsonl", [recs[i] for i in idx]))
        assert [got[i] for i in idx] == alone
    assert all("Intent: " in got[i] for i, r in enumerate(recs) if r["taskname"] == TPL.taskname)
    r = CliRunner().invoke(app, ["eval", "--run", run, "--data", mixed, "-o", str(tmp_path / "res.json"),
                                 "--max-new-tokens", "6"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res.json").read_text(encoding="utf-8"))
    assert res["tasks"][TPL.taskname]["meta"]["decode"] == "structured"
    assert res["tasks"][SENTIMENT.taskname]["meta"]["decode"] == "generate"
    assert res["meta"]["decode"] == "structured+generate"


def test_export_resolves_the_generation_limit_as_predict_does(tiny_lm_dir, tmp_path):
    """ptune_tasks.json's max_new_tokens (i21) is predict's: for an intent/slot task the run's
    stored longest answer + 8, no training file needed."""
    from ptune_cli.inference.export import task_entry
    from ptune_cli.inference.predict import PredictConfig
    from ptune_cli.inference.router import Router
    from ptune_cli.ptuning.table import load_prompt_table

    run = _table(tmp_path, tiny_lm_dir)
    table = load_prompt_table(run)
    router = Router(PredictConfig(run=run, data="-"), table)
    tok = router.loaded[1]
    for name in (TPL.taskname, SENTIMENT.taskname):
        tokens = [f"<ptune:{name}:{i}>" for i in range(table.template(name).total_virtual_tokens)]
        entry = task_entry(table, name, tok, tokens)
        assert entry["max_new_tokens"] == router.tasks[name].setting.max_new_tokens
    assert router.tasks[TPL.taskname].setting.max_new_tokens == describe_answers(GOLD, tok)["answer_tokens"] + 8
