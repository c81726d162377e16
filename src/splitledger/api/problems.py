"""Errors as RFC 9457 problem details, with a stable ``type`` per error code.

``type`` is ``/problems/<code>`` (a relative URI reference, documented in docs/api.md);
``code`` repeats it for clients that prefer a plain string; ``details`` carries the facts
(field names, amounts) of ``SplitledgerError.details``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from splitledger.errors import (
    ApprovalRequired,
    AuthenticationFailed,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvariantViolation,
    NotFound,
    SplitledgerError,
    TooManyAttempts,
    ValidationError,
)

log = logging.getLogger("splitledger.api")
PROBLEM_JSON = "application/problem+json"

STATUS_BY_CLASS: list[tuple[type[SplitledgerError], int]] = [
    (AuthenticationFailed, 401),
    (Forbidden, 403),
    (ApprovalRequired, 409),
    (TooManyAttempts, 429),
    (NotFound, 404),
    (Conflict, 409),
    (ValidationError, 422),
    (ConfigurationError, 500),
]


def status_for(exc: SplitledgerError) -> int:
    for cls, status in STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    return 400


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail,
            "code": code, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object",
    "description": "An error, as RFC 9457 problem details; `code` is stable per error.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "/problems/<code>"},
        "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"},
        "details": {"type": "object", "additionalProperties": True},
        "retryable": {"type": "boolean", "description": "the same request may succeed later"},
        "errors": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"},
                                             "message": {"type": "string"}}}},
    },
}


def document(app: FastAPI) -> None:
    """Say in the OpenAPI document what errors really look like: every operation may answer
    a problem document (``application/problem+json``), including its 422."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = \
            PROBLEM_SCHEMA
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for operation in (op for item in schema.get("paths", {}).values()
                          for op in item.values() if isinstance(op, dict)):
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {"description": "Invalid request", "content": content}
            responses["default"] = {"description": "Problem details (RFC 9457)",
                                    "content": content}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    document(app)

    @app.exception_handler(SplitledgerError)
    async def _splitledger_error(request: Request, exc: SplitledgerError) -> JSONResponse:
        status = status_for(exc)
        return problem(status, exc.code, exc.code.replace("_", " "), exc.message,
                       details=exc.details, retryable=exc.retryable)

    @app.exception_handler(InvariantViolation)
    async def _invariant(request: Request, exc: InvariantViolation) -> JSONResponse:
        log.error("invariant violation on %s %s: %s", request.method, request.url.path, exc)
        return problem(500, exc.code, "invariant violation",
                       "the request was refused because it would break a ledger invariant; "
                       "nothing was changed")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                   "message": err.get("msg", "")} for err in exc.errors()]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        return problem(422, "invalid_request", "invalid request",
                       f"{first['field']}: {first['message']}", errors=errors)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the validation let through (a NUL character, a number
        # out of its range): the client's input, and nothing was written.
        return problem(422, "invalid_request", "invalid request",
                       "a value in the request cannot be stored")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = problem(exc.status_code, code, str(exc.detail), str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on 405
        return response
