"""``ptune export``: the baked folder answers exactly like ``ptune predict``, on every family.

For each family of tests/tiny_models.py (tiny model with large random weights, a run of two
input tasks — one with two virtual segments — and a training file), the exported folder is
loaded with plain ``transformers`` and driven only by ``ptune_tasks.json``:

* greedy ``generate`` gives ptune's own token ids and ``ptune predict``'s text;
* rank scoring of the labels gives ``ptune predict --decode rank``'s label;
* no generated token is ever a virtual token; the tasks file's prompt tokenizes to ptune's ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ptune_cli.cli import app
from ptune_cli.inference.export import ExportConfig, prompt_format, run_export
from ptune_cli.inference.predict import PredictConfig, run_predict
from ptune_cli.ptuning.table import load_prompt_table, save_prompt_table
from ptune_cli.ptuning.template import TaskTemplate, encode_example
from tests.predict_run import ASK, QUESTIONS, SENT, make_run, read_jsonl, write_jsonl
from tests.test_eval_cli import LABELS, SENTENCES
from tests.tiny_models import FAMILIES

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
# records whose fields start or end with spaces, carry braces, non-ASCII text: the seams
EXTRA = ["  two spaces first", "ends with a space ", "a {brace} b åäö", "Känslor för Lloyds"]


def _records() -> list[dict]:
    sents = [{"taskname": SENT.taskname, "sentence": s} for s in [*SENTENCES, *EXTRA]]
    asks = [{"taskname": ASK.taskname, "question": q} for q in [*QUESTIONS, *EXTRA]]
    return sents + asks


def _family_run(root: Path, arch: str) -> dict:
    """A run over the family's tiny model with random weights at a scale that makes greedy
    outputs vary (as tests/test_families.py), prompt rows at the scale of its embeddings."""
    from ptune_cli.models import load_causal_lm
    from tests.tiny_models import build_tiny_causal_lm

    folder = build_tiny_causal_lm(root / "tiny", arch=arch)
    model, tok = load_causal_lm(str(folder))
    g = torch.Generator().manual_seed(0)
    scale = {"gemma2": 0.05, "gemma3": 0.05, "gpt2": 0.2}.get(arch, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    std = float(model.get_input_embeddings()(torch.arange(50)).std())
    prompts = {t.taskname: torch.randn(t.total_virtual_tokens, 32, generator=g) * std for t in (SENT, ASK)}
    train = write_jsonl(root / "train.jsonl", [
        *({"taskname": SENT.taskname, "sentence": s, "label": lab} for s, lab in zip(SENTENCES, LABELS, strict=True)),
        *({"taskname": ASK.taskname, "question": q, "answer": a} for q, a in
          zip(QUESTIONS, ["tjugo kronor", "at nine", "ja", "nobody"], strict=True))])
    meta = {"base_model": str(root / "model"), "templates": {t.taskname: t.to_dict() for t in (SENT, ASK)},
            "hyperparameters": {"train": train}}
    save_prompt_table(root / "run", prompts, meta)
    return {"run": str(root / "run"), "data": write_jsonl(root / "new.jsonl", _records())}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def exported(request, tmp_path_factory):
    """(family, run, records file, export folder, plain-transformers model and tokenizer, tasks)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp(f"export-{request.param}")
    r = _family_run(root, request.param)
    result = run_export(ExportConfig(run=r["run"], output=str(root / "exported")))
    model = AutoModelForCausalLM.from_pretrained(result["output"]).eval()
    tok = AutoTokenizer.from_pretrained(result["output"])
    tasks = json.loads((Path(result["output"]) / "ptune_tasks.json").read_text(encoding="utf-8"))
    return dict(family=request.param, root=root, **r, out=result["output"], model=model, tok=tok, tasks=tasks,
                result=result)


def _predict(e, decode="generate", **kw) -> list[dict]:
    out = e["root"] / f"pred-{decode}.jsonl"
    run_predict(PredictConfig(run=e["run"], data=e["data"], output=str(out), device="cpu", decode=decode, **kw))
    return read_jsonl(out)


def _prompt_ids(e, rec) -> list[int]:
    from ptune_cli.inference.export import format_prompt

    return e["tok"](format_prompt(e["tasks"]["tasks"][rec["taskname"]], rec))["input_ids"]


def _generate(e, rec) -> list[int]:
    """Greedy new ids from the folder, driven by the tasks file only (prompt, stop, max_new_tokens)."""
    task = e["tasks"]["tasks"][rec["taskname"]]
    ids = torch.tensor([_prompt_ids(e, rec)])
    with torch.no_grad():
        out = e["model"].generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  max_new_tokens=task["max_new_tokens"], stop_strings=task["stop"] or None,
                                  tokenizer=e["tok"])
    return out[0, ids.shape[1]:].tolist()


def _client_text(e, rec, new_ids) -> str:
    """What a client makes of the new tokens: decoded, cut at the first stop string, stripped."""
    text = e["tok"].decode(new_ids, skip_special_tokens=True)
    for stop in e["tasks"]["tasks"][rec["taskname"]]["stop"]:
        text = text.split(stop, 1)[0]
    return text.strip()


def test_the_prompt_tokenizes_to_ptunes_own_ids(exported):
    e = exported
    table = load_prompt_table(e["run"])
    for rec in read_jsonl(e["data"]):
        entry = e["tasks"]["tasks"][rec["taskname"]]
        enc = encode_example(table.template(rec["taskname"]), rec, e["tok"], include_answer=False)
        vids = iter(e["tok"].convert_tokens_to_ids(entry["virtual_tokens"]))
        want = [next(vids) if v else t for t, v in zip(enc.input_ids, enc.virtual_mask, strict=True)]
        assert _prompt_ids(e, rec) == want, rec


def test_the_baked_rows_are_the_prompt_rows(exported):
    """Through the reloaded model's own embedding module: bit for bit, or within one float32 ulp
    where it multiplies by √hidden (Gemma: no float times √32 rounds to some values)."""
    e = exported
    table = load_prompt_table(e["run"])
    emb = e["model"].get_input_embeddings()
    scaled = getattr(emb, "embed_scale", None) is not None
    for name, entry in e["tasks"]["tasks"].items():
        ids = torch.tensor(e["tok"].convert_tokens_to_ids(entry["virtual_tokens"]))
        torch.testing.assert_close(emb(ids), table.prompt(name), atol=0, rtol=2.4e-7 if scaled else 0)


def test_generate_equals_ptune_predict_and_never_emits_a_virtual_token(exported):
    from ptune_cli.inference import decode
    from ptune_cli.models import load_causal_lm

    e = exported
    preds = _predict(e)
    records = read_jsonl(e["data"])
    virtual = set(e["tasks"]["virtual_token_ids"])
    base, base_tok = load_causal_lm(load_prompt_table(e["run"]).meta["base_model"])
    table = load_prompt_table(e["run"])
    seen = set()
    for rec, pred in zip(records, preds, strict=True):
        task = e["tasks"]["tasks"][rec["taskname"]]
        new = _generate(e, rec)
        assert not virtual & set(new), (e["family"], rec)
        # ptune's own ids for the record (what predict decodes), stop tokens as predict keeps them
        enc = encode_example(table.template(rec["taskname"]), rec, base_tok, include_answer=False)
        stops = decode.stop_token_ids(base_tok, bool(task["stop"]))
        keep = [i for i in stops if i != base_tok.eos_token_id]
        with torch.inference_mode():
            [want] = decode.generate_ids(base, base_tok, [enc], table.prompt(rec["taskname"]),
                                         max_new_tokens=task["max_new_tokens"], stop_ids=stops, keep_ids=keep)
        got = new[: new.index(base_tok.eos_token_id)] if base_tok.eos_token_id in new else new
        assert got == want, (e["family"], rec)
        assert _client_text(e, rec, new) == pred["prediction"], (e["family"], rec)
        seen.update(new)
    assert len(seen) > 3, e["family"]  # outputs are not trivial repetitions


def _rank(e, rec, labels) -> str:
    """Rank decoding from the folder: each label's tokens (answer_prefix + label, then EOS)
    after the prompt, log-probabilities normalised over the labels' tokens, as ptune scores."""
    task = e["tasks"]["tasks"][rec["taskname"]]
    tok = e["tok"]
    prompt = _prompt_ids(e, rec)
    cands = [tok(task["answer_prefix"] + lab, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
             for lab in labels]
    vocab = sorted({t for c in cands for t in c})
    scores = []
    for c in cands:
        ids = torch.tensor([prompt + c])
        with torch.no_grad():
            logits = e["model"](input_ids=ids).logits[0, len(prompt) - 1: -1][:, vocab].float()
        logp = torch.log_softmax(logits, -1)
        scores.append(sum(float(logp[k, vocab.index(t)]) for k, t in enumerate(c)))
    return labels[max(range(len(labels)), key=scores.__getitem__)]


def test_rank_decoding_gives_ptune_predicts_label(exported):
    e = exported
    labels = e["tasks"]["tasks"][SENT.taskname]["labels"]
    assert labels == sorted(set(LABELS))
    sent_file = write_jsonl(e["root"] / "sent.jsonl", [r for r in read_jsonl(e["data"]) if r["taskname"] == SENT.taskname])
    out = e["root"] / "rank.jsonl"
    run_predict(PredictConfig(run=e["run"], data=sent_file, output=str(out), device="cpu", decode="rank"))
    preds = read_jsonl(out)
    got = [_rank(e, rec, labels) for rec in preds]
    assert got == [p["prediction"] for p in preds], e["family"]


def test_the_tasks_file_contract(exported):
    e = exported
    tasks = e["tasks"]["tasks"]
    assert set(tasks) == {SENT.taskname, ASK.taskname}
    assert tasks[ASK.taskname]["prompt"] == ("<ptune:ask:0><ptune:ask:1><ptune:ask:2> Q: {question}"
                                             "<ptune:ask:3><ptune:ask:4> A:")
    for t in tasks.values():
        assert {"prompt", "input_fields", "answer_field", "stop", "max_new_tokens"} <= set(t)
    gc = json.loads((Path(e["out"]) / "generation_config.json").read_text())
    assert sorted(gc["suppress_tokens"]) == sorted(e["tasks"]["virtual_token_ids"])
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in Path(e["out"]).iterdir()}
    r = e["result"]
    assert r["vocab_after"] == r["vocab_before"] + 9 and r["added_params"] == 9 * 32


def test_a_tied_head_never_generates_a_virtual_token(tmp_path, tiny_lm_dir):
    """Prompt rows 50x larger: through the tied head they outscore every real token, so plain
    greedy decoding without the folder's generation config emits them; with it, never, and the
    output stays ptune predict's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    r = make_run(tmp_path, tiny_lm_dir)
    table = load_prompt_table(r["run"])
    save_prompt_table(r["run"], {n: table.prompts[n] * 50 for n in table.tasknames}, table.meta)
    data = write_jsonl(tmp_path / "new.jsonl", [rec for rec in _records() if rec["taskname"] == SENT.taskname])
    out = run_export(ExportConfig(run=r["run"], output=str(tmp_path / "exported")))["output"]
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied
    tasks = json.loads((Path(out) / "ptune_tasks.json").read_text())
    virtual = set(tasks["virtual_token_ids"])
    run_predict(PredictConfig(run=r["run"], data=data, output=str(tmp_path / "p.jsonl"), device="cpu"))
    emitted_without = 0
    for rec, pred in zip(read_jsonl(data), read_jsonl(tmp_path / "p.jsonl"), strict=True):
        task = tasks["tasks"][rec["taskname"]]
        ids = tok(task["prompt"].format(sentence=rec["sentence"]), return_tensors="pt")
        kw = dict(max_new_tokens=task["max_new_tokens"])
        raw = model.generate(**ids, **kw, suppress_tokens=None, bad_words_ids=None)[0, ids["input_ids"].shape[1]:]
        emitted_without += bool(virtual & set(raw.tolist()))
        new = model.generate(**ids, **kw, stop_strings=task["stop"], tokenizer=tok)[0, ids["input_ids"].shape[1]:]
        assert not virtual & set(new.tolist())
        assert tok.decode(new, skip_special_tokens=True).split("\n", 1)[0].strip() == pred["prediction"]
    assert emitted_without > 0  # the hazard is real: the config is what keeps it out


def test_prompt_format_doubles_literal_braces_and_moves_the_answer_space():
    tpl = TaskTemplate("t", "<|VIRTUAL_PROMPT_0|> JSON {} of {sentence}<|VIRTUAL_PROMPT_1|> Label: {label}",
                       3, [2, 1], "label")
    prompt, lead = prompt_format(tpl, ["<a>", "<b>", "<c>"])
    assert prompt == "<a><b> JSON {{}} of {sentence}<c> Label:" and lead == " "
    assert prompt.format(sentence="x {y}") == "<a><b> JSON {} of x {y}<c> Label:"


def test_a_field_just_before_the_answer_sheds_its_trailing_spaces(tmp_path, tiny_lm_dir):
    """ptune moves those spaces onto the answer: the tasks file says rstrip, and the ids match."""
    from ptune_cli.inference.export import format_prompt

    r = make_run(tmp_path, tiny_lm_dir)
    table = load_prompt_table(r["run"])
    tpl = TaskTemplate("glued", "<|VIRTUAL_PROMPT_0|> Text: {sentence}{label}", 4, [4], "label")
    meta = {**table.meta, "templates": {**table.meta["templates"], "glued": tpl.to_dict()}}
    save_prompt_table(r["run"], {**table.prompts, "glued": table.prompts[SENT.taskname].clone()}, meta)
    out = run_export(ExportConfig(run=r["run"], output=str(tmp_path / "e"), task=["glued"]))["output"]
    entry = json.loads((Path(out) / "ptune_tasks.json").read_text())["tasks"]["glued"]
    assert entry["rstrip"] is True and entry["prompt"].endswith("Text: {sentence}")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    rec = {"sentence": "ends with spaces   "}
    enc = encode_example(tpl, rec, tok, include_answer=False)
    ids = iter(tok.convert_tokens_to_ids(entry["virtual_tokens"]))
    assert tok(format_prompt(entry, rec))["input_ids"] == [next(ids) if v else t for t, v in
                                                            zip(enc.input_ids, enc.virtual_mask, strict=True)]


def _invoke(*args):
    return runner.invoke(app, ["export", *args])


def test_prefix_tasks_are_refused_and_a_mixed_table_needs_task(tmp_path, tiny_lm_dir):
    r = make_run(tmp_path, tiny_lm_dir, prefix=True)  # "ask" is a prefix task
    res = _invoke("--run", r["run"], "-o", str(tmp_path / "x"))
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "prefix task(s) ask" in res.output and "--task sentiment-task" in res.output
    res = _invoke("--run", r["run"], "-o", str(tmp_path / "x"), "--task", "ask")
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    assert "prefix task" in res.output and "prompt_embeds" in res.output and "ptune serve" in res.output
    assert not (tmp_path / "x").exists()
    res = _invoke("--run", r["run"], "-o", str(tmp_path / "x"), "--task", "sentiment-task")
    assert res.exit_code == 0, res.output
    assert "4 virtual-token rows" in res.output and "MiB" in res.output
    assert list(json.loads((tmp_path / "x" / "ptune_tasks.json").read_text())["tasks"]) == ["sentiment-task"]


def test_outputs_never_overwrite_inputs_or_foreign_folders(tmp_path, tiny_lm_dir):
    r = make_run(tmp_path, tiny_lm_dir)
    for target in (r["run"], r["model"]):
        res = _invoke("--run", r["run"], "-o", target)
        assert res.exit_code == 1 and "inside -o" in res.output, res.output
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "a.txt").write_text("keep")
    res = _invoke("--run", r["run"], "-o", str(foreign))
    assert res.exit_code == 1 and "not empty" in res.output
    assert (foreign / "a.txt").read_text() == "keep"
    for _ in range(2):  # an earlier export is replaced
        res = _invoke("--run", r["run"], "-o", str(tmp_path / "exp"))
        assert res.exit_code == 0, res.output
    res = _invoke("--run", r["run"], "-o", str(tmp_path / "x"), "--model", str(tmp_path / "exp"))
    assert res.exit_code == 1 and "export" in res.output  # its tokenizer has the tokens already
