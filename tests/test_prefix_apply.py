"""Prefix (deep prompt) tasks in ``ptune predict`` and ``ptune serve``: a table mixing an input
task and a prefix task answers both, with eval's predictions, through the same code path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.errors import UserError
from ptune_cli.ptuning.table import load_prompt_table
from tests.predict_run import make_run, questions, read_jsonl, sentiment, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("prefix-apply"), tiny_lm_dir, prefix=True)


def test_table_mixes_kinds(env):
    table = load_prompt_table(env["run"])
    assert table.kind("ask") == "prefix" and table.kind("sentiment-task") == "input"


def test_eval_predict_and_serve_agree_on_a_prefix_task(env, tmp_path):
    from ptune_cli.serve.config import ServeConfig
    from ptune_cli.serve.server import build_app

    ev = tmp_path / "eval.jsonl"
    r = CliRunner().invoke(app, ["eval", "--run", env["run"], "--data", write_jsonl(tmp_path / "t.jsonl", questions()),
                                 "--predictions-out", str(ev), "--batch-size", "4", "-o", str(tmp_path / "res.json")])
    assert r.exit_code == 0, r.output
    want = [w["prediction"] for w in read_jsonl(ev)]
    assert len(set(want)) > 1  # the prefix conditions the answers: not a constant

    s, q = sentiment(labeled=False), questions(labeled=False)
    mixed = [q[0], s[0], q[1], s[1], q[2], q[3]]
    out = tmp_path / "p.jsonl"
    r = CliRunner().invoke(app, ["predict", "--run", env["run"], "--data", write_jsonl(tmp_path / "new.jsonl", mixed),
                                 "-o", str(out), "--batch-size", "3"])
    assert r.exit_code == 0, r.output
    got = read_jsonl(out)
    assert [g["prediction"] for g in got if g["taskname"] == "ask"] == want

    with TestClient(build_app(ServeConfig(run=env["run"]))) as client:
        resp = client.post("/v1/predict", json=mixed)
        assert resp.status_code == 200, resp.text
        assert [x["prediction"] for x in resp.json()] == [g["prediction"] for g in got]


def test_prompt_embeds_refuses_a_prefix_task(env):
    from ptune_cli.inference.embeds import prompt_embeds
    from tests.predict_run import ASK

    table = load_prompt_table(env["run"])
    with pytest.raises(UserError, match="prefix task"):
        prompt_embeds(None, None, ASK, table.prompts["ask"], {"question": "who won"})
