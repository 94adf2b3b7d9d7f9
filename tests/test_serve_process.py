"""A real ``ptune serve`` process (uvicorn): SIGHUP reloads the prompt table, SIGTERM lets the
in-flight request finish and exits 0."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from ptune_cli.ptuning.table import load_prompt_table, save_prompt_table
from tests.predict_run import make_run

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, proc) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_sighup_reloads_and_sigterm_finishes_in_flight_requests(tiny_lm_dir, tmp_path):
    from ptune_cli.serve.server import DELAY_ENV

    (tmp_path / "a").mkdir()
    env = make_run(tmp_path / "a", tiny_lm_dir)
    table = load_prompt_table(env["run"])
    grown = tmp_path / "grown"
    shutil.copytree(env["run"], grown)
    meta = dict(table.meta, templates={**table.meta["templates"], "ask2": {**table.meta["templates"]["ask"], "taskname": "ask2"}})
    save_prompt_table(grown, {**table.prompts, "ask2": table.prompts["ask"] * 2}, meta)
    current = tmp_path / "current"
    current.symlink_to(env["run"])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ptune_cli", "serve", "--run", str(current), "--port", str(port)],
                            cwd=REPO, env={**os.environ, DELAY_ENV: "2.0"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 120, proc)
        tasks = lambda: {t["taskname"] for t in httpx.get(f"{url}/v1/tasks").json()}  # noqa: E731
        assert tasks() == {"ask", "sentiment-task"}
        current.unlink()
        current.symlink_to(grown)
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "ask2" in tasks(), 30, proc)
        answer = {}

        def ask():
            answer["r"] = httpx.post(f"{url}/v1/predict", json={"taskname": "ask2", "question": "hej"}, timeout=60)

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(0.8)  # the request is in the worker (each batch takes 2 s here)
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        assert answer["r"].status_code == 200 and isinstance(answer["r"].json()["prediction"], str)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            pytest.fail(proc.communicate()[0][-3000:])


def _start(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ptune_cli", "serve", *args, "--port", str(port)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc, f"http://127.0.0.1:{port}"


def test_sighup_while_loading_and_a_request_past_the_drain_timeout(tiny_lm_dir, tmp_path):
    """Defect 10: SIGHUP during loading killed ptune serve (exit 129); its handler is now in
    place before loading starts, and the table is re-read once the server runs. Then SIGTERM
    with a request running past --drain-timeout: a JSON 503 (was a plain-text 500 and two
    tracebacks after a hard-coded 60 s), and exit 0."""
    from ptune_cli.serve.server import DELAY_ENV

    env = make_run(tmp_path, tiny_lm_dir)
    proc, url = _start(["--run", env["run"], "--drain-timeout", "0.5"], {DELAY_ENV: "3.0"})
    try:
        seen = ""
        while "ptune serve: loading" not in seen:  # printed once the handler is in place
            line = proc.stdout.readline()
            assert line, seen
            seen += line
        proc.send_signal(signal.SIGHUP)  # the model is still loading
        wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 120, proc)
        ask = lambda: httpx.post(f"{url}/v1/predict", json={"taskname": "ask", "question": "hej"}, timeout=60)  # noqa: E731
        assert ask().status_code == 200
        answer = {}
        t = threading.Thread(target=lambda: answer.update(r=ask()))
        t.start()
        time.sleep(1.0)  # in the worker (each batch takes 3 s here)
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        r = answer["r"]
        assert r.status_code == 503 and "--drain-timeout" in r.json()["detail"], r.text
        assert proc.wait(60) == 0
        rest = proc.stdout.read()
        assert "reloaded:" in seen + rest and "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
