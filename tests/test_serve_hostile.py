"""The issue-19 scenario against the app (its real batching worker and model): six honest
clients send 15 requests each while two hostile clients keep sending a record with a lone
surrogate. Before the fix the hostile record reached the tokenizer and failed every batch it
shared: 90 of 90 honest requests failed. Now no honest request fails, with the door on (the
hostile requests get 422 naming the field) and with the door's text check turned off (the
tokenizer raises inside the worker; the batch is split and only the hostile record fails, 500).

``pytest tests/test_serve_hostile.py -s`` prints the counts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from ptune_cli.serve.config import ServeConfig
from ptune_cli.serve.server import build_app
from tests.predict_run import make_run, questions, sentiment
from tests.test_serve import _door_off

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HONEST_CLIENTS, REQUESTS, HOSTILE_CLIENTS = 6, 15, 2
HOSTILE = (b'[{"taskname": "sentiment-task", "sentence": "fine"}, '
           b'{"taskname": "sentiment-task", "sentence": "bad \\ud800 text"}]')


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("hostile"), tiny_lm_dir)


def _load(app) -> tuple[Counter, Counter]:
    honest_records = sentiment(labeled=False) + questions(labeled=False)
    honest, hostile = Counter(), Counter()
    done = threading.Event()
    with TestClient(app) as c:
        def client(k: int) -> None:
            for j in range(REQUESTS):
                rec = honest_records[(k * REQUESTS + j) % len(honest_records)]
                r = c.post("/v1/predict", json=rec)
                ok = r.status_code == 200 and isinstance(r.json().get("prediction"), str)
                honest["ok" if ok else f"failed {r.status_code}"] += 1

        def attacker() -> None:
            while not done.is_set():
                r = c.post("/v1/predict", content=HOSTILE, headers={"Content-Type": "application/json"})
                hostile[r.status_code] += 1
                time.sleep(0.02)  # keep sending, but leave the 2 shared cores to the model

        attackers = [threading.Thread(target=attacker) for _ in range(HOSTILE_CLIENTS)]
        clients = [threading.Thread(target=client, args=(k,)) for k in range(HONEST_CLIENTS)]
        for t in attackers + clients:
            t.start()
        for t in clients:
            t.join()
        done.set()
        for t in attackers:
            t.join()
    return honest, hostile


@pytest.mark.parametrize("door", ["on", "off"])
def test_no_honest_request_fails_beside_hostile_clients(env, monkeypatch, door):
    if door == "off":
        _door_off(monkeypatch)
    app = build_app(ServeConfig(run=env["run"], max_batch_size=32, max_wait_ms=20))
    honest, hostile = _load(app)
    batcher = app.state.ptune.batcher
    print(f"\ndoor {door}: honest {dict(honest)} of {HONEST_CLIENTS * REQUESTS}, hostile answers {dict(hostile)}, "
          f"{batcher.batches} batches, largest {batcher.largest}")
    assert honest == {"ok": HONEST_CLIENTS * REQUESTS}
    assert set(hostile) == ({422} if door == "on" else {500}) and sum(hostile.values()) >= HOSTILE_CLIENTS
