"""Long commands are never silent in a log: when stderr is not a terminal, plain progress lines
(every PTUNE_PROGRESS_SECONDS seconds, and at the end) replace rich's bar, which draws nothing
there. Issue 19: `train > log` printed nothing for 14 minutes."""

from __future__ import annotations

import io

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.cli.plain_progress import PlainProgress
from tests.predict_run import make_run, sentiment, write_jsonl
from tests.test_train import SENT_TPL, sentiment_records, write

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EVERY_UPDATE = {"PTUNE_PROGRESS_SECONDS": "0"}


def test_plain_lines_at_most_every_n_seconds_and_at_the_end():
    out = io.StringIO()
    with PlainProgress(every=3600, stream=out) as bar:
        t = bar.add_task("train", total=10)
        for _ in range(10):
            bar.advance(t)
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]  # only the final line
    assert out.getvalue().startswith("train: 10/10 (100%), ")
    out = io.StringIO()
    bar = PlainProgress(every=0, stream=out)
    t = bar.add_task("translate", total=None)
    bar.update(t, total=4)
    bar.advance(t, 2)
    bar.update(t, completed=3, description="train loss 0.5000")
    bar.stop()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("translate: 2/4 (50%), ") and "left" in lines[0]
    assert lines[1].startswith("train loss 0.5000: 3/4 (75%)") and len(lines) == 2


def test_train_and_predict_write_progress_lines_into_a_log(tiny_lm_dir, tmp_path):
    train = write(tmp_path / "train.jsonl", sentiment_records(16))
    r = CliRunner().invoke(app, ["train", "--train", train, "--template", SENT_TPL, "--model", str(tiny_lm_dir),
                                 "-o", str(tmp_path / "run"), "--max-steps", "4", "--batch-size", "4"], env=EVERY_UPDATE)
    assert r.exit_code == 0, r.output
    steps = [line for line in r.output.splitlines() if line.startswith("train loss ")]
    assert [s.split(": ")[1].split(",")[0] for s in steps] == ["1/4 (25%)", "2/4 (50%)", "3/4 (75%)", "4/4 (100%)"]
    assert r.output.index("4/4 (100%)") < r.output.index("done: 4/4 steps")
    env = make_run(tmp_path, tiny_lm_dir)
    r = CliRunner().invoke(app, ["predict", "--run", env["run"], "--data", write_jsonl(tmp_path / "n.jsonl", sentiment(False)),
                                 "-o", str(tmp_path / "p.jsonl")], env=EVERY_UPDATE)
    assert r.exit_code == 0, r.output
    assert f"predict: {len(sentiment(False))}/{len(sentiment(False))} (100%)" in r.output
