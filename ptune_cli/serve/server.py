"""``ptune serve`` top-down: options (host check) → model + table → the app on uvicorn.

Signals: SIGTERM (and Ctrl+C) stop accepting, let in-flight requests finish, stop the worker
and exit 0; SIGHUP reloads the prompt table (as ``POST /v1/reload``).
"""

from __future__ import annotations

import os
import signal
import sys

from ptune_cli.options import validate
from ptune_cli.serve.config import ServeConfig

API_KEY_ENV = "PTUNE_API_KEY"  # keeps the key out of `ps` output
DELAY_ENV = "PTUNE_SERVE_BATCH_DELAY"  # test hook: seconds each batch takes longer (in-flight tests)


def build_app(cfg: ServeConfig, handle_sighup: bool = False):
    """Check the options, load the model and table, return the FastAPI app (tests use it with
    TestClient)."""
    from ptune_cli.serve.app import create_app
    from ptune_cli.serve.state import ServeState

    if cfg.api_key is None and os.environ.get(API_KEY_ENV):
        cfg.api_key = os.environ[API_KEY_ENV]
    validate(cfg)
    state = ServeState(cfg)
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    if delay:
        import time

        run = state.run_batch

        def slow(items):
            time.sleep(delay)
            return run(items)

        state.batcher.run_batch = slow
    return create_app(state, handle_sighup=handle_sighup)


def run_serve(cfg: ServeConfig) -> None:
    """Serve until SIGTERM / SIGINT; returns normally (exit 0) after a graceful shutdown."""
    import uvicorn

    app = build_app(cfg, handle_sighup=True)
    state = app.state.ptune
    print(f"ptune serve: {cfg.run}, tasks {', '.join(state.router.tasknames)} on {state.router.model_name}"
          + (", bearer token required" if cfg.api_key else ""), file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                                           timeout_graceful_shutdown=60))
    # uvicorn re-raises the signal it shut down on once it is done; with this handler that
    # ends in a normal return (exit 0) instead of death by SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
