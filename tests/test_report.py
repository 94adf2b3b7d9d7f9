"""Fold aggregation (mean ± sample std), markdown and plots of ``ptune report``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.errors import UserError
from ptune_cli.evaluate.metrics import score
from ptune_cli.evaluate.report import load_results, results_markdown, summarize, summary_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _acc_result(correct: int, n: int, **meta) -> dict:
    golds = ["positive"] * n
    preds = ["positive"] * correct + ["negative"] * (n - correct)
    res = score(golds, preds)
    res["meta"] = meta
    return res


def _write(tmp_path, name: str, res: dict):
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(res))
    return str(p)


@pytest.fixture
def fold_files(tmp_path):
    # accuracies 0.8, 0.9, 0.7: mean 0.8, sample std 0.1
    return [
        _write(tmp_path, f"fold_{i:02d}/results.json", _acc_result(c, 10))
        for i, c in enumerate([8, 9, 7])
    ]


def test_summary_mean_and_sample_std(fold_files):
    s = summarize(load_results(fold_files))
    assert s["metric"] == "accuracy"
    assert [r["fold"] for r in s["rows"]] == [0, 1, 2]  # from the fold_XX path part
    (g,) = s["groups"]
    assert g["train_fraction"] == 1.0 and g["results"] == 3
    assert g["mean"]["accuracy"] == pytest.approx(0.8)
    assert g["std"]["accuracy"] == pytest.approx(0.1)  # sample std (n - 1)
    md = summary_markdown(s)
    assert "**80.00 ± 10.00**" in md
    assert md.count("\n| ") >= 5


def test_single_result_has_no_std(tmp_path):
    s = summarize(load_results([_write(tmp_path, "r.json", _acc_result(5, 10))]))
    assert s["groups"][0]["std"]["accuracy"] is None
    assert "50.00 |" in summary_markdown(s) or "**50.00**" in summary_markdown(s)


def test_reduction_groups_and_sample_spread(tmp_path):
    files = []
    # 100 %: one sample, 2 folds; 10 %: two samples (seeds 1, 2) x 2 folds
    for f, c in enumerate([9, 8]):
        files.append(_write(tmp_path, f"full/fold_{f}.json", _acc_result(c, 10, fold=f, train_fraction=1.0, sample=0)))
    for s, cs in ((1, [6, 8]), (2, [4, 4])):
        for f, c in enumerate(cs):
            files.append(_write(tmp_path, f"p10_s{s}/f{f}.json", _acc_result(c, 10, fold=f, train_fraction=0.1, sample=s)))
    summ = summarize(load_results(files))
    g100, g10 = summ["groups"]
    assert (g100["train_fraction"], g10["train_fraction"]) == (1.0, 0.1)
    assert g10["results"] == 4 and g10["samples"] == 2
    assert [ps["mean"]["accuracy"] for ps in g10["per_sample"]] == pytest.approx([0.7, 0.4])
    assert g10["std_between_samples"]["accuracy"] == pytest.approx(statistics.stdev([0.7, 0.4]))
    assert g10["std"]["accuracy"] == pytest.approx(statistics.stdev([0.6, 0.8, 0.4, 0.4]))
    assert g100["std_between_samples"]["accuracy"] is None
    assert "data reduction" in summary_markdown(summ)


def test_intent_slot_summary_keys(tmp_path):
    res = score(["Intent: a\nSlots: x(1)"], ["Intent: a\nSlots: x(2)"])
    s = summarize(load_results([_write(tmp_path, "a.json", res), _write(tmp_path, "b.json", res)]))
    assert s["metric"] == "intent-slot"
    assert s["groups"][0]["mean"]["intent.accuracy"] == 1.0
    assert s["groups"][0]["mean"]["slot.f1"] == 0.0
    assert s["groups"][0]["std"]["exact_match"] == 0.0


def test_bad_inputs(tmp_path, fold_files):
    with pytest.raises(UserError, match="no such results file"):
        load_results([str(tmp_path / "nope.json")])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match=r"bad.json:1: invalid JSON"):
        load_results([str(tmp_path / "bad.json")])
    (tmp_path / "other.json").write_text('{"metric": "bleu"}')
    with pytest.raises(UserError, match="not a results file"):
        load_results([str(tmp_path / "other.json")])
    mixed = fold_files + [_write(tmp_path, "is.json", score(["Intent: a"], ["Intent: a"]))]
    with pytest.raises(UserError, match="mix metrics"):
        summarize(load_results(mixed))


@pytest.mark.parametrize(
    "args, message",
    [
        (["{incomplete}"], "incomplete.json: field 'accuracy': missing"),
        (["{islot}"], "islot.json: field 'slot.f1': missing"),
        (["{badfold}"], "badfold.json: field 'meta.fold': expected a number, got str"),
        (["{f0}", "{f1}", "{f0}"], "fold_00/results.json: given twice"),
        ([], "no results files given"),
        (["{f0}", "-o", "{f0}"], "-o {f0} is also RESULTS"),
        (["{nan}"], "nan.json: accuracy: NaN is not valid JSON"),
    ],
)
def test_bad_results_are_one_line_errors(tmp_path, fold_files, args, message):
    paths = {
        "incomplete": _write(tmp_path, "incomplete.json", {"metric": "accuracy", "n": 10}),
        "islot": _write(tmp_path, "islot.json", {"metric": "intent-slot", "n": 1, "exact_match": 0.0,
                                                 "intent": {"accuracy": 1, "precision": 1, "recall": 1, "f1": 1},
                                                 "slot": {"precision": 1, "recall": 1}}),
        "badfold": _write(tmp_path, "badfold.json", _acc_result(5, 10, fold="one")),
        "f0": fold_files[0], "f1": fold_files[1],
        "nan": _write(tmp_path, "nan.json", {"metric": "accuracy", "n": 1, "accuracy": float("nan")}),
    }
    before = Path(fold_files[0]).read_text()
    r = CliRunner().invoke(app, ["report", *[a.format(**paths) for a in args]])
    assert r.exit_code == 1, r.output
    assert message.format(**paths) in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert Path(fold_files[0]).read_text() == before


def test_results_markdown_rows():
    md = results_markdown(score(["positive", "negative|x"], ["positive", "neutral"]))
    assert "| accuracy | 50.00 |" in md
    assert "negative\\|x" in md  # pipes escaped inside cells
    md2 = results_markdown(score(["Intent: a\nSlots: x(1)"], ["Intent: a\nSlots: x(1)"]))
    assert "| intent | a |" in md2 and "| slot | x |" in md2


def test_report_cli_writes_json_markdown_and_plots(tmp_path, fold_files):
    out, md, png = tmp_path / "s.json", tmp_path / "s.md", tmp_path / "folds.png"
    r = CliRunner().invoke(app, ["report", *fold_files, "-o", str(out), "--markdown", str(md), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["groups"][0]["mean"]["accuracy"] == pytest.approx(0.8)
    assert "80.00 ± 10.00" in md.read_text()
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "80.00 ± 10.00" in r.stdout


def test_report_cli_reduction_plot(tmp_path, fold_files):
    small = [_write(tmp_path, f"s{s}.json", _acc_result(c, 10, fold=0, train_fraction=0.05, sample=s))
             for s, c in ((1, 3), (2, 6))]
    png = tmp_path / "curve.png"
    r = CliRunner().invoke(app, ["report", *fold_files, *small, "--reduction-plot", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == PNG_MAGIC
    # one fraction only: a clear error, and no file left behind
    png2 = tmp_path / "curve2.png"
    r = CliRunner().invoke(app, ["report", *fold_files, "--reduction-plot", str(png2)])
    assert r.exit_code == 1 and "two or more training fractions" in r.output
    assert not png2.exists()
    r = CliRunner().invoke(app, ["report", *fold_files, "--plot", str(png2), "--key", "slot.f1"])
    assert r.exit_code == 1 and "unknown metric key" in r.output


def test_fold_plot_labels_do_not_overlap_panels(tmp_path, fold_files, monkeypatch):
    """Three narrow panels (few folds): each y-axis label stays clear of the panel to its left."""
    from ptune_cli.evaluate import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    monkeypatch.setattr(plots._pyplot(), "close", lambda fig: None)
    files = [_write(tmp_path, f"is/fold_{i:02d}/r.json", score(["Intent: a\nSlots: x(1)"], ["Intent: a\nSlots: x(1)"]))
             for i in range(3)]
    plots.plot_folds(summarize(load_results(files)), tmp_path / "p.png")
    (fig,) = figs
    fig.canvas.draw()
    axes = fig.axes
    assert len(axes) == 3
    for left, right in zip(axes, axes[1:], strict=False):
        assert right.yaxis.label.get_window_extent().x0 > left.get_window_extent().x1


def test_report_table_fits_80_columns(tmp_path):
    """Intent/slot has 8 metrics: on a narrow stdout the table keeps the headline ones whole
    instead of truncating every number."""
    files = [_write(tmp_path, f"fold_{i:02d}/r.json", score(["Intent: a\nSlots: x(1)"] * 4, [p] * 4))
             for i, p in enumerate(["Intent: a\nSlots: x(1)", "Intent: a\nSlots: x(2)"])]
    r = CliRunner().invoke(app, ["report", *files], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.stdout
    assert "50.00 ± 70.71" in r.stdout  # slot F1 over the two folds: 1.0 and 0.0
    assert "every metric: --markdown or -o" in r.stdout


# ---- issue 19: a missing or broken number is never averaged, one file or fold never counts twice


def _without(res: dict, key: str) -> dict:
    return {k: v for k, v in res.items() if k != key}


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda r: _without(r, "macro_f1"), "field 'macro_f1': missing"),  # defect 4: was averaged as 0
        (lambda r: {**r, "macro_f1": None}, "field 'macro_f1': expected a number, got null"),  # defect 5
        (lambda r: {**r, "macro_f1": "0.5"}, "field 'macro_f1': expected a number, got str"),
        (lambda r: {**r, "accuracy": 1e308}, "field 'accuracy': 1e+308 is not a fraction in [0, 1]"),
        (lambda r: {**r, "accuracy": 1.5}, "field 'accuracy': 1.5 is not a fraction in [0, 1]"),
        (lambda r: {**r, "n": -4}, "field 'n': -4 is not a count >= 0"),
        (lambda r: {**r, "meta": {"train_fraction": 0}}, "field 'meta.train_fraction': 0 is not a fraction in (0, 1]"),
    ],
)
def test_missing_null_string_and_out_of_range_numbers_are_refused(tmp_path, fold_files, bad, message):
    broken = _write(tmp_path, "fold_03/results.json", bad(_acc_result(5, 10)))
    out = tmp_path / "s.json"
    r = CliRunner().invoke(app, ["report", *fold_files, broken, "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert f"{broken}: {message}" in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_squad_exact_match_over_one_is_refused(tmp_path):
    bad = _write(tmp_path, "em.json", {"metric": "squad", "n": 3, "exact_match": 1.5, "f1": 0.5})
    with pytest.raises(UserError, match=r"em.json: field 'exact_match': 1.5 is not a fraction"):
        load_results([bad])


def test_a_file_through_a_hard_link_or_symlink_counts_once(tmp_path, fold_files):
    import os

    link = tmp_path / "elsewhere.json"
    os.link(fold_files[0], link)
    with pytest.raises(UserError, match=r"elsewhere.json: given twice \(also as RESULTS .*fold_00/results.json\)"):
        load_results([*fold_files, str(link)])
    sym = tmp_path / "sym.json"
    sym.symlink_to(fold_files[1])
    with pytest.raises(UserError, match="sym.json: given twice"):
        load_results([*fold_files, str(sym)])


def test_two_files_claiming_one_fold_are_refused(tmp_path, fold_files):
    copy = _write(tmp_path, "rerun/fold_01/results.json", _acc_result(6, 10))
    with pytest.raises(UserError, match=r"fold 1 again \(also .*fold_01/results.json"):
        summarize(load_results([*fold_files, copy]))
    same_meta = [_write(tmp_path, f"m{i}.json", _acc_result(5, 10, fold=0)) for i in range(2)]
    with pytest.raises(UserError, match="fold 0 again"):
        summarize(load_results(same_meta))
    # the same fold at another training fraction or sample is another result
    other = _write(tmp_path, "small.json", _acc_result(5, 10, fold=0, train_fraction=0.1, sample=1))
    assert len(summarize(load_results([same_meta[0], other]))["rows"]) == 2
