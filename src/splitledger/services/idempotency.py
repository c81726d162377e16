"""Idempotent writes: the same key and request give the first result again and change nothing.

The key is claimed by inserting it at the start of the transaction that does the work, so
it commits or vanishes with that work. A concurrent duplicate waits on the key's unique index
(PostgreSQL) or on the write lock (SQLite), then finds the committed key and returns its
stored response. Only successful results are stored: a request that failed changed nothing
and may be retried with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError

from splitledger.errors import ConcurrentRequest, IdempotencyConflict, ValidationError
from splitledger.services.context import Context, UnitOfWork
from splitledger.store import tables as t

MAX_ATTEMPTS = 5


def request_hash(request: Any) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_idempotent(ctx: Context, scope: str, key: str | None, request: Any,
                   work: Callable[[UnitOfWork], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` in one transaction, at most once per (scope, key).

    Raises IdempotencyConflict if the key was used with another request, and whatever
    ``work`` raises. Unique-index races (another transaction committed the same key or the
    same order first) are retried, and the retry then answers from the committed state.
    """
    if key is not None and not (0 < len(key) <= 255):
        raise ValidationError("idempotency key must be 1 to 255 characters",
                              field="idempotency_key")
    digest = request_hash(request)
    last_error: Exception | None = None
    for _ in range(MAX_ATTEMPTS):
        try:
            with ctx.uow() as uow:
                if key is not None:
                    existing = uow.repo.get_idempotency(scope, key)
                    if existing is not None:
                        if existing.request_hash != digest:
                            raise IdempotencyConflict(
                                f"idempotency key {key!r} was already used for a different "
                                f"{scope} request", scope=scope)
                        return dict(existing.response)
                    uow.repo.insert_idempotency(scope, key, digest, {}, ctx.now())
                result = work(uow)
                if key is not None:
                    uow.conn.execute(update(t.idempotency_keys).where(
                        t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key
                    ).values(response=result))
                uow.commit()
                return result
        except (IntegrityError, OperationalError) as exc:
            # A concurrent transaction won a unique index (or, on PostgreSQL, a serialisation
            # race): read again from the committed state.
            last_error = exc
    raise ConcurrentRequest(f"{scope} request could not complete after concurrent attempts; "
                            "retry with the same idempotency key") from last_error
