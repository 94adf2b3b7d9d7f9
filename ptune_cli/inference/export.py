"""``ptune export``: bake a run's input prompts into a plain Hugging Face model folder.

Each virtual token of each task becomes an added vocabulary entry whose input-embedding row is
the trained prompt row, so any engine that serves the base architecture serves the p-tuned
tasks from token ids alone (vLLM, SGLang, llama.cpp after conversion, plain ``transformers``).
``DIR/ptune_tasks.json`` is the contract clients build requests from: per task a Python format
string whose default tokenization gives exactly the ids ``ptune predict`` feeds the model.

What keeps the baked model exact:

* **the row**: the embedding module's own scale is divided out (Gemma multiplies its input
  embeddings by √hidden in the weights' dtype), and of the quotient and its two neighbouring
  floats the one the module maps closest to the prompt is stored: the row comes back exact, or
  within one ulp where no float times √hidden rounds to it;
* **the ids**: the added tokens strip nothing and are not normalized, so the text on either side
  tokenizes as ptune tokenizes each template run on its own; the export encodes the run's
  training records (and a few probes) both ways and refuses when the ids differ;
* **the output side**: with a tied LM head the new rows are output rows too, and a trained row
  may outscore every real token. The new ids go into the generation config's
  ``suppress_tokens``/``bad_words_ids`` (``transformers`` applies them) and into
  ``ptune_tasks.json`` (``virtual_token_ids``: an engine's ``logit_bias``); an untied head gets
  zero rows for them as well.

Prefix (deep) prompts live in every layer's keys and values: no vocabulary row carries them.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ptune_cli.errors import UserError
from ptune_cli.options import option

TASKS_FILE = "ptune_tasks.json"
FORMAT = "ptune-tasks/1"
MAX_LABELS = 200  # a task with more distinct training answers is generation, not a label set
PROBES = ["Hello world", "  two leading spaces", "trailing space ", "a {brace} b", "åäö ÅÄÖ é", "x\ny", "1, 2: 3."]


@dataclass
class ExportConfig:
    """Options of ``ptune export``."""

    run: str = option(help="Run folder with the prompt table (from ptune train).")
    output: str = option(short="-o", flag="--output",
                         help="Folder to write (a new or empty one, or an earlier export, which is replaced).")
    task: list[str] | None = option(None, help="Task to export (repeatable; default: every task of the table).")
    model: str | None = option(None, help="Base model (default: the run's base model).")


def virtual_token_names(tasknames: list[str]) -> dict[str, str]:
    """``{task: stem}``: the added tokens of a task are ``<ptune:STEM:i>``; the stem keeps
    ``[A-Za-z0-9_.-]`` of the name (others become ``_``), made unique by a ``~N`` suffix."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in tasknames:
        stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "task"
        unique, n = stem, 1
        while unique in used:
            n += 1
            unique = f"{stem}~{n}"
        used.add(unique)
        out[name] = unique
    return out


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def prompt_format(tpl, tokens: list[str]) -> tuple[str, str]:
    """``(prompt, answer_prefix)``: the template up to its answer as a Python format string —
    the virtual markers written as ``tokens`` (in order), the fields as ``{name}`` and every
    other brace doubled — and the spaces that ptune moves from the prompt onto the answer
    (``"Sentiment: {label}"``: the answer is tokenized as ``" " + label``)."""
    from ptune_cli.ptuning.template import FIELD_RE, MARKER_RE

    suffix = "{" + tpl.answer_field + "}"
    body = tpl.prompt_template[: -len(suffix)] if tpl.prompt_template.endswith(suffix) else tpl.prompt_template
    stripped = body.rstrip(" ")
    lead = body[len(stripped):]
    out, pos, it = [], 0, iter(tokens)
    for m in MARKER_RE.finditer(stripped):
        out.append(_fields_kept(stripped[pos:m.start()], FIELD_RE))
        out.append("".join(next(it) for _ in range(tpl.virtual_token_splits[int(m.group(1))])))
        pos = m.end()
    out.append(_fields_kept(stripped[pos:], FIELD_RE))
    return "".join(out), lead


def _fields_kept(text: str, field_re) -> str:
    parts, pos = [], 0
    for m in field_re.finditer(text):
        parts.append(_escape(text[pos:m.start()]) + m.group(0))
        pos = m.end()
    return "".join(parts) + _escape(text[pos:])


def check_kinds(table, wanted: list[str] | None) -> list[str]:
    """The tasks to export; UserError for a prefix task asked for, or a table mixing kinds
    without ``--task`` (listing its prefix tasks)."""
    names = list(dict.fromkeys(wanted)) if wanted else table.tasknames
    for n in names:
        table.template(n)  # an unknown task fails naming the known ones
    prefix = [n for n in names if table.kind(n) == "prefix"]
    if not prefix:
        return names
    why = ("its prompt is keys/values in every layer, which no vocabulary row (and no prompt_embeds input) "
           "can carry; serve it with `ptune serve` (or `ptune predict`)")
    if wanted or len(prefix) == len(names):
        listed = ", ".join(f"'{n}'" for n in prefix)
        raise UserError(f"task {listed} is a prefix task (--encoder prefix) and cannot be exported: {why}")
    inputs = [n for n in names if n not in prefix]
    raise UserError(f"the table mixes input and prefix tasks; prefix task(s) {', '.join(prefix)} cannot be exported "
                    f"({why}): export the input tasks with {' '.join('--task ' + n for n in inputs)}")


def _check_output(cfg: ExportConfig, base: str | None) -> Path:
    from ptune_cli.io import check_outputs

    out = Path(cfg.output).expanduser().resolve()
    inputs = {"--run": cfg.run}
    if base and Path(base).expanduser().exists():
        inputs["--model"] = base
    check_outputs({}, inputs, folders={"-o": out})
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {cfg.output}: is a file, expected a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / TASKS_FILE).is_file():
        raise UserError(f"-o {cfg.output}: folder is not empty and holds no earlier export ({TASKS_FILE}); "
                        "give a new folder")
    return out


def run_export(cfg: ExportConfig, on_step=None) -> dict:
    """Write the folder; returns sizes and the tasks' token ids (see the module docstring)."""
    from ptune_cli.options import validate
    from ptune_cli.ptuning.table import load_prompt_table

    step = on_step or (lambda _msg: None)
    validate(cfg)
    table = load_prompt_table(cfg.run)
    names = check_kinds(table, cfg.task)
    base = cfg.model or table.meta.get("base_model")
    out = _check_output(cfg, base)
    step(f"loading the base model {base}")
    model, tok = _load_base(base)
    from ptune_cli.inference.job import check_prompt_fits

    for n in names:
        check_prompt_fits(model, table.prompt(n), cfg.run)
    step(f"adding {sum(table.prompt(n).shape[0] for n in names)} virtual tokens for {len(names)} task(s)")
    baked = bake(model, tok, {n: table.prompt(n) for n in names})
    tasks = {n: task_entry(table, n, tok, baked.tokens[n]) for n in names}
    step("checking that every prompt tokenizes to ptune's own ids")
    for n in names:
        check_ids(table.template(n), tok, tasks[n], baked.token_ids[n], _sample_records(table, n))
    step(f"writing {out}")
    meta = {"format": FORMAT, "base_model": base, "run": str(Path(cfg.run).resolve()),
            "virtual_token_ids": baked.all_ids, "tasks": tasks}
    _write_folder(out, model, tok, meta)
    return {"output": str(out), "tasks": names, "rows_added": len(baked.all_ids), "vocab_before": baked.vocab_before,
            "vocab_after": baked.vocab_after, "hidden": baked.hidden, "dtype": baked.dtype, "tied": baked.tied,
            "base_params": baked.base_params, "added_params": baked.added_params,
            "folder_bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file())}


def _load_base(base: str | None):
    """The base model in its checkpoint's own dtype (a bf16 base stays bf16) and its tokenizer."""
    from ptune_cli.models import load_causal_lm

    return load_causal_lm(base, dtype="auto")


@dataclass
class Baked:
    tokens: dict  # task -> added token strings, in virtual-position order
    token_ids: dict  # task -> their ids
    all_ids: list
    vocab_before: int
    vocab_after: int
    hidden: int
    dtype: str
    tied: bool
    base_params: int
    added_params: int


def bake(model, tok, prompts: dict) -> Baked:
    """Add ``<ptune:TASK:i>`` tokens to ``tok`` and their rows to ``model`` (in place)."""
    import torch
    from tokenizers import AddedToken

    emb = model.get_input_embeddings()
    rows_before, hidden = emb.weight.shape
    base_params = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    stems = virtual_token_names(list(prompts))
    tokens = {n: [f"<ptune:{stems[n]}:{i}>" for i in range(p.shape[0])] for n, p in prompts.items()}
    flat = [t for ts in tokens.values() for t in ts]
    vocab = tok.get_vocab()
    clash = [t for t in flat if t in vocab]
    if clash:
        raise UserError(f"the tokenizer already has token(s) {', '.join(clash[:3])}: is this model an export already? "
                        "export from the run's base model (--model)")
    # no lstrip/rstrip, not normalized: the text on either side stays as ptune tokenizes it
    tok.add_tokens([AddedToken(t, lstrip=False, rstrip=False, normalized=False, single_word=False, special=False)
                    for t in flat])
    ids = {n: tok.convert_tokens_to_ids(ts) for n, ts in tokens.items()}
    all_ids = [i for v in ids.values() for i in v]
    need = max(all_ids) + 1 if all_ids else rows_before
    if need > rows_before:
        model.resize_token_embeddings(need, mean_resizing=False)
    emb = model.get_input_embeddings()
    with torch.no_grad():
        for n, p in prompts.items():
            idx = torch.tensor(ids[n], dtype=torch.long, device=emb.weight.device)
            emb.weight[idx] = stored_rows(emb, p.to(emb.weight.device))
            got = emb(idx)
            err = float((got.float() - p.to(got.dtype).float()).abs().max()) if len(idx) else 0.0
            if err > 1e-3 * max(1.0, float(p.abs().max())):
                raise UserError(f"task '{n}': the baked rows do not reproduce the prompt through "
                                f"{type(emb).__name__} (max error {err:.3g}); this architecture cannot be exported")
        head = model.get_output_embeddings()
        if head is not None and head.weight is not emb.weight and all_ids:
            # an untied head: the new output rows score 0 (and are suppressed, see _generation)
            head.weight[torch.tensor(all_ids, device=head.weight.device)] = 0
            if getattr(head, "bias", None) is not None:
                head.bias[torch.tensor(all_ids, device=head.bias.device)] = 0
    _generation(model, all_ids)
    return Baked(tokens, ids, all_ids, rows_before, model.get_input_embeddings().weight.shape[0], hidden,
                 str(emb.weight.dtype).removeprefix("torch."), tied, base_params, len(all_ids) * hidden)


def stored_rows(emb, prompt):
    """Rows ``r`` with ``emb``'s forward giving ``prompt``: ``prompt / embed_scale`` in the
    weights' dtype, or a neighbouring float where the module's product rounds closer to it."""
    import torch

    dtype = emb.weight.dtype
    scale = getattr(emb, "embed_scale", None)
    target = prompt.to(dtype)
    if scale is None:
        return target
    s = scale.to(dtype) if torch.is_tensor(scale) else torch.tensor(scale, dtype=dtype)
    s = s.to(prompt.device)
    rows = (prompt.double() / s.double()).to(dtype)
    try:
        down = torch.nextafter(rows, torch.full_like(rows, -float("inf")))
        up = torch.nextafter(rows, torch.full_like(rows, float("inf")))
    except RuntimeError:  # no nextafter for this dtype: the rounded quotient is as close
        return rows
    best, err = rows, (rows * s - target).abs()
    for cand in (down, up):  # the forward is rows * s in dtype: the neighbour may round closer
        e = (cand * s - target).abs()
        best, err = torch.where(e < err, cand, best), torch.minimum(e, err)
    return best


def _generation(model, ids: list[int]) -> None:
    """Greedy decoding (ptune's predictions are greedy) that never produces an added token."""
    gc = model.generation_config
    gc.do_sample = False
    for name in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
        if hasattr(gc, name):
            setattr(gc, name, None)
    gc.suppress_tokens = list(ids) or None
    gc.bad_words_ids = [[i] for i in ids] or None


def task_entry(table, name: str, tok, tokens: list[str]) -> dict:
    """One task of ``ptune_tasks.json``: prompt, fields, stop strings and max_new_tokens as
    ``ptune predict`` resolves them (from the run's training answers), rank labels when few."""
    from ptune_cli.inference.job import Task, auto_max_new_tokens
    from ptune_cli.inference.router import training_answers

    tpl = table.template(name)
    prompt, lead = prompt_format(tpl, tokens)
    task = Task(tpl, None, None, table.meta)
    answers = training_answers(task)
    one_line = bool(answers) and not any("\n" in a for a in answers)
    entry = {"prompt": prompt, "input_fields": list(dict.fromkeys(tpl.input_fields)),
             "answer_field": tpl.answer_field, "stop": ["\n"] if one_line else [],
             "max_new_tokens": auto_max_new_tokens(tok, task, answers), "answer_prefix": lead,
             "virtual_tokens": tokens}
    if answers and len(answers) <= MAX_LABELS:
        entry["labels"] = answers
    if prompt.endswith("}") and not prompt.endswith("}}"):
        # "{sentence}{label}": ptune moves the value's trailing spaces onto the answer too
        entry["rstrip"] = True
    return entry


def _sample_records(table, name: str, limit: int = 50) -> list[dict]:
    """Records to check the ids with: the task's first training records (if the file is still
    there) and probes with spaces, braces, non-ASCII text and a newline in every field."""
    import contextlib

    from ptune_cli.io import iter_records

    tpl = table.template(name)
    fields = tpl.input_fields
    out = [{f: p for f in fields} for p in PROBES]
    train = (table.meta.get("hyperparameters") or {}).get("train")
    if isinstance(train, str) and Path(train).is_file():
        with contextlib.suppress(UserError):
            for _, r in iter_records(train, {}, allow_empty=True):
                if r.get("taskname", name) == name and all(isinstance(r.get(f), str) for f in fields):
                    out.append(r)
                if len(out) >= len(PROBES) + limit:
                    break
    return out


def format_prompt(entry: dict, record: dict) -> str:
    """A task's prompt for ``record``, as a client builds it from ``ptune_tasks.json``."""
    text = entry["prompt"].format(**{f: record[f] for f in entry["input_fields"]})
    return text.rstrip(" ") if entry.get("rstrip") else text


def check_ids(tpl, tok, entry: dict, token_ids: list[int], records: list[dict]) -> None:
    """UserError unless ``tok(entry["prompt"].format(**record))`` equals ptune's encoding of
    ``record`` (virtual positions holding ``token_ids``) for every record."""
    from ptune_cli.ptuning.template import encode_example

    for rec in records:
        enc = encode_example(tpl, rec, tok, include_answer=False)
        it = iter(token_ids)
        want = [next(it) if v else t for t, v in zip(enc.input_ids, enc.virtual_mask, strict=True)]
        got = tok(format_prompt(entry, rec))["input_ids"]
        if got != want:
            k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise UserError(f"task '{tpl.taskname}': the exported tokenizer splits the prompt differently from ptune "
                            f"at token {k} for {{{', '.join(f'{f}: {rec[f]!r}' for f in entry['input_fields'])}}} "
                            f"(got {got[k:k + 3]}, ptune {want[k:k + 3]}); this tokenizer cannot be exported exactly")


def _write_folder(out: Path, model, tok, meta: dict) -> None:
    """Weights, config, generation config, tokenizer and the tasks file, built beside ``out``
    and swapped in whole (an earlier export there is replaced only on success)."""
    from ptune_cli.io import output_error, output_mode, swap_in_folder, write_json, writing

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        tmp.chmod(output_mode(out, folder=True))
    except OSError as e:
        raise output_error(out, e) from None
    try:
        with writing(out):
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        write_json(tmp / TASKS_FILE, meta)
        mode = output_mode(tmp / "x")  # what open() gives a new file (some writers use mkstemp's 0600)
        for f in tmp.iterdir():
            f.chmod(mode)
        swap_in_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
