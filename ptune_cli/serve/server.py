"""``ptune serve`` top-down: options (host check) → model + table → the app on uvicorn.

Signals: SIGTERM (and Ctrl+C) stop accepting, let in-flight requests finish (for at most
``--drain-timeout`` seconds; later ones are answered 503 JSON), stop the worker and exit 0;
SIGHUP reloads the prompt table (as ``POST /v1/reload``), also one that arrives while the model
is still loading (its handler is in place before loading starts).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from ptune_cli.options import validate
from ptune_cli.serve.config import ServeConfig

API_KEY_ENV = "PTUNE_API_KEY"  # keeps the key out of `ps` output
DELAY_ENV = "PTUNE_SERVE_BATCH_DELAY"  # test hook: seconds each batch takes longer (in-flight tests)


def build_app(cfg: ServeConfig, handle_sighup: bool = False, sighup_pending: threading.Event | None = None):
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
    return create_app(state, handle_sighup=handle_sighup, sighup_pending=sighup_pending)


def run_serve(cfg: ServeConfig) -> None:
    """Serve until SIGTERM / SIGINT; returns normally (exit 0) after a graceful shutdown."""
    import uvicorn

    from ptune_cli.models import set_threads

    set_threads(cfg.threads)

    # before anything loads: SIGHUP's default action would kill a server still loading
    pending = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: pending.set())
    print(f"ptune serve: loading {cfg.run}", file=sys.stderr, flush=True)
    app = build_app(cfg, handle_sighup=True, sighup_pending=pending)
    state = app.state.ptune
    print(f"ptune serve: {cfg.run}, tasks {', '.join(state.router.tasknames)} on {state.router.model_name}"
          + (", bearer token required" if cfg.api_key else ""), file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="info",
                                           timeout_graceful_shutdown=cfg.drain_timeout))
    # uvicorn re-raises the signal it shut down on once it is done; with this handler that
    # ends in a normal return (exit 0) instead of death by SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
