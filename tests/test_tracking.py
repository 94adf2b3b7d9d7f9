"""``--report-to wandb|tensorboard`` on train and eval: what was written is read back (W&B
offline through its own protobuf records, TensorBoard through its EventAccumulator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptune_cli.evaluate.config import EvalConfig
from ptune_cli.evaluate.runner import run_eval
from ptune_cli.training import TrainConfig, run_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = str(REPO / "templates" / "en-squad.json")
QA = [{"taskname": "squad", "context": c, "question": q, "answer": a, "answers": [a, f"the {a}"]}
      for c, q, a in [("make me a coffee please.", "what do I want?", "coffee"),
                      ("wake me up at seven am tomorrow.", "when?", "seven am"),
                      ("the weather in Stockholm today.", "where?", "Stockholm")]] * 3


def _write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture()
def wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "ptune-test")
    return tmp_path / "wb"


def _runs(wb: Path) -> list[Path]:
    return sorted(wb.glob("wandb/offline-run-*"))


def test_wandb_train_and_eval(tmp_path, tiny_lm_dir, wandb_offline):
    from tests.wandb_records import run_summary

    train = _write(tmp_path / "train.jsonl", QA)
    run = tmp_path / "run"
    run_train(TrainConfig(train=train, val=train, output=str(run), template=TEMPLATE, model=str(tiny_lm_dir),
                          max_steps=3, batch_size=4, eval_every=2, report_to="wandb"))
    (train_dir,) = _runs(wandb_offline)
    got = run_summary(train_dir)
    assert got["job_type"] == "train" and got["exit_code"] == 0
    assert got["config"]["options"]["max_steps"] == 3 and got["config"]["resolved"]["total_steps"] == 3
    steps = [h for h in got["history"] if "train/loss" in h]
    assert [h["_step"] for h in steps] == [1, 2, 3]
    assert all(h["train/lr"] >= 0 and h["train/tokens_per_s"] > 0 for h in steps)
    assert [h["_step"] for h in got["history"] if "val/loss" in h] == [2, 3]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [h["train/loss"] for h in steps] == [r["loss"] for r in log]
    assert train_dir.name.endswith("-" + (run / "wandb_run_id.txt").read_text().strip())  # what --resume continues
    (art,) = got["artifacts"]
    assert art["type"] == "prompt-table" and set(art["files"]) == {"prompt_table.safetensors", "prompt_table.json"}

    test = _write(tmp_path / "test.jsonl", QA[:3])
    res = run_eval(EvalConfig(run=str(run), data=test, output=str(tmp_path / "res.json"), max_new_tokens=3,
                              predictions_out=str(tmp_path / "pred.jsonl"), report_to="wandb"))
    (eval_dir,) = [d for d in _runs(wandb_offline) if d != train_dir]
    got = run_summary(eval_dir)
    assert got["job_type"] == "eval" and got["config"]["metric"] == "squad"
    assert got["summary"]["eval/f1"] == pytest.approx(res["f1"]) and got["summary"]["eval/exact_match"] == res["exact_match"]
    (table_file,) = eval_dir.glob("files/media/table/predictions_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["context", "question", "answer", "answers", "prediction"]
    assert [r[:3] for r in table["data"]] == [[r["context"], r["question"], r["answer"]] for r in QA[:3]]
    assert json.loads(table["data"][0][3]) == QA[0]["answers"]
    assert [r[4] for r in table["data"]] == [json.loads(x)["prediction"] for x in (tmp_path / "pred.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("encoder", ["lstm", "prefix"])  # deep prompts report through the same events
def test_tensorboard_train_and_eval(tmp_path, tiny_lm_dir, encoder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = _write(tmp_path / "train.jsonl", QA)
    run = tmp_path / "run"
    run_train(TrainConfig(train=train, output=str(run), template=TEMPLATE, model=str(tiny_lm_dir),
                          max_steps=2, batch_size=4, report_to="tensorboard", encoder=encoder))
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([r["loss"] for r in log])
    assert {"train/lr", "train/tokens_per_s"} <= set(acc.Tags()["scalars"])
    config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"total_steps": 2' in config and '"max_steps": 2' in config

    out = tmp_path / "eval" / "fold_00.json"
    res = run_eval(EvalConfig(run=str(run), data=_write(tmp_path / "test.jsonl", QA[:3]), output=str(out),
                              max_new_tokens=3, report_to="tensorboard"))
    acc = EventAccumulator(str(tmp_path / "eval" / "tensorboard" / "fold_00"))
    acc.Reload()
    assert acc.Scalars("eval/f1")[0].value == pytest.approx(res["f1"])
    table = acc.Tensors("predictions/text_summary")[0].tensor_proto.string_val[0].decode()
    assert table.startswith("| context | question | answer | answers | prediction |")


def test_missing_tracker_package_fails_before_any_model_load(tmp_path, monkeypatch):
    import importlib.util

    from ptune_cli.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"--report-to wandb: the wandb package is not installed"):
        run_train(TrainConfig(train=_write(tmp_path / "t.jsonl", QA), output=str(tmp_path / "r"), template=TEMPLATE,
                              model=str(tmp_path / "no-such-model"), report_to="wandb"))
    assert not (tmp_path / "r").exists()


def test_wandb_resume_relogs_the_steps_the_killed_process_lost(tmp_path, tiny_lm_dir, wandb_offline):
    """Issue 19: W&B buffers its history, so after kill -9 the killed process's steps were lost
    (offline: all of them) and the resumed curve had a hole. --resume logs log.jsonl's steps
    up to the checkpoint again, in the resumed run."""
    from ptune_cli.training import Step
    from tests.wandb_records import run_summary

    train = _write(tmp_path / "train.jsonl", QA)
    run = tmp_path / "run"
    kw = dict(train=train, output=str(run), template=TEMPLATE, model=str(tiny_lm_dir), max_steps=6, batch_size=4,
              save_every=2, report_to="wandb")

    class Killed(Exception):
        pass

    def crash(event):
        if isinstance(event, Step) and event.step == 5:  # last checkpoint: step 4
            raise Killed

    with pytest.raises(Killed):
        run_train(TrainConfig(**kw), on_event=crash)
    (first,) = _runs(wandb_offline)
    import shutil

    shutil.rmtree(first)  # what kill -9 leaves of an offline run's history: nothing
    run_train(TrainConfig(**kw, resume=True))
    (resumed,) = _runs(wandb_offline)
    got = run_summary(resumed)
    steps = [h for h in got["history"] if "train/loss" in h]
    assert [h["_step"] for h in steps] == [1, 2, 3, 4, 5, 6]  # 1-4 from log.jsonl, 5-6 trained again
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [h["train/loss"] for h in steps] == [r["loss"] for r in log]
    assert resumed.name.endswith("-" + (run / "wandb_run_id.txt").read_text().strip())
