"""The HTTP API of ``ptune serve`` (FastAPI): routes, bearer-token auth, request checks.

* ``POST /v1/predict`` — one record (a JSON object) or a list → one prediction or a list, in
  order. Records are checked here (task known, input fields strings, count, body size) and
  decoded by the :class:`~.batcher.Batcher` worker with eval's code (:mod:`..inference.router`).
* ``GET /v1/tasks`` — the table's tasks with their template fields; ``POST /v1/reload`` —
  re-read the run's prompt table (also on SIGHUP); ``GET /health`` — no token needed.

Every refusal is JSON: 422 ``{"detail": [{"loc": ["body", 1, "utterance"], "msg": …}]}`` (the
shape of FastAPI's own validation errors), 401, 413; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from ptune_cli.errors import UserError
from ptune_cli.inference.router import RecordProblem
from ptune_cli.serve.state import ServeState

_BRANCHES = ("Record", "list[Record]")


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


def _error(loc: list, msg: str, kind: str = "value_error") -> dict:
    return {"loc": loc, "msg": msg, "type": kind}


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 without the union's noise: only the errors of the shape that was sent (a
    list or one record), the branch name dropped from each path."""
    found = exc.errors()
    sent_list = any(list(e.get("loc", ())) == ["body", "Record"] and isinstance(e.get("input"), list) for e in found)
    branch = "list[Record]" if sent_list else "Record"
    errors = []
    for e in found:
        loc = list(e.get("loc", ()))
        if len(loc) > 1 and loc[0] == "body" and loc[1] in _BRANCHES:
            if loc[1] != branch:
                continue
            loc = [loc[0], *loc[2:]]
        msg = e.get("msg", "invalid")
        if e.get("type") == "model_attributes_type":
            msg = "expected a JSON object (a record with 'taskname' and the template's fields)"
        errors.append(_error(loc, msg, e.get("type", "value_error")))
    return JSONResponse({"detail": errors or [_error(["body"], "invalid request")]}, status_code=422)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug answers JSON too (starlette's default is plain text); the server goes on."""
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before anything parses it
    (Content-Length checked first; a chunked body is counted as it arrives)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(send)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send):
        response = JSONResponse({"detail": [_error(["body"], f"request body over {self.limit} bytes "
                                                   "(--max-request-bytes)")]}, status_code=413)
        await response({"type": "http"}, None, send)


def create_app(state: ServeState, *, handle_sighup: bool = False) -> FastAPI:
    """The API over ``state`` (model and table loaded); the worker runs while the app does."""
    cfg = state.cfg

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.batcher.start()
        if handle_sighup:
            import signal

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload_logged()))
        yield
        await asyncio.to_thread(state.batcher.stop)  # requests are done: uvicorn waited for them

    async def _reload_logged():
        try:
            print(f"reloaded: {await _reload()}", flush=True)
        except UserError as e:
            print(f"reload refused: {e}", flush=True)

    auth = _auth(cfg.api_key)
    docs = cfg.api_key is None  # a browser cannot send the bearer token: /openapi.json only, with it
    app = FastAPI(title="ptune serve", summary="Predictions of a p-tuned prompt table (ptune-cli).",
                  lifespan=lifespan, docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.ptune = state
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(BodyLimit, limit=cfg.max_request_bytes)
    if not docs:
        app.get("/openapi.json", include_in_schema=False, dependencies=[auth])(lambda: app.openapi())

    async def _reload() -> Reloaded:
        return Reloaded(**await asyncio.wrap_future(state.batcher.control(state.reload)))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/tasks", dependencies=[auth])
    def tasks() -> list[TaskInfo]:
        return [TaskInfo(taskname=n, input_fields=t.input_fields, answer_field=t.answer_field,
                         prompt_template=t.prompt_template, total_virtual_tokens=t.total_virtual_tokens)
                for n, t in state.templates().items()]

    @app.post("/v1/reload", dependencies=[auth])
    async def reload() -> Reloaded:
        try:
            return await _reload()
        except UserError as e:
            raise HTTPException(409, detail=f"reload refused, the previous table still serves: {e}") from None

    @app.post("/v1/predict", dependencies=[auth], response_model_exclude_none=True)
    async def predict(body: Annotated[Record | list[Record], Body()]) -> Prediction | list[Prediction]:
        one = not isinstance(body, list)
        records = [r.model_dump(exclude_unset=True) for r in ([body] if one else body)]
        if len(records) > cfg.max_records:
            raise HTTPException(413, detail=[_error(["body"], f"{len(records)} records, at most {cfg.max_records} "
                                                    "per request (--max-records)")])
        items = _checked(state, records, one)
        results = await asyncio.gather(*map(asyncio.wrap_future, state.batcher.submit(items)),
                                       return_exceptions=True)
        problems = [_error(["body", *([] if one else [i]), r.field], r.message)
                    for i, r in enumerate(results) if isinstance(r, RecordProblem)]
        if problems:
            raise HTTPException(422, detail=problems)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            raise HTTPException(500, detail=f"prediction failed: {type(failed).__name__}: {failed}")
        out = [Prediction(taskname=name, **fields) for (name, _), fields in zip(items, results, strict=True)]
        return out[0] if one else out

    return app


def _checked(state: ServeState, records: list[dict], one: bool) -> list[tuple[str, dict]]:
    """``[(taskname, record)]``, or 422 naming every bad field."""
    items, errors = [], []
    for i, rec in enumerate(records):
        try:
            items.append((state.check(rec), rec))
        except RecordProblem as e:
            errors.append(_error(["body", *([] if one else [i]), e.field], e.message))
    if errors:
        raise HTTPException(422, detail=errors)
    return items


def _auth(api_key: str | None):
    """A dependency checking ``Authorization: Bearer KEY`` (constant-time); none without a key."""
    bearer = HTTPBearer(auto_error=False, description="--api-key of ptune serve")

    # Depends as the default: the annotation stays resolvable from this module's globals
    def check(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if api_key is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), api_key.encode()):
            raise HTTPException(401, detail="missing or wrong bearer token (Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    return Depends(check)
