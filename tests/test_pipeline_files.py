"""Every file in pipelines/: headers, make targets that parse and chain in order, settings-keyed
result folders, the shipped demo sample, and the comparison table script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ptune_cli.labels import load_label_map

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
TARGETS = ["demo", "svfiqa", "svassistant", "baseline", "data-reduction", "qa", "assistant-demo"]
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make not installed")


def test_every_pipeline_file_is_known_and_has_a_header():
    files = sorted(p for p in PIPELINES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert files, "pipelines/ is empty"
    for p in files:
        rel = p.relative_to(REPO).as_posix()
        if p.suffix == ".mk":
            first = p.read_text(encoding="utf-8").splitlines()[0]
            m = re.match(rf"# {re.escape(rel)} — used by `make ([a-z-]+)`", first)
            if p.name == "experiments.mk":
                assert first.startswith(f"# {rel} — included by the top-level Makefile"), first
                continue
            assert m, f"{rel}: first line must be '# {rel} — used by `make <target>`…' (got {first!r})"
            target = m.group(1)
            assert re.search(rf"^{re.escape(target)}:", p.read_text(encoding="utf-8"), re.M), f"{rel} names `make {target}` but does not define it"
        elif p.suffix == ".py":
            src = p.read_text(encoding="utf-8")
            assert re.search(r"used by `make [a-z-]+`", src.split('"""')[1]), f"{rel}: docstring must name the make target using it"
            compile(src, rel, "exec")
        elif p.suffix == ".md":
            assert p.read_text(encoding="utf-8").startswith(f"<!-- {rel} — "), f"{rel}: needs a header comment"
        elif p.suffix == ".jsonl":
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                assert isinstance(json.loads(line), dict), f"{rel}:{n}"
        elif p.suffix == ".json":  # SQuAD-form samples (JSON has no comments: their README says what they are)
            doc = json.loads(p.read_text(encoding="utf-8"))
            assert isinstance(doc.get("data"), list), f"{rel}: not SQuAD JSON"
            readmes = [d / "README.md" for d in (p.parent, p.parent.parent) if (d / "README.md").is_file()]
            assert any(p.relative_to(r.parent).as_posix() in r.read_text(encoding="utf-8") for r in readmes), \
                f"{rel}: not described in a README.md beside it or one folder up"
        else:
            pytest.fail(f"{rel}: unexpected file type in pipelines/")


def test_experiments_mk_is_included_and_defines_every_target():
    assert "-include pipelines/experiments.mk" in (REPO / "Makefile").read_text(encoding="utf-8")
    text = (PIPELINES / "experiments.mk").read_text(encoding="utf-8")
    for t in TARGETS:
        assert f"include pipelines/{t}.mk" in text
        assert (PIPELINES / f"{t}.mk").is_file()


def test_templates_named_by_pipelines_exist():
    from ptune_cli.ptuning.template import load_templates

    for lang in ("sv", "en"):
        for task in ("sentiment", "intent-slot"):
            assert load_templates(REPO / "templates" / f"{lang}-{task}.json")


def _make_n(target: str, tmp_path: Path, **variables: str) -> list[str]:
    """The commands `make -n TARGET` would run (setup is assumed done)."""
    args = [MAKE, "-n", "--no-print-directory", "-o", "setup", "-o", ".venv/.installed", target,
            f"RESULTS={tmp_path / 'results'}", *(f"{k}={v}" for k, v in variables.items())]
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def _ptune_steps(lines: list[str]) -> list[str]:
    steps = []
    for line in lines:
        m = re.search(r"bin/ptune ([a-z-]+)", line)
        if m and (not steps or steps[-1] != m.group(1)):
            steps.append(m.group(1))
    return steps


@needs_make
def test_svfiqa_chains_every_step_in_order(tmp_path):
    lines = _make_n("svfiqa", tmp_path, DATA_DIR="/data", FOLDS="2", STEPS="7")
    assert _ptune_steps(lines) == ["prepare", "translate", "normalize-labels", "kfold", "train", "eval", "train", "eval", "report"]
    text = "\n".join(lines)
    assert "/data/fiqa/raw/task1_headline_ABSA_train.json" in text and "--k 2" in text and "--max-steps 7" in text
    assert "templates/sv-sentiment.json" in text and "--map sv-sentiment" in text and "--model Helsinki-NLP/opus-mt-en-sv" in text
    assert text.count("ptune train") == 2 and "--model" not in next(x for x in lines if "ptune train" in x)


@needs_make
def test_translate_none_uses_english_and_model_is_passed(tmp_path):
    lines = _make_n("svfiqa", tmp_path, DATA_DIR="/data", FOLDS="2", TRANSLATE="none", MODEL="/m/my-lm")
    text = "\n".join(lines)
    assert "ptune translate" not in text and "templates/en-sentiment.json" in text and "--map en-sentiment" in text
    assert all("--model /m/my-lm" in x for x in lines if "ptune train" in x)
    assert "/svfiqa/my-lm-en-k2-" in text


@needs_make
def test_results_folders_are_keyed_by_settings(tmp_path):
    def run_dir(**kw):
        lines = _make_n("svfiqa", tmp_path, DATA_DIR="/data", TRANSLATE="none", **kw)
        return re.search(r"-o (\S+/svfiqa/[^/\s]+)/runs/fold_00", "\n".join(lines)).group(1)

    a = run_dir(FOLDS="2", STEPS="5")
    assert a == run_dir(FOLDS="2", STEPS="5")
    others = {run_dir(FOLDS="2", STEPS="6"), run_dir(FOLDS="3", STEPS="5"), run_dir(FOLDS="2", STEPS="5", LR="1e-2"),
              run_dir(FOLDS="2", STEPS="5", MODEL="x"), run_dir(FOLDS="2", STEPS="5", SEED="1")}
    assert a not in others and len(others) == 5


@needs_make
def test_svassistant_extends_the_svfiqa_tables_fold_by_fold(tmp_path):
    lines = _make_n("svassistant", tmp_path, DATA_DIR="/data", FOLDS="2", TRANSLATE="none")
    trains = [x for x in lines if "ptune train" in x]
    fiqa = [x for x in trains if "en-sentiment.json" in x]
    assist = [x for x in trains if "templates/intent-slot-prefix.json" in x and "--encoder prefix --init labels" in x]
    assert len(fiqa) == len(assist) == 2 and len(trains) == 4 and not any("--existing" in x for x in fiqa)
    for fold, line in zip(("fold_00", "fold_01"), assist):
        existing = re.search(r"--existing (\S+)", line).group(1)
        assert existing.endswith(f"/runs/{fold}") and "/svfiqa/" in existing
    text = "\n".join(lines)
    assert "--source nlu-eval" in text and "--task sentiment-task" in text and "retention" in text


@needs_make
def test_baseline_and_data_reduction(tmp_path):
    text = "\n".join(_make_n("baseline", tmp_path, DATA_DIR="/data", FOLDS="2", TRANSLATE="none"))
    for kind in ("zero", "one", "few"):
        assert text.count(f"--baseline {kind} ") == 2
    assert "--shots 5" in text and "ptune train" not in text
    lines = _make_n("data-reduction", tmp_path, DATA_DIR="/data", FOLDS="2", TRANSLATE="none", SAMPLES="2", FRACTIONS="1 0.1 0.01")
    text = "\n".join(lines)
    kfolds = [x for x in lines if "ptune kfold" in x and "--train-fraction" in x]
    assert len(kfolds) == 4 and {re.search(r"--sample-seed (\d)", x).group(1) for x in kfolds} == {"1", "2"}
    assert all("--seed 42" in x for x in kfolds)  # same folds for every sample
    assert text.count("ptune train") == 2 + 4 * 2 and "--reduction-plot" in text
    # settings files are written for real (make -n would not catch a missing folder)
    wanted = sorted({m for m in re.findall(r"(\S+/settings\.txt)(?:\s|$)", text) if ".tmp" not in m})
    assert any("/f0.01-s2/" in w for w in wanted)
    r = subprocess.run([MAKE, "--no-print-directory", *wanted, f"RESULTS={tmp_path / 'results'}", "DATA_DIR=/data",
                        "FOLDS=2", "TRANSLATE=none", "SAMPLES=2", "FRACTIONS=1 0.1 0.01"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for w in wanted:
        assert "folds=2" in Path(w).read_text(), w


@needs_make
def test_demo_runs_offline_chain_with_zero_and_few_shot(tmp_path):
    lines = _make_n("demo", tmp_path)
    text = "\n".join(lines)
    assert "pipelines/demo/sentiment_en.jsonl" in text and "socket.create_connection" in text
    assert text.count("--baseline zero") == 3 and text.count("ptune train") == 3 and "pipelines/compare.py" in text
    assert text.count("--baseline few") == 3 and "--shots 5" in text
    # the Swedish side p-tunes the multilingual model, every step of the chain
    assert text.count("--model packaged:gemma3-270m") == 9


@pytest.mark.parametrize("sample", ["demo", "demo/dev"])
def test_demo_sample_is_balanced_parallel_and_our_own(shared_data_or_none, sample):
    en = [json.loads(x) for x in (PIPELINES / sample / "sentiment_en.jsonl").read_text(encoding="utf-8").splitlines()]
    sv = [json.loads(x) for x in (PIPELINES / sample / "sentiment_sv.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 60 <= len(en) == len(sv) <= 400  # big enough to learn from, small enough for ~10 min on CPU
    assert Counter(r["label"] for r in en) == {"positive": len(en) // 3, "negative": len(en) // 3, "neutral": len(en) // 3}
    sv_map, en_to_sv = load_label_map("sv-sentiment"), {"positive": "positiv", "negative": "negativ", "neutral": "neutral"}
    for e, s in zip(en, sv):
        assert e["taskname"] == s["taskname"] == "sentiment-task"
        assert sv_map.lookup(s["label"]) == en_to_sv[e["label"]], (e, s)
        assert e["sentence"].strip() and s["sentence"].strip() and e["sentence"] != s["sentence"]
    assert len({r["sentence"] for r in en}) == len(en) and len({r["sentence"] for r in sv}) == len(sv)
    assert len({r["label"] for r in sv}) > 3  # grammatical variants for normalize-labels to fold
    if shared_data_or_none is not None:
        theirs = set()
        for f in shared_data_or_none.glob("*/*.jsonl"):
            theirs.update(json.loads(x).get("sentence", "") for x in f.read_text(encoding="utf-8").splitlines())
        assert not theirs & {r["sentence"] for r in en}


def test_demo_is_judged_on_sentences_the_recipe_was_not_tuned_on():
    """The recipe was tuned on demo/dev; the demo's own sample shares no sentence with it."""
    def sentences(path):
        return {json.loads(x)["sentence"] for x in (PIPELINES / path).read_text(encoding="utf-8").splitlines()}

    for lang in ("en", "sv"):
        assert not sentences(f"demo/sentiment_{lang}.jsonl") & sentences(f"demo/dev/sentiment_{lang}.jsonl")


def test_compare_table(tmp_path):
    sys.path.insert(0, str(PIPELINES))
    try:
        import compare
    finally:
        sys.path.pop(0)

    def summary(path, values):
        rows = [{"fold": i, "train_fraction": 1.0, "sample": None, "accuracy": v} for i, v in enumerate(values)]
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        path.write_text(json.dumps({"metric": "accuracy", "keys": ["accuracy"], "rows": rows, "groups": [
            {"train_fraction": 1.0, "results": len(values), "mean": {"accuracy": mean}, "std": {"accuracy": std}}]}))

    summary(tmp_path / "p.json", [0.5, 0.7])
    summary(tmp_path / "z.json", [0.25, 0.25, 0.5])
    compare.main(["-o", str(tmp_path / "out"), "--plot", str(tmp_path / "c.png"), f"p-tuned={tmp_path / 'p.json'}", f"zero-shot={tmp_path / 'z.json'}"])
    md = (tmp_path / "out.md").read_text()
    assert "| p-tuned | 2 | **60.00** ± 14.14 | 50.00, 70.00 |" in md
    assert "| zero-shot | 3 | **33.33** ± 14.43 | 25.00, 25.00, 50.00 |" in md
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["key"] == "accuracy" and [r["setting"] for r in data["rows"]] == ["p-tuned", "zero-shot"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "out.json", "out.md", "p.json", "z.json"]  # no temp files
    from ptune_cli.evaluate.report import pct
    assert compare.pct is pct  # the project's formatting, not a copy
    with pytest.raises(SystemExit, match="no such summary"):
        compare.main(["-o", str(tmp_path / "x"), f"a={tmp_path / 'missing.json'}"])


@pytest.fixture
def shared_data_or_none():
    from tests.conftest import SHARED_DATA

    return SHARED_DATA if SHARED_DATA.is_dir() else None


@needs_make
def test_make_setup_says_what_it_is_doing(tmp_path):
    """Issue 19: a fresh `make setup` was ~1.5 min of quiet pip; each step now prints a line."""
    r = subprocess.run([MAKE, "-n", "--no-print-directory", f"VENV={tmp_path / 'venv'}", "setup"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    steps = [line for line in r.stdout.splitlines() if line.startswith("echo \"setup")]
    assert [s.split(":")[0] for s in steps] == [f'echo "setup {k}/5' for k in range(1, 6)] + ['echo "setup']


@pytest.mark.parametrize("sample", ["assistant", "assistant/dev"])
def test_intent_slot_sample_is_parallel_complete_and_our_own(shared_data_or_none, sample):
    """64 intents, the same count each; EN/SV line-aligned (intent, slot types); values copied
    from their own utterance; no utterance of the real data set, none shared with dev/."""
    from ptune_cli.labels import parse_intent_slot

    def load(lang, where=sample):
        return [json.loads(x) for x in (PIPELINES / where / f"intent_slot_{lang}.jsonl").read_text(encoding="utf-8").splitlines()]

    en, sv = load("en"), load("sv")
    assert len(en) == len(sv)
    intents = Counter()
    for e, s in zip(en, sv, strict=True):
        assert e["taskname"] == s["taskname"] == "intent_and_slot"
        pe, ps = parse_intent_slot(e["label"]), parse_intent_slot(s["label"])
        ie, se, ss = pe.intent, pe.slots, ps.slots
        assert ie == ps.intent and sorted(t for t, _ in se) == sorted(t for t, _ in ss), (e, s)
        for rec, slots in ((e, se), (s, ss)):
            assert all(v in rec["utterance"].lower() for _, v in slots), rec
        intents[ie] += 1
    assert len(intents) == 64 and len(set(intents.values())) == 1
    if sample == "assistant":
        for lang in ("en", "sv"):
            assert not {r["utterance"] for r in load(lang)} & {r["utterance"] for r in load(lang, "assistant/dev")}
    if shared_data_or_none is not None:
        theirs = {json.loads(x)["utterance"] for x in
                  (shared_data_or_none / "assistant" / "assistant_all.jsonl").read_text(encoding="utf-8").splitlines()}
        assert not theirs & {r["utterance"] for r in en}


@needs_make
@pytest.mark.parametrize("lang", ["en", "sv"])
def test_assistant_demo_adds_intent_slot_to_the_sentiment_table(tmp_path, lang):
    train = tmp_path / "assistant_train.jsonl"
    train.write_text('{"taskname": "intent_and_slot", "utterance": "hi", "label": "\\nIntent: general_greet\\nSlots: None"}\n')
    lines = _make_n("assistant-demo", tmp_path, ASSIST_TRAIN=str(train), ASSIST_LANG=lang)
    assert _ptune_steps(lines) == ["train", "eval", "train", "eval"]
    text = "\n".join(lines)
    assert text.count("bin/ptune eval") == 5  # sentiment before/after, p-tuned, zero-shot, few-shot
    model = "gemma3-270m" if lang == "sv" else "smollm2-135m"
    assert text.count(f"--model packaged:{model}") == 3  # sentiment train and both baselines (--existing carries it on)
    intent_train = next(x for x in lines if "--existing" in x)
    assert "--encoder prefix --init labels --lr 1e-2" in intent_train and "sentiment/run" in intent_train
    assert f"intent-slot-prefix{'-gemma' if lang == 'sv' else ''}.json" in intent_train
    assert "--task sentiment-task" in text and f"pipelines/assistant/intent_slot_{lang}.jsonl" in text
    assert "--baseline zero" in text and "--baseline few --shots 5" in text and "assistant_demo_table.py" in text
    # Swedish training adds the Swedish tuning sample to the English records; the held-out sample is never trained on
    cat = next(x for x in lines if x.startswith("cat "))
    assert ("pipelines/assistant/dev/intent_slot_sv.jsonl" in cat) == (lang == "sv")
    assert "intent_slot_sv.jsonl >" not in cat.replace("dev/intent_slot_sv.jsonl", "")


def test_assistant_demo_table(tmp_path):
    sys.path.insert(0, str(PIPELINES))
    try:
        import assistant_demo_table as t
    finally:
        sys.path.pop(0)

    def intent_slot(acc, f1, em):
        return {"metric": "intent-slot", "n": 4, "exact_match": em,
                "intent": {"accuracy": acc, "precision": acc, "recall": acc, "f1": acc},
                "slot": {"precision": f1, "recall": f1, "f1": f1}}

    for sub in ("assistant/run", "sentiment/run"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "log.jsonl").write_text('{"step": 1, "step_s": 30.0}\n{"step": 2, "step_s": 90.0}\n')
    for name, res in (("p-tuned", intent_slot(0.75, 0.5, 0.5)), ("zero-shot", intent_slot(0, 0, 0)), ("5-shot", intent_slot(0.25, 0.1, 0))):
        (tmp_path / "assistant" / f"{name}.json").write_text(json.dumps(res))
    for w in ("before", "after"):
        (tmp_path / "sentiment" / f"{w}.json").write_text(json.dumps({"metric": "accuracy", "accuracy": 0.8, "macro_f1": 0.7}))
        (tmp_path / "sentiment" / f"{w}.pred.jsonl").write_text('{"prediction": "positive"}\n')
    t.main([str(tmp_path)])
    md = (tmp_path / "results.md").read_text()
    assert "| p-tuned | 4 | 75.00 | 50.00 | 50.00 |" in md and "| zero-shot | 4 | 0.00 | 0.00 | 0.00 |" in md
    assert "byte-identical" in md and "intent/slot 2.0 min" in md
    assert json.loads((tmp_path / "results.json").read_text())["sentiment"]["predictions_identical"] is True
    assert (tmp_path / "plots" / "assistant.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "sentiment" / "after.pred.jsonl").write_text('{"prediction": "negative"}\n')
    t.main([str(tmp_path)])
    assert "CHANGED" in (tmp_path / "results.md").read_text()
