"""``ptune predict``: unlabeled records of several tasks routed by taskname, eval's decoding,
input order, stdin/stdout, bad records, resume after kill -9."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from tests.predict_run import make_run, questions, read_jsonl, sentiment, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("predict"), tiny_lm_dir)


def predict(*args, input=None):
    return CliRunner().invoke(app, ["predict", *map(str, args)], input=input)


def mixed() -> list[dict]:
    """Records of both tasks interleaved, without gold labels."""
    s, q = sentiment(labeled=False), questions(labeled=False)
    return [s[0], q[0], s[1], s[2], q[1], s[3], q[2], s[4], q[3], s[5]]


@pytest.mark.parametrize("decode", ["generate", "rank"])
def test_predictions_equal_evals(env, tmp_path, decode):
    """The same records, the same defaults (resolved from the known answers), the same code."""
    ev = tmp_path / "eval.jsonl"
    r = CliRunner().invoke(app, ["eval", "--run", env["run"], "--data", write_jsonl(tmp_path / "t.jsonl", sentiment()),
                                 "--predictions-out", str(ev), "--decode", decode, "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "p.jsonl"
    r = predict("--run", env["run"], "--data", write_jsonl(tmp_path / "new.jsonl", sentiment(labeled=False)),
                "-o", out, "--decode", decode, "--batch-size", "3")
    assert r.exit_code == 0, r.output
    got, want = read_jsonl(out), read_jsonl(ev)
    assert [g["prediction"] for g in got] == [w["prediction"] for w in want]
    assert len({w["prediction"] for w in want}) > 1  # not a constant
    assert [{k: v for k, v in g.items() if k not in ("prediction", "scores")} for g in got] == sentiment(labeled=False)
    if decode == "rank":
        # batch 3 vs batch 4: rounded scores agree to a tolerance, not digit for digit
        for g, w in zip(got, want, strict=True):
            assert g["scores"] == pytest.approx(w["scores"], abs=2e-3)


def test_several_tasks_in_one_file_keep_input_order(env, tmp_path, monkeypatch):
    import ptune_cli.models as models

    loads = []
    real = models.load_causal_lm
    monkeypatch.setattr(models, "load_causal_lm", lambda *a, **k: loads.append(a) or real(*a, **k))
    out = tmp_path / "p.jsonl"
    r = predict("--run", env["run"], "--data", write_jsonl(tmp_path / "mixed.jsonl", mixed()), "-o", out)
    assert r.exit_code == 0, r.output
    assert len(loads) == 1  # one model for every task
    got = read_jsonl(out)
    assert [{k: v for k, v in g.items() if k != "prediction"} for g in got] == mixed()
    # each record answered by its own task's prompts: as when that task's records come alone
    for task, recs in (("sentiment-task", sentiment(False)), ("ask", questions(False))):
        alone = tmp_path / f"{task}.jsonl"
        assert predict("--run", env["run"], "--data", write_jsonl(tmp_path / f"in-{task}.jsonl", recs), "-o", alone).exit_code == 0
        assert [g["prediction"] for g in got if g["taskname"] == task] == [a["prediction"] for a in read_jsonl(alone)]
    assert {g["prediction"] for g in got if g["taskname"] == "ask"} != {g["prediction"] for g in got if g["taskname"] != "ask"}


def test_stdin_to_stdout_and_default_task(env, tmp_path):
    recs = [{"sentence": s["sentence"]} for s in sentiment(False)]  # no taskname: --task
    text = "".join(__import__("json").dumps(r) + "\n" for r in recs)
    r = predict("--run", env["run"], "--data", "-", "--task", "sentiment-task", input=text)
    assert r.exit_code == 0, r.output
    lines = [__import__("json").loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert [x["sentence"] for x in lines] == [s["sentence"] for s in recs]
    assert all(isinstance(x["prediction"], str) for x in lines)


@pytest.mark.parametrize("records, message", [
    ([{"taskname": "sentiment-task", "sentence": "a"}, {"taskname": "nope", "sentence": "b"}],
     "new.jsonl:2: field 'taskname': unknown task 'nope' (known: ask, sentiment-task)"),
    ([{"taskname": "ask", "sentence": "a"}], "new.jsonl:1: field 'question': missing required field"),
    ([{"taskname": "ask", "question": 3}], "new.jsonl:1: field 'question': expected a string, got int"),
    ([{"question": "a"}], "new.jsonl:1: field 'taskname': missing: the prompt table has several tasks"),
])
def test_bad_records_fail_before_the_model(env, tmp_path, monkeypatch, records, message):
    import ptune_cli.inference.job as job

    monkeypatch.setattr(job, "load_model", lambda *a: pytest.fail("a model was loaded"))
    out = tmp_path / "o.jsonl"
    r = predict("--run", env["run"], "--data", write_jsonl(tmp_path / "new.jsonl", records), "-o", out)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output
    assert not out.exists() and not list(tmp_path.glob("o.jsonl*"))


def test_option_problems(env, tmp_path):
    data = write_jsonl(tmp_path / "new.jsonl", sentiment(False))
    r = predict("--run", env["run"], "--data", data, "--batch-size", "0", "--decode", "beam")
    assert r.exit_code == 1 and "--batch-size must be at least 1" in r.output and "--decode must be one of" in r.output
    r = predict("--run", env["run"], "--data", data, "-o", data)
    assert r.exit_code == 1 and "is also --data" in r.output


def test_predict_resumes_after_kill_9(env, tmp_path):
    from ptune_cli.inference.predict import DELAY_ENV
    from tests.killing import kill_after_lines

    data = write_jsonl(tmp_path / "mixed.jsonl", mixed())
    out, partial = tmp_path / "p.jsonl", tmp_path / "p.jsonl.partial"
    args = ["predict", "--run", env["run"], "--data", data, "-o", str(out), "--batch-size", "1"]
    kill_after_lines(args, partial, 3, {DELAY_ENV: "0.4"})
    assert not out.exists()
    written = partial.read_bytes().count(b"\n")
    assert 3 <= written < len(mixed())
    with open(partial, "ab") as fh:
        fh.write(b'{"i": 9, "predic')  # a torn last line
    r = predict(*args[1:])
    assert r.exit_code == 0, r.output
    assert f"{written} resumed" in r.output
    assert predict(*args[1:-4], "-o", tmp_path / "fresh.jsonl").exit_code == 0
    assert read_jsonl(out) == read_jsonl(tmp_path / "fresh.jsonl")
    assert not partial.exists() and not (tmp_path / "p.jsonl.partial.json").exists()


def test_decoding_options_are_declared_once():
    """eval, predict and serve share DecodeOptions' fields (the same declarations, not copies)."""
    import dataclasses

    from ptune_cli.evaluate.config import EvalConfig
    from ptune_cli.inference.options import DecodeOptions
    from ptune_cli.inference.predict import PredictConfig
    from ptune_cli.serve.config import ServeConfig

    shared = {f.name: f for f in dataclasses.fields(DecodeOptions)}
    assert {"decode", "max_new_tokens", "labels", "device", "precision", "batch_size"} <= set(shared)
    for cls in (EvalConfig, PredictConfig, ServeConfig):
        own = {f.name: f for f in dataclasses.fields(cls)}
        assert all(own[n] is f for n, f in shared.items()), cls


# ---- issue 19: a prompt_table.json that is valid JSON but not an object ---------------------


@pytest.mark.parametrize("command", ["predict", "eval", "train"])
def test_metadata_that_is_not_an_object_is_one_line_in_every_command(env, tmp_path, command):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(env["run"], run)
    (run / "prompt_table.json").write_text("[1, 2, 3]\n")
    data = write_jsonl(tmp_path / "d.jsonl", sentiment())
    args = {"predict": ["predict", "--run", run, "--data", data, "-o", tmp_path / "p.jsonl"],
            "eval": ["eval", "--run", run, "--data", data, "-o", tmp_path / "r.json"],
            "train": ["train", "--train", data, "--template", Path(__file__).parents[1] / "templates" / "sv-sentiment.json", "--existing", run,
                      "-o", tmp_path / "new", "--max-steps", "1"]}[command]
    r = CliRunner().invoke(app, list(map(str, args)))
    assert r.exit_code == 1, r.output
    assert r.output.strip() == f"error: {run}/prompt_table.json: expected a JSON object, got list (the metadata `ptune train` writes)"
    assert not any(p.name in ("p.jsonl", "r.json", "new") for p in tmp_path.iterdir())


def test_fields_of_an_earlier_prediction_are_not_carried_over(env, tmp_path):
    """A predictions file fed back in: its stale 'skipped' and 'scores' were kept next to the
    new prediction."""
    stale = [{**r, "prediction": "old", "skipped": True, "scores": {"x": -1.0}} for r in sentiment(labeled=False)[:3]]
    out = tmp_path / "p.jsonl"
    r = predict("--run", env["run"], "--data", write_jsonl(tmp_path / "old.jsonl", stale), "-o", out)
    assert r.exit_code == 0, r.output
    got = read_jsonl(out)
    assert [set(g) for g in got] == [{"taskname", "sentence", "prediction"}] * 3
    assert [g["sentence"] for g in got] == [s["sentence"] for s in stale]
