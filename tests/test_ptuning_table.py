"""Prompt table round trip and prompt injection into inputs_embeds."""

from __future__ import annotations

import json

import pytest
import torch

from ptune_cli.errors import UserError
from ptune_cli.ptuning.model import answer_loss, check_gathered_head, inject_prompts
from ptune_cli.ptuning.table import (
    PROMPT_META_FILE,
    PROMPT_TABLE_FILE,
    load_prompt_table,
    save_prompt_table,
)
from ptune_cli.ptuning.template import template_from_dict
from tests.test_template import SENT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_table_roundtrip(tmp_path):
    prompts = {"sentiment-task": torch.randn(10, 32), "other": torch.randn(3, 32, dtype=torch.float64)}
    meta = {"base_model": "m", "templates": {"sentiment-task": SENT}, "hyperparameters": {"lr": 0.01}}
    save_prompt_table(tmp_path, prompts, meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROMPT_META_FILE, PROMPT_TABLE_FILE]
    t = load_prompt_table(tmp_path)
    assert torch.equal(t.prompts["sentiment-task"], prompts["sentiment-task"])
    assert t.prompts["other"].dtype == torch.float32 and t.meta["hidden_size"] == 32
    assert t.meta["tasks"]["other"]["total_virtual_tokens"] == 3
    assert t.template("sentiment-task") == template_from_dict(SENT)
    with pytest.raises(UserError, match="known tasks: other, sentiment-task"):
        t.template("nope")
    assert json.loads((tmp_path / PROMPT_META_FILE).read_text())["base_model"] == "m"


def test_missing_table(tmp_path):
    with pytest.raises(UserError, match="no prompt table .* run `ptune train` first"):
        load_prompt_table(tmp_path)


@pytest.fixture(scope="module")
def lm(tiny_lm_dir):
    from ptune_cli.models import load_causal_lm

    return load_causal_lm(str(tiny_lm_dir))


def test_inject_prompts_replaces_exactly_the_masked_rows(lm):
    model, tok = lm
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 3]])
    vmask = torch.tensor([[0, 1, 1, 0, 1, 0], [1, 0, 0, 1, 1, 0]], dtype=torch.bool)
    prompts = torch.randn(2, 3, 32, requires_grad=True)
    out = inject_prompts(model, ids, vmask, prompts)
    base = model.get_input_embeddings()(ids)
    assert torch.equal(out[~vmask], base[~vmask])
    assert torch.equal(out[0, [1, 2, 4]], prompts[0].detach())
    assert torch.equal(out[1, [0, 3, 4]], prompts[1].detach())
    out.sum().backward()
    assert prompts.grad is not None and torch.equal(prompts.grad, torch.ones_like(prompts))
    # one [T, h] prompt broadcast over the batch, cast to the embedding dtype
    out2 = inject_prompts(model, ids, vmask, prompts[0].double().detach())
    assert out2.dtype == base.dtype and torch.equal(out2[1, [0, 3, 4]], prompts[0].detach())


def test_gathered_loss_equals_full_logits_loss(lm):
    model, tok = lm
    assert check_gathered_head(model, tok)
    torch.manual_seed(0)
    ids = torch.randint(4, 100, (2, 9))
    attn = torch.ones_like(ids)
    attn[1, 7:] = 0
    vmask = torch.zeros_like(ids, dtype=torch.bool)
    vmask[:, 1:3] = True
    labels = torch.full_like(ids, -100)
    labels[0, 5:8] = ids[0, 5:8]
    labels[1, 4:7] = ids[1, 4:7]
    prompts = torch.randn(2, 32)
    loss, n = answer_loss(model, ids, attn, vmask, labels, prompts)
    embeds = inject_prompts(model, ids, vmask, prompts)
    ref = model(inputs_embeds=embeds, attention_mask=attn, labels=labels).loss
    assert n == 6 and torch.allclose(loss, ref, atol=1e-5)


# ---- issue 19: damaged metadata is one line everywhere; identical tables are identical files


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "prompt_table.json: expected a JSON object, got list"),
    ('"a string"', "prompt_table.json: expected a JSON object, got str"),
    ('{"templates": [1]}', "prompt_table.json: templates: expected a JSON object, got list"),
    ('{"templates": {}, "tasks": null}', "prompt_table.json: tasks: expected a JSON object, got null"),
    ('{"templates": {}, "templates": {}}', "prompt_table.json: duplicate key 'templates'"),
])
def test_metadata_that_is_not_an_object_is_one_line(tmp_path, text, message):
    save_prompt_table(tmp_path, {"sentiment-task": torch.randn(10, 32)}, {"templates": {"sentiment-task": SENT}})
    (tmp_path / PROMPT_META_FILE).write_text(text)
    with pytest.raises(UserError) as e:
        load_prompt_table(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_template_that_disagrees_with_its_tensor_is_refused(tmp_path):
    save_prompt_table(tmp_path, {"sentiment-task": torch.randn(10, 32)}, {"templates": {"sentiment-task": SENT}})
    meta = json.loads((tmp_path / PROMPT_META_FILE).read_text())
    meta["templates"]["sentiment-task"].update(total_virtual_tokens=10**9, virtual_token_splits=[10**9])
    (tmp_path / PROMPT_META_FILE).write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"template has total_virtual_tokens 1000000000 but the table holds 10"):
        load_prompt_table(tmp_path).prompt("sentiment-task")


def test_identical_tables_are_identical_files_across_processes(tmp_path):
    """safetensors writes its metadata map in per-process random hash order: with two keys the
    same table came out as different bytes from different processes (6 processes: the old
    code passes this by chance 1 time in 32)."""
    import subprocess
    import sys

    code = ("import sys, torch; from ptune_cli.ptuning.table import save_prompt_table; "
            "save_prompt_table(sys.argv[1], {'a': torch.arange(6.).view(2, 3), 'b': torch.ones(1, 3)}, {'templates': {}})")
    for k in range(6):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"r{k}")], check=True)
    blobs = {(tmp_path / f"r{k}" / PROMPT_TABLE_FILE).read_bytes() for k in range(6)}
    assert len(blobs) == 1
