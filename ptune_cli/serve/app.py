"""The HTTP API of ``ptune serve`` (FastAPI): routes, bearer-token auth, request checks.

* ``POST /v1/predict`` — one record (a JSON object) or a list → one prediction or a list, in
  order. Records are checked at the door (strict JSON, task known, input fields text a
  tokenizer takes, count, body size) and decoded by the :class:`~.batcher.Batcher` worker with
  eval's code (:mod:`..inference.router`); a record that still fails in the model fails alone.
* ``GET /v1/tasks`` — the table's tasks with their template fields; ``POST /v1/reload`` —
  re-read the run's prompt table (also on SIGHUP); ``GET /health`` — no token needed;
  ``GET /metrics`` — Prometheus text (:mod:`.metrics`).

Every refusal is JSON (:mod:`.errors`): 422 ``{"detail": [{"loc": ["body", 1, "utterance"],
"msg": …}]}`` (the shape of FastAPI's own validation errors), 400, 401, 409, 413, 415, 500,
503; nothing a client sends stops the server or reaches another client's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ptune_cli.errors import UserError
from ptune_cli.inference.router import RecordProblem
from ptune_cli.serve.errors import (
    AnswerOnShutdown,
    RequestCheck,
    error,
    internal_error,
    responses,
    validation_error,
)
from ptune_cli.serve.metrics import CountRequests
from ptune_cli.serve.state import ServeState

PREDICT_PATH = "/v1/predict"


class Record(BaseModel):
    """A record as in the run's JSONL files: ``taskname`` and the template's input fields."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "example": {"taskname": "intent_and_slot", "utterance": "väck mig klockan sju"}})
    taskname: str | None = Field(None, description="Task in the prompt table (default: --task, else the only task).")


class Prediction(BaseModel):
    taskname: str
    prediction: str
    scores: dict[str, float] | None = Field(None, description="Each candidate's log-likelihood (--decode rank).")


class TaskInfo(BaseModel):
    taskname: str
    input_fields: list[str]
    answer_field: str
    prompt_template: str
    total_virtual_tokens: int


class Reloaded(BaseModel):
    tasks: list[str]
    added: list[str]
    removed: list[str]


def create_app(state: ServeState, *, handle_sighup: bool = False, sighup_pending=None) -> FastAPI:
    """The API over ``state`` (model and table loaded); the worker runs while the app does.
    ``sighup_pending``: a ``threading.Event`` set by a SIGHUP that came while the model loaded
    (the table is then re-read once the server runs)."""
    cfg = state.cfg

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        if handle_sighup:
            import signal

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_logged()))
            if sighup_pending is not None and sighup_pending.is_set():
                loop.create_task(_reload_logged())
        yield
        await asyncio.to_thread(state.batcher.stop)  # requests are done: uvicorn waited for them

    async def _reload_logged():
        try:
            print(f"reloaded: {await _reload()}", file=sys.stderr, flush=True)
        except UserError as e:
            print(f"reload refused: {e}", file=sys.stderr, flush=True)

    auth = _auth(cfg.api_key)  # [] without a key: no security scheme in the schema either
    locked = (401,) if auth else ()
    docs = cfg.api_key is None  # a browser cannot send the bearer token: /openapi.json only, with it
    app = FastAPI(title="ptune serve", summary="Predictions of a p-tuned prompt table (ptune-cli).",
                  lifespan=lifespan, docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.ptune = state
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_middleware(RequestCheck, limit=cfg.max_request_bytes, json_paths=frozenset({PREDICT_PATH}))
    app.add_middleware(AnswerOnShutdown)
    routes: set[str] = set()  # filled once the routes below exist
    app.add_middleware(CountRequests, metrics=state.metrics, routes=lambda: routes)
    if not docs:
        app.get("/openapi.json", include_in_schema=False, dependencies=auth)(lambda: app.openapi())

    async def _reload() -> Reloaded:
        return Reloaded(**await asyncio.wrap_future(state.batcher.control(state.reload)))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/metrics", dependencies=auth, responses=responses(*locked), response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: requests and errors by route and code, latency histogram,
        records per batch, queue depth, reloads."""
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/tasks", dependencies=auth, responses=responses(*locked))
    def tasks() -> list[TaskInfo]:
        return [TaskInfo(taskname=n, input_fields=t.input_fields, answer_field=t.answer_field,
                         prompt_template=t.prompt_template, total_virtual_tokens=t.total_virtual_tokens)
                for n, t in state.templates().items()]

    @app.post("/v1/reload", dependencies=auth, responses=responses(*locked, 409))
    async def reload() -> Reloaded:
        try:
            return await _reload()
        except UserError as e:
            raise HTTPException(409, detail=f"reload refused, the previous table still serves: {e}") from None

    @app.post(PREDICT_PATH, dependencies=auth, response_model_exclude_none=True,
              responses=responses(400, *locked, 413, 415, 422, 500, 503))
    async def predict(body: Annotated[Record | list[Record], Body()]) -> Prediction | list[Prediction]:
        one = not isinstance(body, list)
        records = [r.model_dump(exclude_unset=True) for r in ([body] if one else body)]
        if len(records) > cfg.max_records:
            raise HTTPException(413, detail=[error(["body"], f"{len(records)} records, at most {cfg.max_records} "
                                                   "per request (--max-records)")])
        items = _checked(state, records, one)
        results = await asyncio.gather(*map(asyncio.wrap_future, state.batcher.submit(items)),
                                       return_exceptions=True)
        where = [["body", *([] if one else [i])] for i in range(len(results))]
        problems = [error([*where[i], r.field], r.message) for i, r in enumerate(results) if isinstance(r, RecordProblem)]
        if problems:
            raise HTTPException(422, detail=problems)
        failed = [error(where[i], f"prediction failed: {type(r).__name__}: {r}", "prediction_error")
                  for i, r in enumerate(results) if isinstance(r, BaseException)]
        if failed:  # only this request's own records (the batcher isolates a failing one)
            raise HTTPException(500, detail=failed)
        out = [Prediction(taskname=name, **fields) for (name, _), fields in zip(items, results, strict=True)]
        return out[0] if one else out

    routes.update(r.path for r in app.routes)
    return app


def _checked(state: ServeState, records: list[dict], one: bool) -> list[tuple[str, dict]]:
    """``[(taskname, record)]``, or 422 naming every bad field."""
    items, errors = [], []
    for i, rec in enumerate(records):
        try:
            items.append((state.check(rec), rec))
        except RecordProblem as e:
            errors.append(error(["body", *([] if one else [i]), e.field], e.message))
    if errors:
        raise HTTPException(422, detail=errors)
    return items


def _auth(api_key: str | None) -> list:
    """``dependencies`` checking ``Authorization: Bearer KEY`` (constant-time); none without a
    key, so the OpenAPI schema declares bearer auth only when the server asks for it."""
    if api_key is None:
        return []
    bearer = HTTPBearer(auto_error=False, description="--api-key of ptune serve")

    # Depends as the default: the annotation stays resolvable from this module's globals
    def check(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), api_key.encode()):
            raise HTTPException(401, detail="missing or wrong bearer token (Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    return [Depends(check)]
