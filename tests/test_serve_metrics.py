"""``ptune serve``: GET /metrics (Prometheus text), one batch size, mixed-task batches, and
each task's setting resolved once (no per-batch job rebuild or full-vocabulary check)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ptune_cli.serve.config import ServeConfig
from ptune_cli.serve.server import build_app
from tests.predict_run import make_run, questions, sentiment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("serve-metrics"), tiny_lm_dir)


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_errors_batches_and_queue(env):
    with TestClient(build_app(ServeConfig(run=env["run"], api_key="k", max_batch_size=8))) as c:
        auth = {"Authorization": "Bearer k"}
        recs = [questions(labeled=False)[0], sentiment(labeled=False)[0]]
        assert c.post("/v1/predict", json=recs, headers=auth).status_code == 200
        assert c.post("/v1/predict", json={"taskname": "nope"}, headers=auth).status_code == 422
        assert c.get("/v1/tasks").status_code == 401
        assert c.get("/no/such/path", headers=auth).status_code == 404
        assert c.get("/metrics").status_code == 401  # the bearer token, as every route but /health
        r = c.get("/metrics", headers=auth)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = _samples(r.text)
    assert m[("ptune_requests_total", (("code", "200"), ("route", "/v1/predict")))] == 1
    assert m[("ptune_requests_total", (("code", "422"), ("route", "/v1/predict")))] == 1
    assert m[("ptune_request_errors_total", (("code", "401"), ("route", "/v1/tasks")))] == 1
    assert m[("ptune_request_errors_total", (("code", "404"), ("route", "other")))] == 1
    assert ("ptune_request_errors_total", (("code", "200"), ("route", "/v1/predict"))) not in m
    assert m[("ptune_request_duration_seconds_count", (("route", "/v1/predict"),))] == 2
    # both records (two tasks) in one model batch
    assert m[("ptune_batch_records_count", ())] == 1 and m[("ptune_batch_records_sum", ())] == 2
    assert m[("ptune_queue_depth", ())] == 0


def test_one_batch_size_and_settings_resolved_once(env, monkeypatch):
    from ptune_cli.inference import decode, job

    cfg = ServeConfig(run=env["run"], max_batch_size=5, decode="rank", labels=["positive", "negative"])
    app = build_app(cfg)
    state = app.state.ptune
    assert state.cfg.batch_size == 5  # --max-batch-size is the decoding batch too
    assert "--batch-size" not in _serve_flags()
    calls = {"resolve": 0, "head": 0}
    resolve, head = job.resolve_setting, decode.check_gathered_head
    monkeypatch.setattr(job, "resolve_setting", lambda *a, **k: (calls.__setitem__("resolve", calls["resolve"] + 1),
                                                                  resolve(*a, **k))[1])
    monkeypatch.setattr(decode, "check_gathered_head", lambda *a, **k: (calls.__setitem__("head", calls["head"] + 1),
                                                                         head(*a, **k))[1])
    recs = sentiment(labeled=False)[:3]
    with TestClient(app) as c:
        for _ in range(3):
            r = c.post("/v1/predict", json=recs)
            assert r.status_code == 200, r.text
            assert {x["prediction"] for x in r.json()} <= {"positive", "negative"}
    assert calls == {"resolve": 0, "head": 0}  # resolved when the table was loaded, not per batch


def _serve_flags() -> str:
    from typer.testing import CliRunner

    from ptune_cli.cli import app

    return CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
