"""Real processes: a run killed with SIGKILL resumes to the same prompts, and a 2-process
CPU (gloo) data-parallel run writes one prompt table."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ptune_cli.ptuning.table import PROMPT_TABLE_FILE, load_prompt_table
from ptune_cli.training import run_train
from tests.test_train import (
    SENT_TPL,
    cfg,
    intent_records,
    sentiment_records,
    tensor_bytes,
    write,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]

KILLER = """
import os, sys
from ptune_cli.training import Step, TrainConfig, run_train
cfg = TrainConfig(**{json_cfg})
def on_event(event):
    if isinstance(event, Step) and event.step == 5:
        os.kill(os.getpid(), 9)  # kill -9 between checkpoints (save_every=2: last one at step 4)
run_train(cfg, on_event=on_event)
"""


def _env(**extra) -> dict:
    # one thread, like the in-process reference run (same kernels, same bits)
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def test_sigkill_then_resume_matches_uninterrupted(tiny_lm_dir, tmp_path):
    data = {"train": write(tmp_path / "train.jsonl", sentiment_records(24)), "val": write(tmp_path / "val.jsonl", sentiment_records(8, 1))}
    kw = dict(val=data["val"], epochs=3, save_every=2, eval_every=3)
    run_train(cfg(tiny_lm_dir, data, tmp_path / "full", **kw))

    run = tmp_path / "killed"
    c = cfg(tiny_lm_dir, data, run, **kw).to_dict()
    proc = subprocess.run([sys.executable, "-c", KILLER.replace("{json_cfg}", repr(c))], env=_env(), capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (run / PROMPT_TABLE_FILE).exists() and len((run / "log.jsonl").read_text().splitlines()) == 5

    from typer.testing import CliRunner

    from ptune_cli.cli import app

    args = ["train", "--train", data["train"], "--val", data["val"], "--template", SENT_TPL, "--model", str(tiny_lm_dir),
            "-o", str(run), "--epochs", "3", "--lr", "0.01", "--save-every", "2", "--eval-every", "3", "--resume"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "resuming from step 4" in res.output
    assert tensor_bytes(tmp_path / "full", "sentiment-task") == tensor_bytes(run, "sentiment-task")


@pytest.mark.parametrize("encoder", [["--encoder", "mlp"], ["--encoder", "prefix", "--prefix-projection"]])
def test_two_process_gloo_run_writes_one_table(tiny_lm_dir, tmp_path, encoder):
    recs = sentiment_records(16) + intent_records(16)
    train = write(tmp_path / "both.jsonl", recs)
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "ptune_cli", "train", "--train", train, "--template", str(REPO / "templates" / "sv-multitask.json"),
            "--model", str(tiny_lm_dir), "-o", str(out), "--epochs", "2", *encoder]
    # what `accelerate launch --multi_gpu --num_processes 2` / torchrun set for each process
    procs = [
        subprocess.Popen(args, env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["num_processes"] == 2 and resolved["effective_batch_size"] == 16
    # 4 one-task batches per epoch over 2 processes: 2 steps per epoch
    assert resolved["steps_per_epoch"] == 2
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    table = load_prompt_table(out)
    assert set(table.prompts) == {"sentiment-task", "intent_and_slot"}
    assert sorted(p.name for p in out.glob("prompt_table*")) == ["prompt_table.json", "prompt_table.safetensors"]
    assert "trainable params" in outs[0][1] and "trainable params" not in outs[1][1]  # rank 0 reports
