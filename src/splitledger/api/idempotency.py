"""Stripe-like ``Idempotency-Key`` for every POST.

Same key and body: the first response again (with ``Idempotent-Replayed: true``). Same key and
another body: 409 ``idempotency_key_reused``. The same key while the first request is still
running: 409 ``concurrent_request`` (retryable). Keys belong to the caller (two clients may use
the same key) and are kept at least 24 hours (today: forever).

The key is also handed to the service (as ``<caller>/<key>``) where the service itself is
idempotent in its own transaction (captures, refunds, chargebacks, parties): if the process dies
after the service committed but before the response was stored, the retry's service call
returns the committed result instead of acting twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from splitledger.api.problems import problem, status_for
from splitledger.domain.access import Principal
from splitledger.errors import ConcurrentRequest, IdempotencyConflict, SplitledgerError
from splitledger.services.context import Context
from splitledger.services.idempotency import request_hash
from splitledger.store import tables as t

IN_FLIGHT_TIMEOUT = timedelta(seconds=60)


def respond(ctx: Context, principal: Principal, key: str | None, route: str, body: Any,
            produce: Callable[[str | None], tuple[int, Any]]) -> JSONResponse:
    """Run ``produce(service_key)`` at most once per (caller, key) and answer with its result."""
    if key is None:
        status, payload = produce(None)
        return JSONResponse(payload, status_code=status)
    if not 0 < len(key) <= 200:
        raise IdempotencyConflict("Idempotency-Key must be 1 to 200 characters")
    # The scope column is short; a digest of the caller keeps keys of different callers apart.
    scope = "http:" + hashlib.sha256(principal.subject.encode()).hexdigest()[:32]
    digest = request_hash([route, body])
    with ctx.uow() as uow:
        row = uow.conn.execute(select(t.idempotency_keys).where(
            t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)).first()
        now = ctx.now()
        if row is not None:
            if row.request_hash != digest:
                raise IdempotencyConflict(f"Idempotency-Key {key!r} was used for a different "
                                          "request")
            if row.response:
                stored = row.response
                headers = {"Idempotent-Replayed": "true"}
                media = "application/problem+json" if stored["status"] >= 400 else None
                return JSONResponse(stored["body"], status_code=stored["status"],
                                    headers=headers, media_type=media)
            if row.created_at > now - IN_FLIGHT_TIMEOUT:
                raise ConcurrentRequest("a request with this Idempotency-Key is in progress; "
                                        "retry shortly")
            uow.conn.execute(update(t.idempotency_keys).where(
                t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)
                .values(created_at=now))
        else:
            try:
                uow.conn.execute(insert(t.idempotency_keys).values(
                    scope=scope, key=key, request_hash=digest, response={}, created_at=now))
            except IntegrityError as exc:  # a concurrent duplicate claimed the key first
                raise ConcurrentRequest("a request with this Idempotency-Key is in progress; "
                                        "retry shortly") from exc
        uow.commit()
    try:
        status, payload = produce(f"{principal.subject}/{key}")
    except SplitledgerError as exc:
        status = status_for(exc)
        payload = json.loads(problem(status, exc.code, exc.code.replace("_", " "), exc.message,
                                     details=exc.details, retryable=exc.retryable).body)
        if exc.retryable:  # worth retrying: do not pin the key to this answer
            _release(ctx, scope, key)
            raise
        _store(ctx, scope, key, status, payload)
        raise
    _store(ctx, scope, key, status, payload)
    return JSONResponse(payload, status_code=status)


def _store(ctx: Context, scope: str, key: str, status: int, payload: Any) -> None:
    with ctx.uow() as uow:
        uow.conn.execute(update(t.idempotency_keys).where(
            t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)
            .values(response={"status": status, "body": payload}))
        uow.commit()


def _release(ctx: Context, scope: str, key: str) -> None:
    with ctx.uow() as uow:
        uow.conn.execute(delete(t.idempotency_keys).where(
            t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key))
        uow.commit()
