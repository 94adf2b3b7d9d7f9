"""``ptune export``: a run's input prompts baked into a plain HF model folder (thin: options →
run_export)."""

from __future__ import annotations

from ptune_cli.cli._app import app, example, stderr_console
from ptune_cli.inference.export import ExportConfig
from ptune_cli.options import typer_command


def _export(cfg) -> None:
    from ptune_cli.inference.export import TASKS_FILE, run_export

    console = stderr_console()
    r = run_export(cfg, on_step=lambda msg: console.print(f"export: {msg}"))
    mib = r["folder_bytes"] / 2**20
    console.print(f"export: base model {r['vocab_before']} vocabulary rows x {r['hidden']} ({r['base_params']:,} "
                  f"parameters, {r['dtype']}{', tied LM head' if r['tied'] else ''}) + {r['rows_added']} virtual-token "
                  f"rows (T*K = {r['added_params']:,} parameters) for {', '.join(r['tasks'])}")
    console.print(f"export: {r['output']} ({mib:.1f} MiB): serve it with any engine; requests are built from "
                  f"{TASKS_FILE}")


typer_command(
    app, "export", ExportConfig, _export,
    help="""Bake a run's prompts into a plain model folder that any inference engine serves.

    Each virtual token of each task becomes a new vocabulary entry whose embedding row is the
    trained prompt row: the folder (safetensors, config, tokenizer, generation config) loads in
    transformers, vLLM or SGLang, or converts to GGUF, with no plugin. ptune_tasks.json gives
    each task's prompt as a format string whose tokens are exactly what ptune predict feeds the
    model. Prefix (deep prompt) tasks cannot be baked: serve them with ptune serve.
    """,
    epilog=example(
        "ptune export --run runs/assistant -o exported/assistant",
        "ptune export --run runs/mixed -o exported/sentiment --task sentiment",
    ),
)
