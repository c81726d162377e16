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
from starlette.exceptions import HTTPException as StarletteHTTPException

from splitledger.errors import (
    ApprovalRequired,
    AuthenticationFailed,
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


def install(app: FastAPI) -> None:
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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))
