"""`ptune train` end to end on a tiny Llama: files written, continual learning, resume after an
interruption, early stopping, NaN guard, bad input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ptune_cli.errors import UserError
from ptune_cli.ptuning.table import PROMPT_TABLE_FILE, load_prompt_table
from ptune_cli.training import Evaluated, Finished, Started, Step, TrainConfig, run_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
SENT_TPL = str(REPO / "templates" / "sv-sentiment.json")
INTENT_TPL = str(REPO / "templates" / "sv-intent-slot.json")


def sentiment_records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = "make me a coffee please wake me up at seven".split()
    out = []
    for _ in range(n):
        lab = rng.choice(["positiv", "negativ"])
        head = "Aktierna föll kraftigt" if lab == "negativ" else "Företaget rapporterade stark vinsttillväxt"
        out.append({"taskname": "sentiment-task", "sentence": f"{head} {' '.join(rng.sample(words, rng.randint(1, 6)))}", "label": lab})
    return out


def intent_records(n: int) -> list[dict]:
    utts = [("make me a coffee", "\nIntent: iot_coffee\nSlots: None"), ("wake me up at seven am", "\nIntent: alarm_set\nSlots: time(seven am)")]
    return [{"taskname": "intent_and_slot", "utterance": u, "label": lab} for u, lab in (utts * n)[:n]]


def write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)




@pytest.fixture()
def data(tmp_path):
    return {
        "train": write(tmp_path / "train.jsonl", sentiment_records(24)),
        "val": write(tmp_path / "val.jsonl", sentiment_records(8, seed=1)),
        "intent": write(tmp_path / "intent.jsonl", intent_records(12)),
    }


def cfg(tiny_lm_dir, data, out, **kw) -> TrainConfig:
    base = dict(train=data["train"], output=str(out), template=SENT_TPL, model=str(tiny_lm_dir), epochs=2, lr=1e-2)
    return TrainConfig(**{**base, **kw})


def tensor_bytes(run_dir, name: str) -> bytes:
    with safe_open(str(Path(run_dir) / PROMPT_TABLE_FILE), "pt") as f:
        return f.get_tensor(name).numpy().tobytes()


def test_cli_end_to_end(tiny_lm_dir, data, tmp_path):
    from typer.testing import CliRunner

    from ptune_cli.cli import app

    out = tmp_path / "run"
    args = ["train", "--train", data["train"], "--val", data["val"], "--template", SENT_TPL, "--model", str(tiny_lm_dir),
            "-o", str(out), "--epochs", "2", "--encoder", "mlp", "--lr", "0.01"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "trainable params:" in res.output and "prompt table:" in res.output and "24 training examples" in res.output
    assert "done: 6/6 steps" in res.output and "best val loss" in res.output
    table = load_prompt_table(out)
    assert list(table.prompts) == ["sentiment-task"] and tuple(table.prompts["sentiment-task"].shape) == (10, 32)
    meta = table.meta
    assert meta["base_model"] == str(Path(tiny_lm_dir).resolve()) and meta["hidden_size"] == 32
    assert meta["templates"]["sentiment-task"]["prompt_template"] == "<|VIRTUAL_PROMPT_0|> {sentence}:{label}"
    assert meta["hyperparameters"]["encoder"] == "mlp" and meta["created_by"] == "ptune train"
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert set(log[0]) >= {"step", "loss", "lr", "val_loss", "tokens_per_s"}
    assert log[2]["val_loss"] is not None and log[0]["val_loss"] is None  # evaluated each epoch (3 steps)
    assert json.loads((out / "config.json").read_text())["config"]["lr"] == 0.01
    # a second run into the same folder without --resume is refused with one line
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 1 and "already holds a run" in res2.output


@pytest.fixture(scope="module")
def steerable_lm(tiny_lm_dir, tmp_path_factory):
    """The tiny Llama with its weight matrices scaled ×10: at the default init (std 0.02) its
    outputs are near-uniform whatever the input, so no prompt could move its loss."""
    import shutil

    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("steerable")
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10)
    model.save_pretrained(out)
    for f in Path(tiny_lm_dir).glob("*token*"):
        shutil.copy(f, out / f.name)
    return out


@pytest.mark.parametrize("encoder", ["lstm", "mlp", "embedding"])
def test_loss_falls_on_repeated_data(steerable_lm, data, tmp_path, encoder):
    r = run_train(cfg(steerable_lm, data, tmp_path / encoder, encoder=encoder, epochs=8, lr=3e-2))
    log = [json.loads(x) for x in (tmp_path / encoder / "log.jsonl").read_text().splitlines()]
    first, last = sum(x["loss"] for x in log[:3]) / 3, sum(x["loss"] for x in log[-3:]) / 3
    assert last < first - 1.0, (first, last)
    assert r.trainable_params > 0 and r.total_params > r.trainable_params


def test_continual_learning_keeps_earlier_prompts_byte_identical(tiny_lm_dir, data, tmp_path):
    a = tmp_path / "a"
    run_train(cfg(tiny_lm_dir, data, a, epochs=1))
    b = tmp_path / "b"
    r = run_train(cfg(tiny_lm_dir, data, b, train=data["intent"], template=INTENT_TPL, existing=str(a), model=None, epochs=1))
    assert r.existing_tasks == ["sentiment-task"] and r.tasks == ["intent_and_slot"]
    assert tensor_bytes(a, "sentiment-task") == tensor_bytes(b, "sentiment-task")
    tb = load_prompt_table(b)
    assert set(tb.prompts) == {"sentiment-task", "intent_and_slot"}
    assert tb.template("sentiment-task").prompt_template == load_prompt_table(a).template("sentiment-task").prompt_template
    assert tb.meta["tasks"]["sentiment-task"]["from_existing"] == str(a)
    # the same task name again is refused
    with pytest.raises(UserError, match="already trained there"):
        run_train(cfg(tiny_lm_dir, data, tmp_path / "c", existing=str(a)))


def test_resume_after_interruption_matches_uninterrupted_run(tiny_lm_dir, data, tmp_path):
    full = tmp_path / "full"
    kw = dict(val=data["val"], epochs=3, save_every=2, eval_every=4)
    run_train(cfg(tiny_lm_dir, data, full, **kw))

    class Killed(Exception):
        pass

    def crash(event):
        if isinstance(event, Step) and event.step == 7:  # last checkpoint: step 6
            raise Killed

    part = tmp_path / "part"
    with pytest.raises(Killed):
        run_train(cfg(tiny_lm_dir, data, part, **kw), on_event=crash)
    assert not (part / PROMPT_TABLE_FILE).exists()
    r = run_train(cfg(tiny_lm_dir, data, part, resume=True, **kw))
    assert r.resumed_from == 6
    assert tensor_bytes(full, "sentiment-task") == tensor_bytes(part, "sentiment-task")
    strip = lambda p: [{k: v for k, v in json.loads(x).items() if k not in ("tokens_per_s", "step_s")} for x in (p / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert strip(full) == strip(part)
    # resuming a finished run exports again without training
    again = run_train(cfg(tiny_lm_dir, data, part, resume=True, **kw))
    assert again.steps == 9 and tensor_bytes(full, "sentiment-task") == tensor_bytes(part, "sentiment-task")
    # changed options are refused
    with pytest.raises(UserError, match="options differ.*lr"):
        run_train(cfg(tiny_lm_dir, data, part, resume=True, **{**kw, "lr": 0.5}))
    with pytest.raises(UserError) as e:  # every difference listed
        run_train(cfg(tiny_lm_dir, data, part, resume=True, **{**kw, "epochs": 4, "encoder": "mlp"}))
    assert "encoder: 'lstm' → 'mlp'" in str(e.value) and "epochs: 3 → 4" in str(e.value)
    # options that do not change the output (affects_output=False) may change
    assert run_train(cfg(tiny_lm_dir, data, part, resume=True, **{**kw, "save_every": 5})).steps == 9
    # a run saved with train's old --precision word resumes under its new name
    conf = part / "config.json"
    saved = json.loads(conf.read_text())
    saved["config"]["precision"] = "no"
    conf.write_text(json.dumps(saved))
    assert run_train(cfg(tiny_lm_dir, data, part, resume=True, precision="fp32", **kw)).steps == 9


def test_resume_compares_the_options_that_change_the_output():
    from ptune_cli.options import output_fields

    free = {f for f in TrainConfig.__dataclass_fields__} - set(output_fields(TrainConfig))
    assert free == {"output", "resume", "report_to", "save_every", "gradient_checkpointing", "threads", "keep_steps"}


def test_early_stopping_exports_best(tiny_lm_dir, data, tmp_path):
    # an lr so small the val loss never improves by min_delta: stops after patience evaluations
    kw = dict(val=data["val"], lr=1e-9, eval_every=1, early_stopping_patience=2, max_steps=20, warmup_steps=0)
    r = run_train(cfg(tiny_lm_dir, data, tmp_path / "es", **kw))
    assert r.stopped_early and r.steps == 3 and r.best_step == 1
    one = run_train(cfg(tiny_lm_dir, data, tmp_path / "one", **{**kw, "max_steps": 1}))
    assert one.steps == 1
    assert tensor_bytes(tmp_path / "es", "sentiment-task") == tensor_bytes(tmp_path / "one", "sentiment-task")


def test_events_in_order(tiny_lm_dir, data, tmp_path):
    seen = []
    r = run_train(cfg(tiny_lm_dir, data, tmp_path / "ev", val=data["val"], max_steps=3, eval_every=2), on_event=seen.append)
    assert [type(e).__name__ for e in seen] == ["Started", "Step", "Evaluated", "Step", "Evaluated", "Step", "Finished"]
    started, evaluated, finished = seen[0], seen[2], seen[-1]
    assert isinstance(started, Started) and started.total_steps == 3 and started.resumed_from is None
    assert started.to_dict() == json.loads((tmp_path / "ev" / "config.json").read_text())["resolved"]
    assert isinstance(evaluated, Evaluated) and evaluated.step == 2 and seen[3].val_loss == round(evaluated.val_loss, 6)
    assert [e.to_dict() for e in seen if isinstance(e, Step)] == [json.loads(x) for x in (tmp_path / "ev" / "log.jsonl").read_text().splitlines()]
    assert isinstance(finished, Finished) and finished.result is r and r.started is started


def test_nan_loss_stops_with_clear_message(tiny_lm_dir, data, tmp_path, monkeypatch):
    import ptune_cli.training.recipe as recipe

    real = recipe.answer_loss

    def nan_loss(*a, **k):
        loss, n = real(*a, **k)
        return loss * float("nan"), n

    monkeypatch.setattr(recipe, "answer_loss", nan_loss)
    with pytest.raises(UserError, match=r"loss became nan at step 1 .*diverged; lower --lr"):
        run_train(cfg(tiny_lm_dir, data, tmp_path / "nan"))
    assert not (tmp_path / "nan" / PROMPT_TABLE_FILE).exists()


def test_bad_records_listed_together(tiny_lm_dir, data, tmp_path):
    recs = sentiment_records(4)
    recs[1] = {"taskname": "sentiment-task", "label": "positiv"}
    recs[3] = {"taskname": "weather", "sentence": "x", "label": "y"}
    bad = write(tmp_path / "bad.jsonl", recs)
    with pytest.raises(UserError) as e:
        run_train(cfg(tiny_lm_dir, data, tmp_path / "r", train=bad))
    msg = str(e.value)
    assert "2 bad record(s)" in msg and "bad.jsonl:2: field 'sentence': missing" in msg
    assert "bad.jsonl:4: field 'taskname': 'weather' has no template" in msg


def test_too_long_examples_are_truncated_or_skipped_and_counted(tiny_lm_dir, data, tmp_path):
    from transformers import AutoTokenizer

    from ptune_cli.ptuning.template import encode_example, load_templates

    recs = sentiment_records(8) + [dict(sentiment_records(1)[0], sentence="Aktierna föll " * 60)]
    long = write(tmp_path / "long.jsonl", recs)
    tok, tpl = AutoTokenizer.from_pretrained(tiny_lm_dir), load_templates(SENT_TPL)["sentiment-task"]
    fit = max(len(encode_example(tpl, r, tok).input_ids) for r in recs[:8])
    r = run_train(cfg(tiny_lm_dir, data, tmp_path / "t", train=long, max_length=fit, max_steps=1))
    assert r.truncated == {"sentiment-task": 1} and r.skipped == {"sentiment-task": 0}
    tpl = tmp_path / "notrunc.json"
    tpl.write_text(json.dumps({**json.loads(Path(SENT_TPL).read_text()), "truncate_field": None}))
    r = run_train(cfg(tiny_lm_dir, data, tmp_path / "s", train=long, template=str(tpl), max_length=fit, max_steps=1))
    assert r.skipped == {"sentiment-task": 1} and r.examples == {"sentiment-task": 8}
    assert load_prompt_table(tmp_path / "s").meta["tasks"]["sentiment-task"]["skipped_too_long"] == 1


def test_multitask_one_encoder_gpt2(tiny_gpt2_dir, data, tmp_path):
    both = write(tmp_path / "both.jsonl", sentiment_records(8) + intent_records(8))
    r = run_train(cfg(tiny_gpt2_dir, data, tmp_path / "mt", train=both, template=str(REPO / "templates" / "sv-multitask.json"), encoder="lstm"))
    t = load_prompt_table(tmp_path / "mt")
    assert r.tasks == ["sentiment-task", "intent_and_slot"] and set(t.prompts) == set(r.tasks)
    assert not torch.equal(t.prompts["sentiment-task"], t.prompts["intent_and_slot"])


def test_invalid_options_reported_together(tmp_path):
    c = TrainConfig(train="t", output=str(tmp_path), template=None, encoder="gru", lr=0, init="text:", batch_size=0)
    with pytest.raises(UserError) as e:
        run_train(c)
    msg = str(e.value)
    for flag in ("--encoder", "--lr", "--init", "--batch-size", "--template"):
        assert flag in msg


def test_precision_bf16_with_lstm_encoder_on_cpu(tiny_lm_dir, data, tmp_path):
    # the encoder runs in float32 outside autocast: CPU autocast has no bf16 LSTM kernel
    r = run_train(cfg(tiny_lm_dir, data, tmp_path / "bf16", encoder="lstm", precision="bf16", max_steps=2))
    assert r.steps == 2 and load_prompt_table(tmp_path / "bf16").prompts["sentiment-task"].dtype == torch.float32
    # accelerate's process-wide state must not refuse another precision in the same process;
    # 'no' (train's old word) is kept as an alias of fp32
    assert run_train(cfg(tiny_lm_dir, data, tmp_path / "fp32", precision="no", max_steps=1)).steps == 1
    assert json.loads((tmp_path / "fp32" / "config.json").read_text())["config"]["precision"] == "fp32"


def test_precision_words_match_eval_and_translate(monkeypatch):
    from ptune_cli.training.accelerator import mixed_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [mixed_precision(p) for p in ("auto", "fp32", "fp16", "bf16")] == ["no", "no", "fp16", "bf16"]
    # auto on a GPU: bf16 where it has it, else fp16 (models.torch_dtype's rule)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for has_bf16, want in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda has=has_bf16: has)
        assert mixed_precision("auto") == want
    with pytest.raises(UserError, match="--precision must be one of auto, fp32, fp16, bf16, got 'fp8'"):
        run_train(TrainConfig(train="t", output="o", template="t.json", precision="fp8"))


def test_cli_reports_skipped_validation_examples(tiny_lm_dir, data, tmp_path):
    from typer.testing import CliRunner

    from ptune_cli.cli import app

    tpl = tmp_path / "notrunc.json"
    tpl.write_text(json.dumps({**json.loads(Path(SENT_TPL).read_text()), "truncate_field": None}))
    long = write(tmp_path / "val_long.jsonl", sentiment_records(2) + [dict(sentiment_records(1)[0], sentence="Aktierna föll " * 60)])
    args = ["train", "--train", data["train"], "--val", long, "--template", str(tpl), "--model", str(tiny_lm_dir),
            "-o", str(tmp_path / "run"), "--max-steps", "1", "--max-length", "64"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "1 validation examples skipped" in " ".join(res.output.split())


# ---- issue 19: bounds, torn logs, changed inputs, broken --existing templates ------------------


def test_virtual_tokens_that_cannot_fit_are_one_line_before_any_allocation(tiny_lm_dir, data, tmp_path):
    """Defect 3: total_virtual_tokens 10^9 grew to 7.8 GB; now refused against --max-length
    (before the model loads) or the model's context."""
    tpl = json.loads(Path(SENT_TPL).read_text(encoding="utf-8"))
    tpl.update(total_virtual_tokens=10**9, virtual_token_splits=[10**9])
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(tpl), encoding="utf-8")
    with pytest.raises(UserError, match=r"task 'sentiment-task': total_virtual_tokens 1000000000 does not fit in 64 "
                                        r"tokens per example \(--max-length\)"):
        run_train(cfg(tiny_lm_dir, data, tmp_path / "a", template=str(huge), max_length=64))
    with pytest.raises(UserError, match=r"does not fit in \d+ tokens per example \(the model's \d+ positions"):
        run_train(cfg(tiny_lm_dir, data, tmp_path / "b", template=str(huge)))
    with pytest.raises(UserError, match=r"--max-length 100000: the model has \d+ positions"):
        run_train(cfg(tiny_lm_dir, data, tmp_path / "c", max_length=100_000))
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")


def test_resume_cuts_a_torn_log_line_and_refuses_changed_inputs(tiny_lm_dir, data, tmp_path):
    """Defect 12 (a torn last line of log.jsonl crashed --resume) and train --resume now
    fingerprints its input files' contents, as translate, eval and predict do."""
    kw = dict(epochs=2, save_every=2)

    class Killed(Exception):
        pass

    def crash(event):
        if isinstance(event, Step) and event.step == 5:
            raise Killed

    run = tmp_path / "run"
    with pytest.raises(Killed):
        run_train(cfg(tiny_lm_dir, data, run, **kw), on_event=crash)
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"step": 5, "epoch": 1, "lo')  # kill -9 mid-write
    r = run_train(cfg(tiny_lm_dir, data, run, resume=True, **kw))
    assert r.resumed_from == 4 and r.steps == 6
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    Path(data["train"]).write_text(Path(data["train"]).read_text() + json.dumps(sentiment_records(1, 9)[0]) + "\n")
    with pytest.raises(UserError, match=r"--resume .*run: --train changed since the interrupted run"):
        run_train(cfg(tiny_lm_dir, data, run, resume=True, **kw))


def test_train_refuses_an_input_it_would_overwrite(tiny_lm_dir, data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    log = run / "log.jsonl"
    log.write_text(Path(data["train"]).read_text())
    with pytest.raises(UserError, match=r"-o .*run/log.jsonl is also --train: it would overwrite an input"):
        run_train(cfg(tiny_lm_dir, {**data, "train": str(log)}, run))


def test_existing_with_a_broken_template_is_refused(tiny_lm_dir, data, tmp_path):
    first = tmp_path / "first"
    run_train(cfg(tiny_lm_dir, data, first, max_steps=1))
    meta_file = first / "prompt_table.json"
    meta = json.loads(meta_file.read_text())
    meta["templates"]["sentiment-task"]["prompt_template"] = "<|VIRTUAL_PROMPT_0|>{sentence}"  # no {label}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"--existing .*first: prompt_table.json: sentiment-task: template "
                                        r"'sentiment-task': answer_field 'label' does not appear"):
        run_train(cfg(tiny_lm_dir, {**data, "train": data["intent"]}, tmp_path / "second", template=INTENT_TPL,
                      existing=str(first), max_steps=1))


def test_label_listing_names_a_closed_answer_set():
    from ptune_cli.ptuning.labelset import describe_answers, label_listing

    def listing(answers):
        return label_listing(describe_answers(answers))

    labels = ["\nIntent: alarm_set\nSlots: time(seven am), date(today)", "\nIntent: iot_coffee\nSlots: None",
              "\nIntent: alarm_set\nSlots: time(six)"]
    assert listing(labels) == "Intents: alarm_set, iot_coffee.\nSlot types: date, time.\n"
    assert listing(["\nIntent: iot_coffee\nSlots: None"]) == "Intents: iot_coffee.\n"
    assert listing(["positiv", "negativ", "positiv"]) == "Answers: negativ, positiv.\n"
    assert listing([f"answer {i}" for i in range(300)]) is None and listing([]) is None


def test_init_labels_starts_each_task_from_its_own_answers(tiny_lm_dir, data, tmp_path):
    from ptune_cli.training.recipe import TrainRecipe

    both = write(tmp_path / "both.jsonl", sentiment_records(8) + intent_records(8))
    recipe = TrainRecipe(cfg(tiny_lm_dir, data, tmp_path / "lab", train=both, encoder="embedding", init="labels",
                             template=str(REPO / "templates" / "sv-multitask.json")))
    recipe.setup()
    table, tok = recipe.encoder.table(), recipe.tokenizer
    embed = recipe.model.get_input_embeddings()
    for name, text in (("sentiment-task", "Answers: negativ, positiv.\n"),
                       ("intent_and_slot", "Intents: alarm_set, iot_coffee.\nSlot types: time.\n")):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        t = table[name].shape[0]
        want = embed(torch.tensor((ids * t)[:t])).detach().float()
        torch.testing.assert_close(table[name], want)


def test_init_labels_refuses_free_text_answers_in_one_line(tiny_lm_dir, data, tmp_path):
    from typer.testing import CliRunner

    from ptune_cli.cli import app

    free = write(tmp_path / "free.jsonl", [{"taskname": "sentiment-task", "sentence": f"s {i}", "label": f"word {i}"}
                                           for i in range(300)])
    r = CliRunner().invoke(app, ["train", "--train", free, "-o", str(tmp_path / "r"), "--template", SENT_TPL,
                                 "--model", str(tiny_lm_dir), "--init", "labels", "--max-steps", "1"])
    assert r.exit_code == 1 and "--init labels: task 'sentiment-task'" in r.output and "Traceback" not in r.output
