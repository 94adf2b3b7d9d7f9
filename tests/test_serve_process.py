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
