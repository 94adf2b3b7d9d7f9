"""``ptune serve`` through FastAPI's TestClient: routes, predictions equal predict's, bad
requests (4xx naming the field, the server keeps serving), auth, host check, batching, reload
of a table grown by ``train --existing``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ptune_cli.errors import UserError
from ptune_cli.serve.batcher import Batcher
from ptune_cli.serve.config import ServeConfig
from ptune_cli.serve.server import build_app
from tests.predict_run import make_run, questions, sentiment, write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def env(tiny_lm_dir, tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("serve"), tiny_lm_dir)


@pytest.fixture(scope="module")
def client(env):
    with TestClient(build_app(ServeConfig(run=env["run"], max_records=8, max_request_bytes=6000))) as c:
        yield c


def mixed() -> list[dict]:
    s, q = sentiment(labeled=False), questions(labeled=False)
    return [q[0], s[0], s[1], q[1], s[2], q[2], s[3], s[4], q[3], s[5]]


def cli_predictions(env, tmp_path, records) -> list[str]:
    from ptune_cli.inference.predict import PredictConfig, run_predict
    from tests.predict_run import read_jsonl

    out = tmp_path / "cli.jsonl"
    run_predict(PredictConfig(run=env["run"], data=write_jsonl(tmp_path / "in.jsonl", records), output=str(out)))
    return [r["prediction"] for r in read_jsonl(out)]


def test_health_tasks_and_predictions_equal_ptune_predicts(client, env, tmp_path):
    assert client.get("/health").json() == {"status": "ok"}
    tasks = {t["taskname"]: t for t in client.get("/v1/tasks").json()}
    assert tasks["ask"]["input_fields"] == ["question"] and tasks["ask"]["answer_field"] == "answer"
    assert tasks["sentiment-task"]["input_fields"] == ["sentence"]
    recs = mixed()
    want = cli_predictions(env, tmp_path, recs)
    r = client.post("/v1/predict", json=recs[:8])  # max_records 8
    assert r.status_code == 200, r.text
    got = r.json()
    assert [g["taskname"] for g in got] == [x["taskname"] for x in recs[:8]]
    assert [g["prediction"] for g in got] == want[:8]
    one = client.post("/v1/predict", json=recs[9])  # one record in, one object out
    assert one.status_code == 200 and one.json() == {"taskname": "sentiment-task", "prediction": want[9]}
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_concurrent_requests_are_batched_and_answered_in_order(env, tmp_path, monkeypatch):
    from ptune_cli.serve.server import DELAY_ENV

    recs = mixed()
    want = cli_predictions(env, tmp_path, recs)
    monkeypatch.setenv(DELAY_ENV, "1.0")  # the first batch is slow: the other requests queue meanwhile
    app = build_app(ServeConfig(run=env["run"], max_batch_size=16))
    results: dict[int, list] = {}
    with TestClient(app) as client:
        def ask(k):
            results[k] = client.post("/v1/predict", json=[recs[k], recs[(k + 3) % 10]]).json()

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(10):
        assert [x["prediction"] for x in results[k]] == [want[k], want[(k + 3) % 10]], (k, results[k])
    batcher = app.state.ptune.batcher
    # records of several requests in one batch (a loaded machine may start the threads late)
    assert batcher.largest >= 4 and batcher.batches < 10, (batcher.largest, batcher.batches)


def test_batcher_takes_queued_records_together():
    seen, gate = [], threading.Event()

    def run(items):
        seen.append(list(items))
        gate.wait(5)  # the first batch is busy while the others queue
        return [x * 10 for x in items]

    b = Batcher(run, max_batch_size=4, max_wait_s=0.05)
    b.start()
    first = b.submit([1])
    time.sleep(0.2)
    later = [b.submit([k]) for k in range(2, 8)]
    gate.set()
    assert first[0].result(5) == 10 and [f[0].result(5) for f in later] == [20, 30, 40, 50, 60, 70]
    assert [len(s) for s in seen] == [1, 4, 2]  # 6 queued records: one full batch of 4, then 2
    b.stop(5)


def test_a_failing_batch_fails_its_requests_not_the_worker():
    calls = []

    def run(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return items

    b = Batcher(run, max_batch_size=8, max_wait_s=0)
    b.start()
    with pytest.raises(RuntimeError, match="boom"):
        b.submit([1])[0].result(5)
    assert b.submit([2])[0].result(5) == 2
    b.stop(5)


LONG = " ".join(["väldigt lång fråga"] * 400)


@pytest.mark.parametrize("body, status, loc, msg", [
    ({"taskname": "nope", "sentence": "a"}, 422, ["body", "taskname"], "unknown task 'nope'"),
    ([{"taskname": "ask", "question": "a"}, {"taskname": "ask"}], 422, ["body", 1, "question"], "missing required field"),
    ([{"taskname": "ask", "question": ["a"]}], 422, ["body", 0, "question"], "expected a string, got list"),
    ({"question": "a"}, 422, ["body", "taskname"], "several tasks"),
    ({"taskname": 5, "question": "a"}, 422, ["body", "taskname"], "valid string"),
    (5, 422, ["body"], "expected a JSON object"),
    ([{"taskname": "ask", "question": "a"}, "x"], 422, ["body", 1], "expected a JSON object"),
    ([{"taskname": "ask", "question": "a"}] * 9, 413, ["body"], "at most 8 per request"),
    ({"taskname": "ask", "question": "x" * 7000}, 413, ["body"], "over 6000 bytes"),
    ({"taskname": "ask", "question": LONG[:3500]}, 422, ["body", "question"], "too long"),
])
def test_bad_requests_get_4xx_naming_the_field(client, body, status, loc, msg):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert any(d["loc"] == loc and msg in d["msg"] for d in detail), detail
    ok = client.post("/v1/predict", json={"taskname": "ask", "question": "still there?"})
    assert ok.status_code == 200  # the server kept serving


def test_invalid_json_and_chunked_bodies(client):
    r = client.post("/v1/predict", content=b'{"taskname": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"

    def chunks():
        yield b'{"taskname": "ask", "question": "'
        for _ in range(10):
            yield b"x" * 700
        yield b'"}'

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413  # no Content-Length: counted as it arrives


def test_api_key_guards_every_route_but_health(env):
    with TestClient(build_app(ServeConfig(run=env["run"], api_key="s3cret"))) as c:
        assert c.get("/health").status_code == 200
        for method, path in (("get", "/v1/tasks"), ("post", "/v1/predict"), ("post", "/v1/reload"),
                             ("get", "/openapi.json")):
            assert getattr(c, method)(path).status_code == 401
            assert getattr(c, method)(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/tasks", headers=auth).status_code == 200
        assert c.get("/openapi.json", headers=auth).status_code == 200
        assert c.get("/docs").status_code == 404  # a browser could not send the token
        r = c.post("/v1/predict", json={"taskname": "ask", "question": "a"}, headers=auth)
        assert r.status_code == 200


def test_non_loopback_host_needs_a_key_or_insecure(env, monkeypatch):
    from typer.testing import CliRunner

    from ptune_cli.cli import app
    from ptune_cli.options import validate

    monkeypatch.delenv("PTUNE_API_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", "--run", env["run"], "--host", "0.0.0.0"])
    assert r.exit_code == 1 and "--host 0.0.0.0 is reachable from other machines: give --api-key" in r.output
    r = CliRunner().invoke(app, ["serve", "--run", str(env["root"])])
    assert r.exit_code == 1 and "no prompt table" in r.output and "Traceback" not in r.output
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        validate(ServeConfig(run="r", host=host))
    validate(ServeConfig(run="r", host="0.0.0.0", api_key="k"))
    validate(ServeConfig(run="r", host="192.168.1.5", insecure=True))
    with pytest.raises(UserError, match="--host example.org"):
        validate(ServeConfig(run="r", host="example.org"))


def test_reload_adds_the_tasks_of_train_existing_and_keeps_the_others(env, tmp_path):
    """`train --existing RUN -o RUN2`, then --run (a symlink) is pointed at RUN2 and reloaded."""
    from ptune_cli.training import TrainConfig, run_train
    from tests.test_train import INTENT_TPL, intent_records, write

    current = tmp_path / "current"
    current.symlink_to(env["run"])
    recs = mixed()[:6]
    with TestClient(build_app(ServeConfig(run=str(current)))) as c:
        before = c.post("/v1/predict", json=recs).json()
        assert {t["taskname"] for t in c.get("/v1/tasks").json()} == {"ask", "sentiment-task"}
        assert c.post("/v1/predict", json={"taskname": "intent_and_slot", "utterance": "u"}).status_code == 422
        grown = tmp_path / "grown"
        run_train(TrainConfig(train=write(tmp_path / "intent.jsonl", intent_records(8)), template=INTENT_TPL,
                              existing=env["run"], output=str(grown), epochs=1))
        current.unlink()
        current.symlink_to(grown)
        r = c.post("/v1/reload")
        assert r.status_code == 200, r.text
        assert r.json()["added"] == ["intent_and_slot"] and r.json()["removed"] == []
        assert {t["taskname"] for t in c.get("/v1/tasks").json()} == {"ask", "sentiment-task", "intent_and_slot"}
        assert c.post("/v1/predict", json=recs).json() == before  # existing tasks answer exactly as before
        new = c.post("/v1/predict", json={"taskname": "intent_and_slot", "utterance": "väck mig klockan sju"})
        assert new.status_code == 200 and isinstance(new.json()["prediction"], str)
        # a broken table is refused and the previous one keeps serving
        current.unlink()
        current.symlink_to(tmp_path)
        r = c.post("/v1/reload")
        assert r.status_code == 409 and "no prompt table" in r.json()["detail"]
        assert c.post("/v1/predict", json=recs).json() == before


def test_help_does_not_import_the_server_libraries():
    import subprocess
    import sys

    code = ("import sys; from ptune_cli.cli import app; "
            "sys.exit(any(m in sys.modules for m in ('fastapi', 'uvicorn', 'torch', 'starlette')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_prompt_embeds_for_an_embeddings_engine_give_predicts_answers(env, tmp_path):
    """What would be sent as vLLM's prompt_embeds: greedy generation from it alone
    (model.generate, no ptune code) gives ptune predict's prediction."""
    import torch

    from ptune_cli.inference.decode import decode_prediction
    from ptune_cli.inference.embeds import prompt_embeds
    from ptune_cli.models import load_causal_lm
    from ptune_cli.ptuning.table import load_prompt_table

    table = load_prompt_table(env["run"])
    model, tok = load_causal_lm(env["model"])
    recs = sentiment(labeled=False)[:3]
    want = cli_predictions(env, tmp_path, recs)
    max_new = max(len(tok(x["label"], add_special_tokens=False)["input_ids"]) for x in sentiment()) + 8
    for rec, w in zip(recs, want, strict=True):
        emb = prompt_embeds(model, tok, table.template("sentiment-task"), table.prompts["sentiment-task"], rec)
        assert emb.shape[1] == 32
        with torch.inference_mode():
            out = model.generate(inputs_embeds=emb[None], attention_mask=torch.ones(1, emb.shape[0], dtype=torch.long),
                                 do_sample=False, max_new_tokens=max_new, pad_token_id=tok.pad_token_id)
        text = decode_prediction(tok, out[0].tolist(), True)
        assert text == w


def test_an_internal_error_is_json_and_the_server_goes_on(env, monkeypatch):
    app = build_app(ServeConfig(run=env["run"]))
    state = app.state.ptune
    monkeypatch.setattr(state, "check", lambda rec: 1 / 0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", json={"taskname": "ask", "question": "a"})
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["detail"]
        monkeypatch.undo()
        assert c.post("/v1/predict", json={"taskname": "ask", "question": "a"}).status_code == 200


# ---- issue 19: the door, a failing record alone, the OpenAPI schema, the README's curl -------


@pytest.mark.parametrize("raw, status, loc, msg", [
    (b'{"taskname": "sentiment-task", "sentence": "a \\ud800 b"}', 422, ["body", "sentence"], "lone surrogate \\ud800"),
    (b'[{"taskname": "ask", "question": "ok"}, {"taskname": "ask", "question": "\\udfff"}]', 422,
     ["body", 1, "question"], "lone surrogate"),
    (b'{"taskname": "ask", "question": "a", "question": "b"}', 422, ["body"], "duplicate key 'question'"),
    (b'[{"taskname": "ask", "question": "a", "x": {"k": 1, "k": 2}}]', 422, ["body", 0, "x"], "duplicate key 'k'"),
    (b'{"taskname": "ask", "question": "a", "n": NaN}', 422, ["body", "n"], "NaN is not valid JSON"),
    (b'{"taskname": "ask", "question": ' + b"[" * 2000 + b"]" * 2000 + b"}", 422, ["body"], "nested too deeply"),
    ('{"taskname": "ask", "question": "växel"}'.encode("latin-1"), 400, ["body"], "not UTF-8 (byte 35)"),
])
def test_the_door_refuses_what_the_model_cannot_take(client, raw, status, loc, msg):
    """Defect 1, at the door: a lone surrogate (valid JSON) reached the tokenizer and failed the
    whole batch; duplicate keys were taken silently; bad bytes got 400 without a field."""
    r = client.post("/v1/predict", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert any(d["loc"] == loc and msg in d["msg"] for d in r.json()["detail"]), r.json()
    assert client.post("/v1/predict", json={"taskname": "ask", "question": "still there?"}).status_code == 200


def test_a_body_of_another_content_type_is_named(client):
    r = client.post("/v1/predict", content=b'{"taskname": "ask", "question": "a"}',
                    headers={"Content-Type": "application/x-www-form-urlencoded"})  # curl -d without -H
    assert r.status_code == 415 and r.json()["detail"][0]["loc"] == ["header", "content-type"]
    assert "Content-Type: application/json" in r.json()["detail"][0]["msg"]


def test_a_batch_that_fails_is_split_until_only_the_failing_record_fails():
    def run(items):
        if "poison" in items:
            raise TypeError("the tokenizer cannot take it")
        return [x.upper() for x in items]

    b = Batcher(run, max_batch_size=16, max_wait_s=0.2)
    futures = b.submit(["a", "b", "poison", "c", "d", "poison", "e"])
    b.start()
    results = []
    for f in futures:
        try:
            results.append(f.result(10))
        except TypeError:
            results.append("failed")
    assert results == ["A", "B", "failed", "C", "D", "failed", "E"]
    assert b.largest == 7
    b.stop(5)


def _door_off(monkeypatch):
    """What if a tokenizer refuses text the door lets through? Turn the door's text check off
    (both places it is imported) so the real tokenizer raises inside the worker."""
    import ptune_cli.io as pio
    import ptune_cli.strict_json as sj

    monkeypatch.setattr(sj, "lone_surrogate", lambda text: None)
    monkeypatch.setattr(pio, "lone_surrogate", lambda text: None)


def test_a_record_that_fails_in_the_model_fails_only_its_own_request(env, tmp_path, monkeypatch):
    recs = mixed()
    want = cli_predictions(env, tmp_path, recs)
    _door_off(monkeypatch)
    from ptune_cli.serve.server import DELAY_ENV

    monkeypatch.setenv(DELAY_ENV, "0.3")  # the first batch is slow: the others queue and share batches
    app = build_app(ServeConfig(run=env["run"], max_batch_size=32, max_wait_ms=50))
    honest: dict[int, object] = {}
    hostile: list = []
    with TestClient(app) as c:
        def ask(k):
            honest[k] = c.post("/v1/predict", json=[recs[k], recs[(k + 3) % 10]])

        def attack():
            hostile.append(c.post("/v1/predict", content=b'[{"taskname": "ask", "question": "ok"}, '
                                  b'{"taskname": "sentiment-task", "sentence": "x\\ud800"}]',
                                  headers={"Content-Type": "application/json"}))

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(10)]
        threads += [threading.Thread(target=attack) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(10):
        assert honest[k].status_code == 200, honest[k].text
        assert [x["prediction"] for x in honest[k].json()] == [want[k], want[(k + 3) % 10]]
    for r in hostile:
        assert r.status_code == 500, r.text
        (d,) = r.json()["detail"]  # only its bad record, by its place in the request
        assert d["loc"] == ["body", 1] and d["type"] == "prediction_error"
    assert app.state.ptune.batcher.largest > 2  # hostile and honest records did share batches


def test_openapi_documents_every_answer_and_bearer_only_with_a_key(env):
    with TestClient(build_app(ServeConfig(run=env["run"]))) as c:
        schema = c.get("/openapi.json").json()
        codes = set(schema["paths"]["/v1/predict"]["post"]["responses"])
        assert codes >= {"200", "400", "413", "415", "422", "500", "503"} and "401" not in codes
        assert "409" in schema["paths"]["/v1/reload"]["post"]["responses"]
        assert "securitySchemes" not in schema.get("components", {})
        assert "security" not in schema["paths"]["/v1/predict"]["post"]
    with TestClient(build_app(ServeConfig(run=env["run"], api_key="k"))) as c:
        schema = c.get("/openapi.json", headers={"Authorization": "Bearer k"}).json()
        assert "401" in schema["paths"]["/v1/predict"]["post"]["responses"]
        assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_reload_of_metadata_that_is_not_an_object_is_409(env, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(env["run"], run)
    with TestClient(build_app(ServeConfig(run=str(run)))) as c:
        (run / "prompt_table.json").write_text("[1, 2]")
        r = c.post("/v1/reload")
        assert r.status_code == 409 and "expected a JSON object, got list" in r.json()["detail"]
        assert c.post("/v1/predict", json={"taskname": "ask", "question": "a"}).status_code == 200


def test_the_readmes_curl_examples_answer_as_shown(env, tmp_path):
    """Each `$ curl …` of README's serve section, sent as curl would send it (its -H headers,
    its -d body), to a table with the README's one task; the answer has the shown shape."""
    import json
    import re
    import shlex

    import torch

    from ptune_cli.ptuning.table import save_prompt_table
    from tests.test_readme import README

    tpl = json.loads((Path(__file__).parents[1] / "templates" / "sv-intent-slot.json").read_text())
    tpl.pop("_comment")
    save_prompt_table(tmp_path / "run", {"intent_and_slot": torch.randn(10, 32)},
                      {"base_model": env["model"], "templates": {"intent_and_slot": tpl}})
    examples = re.findall(r"^\$ (curl .*?http://\S+)\n(.*?)\n", README.replace("\\\n", " "), flags=re.M | re.S)
    assert len(examples) == 2
    with TestClient(build_app(ServeConfig(run=str(tmp_path / "run"), api_key="s3cret"))) as c:
        for command, shown in examples:
            words = shlex.split(command)
            headers = dict(w.split(": ", 1) for w, flag in zip(words[1:], words) if flag == "-H")
            body = next(w for w, flag in zip(words[1:], words) if flag == "-d")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # what curl -d sends
            r = c.post(words[-1].removeprefix("http://127.0.0.1:8000"), content=body.encode(), headers=headers)
            if "…" in shown:  # predictions vary with the weights: the shape is what is shown
                assert r.status_code == 200, r.text
                assert [set(x) for x in r.json()] == [set(x) for x in json.loads(shown.replace("…", ""))]
                assert {x["taskname"] for x in r.json()} == {"intent_and_slot"}
            else:
                assert r.text == shown
