"""normalize-labels: core function and command."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.io import read_records, write_records
from ptune_cli.normalize import NormalizeConfig, run_normalize

runner = CliRunner()


def test_folds_variants_and_passes_unmapped(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, [
        {"taskname": "sentiment-task", "sentence": "Känslor för Lloyds", "label": "positiva"},
        {"sentence": "b", "label": "Negativt."},
        {"sentence": "c", "label": "neutrala", "prediction": "positivt"},
        {"sentence": "d", "label": "glad", "prediction": "negativa"},
    ])
    out = tmp_path / "out.jsonl"
    res = run_normalize(NormalizeConfig(input=str(src), output=str(out), fields=["label"]))
    assert [r["label"] for r in read_records(out)] == ["positiv", "negativ", "neutral", "glad"]
    assert res.counts == {"positiv": 1, "negativ": 1, "neutral": 1}
    assert res.unmapped == {"glad": 1}
    # other fields untouched, key order kept
    first = read_records(out)[0]
    assert list(first) == ["taskname", "sentence", "label"] and first["sentence"] == "Känslor för Lloyds"


def test_cli_two_fields_and_summary(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, [{"label": "positiva", "prediction": "Positivt"}, {"label": "neutralt", "prediction": "x"}])
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["normalize-labels", str(src), "-o", str(out), "--field", "label", "--field", "prediction"])
    assert r.exit_code == 0, r.output
    assert read_records(out) == [{"label": "positiv", "prediction": "positiv"}, {"label": "neutral", "prediction": "x"}]
    assert "unmapped" in r.output and "positiv" in r.output


def test_cli_strict_fails_without_output(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(src, [{"label": "positiva"}, {"label": "glad"}])
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["normalize-labels", str(src), "-o", str(out), "--strict"])
    assert r.exit_code == 1
    assert "'glad' (1)" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_cli_missing_field_names_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"label": "positiva"}\n{"text": "x"}\n')
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["normalize-labels", str(src), "-o", str(out)])
    assert r.exit_code == 1
    assert f"{src}:2: field 'label': missing required field" in r.output
    assert not out.exists()


def test_cli_stdin_stdout():
    r = runner.invoke(app, ["normalize-labels", "-"], input='{"label": "negativa"}\n')
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0]) == {"label": "negativ"}


def test_cli_user_map(tmp_path):
    m = tmp_path / "map.yaml"
    m.write_text("# used by: ptune normalize-labels --map\npos: [positiv, positiva]\n")
    src = tmp_path / "in.jsonl"
    write_records(src, [{"label": "Positiva"}])
    r = runner.invoke(app, ["normalize-labels", str(src), "-o", str(tmp_path / "o.jsonl"), "--map", str(m)])
    assert r.exit_code == 0, r.output
    assert read_records(tmp_path / "o.jsonl") == [{"label": "pos"}]


def test_cli_is_built_from_normalize_config():
    import dataclasses

    from ptune_cli.options import flag_of

    out = runner.invoke(app, ["normalize-labels", "--help"], env={"COLUMNS": "200"}).output
    for f in dataclasses.fields(NormalizeConfig):
        assert flag_of(NormalizeConfig, f.name) in out or f.name in out
    assert "{canonical: [variants…]}" in out  # rich markup no longer eats the brackets


def test_non_string_label_is_refused_like_everywhere_else(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"label": "positiva"}\n{"label": null}\n')
    r = runner.invoke(app, ["normalize-labels", str(src), "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 1 and f"{src}:2: field 'label': expected a string, got null" in r.output
    assert not (tmp_path / "o.jsonl").exists()
