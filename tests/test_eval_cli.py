"""``ptune eval`` end to end on a tiny model with a random prompt table (B's save_prompt_table)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.evaluate.meta import split_meta
from ptune_cli.ptuning.table import save_prompt_table
from ptune_cli.ptuning.template import TaskTemplate
from tests.test_predict import varied_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENT = TaskTemplate("sentiment-task", "<|VIRTUAL_PROMPT_0|> {sentence}:{label}", 4, [4], "label", "sentence")
ISLOT = TaskTemplate("intent_and_slot", "<|VIRTUAL_PROMPT_0|> Utterance: {utterance}<|VIRTUAL_PROMPT_1|>{label}",
                     5, [3, 2], "label", "utterance")
SENTENCES = [
    "Shares fell sharply after the announcement.",
    "The company reported strong growth in quarterly profit.",
    "Aktierna föll kraftigt efter beskedet.",
    "Hur är vädret i Stockholm idag?",
    "ok",
    "Företaget rapporterade stark vinsttillväxt.",
]
LABELS = ["negative", "positive", "negative", "neutral", "neutral", "positive"]




def _jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    model, tok = varied_lm(tiny_lm_dir, seed=3)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    g = torch.Generator().manual_seed(0)
    prompts = {"sentiment-task": torch.randn(4, 32, generator=g), "intent_and_slot": torch.randn(5, 32, generator=g)}
    meta = {"base_model": str(root / "model"), "templates": {t.taskname: t.to_dict() for t in (SENT, ISLOT)}}
    save_prompt_table(root / "run", prompts, meta)
    sent = [{"taskname": "sentiment-task", "sentence": s, "label": lab} for s, lab in zip(SENTENCES, LABELS, strict=True)]
    islot = [{"taskname": "intent_and_slot", "utterance": "make me a coffee please",
              "label": "\nIntent: iot_coffee\nSlots: device_type(coffee machine)"},
             {"taskname": "intent_and_slot", "utterance": "wake me up at seven am", "label": "\nIntent: alarm_set\nSlots: time(seven am)"}]
    return {
        "root": root,
        "run": str(root / "run"),
        "test": _jsonl(root / "test.jsonl", sent),
        "islot": _jsonl(root / "islot.jsonl", islot),
        "template": _jsonl(root / "tpl.json", [SENT.to_dict()]),
    }


def invoke(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args)])


def test_eval_run_generate_then_rescore(env, tmp_path):
    res_p, pred_p = tmp_path / "results.json", tmp_path / "pred.jsonl"
    r = invoke("--run", env["run"], "--data", env["test"], "-o", res_p, "--predictions-out", pred_p)
    assert r.exit_code == 0, r.output
    res = json.loads(res_p.read_text())
    assert res["metric"] == "accuracy" and res["n"] == 6
    assert {"accuracy", "per_label", "meta"} <= set(res)
    meta = res["meta"]
    assert meta["task"] == "sentiment-task" and meta["decode"] == "generate" and meta["stop_at_newline"] is True
    assert meta["max_new_tokens"] >= 9 and meta["records_per_s"] > 0 and meta["skipped"] == 0
    preds = _read(pred_p)
    src = _read(env["test"])
    assert [{k: v for k, v in p.items() if k != "prediction"} for p in preds] == src  # input record + prediction
    for p in preds:
        assert isinstance(p["prediction"], str) and "\n" not in p["prediction"]
        assert p["sentence"] not in p["prediction"]  # no prompt text
    assert len({p["prediction"] for p in preds}) > 1
    # scoring the predictions file without a model gives the same numbers
    r2 = invoke("--predictions", pred_p, "-o", tmp_path / "again.json")
    assert r2.exit_code == 0, r2.output
    again = json.loads((tmp_path / "again.json").read_text())
    assert (again["accuracy"], again["per_label"]) == (res["accuracy"], res["per_label"])
    assert "accuracy" in r.stdout and "per label" in r.stdout


def test_eval_rank_decoding(env, tmp_path):
    pred_p = tmp_path / "pred.jsonl"
    r = invoke("--run", env["run"], "--data", env["test"], "--decode", "rank", "--predictions-out", pred_p,
               "--labels", "positive,negative,neutral", "--markdown", "--batch-size", "4")
    assert r.exit_code == 0, r.output
    assert "| accuracy |" in r.stdout
    for p in _read(pred_p):
        assert p["prediction"] in {"positive", "negative", "neutral"}
        assert set(p["scores"]) == {"positive", "negative", "neutral"}
        assert p["prediction"] == max(p["scores"], key=p["scores"].get)


def test_rank_candidates_come_from_the_training_file(env, tmp_path):
    import shutil

    from ptune_cli.ptuning.table import PROMPT_META_FILE

    run = tmp_path / "run"
    shutil.copytree(env["run"], run)
    train = _jsonl(tmp_path / "train.jsonl", [{"taskname": "sentiment-task", "sentence": "s", "label": lab}
                                            for lab in ("mixed", "positive", "negative")]
                   + [{"taskname": "intent_and_slot", "utterance": "u", "label": "Intent: x"}])
    meta = json.loads((run / PROMPT_META_FILE).read_text())
    meta["hyperparameters"] = {"train": train}
    (run / PROMPT_META_FILE).write_text(json.dumps(meta))
    res_p = tmp_path / "r.json"
    r = invoke("--run", run, "--data", env["test"], "--decode", "rank", "-o", res_p)
    assert r.exit_code == 0, r.output
    # the training labels of this task, not the test set's (which has 'neutral', never trained)
    assert json.loads(res_p.read_text())["meta"]["candidates"] == ["mixed", "negative", "positive"]


def test_eval_intent_slot_multiline(env, tmp_path):
    res_p = tmp_path / "r.json"
    r = invoke("--run", env["run"], "--data", env["islot"], "-o", res_p, "--max-new-tokens", "6")
    assert r.exit_code == 0, r.output
    res = json.loads(res_p.read_text())
    assert res["metric"] == "intent-slot" and res["meta"]["task"] == "intent_and_slot"
    assert res["meta"]["stop_at_newline"] is False  # gold answers span lines
    assert set(res["intent"]) == {"accuracy", "precision", "recall", "f1"}
    assert set(res["slot"]) == {"precision", "recall", "f1"} and "exact_match" in res
    r = invoke("--run", env["run"], "--data", env["islot"], "--decode", "rank")
    assert r.exit_code == 1 and "closed label set" in r.output


def test_eval_baselines(env, tmp_path):
    res_p = tmp_path / "r.json"
    model = str(env["root"] / "model")
    r = invoke("--baseline", "few", "--shots", "2", "--train", env["test"], "--template", env["template"],
               "--data", env["test"], "--model", model, "-o", res_p, "--seed", "1")
    assert r.exit_code == 0, r.output
    meta = json.loads(res_p.read_text())["meta"]
    assert meta["baseline"] == "few" and meta["shots"] == 2 and len(meta["shot_lines"]) == 2
    r = invoke("--baseline", "zero", "--template", env["template"], "--data", env["test"], "--model", model,
               "--decode", "rank")
    assert r.exit_code == 0, r.output
    r = invoke("--baseline", "one", "--template", env["template"], "--data", env["test"])
    assert r.exit_code == 1 and "needs --train" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "{root}", "--data", "{test}"], "no prompt table (prompt_table.safetensors)"),
        (["--run", "{run}", "--data", "{test}", "--task", "nope"], "task 'nope' is not in the prompt table (known tasks: "),
        (["--run", "{run}", "--data", "{bad}"], "bad.jsonl:2: field 'sentence': missing required field"),
        (["--run", "{run}", "--data", "{notask}"], "several tasks ("),
        (["--run", "{run}", "--data", "{nulltext}"], "nulltext.jsonl:1: field 'sentence': expected a string, got null"),
        (["--run", "{run}", "--data", "{listlabel}"], "listlabel.jsonl:1: field 'label': expected a string, got list"),
        (["--baseline", "one", "--template", "{tpl}", "--train", "{nulltext}", "--data", "{test}"],
         "nulltext.jsonl:1: field 'sentence': expected a string, got null"),
        (["--predictions", "{test}"], "test.jsonl:1: field 'prediction': missing required field"),
        (["--predictions", "{short}", "--data", "{test}"], "2 predictions but"),
        (["--predictions", "{short}", "--label-field", "gold"], "field 'gold': missing required field"),
        (["--predictions", "{short}", "--normalize", "nope"], "--normalize: unknown label map 'nope'"),
        ([], "give exactly one of --run"),
        (["--run", "{run}", "--data", "{test}", "--precision", "fp8"], "--precision must be one of auto, fp32, fp16, bf16"),
        (["--run", "{run}", "--data", "{test}", "--device", "cuda:7"], "--device cuda:7: no such CUDA device here"),
    ],
)
def test_eval_user_errors(env, tmp_path, args, message):
    paths = {
        "root": env["root"], "run": env["run"], "test": env["test"],
        "bad": _jsonl(tmp_path / "bad.jsonl", [{"taskname": "sentiment-task", "sentence": "a", "label": "x"},
                                                {"taskname": "sentiment-task", "label": "y"}]),
        "notask": _jsonl(tmp_path / "notask.jsonl", [{"sentence": "a", "label": "x"}]),
        "short": _jsonl(tmp_path / "short.jsonl", [{"label": "x", "prediction": "x"}] * 2),
        "nulltext": _jsonl(tmp_path / "nulltext.jsonl", [{"taskname": "sentiment-task", "sentence": None, "label": "x"}]),
        "listlabel": _jsonl(tmp_path / "listlabel.jsonl", [{"taskname": "sentiment-task", "sentence": "a", "label": ["x"]}]),
        "tpl": env["template"],
    }
    out = tmp_path / "never.json"
    r = invoke(*[a.format(**paths) for a in args], "-o", out)
    assert r.exit_code == 1
    assert message in r.output
    assert "Traceback" not in r.output
    assert not out.exists()


def test_precision_and_device_reach_the_model(env, tmp_path):
    res_p = tmp_path / "results.json"
    r = invoke("--run", env["run"], "--data", env["test"], "-o", res_p, "--device", "cpu", "--precision", "bf16")
    assert r.exit_code == 0, r.output
    meta = json.loads(res_p.read_text())["meta"]
    assert meta["device"] == "cpu" and meta["dtype"] == "bfloat16"
    r = invoke("--run", env["run"], "--data", env["test"], "-o", res_p)
    assert json.loads(res_p.read_text())["meta"]["dtype"] == "float32"  # auto on CPU
    r = invoke("--run", env["run"], "--data", env["test"], "-o", res_p, "--precision", "no")
    assert r.exit_code == 0, r.output  # train's old word for fp32, the same on every command
    assert json.loads(res_p.read_text())["meta"]["dtype"] == "float32"


def test_meta_from_kfold_manifest(env, tmp_path):
    from ptune_cli.folds import KFoldConfig, run_kfold

    run_kfold(env["test"], tmp_path / "folds", KFoldConfig(k=2, seed=5, train_fraction=0.5, sample_seed=3, stratify=False))
    test = tmp_path / "folds" / "fold_01" / "test.jsonl"
    assert split_meta(str(test)) == {"fold": 1, "train_fraction": 0.5, "sample": 3}
    # the run's training file wins for fraction/sample; the fold comes from the test file
    run_meta = {"hyperparameters": {"train": str(tmp_path / "folds" / "fold_00" / "train.jsonl")}}
    assert split_meta(str(env["test"]), run_meta) == {"fold": 0, "train_fraction": 0.5, "sample": 3}
    assert split_meta(str(env["test"])) == {"fold": None, "train_fraction": None, "sample": None}
    res_p = tmp_path / "r.json"
    r = invoke("--run", env["run"], "--data", test, "-o", res_p, "--sample", "9")
    assert r.exit_code == 0, r.output
    meta = json.loads(res_p.read_text())["meta"]
    assert (meta["fold"], meta["train_fraction"], meta["sample"]) == (1, 0.5, 9)  # option overrides


def test_killed_eval_resumes_from_partial(env, tmp_path):
    from ptune_cli.evaluate.runner import EvalConfig, run_eval

    def cfg(out, **kw):
        return EvalConfig(run=env["run"], data=env["test"], predictions_out=str(out), batch_size=2, **kw)

    ref_out = tmp_path / "ref.jsonl"
    ref = run_eval(cfg(ref_out))
    assert not (tmp_path / "ref.jsonl.partial").exists()

    out = tmp_path / "pred.jsonl"
    calls = []

    def die(k):  # "kill" the run after its first batch
        calls.append(k)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg(out), on_progress=die)
    partial = tmp_path / "pred.jsonl.partial"
    # the two finished predictions; the fingerprint lives beside them (ptune_cli.resumable)
    assert not out.exists() and len(partial.read_text().splitlines()) == 2
    assert (tmp_path / "pred.jsonl.partial.json").is_file()
    with open(partial, "a") as fh:
        fh.write('{"i": 5, "predi')  # torn line from a kill -9 mid-write
    totals = []
    res = run_eval(cfg(out), on_total=totals.append)
    assert totals == [4] and res["meta"]["resumed"] == 2
    assert _read(out) == _read(ref_out) and res["accuracy"] == ref["accuracy"]
    assert not partial.exists() and not (tmp_path / "pred.jsonl.partial.json").exists()
    # other options -> other key: the stale sidecar is not reused
    with pytest.raises(KeyboardInterrupt):
        run_eval(cfg(out), on_progress=die)
    totals = []
    res = run_eval(cfg(out, max_new_tokens=3), on_total=totals.append)
    assert totals == [6] and res["meta"]["resumed"] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run", "{run}", "--data", "{test}", "-o", "{test}"], "-o {test} is also --data"),
        (["--run", "{run}", "--data", "{test}", "--predictions-out", "{test}"], "--predictions-out {test} is also --data"),
        (["--predictions", "{test}", "-o", "{test}"], "-o {test} is also --predictions"),
        (["--run", "{run}", "--data", "{test}", "-o", "{copy}", "--predictions-out", "{copy}"],
         "--predictions-out and -o are the same file"),
        (["--run", "{run}", "--data", "{test}", "-o", "{folder}"], "-o {folder}: is a folder"),
    ],
)
def test_outputs_are_checked_before_any_work(env, tmp_path, monkeypatch, args, message):
    """Output = input would replace the test set; a folder as -o used to fail after the whole
    generation and leave <folder>.partial behind."""
    import ptune_cli.evaluate.runner as runner

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(runner, "build_job", no_model)
    test = tmp_path / "test.jsonl"
    test.write_bytes(open(env["test"], "rb").read())
    (tmp_path / "folder").mkdir()
    paths = {"run": env["run"], "test": test, "copy": tmp_path / "copy.json", "folder": tmp_path / "folder"}
    r = invoke(*[a.format(**paths) for a in args])
    assert r.exit_code == 1, r.output
    assert message.format(**paths) in r.output and "Traceback" not in r.output
    assert test.read_bytes() == open(env["test"], "rb").read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "test.jsonl"]


def test_eval_prints_no_warnings(env, tmp_path):
    """Every eval used to print transformers' `past_key_values` deprecation (a FutureWarning
    and a logger line): the KV cache now goes under the name the release expects."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run(
        [sys.executable, "-W", "default", "-m", "ptune_cli", "eval", "--run", env["run"], "--data", env["test"],
         "-o", str(tmp_path / "r.json"), "--batch-size", "3"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [line for line in proc.stderr.splitlines() if "arn" in line or "deprecat" in line.lower()], proc.stderr


def test_eval_resumes_after_kill_9(env, tmp_path):
    """A real SIGKILL between batches: the rerun predicts only what is missing, and the outputs
    equal an uninterrupted run's (no record lost, none twice)."""
    from ptune_cli.evaluate.runner import DELAY_ENV
    from tests.killing import kill_after_lines

    out, partial = tmp_path / "pred.jsonl", tmp_path / "pred.jsonl.partial"
    args = ["eval", "--run", env["run"], "--data", env["test"], "--predictions-out", str(out), "--batch-size", "1"]
    kill_after_lines(args, partial, 2, {DELAY_ENV: "0.5"})
    assert not out.exists()
    written = partial.read_bytes().count(b"\n")
    assert 2 <= written < 6
    res_p = tmp_path / "r.json"
    r = invoke(*args[1:], "-o", res_p)
    assert r.exit_code == 0, r.output
    assert json.loads(res_p.read_text())["meta"]["resumed"] == written
    assert invoke(*args[1:-4], "--predictions-out", tmp_path / "fresh.jsonl").exit_code == 0
    assert _read(out) == _read(tmp_path / "fresh.jsonl")
    assert not partial.exists()


# ---- issue 19: QA fields named, out-of-set answers shown, intent-slot on the wrong data said --


def _pred_file(tmp_path, records):
    p = tmp_path / "pred.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(p)


@pytest.mark.parametrize("records, args, message", [
    ([{"answer": "a", "answers": "a", "prediction": "a"}], [], "pred.jsonl:1: field 'answers': expected a non-empty list"),
    ([{"answer": "a", "answers": ["a", 3], "prediction": "a"}], [], "pred.jsonl:1: field 'answers': expected a non-empty"),
    ([{"answer": "a", "prediction": "a"}, {"prediction": "b"}], ["--metric", "squad"], "pred.jsonl:2: field 'answer': missing"),
])
def test_malformed_qa_fields_are_named(tmp_path, records, args, message):
    r = CliRunner().invoke(app, ["eval", "--predictions", _pred_file(tmp_path, records), *args])
    assert r.exit_code == 1 and message in r.output, r.output
    assert "'label'" not in r.output


def test_squad_metric_on_records_with_answer_but_no_answers(tmp_path):
    r = CliRunner().invoke(app, ["eval", "--predictions", _pred_file(tmp_path, [{"answer": "the cat", "prediction": "cat"}]),
                                 "--metric", "squad"])
    assert r.exit_code == 0, r.output
    assert "exact match" in r.output and "100.00" in r.output


def test_out_of_set_answers_and_intent_slot_on_sentiment_are_said(tmp_path):
    recs = [{"label": "positive", "prediction": p} for p in ("positive", "I think it is good", "maybe")]
    r = CliRunner().invoke(app, ["eval", "--predictions", _pred_file(tmp_path, recs)])
    assert r.exit_code == 0 and "2 of 3 predictions are none of the gold labels (out of set)" in r.output, r.output
    r = CliRunner().invoke(app, ["eval", "--predictions", _pred_file(tmp_path, recs), "--markdown"])
    assert "_2 of 3 predictions are none of the gold labels (out of set)_" in r.output
    out = tmp_path / "is.json"
    r = CliRunner().invoke(app, ["eval", "--predictions", _pred_file(tmp_path, recs), "--metric", "intent-slot",
                                 "-o", str(out)])
    assert r.exit_code == 0 and "no gold label has an 'Intent:' part" in r.output, r.output
    assert json.loads(out.read_text())["warnings"][0].startswith("no gold label has an 'Intent:' part")
