"""``ptune serve``: a run's prompt table over HTTP (thin: options → run_serve)."""

from __future__ import annotations

from ptune_cli.cli._app import app, example
from ptune_cli.options import typer_command
from ptune_cli.serve.config import ServeConfig


def _serve(cfg) -> None:
    try:
        import fastapi  # noqa: F401 - the serve extra, checked before anything loads
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401

        from ptune_cli.serve.server import run_serve
    except ImportError as e:  # fastapi / uvicorn / prometheus-client: the serve extra
        from ptune_cli.errors import UserError

        raise UserError(f"ptune serve needs {e.name}: pip install 'ptune-cli[serve]'") from None
    run_serve(cfg)


typer_command(
    app, "serve", ServeConfig, _serve,
    help="""Serve a run's prompt table over HTTP: POST /v1/predict, GET /v1/tasks, GET /health, GET /metrics.

    The model is loaded once; each request's records go to the prompts of their 'taskname',
    concurrent requests of any tasks are batched together (--max-batch-size, --max-wait-ms;
    code in ptune_cli/serve/, decoding in ptune_cli/inference/). Loopback by
    default; another --host needs --api-key (bearer token). SIGTERM finishes in-flight
    requests and exits 0; SIGHUP or POST /v1/reload re-reads the prompt table.
    """,
    epilog=example(
        "ptune serve --run runs/assistant --port 8000",
        "PTUNE_API_KEY=secret ptune serve --run runs/assistant --host 0.0.0.0 --max-batch-size 64",
    ),
)
