"""Every error ``ptune serve`` answers, in one place: its JSON shapes (also what the OpenAPI
schema documents), the checks made on the raw request before FastAPI parses it, and the JSON
answers for a bug (500) and for a request cut off by the drain timeout (503).

The door (:class:`RequestCheck`, an ASGI middleware): a body over ``--max-request-bytes`` → 413;
a JSON route's body with another Content-Type → 415, not UTF-8 → 400, not strict JSON → 422
naming the place (``["body", 1, "utterance"]``: a lone surrogate, a duplicate key, NaN, nesting
too deep; :func:`ptune_cli.strict_json.loads_strict`, the reader of every JSON input ptune has).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

_BRANCHES = ("Record", "list[Record]")


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description='Where: ["body"], ["body", "utterance"], ["body", 1, "utterance"], '
                                             '["header", "content-type"].')
    msg: str
    type: str


class Errors(BaseModel):
    """4xx/500 with a place: the shape of FastAPI's own validation errors."""

    detail: list[ErrorItem]


class Message(BaseModel):
    detail: str


def error(loc: list, msg: str, kind: str = "value_error") -> dict:
    return {"loc": loc, "msg": msg, "type": kind}


def responses(*codes: int) -> dict:
    """The OpenAPI ``responses`` of a route answering ``codes`` besides 200 (and FastAPI's 422)."""
    what = {
        400: (Errors, "The body is not UTF-8 text."),
        401: (Message, "Missing or wrong bearer token (only when the server has an --api-key)."),
        409: (Message, "The new prompt table was refused; the previous one still serves."),
        413: (Errors, "More than --max-records records, or a body over --max-request-bytes."),
        415: (Errors, "A Content-Type other than application/json."),
        422: (Errors, "A record or field that cannot be predicted, or a body that is not strict JSON; "
                      "loc names the field."),
        500: (Errors, "A record failed inside the model (the other records of its batch were answered); "
                      "or a bug, answered with detail as a string."),
        503: (Message, "The server is shutting down and the request ran past --drain-timeout."),
    }
    return {c: {"model": what[c][0], "description": what[c][1]} for c in codes}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
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
        errors.append(error(loc, msg, e.get("type", "value_error")))
    return JSONResponse({"detail": errors or [error(["body"], "invalid request")]}, status_code=422)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug answers JSON too (starlette's default is plain text); the server goes on."""
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def body_problem(headers: dict[bytes, bytes], body: bytes) -> tuple[int, list[dict]] | None:
    """``(status, errors)`` for a JSON route's raw body that must not reach FastAPI's parser
    (which takes duplicate keys, NaN and lone surrogates, and answers other content types and
    bad bytes without a field), else None."""
    from ptune_cli.strict_json import JSONProblem, loads_strict

    ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if ctype and ctype != b"application/json" and not ctype.endswith(b"+json"):
        return 415, [error(["header", "content-type"], f"expected application/json, got {ctype.decode('latin-1')} "
                           "(curl: -H 'Content-Type: application/json')", "content_type")]
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return 400, [error(["body"], f"not UTF-8 (byte {e.start + 1}): send the JSON body as UTF-8 text",
                           "unicode_decode")]
    try:
        loads_strict(text)
    except json.JSONDecodeError as e:
        return 422, [error(["body"], f"invalid JSON ({e.msg}, line {e.lineno} column {e.colno})", "json_invalid")]
    except JSONProblem as e:
        return 422, [error(["body", *e.path], e.reason)]
    return None


async def _answer(send, status: int, content: dict) -> None:
    await JSONResponse(content, status_code=status)({"type": "http"}, None, send)


class RequestCheck:
    """ASGI middleware: the raw request's checks (see the module docstring) before any route
    runs; ``json_paths`` are the routes whose body is a JSON document."""

    def __init__(self, app, limit: int, json_paths: frozenset[str]):
        self.app, self.limit, self.json_paths = app, limit, json_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_big(send)
        chunks, size, more = [], 0, True
        while more:  # a chunked body is counted as it arrives
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._too_big(send)
        body = b"".join(chunks)
        if body and scope["path"] in self.json_paths:
            problem = body_problem(headers, body)
            if problem is not None:
                return await _answer(send, problem[0], {"detail": problem[1]})
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_big(self, send):
        await _answer(send, 413, {"detail": [error(["body"], f"request body over {self.limit} bytes "
                                                   "(--max-request-bytes)")]})


class AnswerOnShutdown:
    """ASGI middleware: a request still running when uvicorn's graceful shutdown times out
    (``--drain-timeout``) is cancelled; answer it 503 JSON instead of uvicorn's plain-text 500
    and its traceback."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if started:
                raise
            await _answer(send, 503, {"detail": "server shutting down: the request ran past --drain-timeout "
                                                "(send it again to another instance, or raise --drain-timeout)"})
