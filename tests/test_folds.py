"""kfold: partition, stratification, grouping, determinism, train fraction, errors."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.errors import UserError
from ptune_cli.folds import KFoldConfig, kfold, run_kfold, stratum_of
from ptune_cli.io import read_records, write_records

runner = CliRunner()


def _records(n=103, labels=("positiv", "negativ", "neutral"), seed=0):
    rng = random.Random(seed)
    return [{"id": i, "sentence": f"s{i}", "label": rng.choice(labels)} for i in range(n)]


def check_folds(records, folds, cfg):
    n = len(records)
    tests = [i for f in folds for i in f.test]
    assert sorted(tests) == list(range(n)), "test sets must partition the input"
    for f in folds:
        tr, va, te = set(f.train), set(f.val), set(f.test)
        assert not (tr & va) and not (tr & te) and not (va & te)
        if cfg.train_fraction == 1.0:
            assert tr | va | te == set(range(n))
    if cfg.stratify and not cfg.group_field:
        per_fold = [Counter(stratum_of(records[i][cfg.label_field]) for i in f.test) for f in folds]
        for lab in set().union(*per_fold):
            counts = [c[lab] for c in per_fold]
            assert max(counts) - min(counts) <= 1, (lab, counts)
    if cfg.group_field:
        where = {}
        for fi, f in enumerate(folds):
            for split in ("train", "val", "test"):
                for i in getattr(f, split):
                    g = records[i][cfg.group_field]
                    where.setdefault((fi, g), set()).add(split)
        assert all(len(s) == 1 for s in where.values()), "a group straddles splits"
        fold_of = {}
        for fi, f in enumerate(folds):
            for i in f.test:
                assert fold_of.setdefault(records[i][cfg.group_field], fi) == fi


@pytest.mark.parametrize("k", [2, 3, 10])
def test_partition_and_stratification(k):
    recs = _records()
    cfg = KFoldConfig(k=k)
    check_folds(recs, kfold(recs, cfg), cfg)


def test_grouping():
    recs = [{"g": i // 3, "label": ["a", "b"][i % 2]} for i in range(60)]
    cfg = KFoldConfig(k=5, group_field="g")
    check_folds(recs, kfold(recs, cfg), cfg)


def test_val_is_about_the_fraction():
    recs = _records(200)
    folds = kfold(recs, KFoldConfig(k=10, val_fraction=0.1))
    for f in folds:
        assert abs(len(f.val) - 18) <= 3


def test_train_fraction_subsets_train_only():
    recs = _records(200)
    full = kfold(recs, KFoldConfig(k=4))
    small = kfold(recs, KFoldConfig(k=4, train_fraction=0.05))
    for a, b in zip(full, small):
        assert set(b.train) <= set(a.train)
        assert len(b.train) == max(1, round(0.05 * len(a.train)))
        assert a.val == b.val and a.test == b.test
    tiny = kfold(recs, KFoldConfig(k=4, train_fraction=0.001))
    assert all(len(f.train) == 1 for f in tiny)


def test_seed_changes_assignment_and_is_deterministic():
    recs = _records()
    a = kfold(recs, KFoldConfig(k=5, seed=1))
    assert a == kfold(recs, KFoldConfig(k=5, seed=1))
    assert a != kfold(recs, KFoldConfig(k=5, seed=2))


@pytest.mark.parametrize("cfg, match", [
    (KFoldConfig(k=1), "--k must be at least 2"),
    (KFoldConfig(k=200), "larger than the number of records"),
    (KFoldConfig(k=3, group_field="g"), "larger than the number of groups"),
    (KFoldConfig(k=3, val_fraction=1.5, train_fraction=0), "--val-fraction .*; --train-fraction"),
])
def test_errors(cfg, match):
    recs = [{"g": i % 2, "label": "a"} for i in range(20)]
    with pytest.raises(UserError, match=match):
        kfold(recs, cfg)


def test_run_kfold_files_manifest_and_bytes(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, _records(50))
    m1 = run_kfold(src, tmp_path / "a", KFoldConfig(k=3))
    run_kfold(src, tmp_path / "b", KFoldConfig(k=3))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(f) for f in files][:3] == ["fold_00/test.jsonl", "fold_00/train.jsonl", "fold_00/val.jsonl"]
    assert len(files) == 3 * 3 + 1
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man == m1 and man["records"] == 50 and len(man["input_sha256"]) == 64
    assert sum(f["counts"]["test"] for f in man["folds"]) == 50
    assert man["options"]["k"] == 3


def test_cli_kfold_and_rerun_replaces(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, _records(30))
    out = tmp_path / "folds"
    for k in (5, 3):
        r = runner.invoke(app, ["kfold", str(src), "-o", str(out), "--k", str(k)])
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["fold_00", "fold_01", "fold_02", "manifest.json"]
    assert sum(len(read_records(out / f"fold_{i:02d}" / "test.jsonl")) for i in range(3)) == 30


def test_cli_kfold_error_leaves_no_output(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, _records(4))
    r = runner.invoke(app, ["kfold", str(src), "-o", str(tmp_path / "f"), "--k", "10"])
    assert r.exit_code == 1 and "larger than the number of records (4)" in r.output
    assert not (tmp_path / "f").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]


# ---- real data (skipped when ../shared/data is absent) ------------------------------------


@pytest.mark.parametrize("rel", ["assistant/assistant_all.jsonl", "financial_phrasebank/fpb_allagree_sentiment.jsonl"])
def test_real_sets(shared_data, rel):
    recs = read_records(shared_data / rel)
    cfg = KFoldConfig(k=10)
    check_folds(recs, kfold(recs, cfg), cfg)


def test_real_fiqa_grouped_by_headline(shared_data):
    recs = read_records(shared_data / "fiqa" / "fiqa_headline_sentiment.jsonl")
    for r in recs:  # headlines repeat with different targets: group by the text itself
        r["headline"] = r["sentence"].rsplit(" Sentiment for ", 1)[0]
    assert len({r["headline"] for r in recs}) < len(recs)
    cfg = KFoldConfig(k=10, group_field="headline")
    check_folds(recs, kfold(recs, cfg), cfg)


# ---- safety of OUTDIR and labels missing on some records -----------------------------------


def test_cli_kfold_never_replaces_a_folder_that_is_not_its_output(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    src = data / "in.jsonl"
    write_records(src, _records(20))
    monkeypatch.chdir(tmp_path)
    for out, message in ((data, "folder exists and is not a kfold output (in.jsonl)"),
                         (tmp_path, "the current folder"), (src, "is a file, expected an output folder")):
        r = runner.invoke(app, ["kfold", str(src), "-o", str(out), "--k", "2"])
        assert r.exit_code == 1 and message in r.output, r.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data", "in.jsonl"]  # input untouched
    (tmp_path / "empty").mkdir()
    assert runner.invoke(app, ["kfold", str(src), "-o", "empty", "--k", "2"]).exit_code == 0


def test_cli_kfold_label_missing_on_some_records_names_the_line(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, [{"label": "a"}, {"label": "b"}, {"text": "no label"}, {"label": "a"}])
    r = runner.invoke(app, ["kfold", str(src), "-o", str(tmp_path / "f"), "--k", "2"])
    assert r.exit_code == 1 and "in.jsonl:3: field 'label': missing" in r.output
    assert "--no-stratify" in r.output and not (tmp_path / "f").exists()
    r = runner.invoke(app, ["kfold", str(src), "-o", str(tmp_path / "f"), "--k", "2", "--no-stratify"])
    assert r.exit_code == 0, r.output


# ---- small data and non-string labels (issue 10, bad inputs 2 and 6) ----------------------


@pytest.mark.parametrize("n, k", [(12, 10), (6, 3), (4, 2), (10, 10)])
def test_small_data_still_gets_a_val_record_in_every_fold(n, k):
    recs = _records(n)
    cfg = KFoldConfig(k=k)
    folds = kfold(recs, cfg)
    check_folds(recs, folds, cfg)
    assert all(f.val and f.train for f in folds)


def test_too_small_for_train_and_val_is_refused_up_front(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, _records(3))
    r = runner.invoke(app, ["kfold", str(src), "-o", str(tmp_path / "f"), "--k", "2"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "too few for both train and val; give at least 4 records, or pass --val-fraction 0" in r.output
    assert not (tmp_path / "f").exists()


def test_val_fraction_zero_writes_no_val_file(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, _records(20))
    man = run_kfold(src, tmp_path / "f", KFoldConfig(k=2, val_fraction=0))
    assert sorted(p.name for p in (tmp_path / "f" / "fold_00").iterdir()) == ["test.jsonl", "train.jsonl"]
    assert all(f["counts"]["val"] == 0 for f in man["folds"])


@pytest.mark.parametrize("label, got", [(None, "null"), (1, "int"), (["positiv"], "list")])
def test_non_string_label_is_refused_with_file_line(tmp_path, label, got):
    src = tmp_path / "in.jsonl"
    write_records(src, [{"label": "a"}, {"label": "b"}, {"label": label}, {"label": "a"}])
    for extra in ([], ["--no-stratify"]):
        r = runner.invoke(app, ["kfold", str(src), "-o", str(tmp_path / "f"), "--k", "2", *extra])
        assert r.exit_code == 1, r.output
        assert f"in.jsonl:3: field 'label': expected a string, got {got}" in r.output
        assert not (tmp_path / "f").exists()


@pytest.mark.usefixtures("one_torch_thread")
def test_documented_chain_kfold_then_train_with_val_on_small_data(tmp_path, tiny_lm_dir):
    # README: ptune kfold … -o folds/ ; ptune train --train folds/fold_00/train.jsonl --val folds/fold_00/val.jsonl
    from pathlib import Path

    src = tmp_path / "in.jsonl"
    write_records(src, [{"taskname": "sentiment-task", "sentence": f"s{i}", "label": ["positiv", "negativ", "neutral"][i % 3]}
                        for i in range(9)])
    folds = tmp_path / "folds"
    r = runner.invoke(app, ["kfold", str(src), "-o", str(folds), "--k", "3"])
    assert r.exit_code == 0, r.output
    tpl = Path(__file__).resolve().parents[1] / "templates" / "sv-sentiment.json"
    for f in ("fold_00", "fold_02"):
        r = runner.invoke(app, ["train", "--train", str(folds / f / "train.jsonl"), "--val", str(folds / f / "val.jsonl"),
                                "--template", str(tpl), "--model", str(tiny_lm_dir), "-o", str(tmp_path / "runs" / f),
                                "--max-steps", "1", "--encoder", "mlp"])
        assert r.exit_code == 0, r.output
        assert (tmp_path / "runs" / f / "prompt_table.safetensors").is_file()


# ---- options declared once (issue 10, point 2) ----------------------------------------------


def test_options_come_from_the_config_and_are_validated_once(tmp_path, monkeypatch):
    import dataclasses

    import ptune_cli.folds as folds
    from ptune_cli.options import flag_of

    out = runner.invoke(app, ["kfold", "--help"], env={"COLUMNS": "200"}).output
    for f in dataclasses.fields(KFoldConfig):
        assert flag_of(KFoldConfig, f.name).split("/")[0] in out and f.metadata["ptune_option"]["help"][:30] in out
    calls = []
    real = folds.validate
    monkeypatch.setattr(folds, "validate", lambda cfg: calls.append(cfg) or real(cfg))
    src = tmp_path / "in.jsonl"
    write_records(src, _records(20))
    r = runner.invoke(app, ["kfold", str(src), "-o", str(tmp_path / "f"), "--k", "2", "--no-stratify", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 1 and (calls[0].k, calls[0].stratify, calls[0].seed) == (2, False, 3)
    man = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert man["options"] == dataclasses.asdict(calls[0])  # the manifest records the split options


def test_bad_options_listed_together_before_reading_input(tmp_path):
    r = runner.invoke(app, ["kfold", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "f"),
                            "--k", "1", "--val-fraction", "2"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "--k must be at least 2" in r.output and "--val-fraction must be in [0, 1)" in r.output
    assert "no such file" not in r.output and len(r.output.strip().splitlines()) == 1
