"""Webhooks: subscriptions, the outbox, and delivery with signatures, retries and a log.

``emit`` runs inside the unit of work of the change it reports, so an event exists exactly when
its change committed (a transactional outbox). It writes the event and one delivery per
subscription to that event type, and nothing at all when nobody subscribes. ``deliver_due``,
run after commit by ``splitledger webhooks deliver`` (cron, a systemd timer or a loop), claims
due deliveries, POSTs each signed body with httpx outside any transaction, and records the
attempt: delivered on a 2xx answer, otherwise retried with exponential backoff and jitter
until ``webhook_max_attempts``, then failed. Delivery is at least once: a receiver
de-duplicates on the event id.

Secrets are made here, shown once, and stored encrypted (associated data
``webhook:<subscription_id>``); the signer decrypts them only to sign.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, insert, select, update

from splitledger.domain.webhooks import (
    EVENT_TYPES,
    SIGNATURE_HEADER,
    backoff_seconds,
    event_body,
    signature_header,
)
from splitledger.errors import InvalidState, NotFound, ValidationError
from splitledger.services import audit
from splitledger.services.context import Context, UnitOfWork
from splitledger.store import tables as t

SECRET_PREFIX = "whsec_"
ALL_EVENTS = "*"
CLAIM_BATCH = 10
USER_AGENT = "splitledger-webhooks/1"


class DeliveryStatus:
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"          # gave up after the last attempt; redeliver by hand
    CANCELLED = "cancelled"    # the subscription was disabled before delivery


def _new_id() -> str:
    return str(uuid.uuid4())


def _associated(subscription_id: str) -> str:
    return f"webhook:{subscription_id}"


# -- the outbox ---------------------------------------------------------------------------------

def emit(uow: UnitOfWork, ctx: Context, event_type: str, payload: dict[str, Any]) -> str | None:
    """Record ``event_type`` for every subscriber, in the caller's transaction. Returns the
    event id, or None when nobody subscribes to it."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    subscriptions = getattr(uow, "_webhook_subscriptions", None)
    if subscriptions is None:  # read once per transaction: cheap for batch jobs
        subscriptions = uow.conn.execute(
            select(t.webhook_subscriptions.c.subscription_id,
                   t.webhook_subscriptions.c.event_types)
            .where(t.webhook_subscriptions.c.disabled_at.is_(None))).all()
        uow._webhook_subscriptions = subscriptions  # type: ignore[attr-defined]
    targets = [row.subscription_id for row in subscriptions
               if event_type in row.event_types or ALL_EVENTS in row.event_types]
    if not targets:
        return None
    event_id, now = _new_id(), ctx.now()
    uow.conn.execute(insert(t.webhook_events).values(
        event_id=event_id, event_type=event_type, payload=payload, actor=ctx.actor,
        created_at=now))
    uow.conn.execute(insert(t.webhook_deliveries), [
        {"delivery_id": _new_id(), "event_id": event_id, "subscription_id": subscription_id,
         "status": DeliveryStatus.PENDING, "attempts": 0, "next_attempt_at": now,
         "created_at": now} for subscription_id in targets])
    return event_id


# -- subscriptions ------------------------------------------------------------------------------

def _check_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValidationError(f"invalid webhook URL: {exc}", field="url") from exc
    if parsed.scheme not in ("https", "http") or not parsed.host or len(url) > 2000:
        raise ValidationError("a webhook URL must be an absolute http(s) URL of at most 2000 "
                              "characters", field="url")
    if parsed.userinfo:
        raise ValidationError("put no credentials in a webhook URL: the signature "
                              "authenticates the deliveries", field="url")
    return str(parsed)


def _check_event_types(event_types: list[str]) -> list[str]:
    if not event_types:
        raise ValidationError("subscribe to at least one event type", field="event_types")
    unknown = sorted(set(event_types) - set(EVENT_TYPES) - {ALL_EVENTS})
    if unknown:
        raise ValidationError(f"unknown event types: {', '.join(unknown)} (known: "
                              f"{', '.join(EVENT_TYPES)}, or * for all)", field="event_types")
    return sorted(set(event_types))


def _subscription_view(row: Any) -> dict[str, Any]:
    return {"subscription_id": row.subscription_id, "url": row.url,
            "event_types": list(row.event_types), "description": row.description,
            "secret_hint": row.secret_hint + "…", "created_by": row.created_by,
            "created_at": row.created_at.isoformat(),
            "disabled_at": row.disabled_at.isoformat() if row.disabled_at else None}


def create_subscription(ctx: Context, url: str, event_types: list[str], *,
                        description: str = "") -> dict[str, Any]:
    """Subscribe ``url`` to ``event_types`` (``*``: all). The returned ``secret`` is shown this
    once: it is stored only encrypted, and never appears again in any response or log."""
    url, types = _check_url(url), _check_event_types(event_types)
    if len(description) > 200:
        raise ValidationError("description must be at most 200 characters", field="description")
    subscription_id = _new_id()
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key_id, blob = ctx.cipher.encrypt(secret.encode(), associated=_associated(subscription_id))
    with ctx.uow() as uow:
        uow.conn.execute(insert(t.webhook_subscriptions).values(
            subscription_id=subscription_id, url=url, event_types=types,
            description=description, secret_ciphertext=blob, secret_key_id=key_id,
            secret_hint=secret[:len(SECRET_PREFIX) + 4], created_by=ctx.actor,
            created_at=ctx.now()))
        row = _subscription_row(uow, subscription_id)
        view = _subscription_view(row)
        audit.record(uow, ctx, "webhook.subscribe", "webhook_subscription", subscription_id,
                     after={"url": url, "event_types": types})
        uow.commit()
    return view | {"secret": secret}


def _subscription_row(uow: UnitOfWork, subscription_id: str) -> Any:
    row = uow.conn.execute(select(t.webhook_subscriptions).where(
        t.webhook_subscriptions.c.subscription_id == subscription_id)).first()
    if row is None:
        raise NotFound(f"unknown webhook subscription {subscription_id!r}")
    return row


def get_subscription(ctx: Context, subscription_id: str) -> dict[str, Any]:
    with ctx.uow() as uow:
        return _subscription_view(_subscription_row(uow, subscription_id))


def list_subscriptions(ctx: Context, after: str | None = None, limit: int = 100
                       ) -> list[dict[str, Any]]:
    s = t.webhook_subscriptions
    stmt = select(s).order_by(s.c.subscription_id).limit(limit)
    if after is not None:
        stmt = stmt.where(s.c.subscription_id > after)
    with ctx.uow() as uow:
        return [_subscription_view(row) for row in uow.conn.execute(stmt)]


def disable_subscription(ctx: Context, subscription_id: str) -> dict[str, Any]:
    """Stop a subscription: no new deliveries, and those not yet made are cancelled. Disabling
    it again changes nothing."""
    with ctx.uow() as uow:
        row = _subscription_row(uow, subscription_id)
        if row.disabled_at is None:
            now = ctx.now()
            uow.conn.execute(update(t.webhook_subscriptions).where(
                t.webhook_subscriptions.c.subscription_id == subscription_id)
                .values(disabled_at=now))
            cancelled = uow.conn.execute(update(t.webhook_deliveries).where(
                t.webhook_deliveries.c.subscription_id == subscription_id,
                t.webhook_deliveries.c.status == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.CANCELLED, next_attempt_at=None)).rowcount
            audit.record(uow, ctx, "webhook.disable", "webhook_subscription", subscription_id,
                         after={"cancelled_deliveries": cancelled})
            row = _subscription_row(uow, subscription_id)
            uow.commit()
        return _subscription_view(row)


# -- the delivery log ---------------------------------------------------------------------------

def _delivery_view(row: Any) -> dict[str, Any]:
    return {"delivery_id": row.delivery_id, "event_id": row.event_id,
            "event_type": row.event_type, "subscription_id": row.subscription_id,
            "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "last_status_code": row.last_status_code, "last_error": row.last_error,
            "created_at": row.created_at.isoformat(),
            "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
            "redelivery_of": row.redelivery_of}


def _deliveries_query() -> Any:
    d, e = t.webhook_deliveries, t.webhook_events
    return select(d, e.c.event_type).select_from(d.join(e, e.c.event_id == d.c.event_id))


def list_deliveries(ctx: Context, *, subscription_id: str | None = None,
                    status: str | None = None, event_id: str | None = None,
                    after: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    d = t.webhook_deliveries
    stmt = _deliveries_query().order_by(d.c.delivery_id).limit(limit)
    if after is not None:
        stmt = stmt.where(d.c.delivery_id > after)
    if subscription_id is not None:
        stmt = stmt.where(d.c.subscription_id == subscription_id)
    if status is not None:
        stmt = stmt.where(d.c.status == status)
    if event_id is not None:
        stmt = stmt.where(d.c.event_id == event_id)
    with ctx.uow() as uow:
        return [_delivery_view(row) for row in uow.conn.execute(stmt)]


def get_delivery(ctx: Context, delivery_id: str) -> dict[str, Any]:
    """One delivery, its event's payload and every attempt made."""
    with ctx.uow() as uow:
        row = uow.conn.execute(_deliveries_query().where(
            t.webhook_deliveries.c.delivery_id == delivery_id)).first()
        if row is None:
            raise NotFound(f"unknown webhook delivery {delivery_id!r}")
        payload = uow.conn.execute(select(t.webhook_events.c.payload).where(
            t.webhook_events.c.event_id == row.event_id)).scalar_one()
        attempts = uow.conn.execute(select(t.webhook_attempts).where(
            t.webhook_attempts.c.delivery_id == delivery_id)
            .order_by(t.webhook_attempts.c.attempt_id)).all()
    return _delivery_view(row) | {"payload": payload, "attempt_log": [
        {"attempt": a.attempt, "at": a.at.isoformat(), "status_code": a.status_code,
         "error": a.error, "duration_ms": a.duration_ms} for a in attempts]}


def redeliver(ctx: Context, delivery_id: str) -> dict[str, Any]:
    """Send a delivery's event to its subscriber again, as a new delivery (whatever the first
    one's outcome), due now. Raises NotFound, InvalidState (subscription disabled)."""
    d = t.webhook_deliveries
    with ctx.uow() as uow:
        row = uow.conn.execute(select(d).where(d.c.delivery_id == delivery_id)).first()
        if row is None:
            raise NotFound(f"unknown webhook delivery {delivery_id!r}")
        if _subscription_row(uow, row.subscription_id).disabled_at is not None:
            raise InvalidState("the subscription of this delivery is disabled")
        new_id, now = _new_id(), ctx.now()
        uow.conn.execute(insert(d).values(
            delivery_id=new_id, event_id=row.event_id, subscription_id=row.subscription_id,
            status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now,
            redelivery_of=delivery_id))
        audit.record(uow, ctx, "webhook.redeliver", "webhook_delivery", new_id,
                     after={"redelivery_of": delivery_id, "event_id": row.event_id})
        uow.commit()
    return get_delivery(ctx, new_id)


# -- delivering ---------------------------------------------------------------------------------

@dataclass
class DeliveryReport:
    """What one pass of ``deliver_due`` did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    outcomes: list[tuple[str, int | None, str | None]] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    delivery_id: str
    attempts: int
    url: str
    secret: str
    event_id: str
    event_type: str
    body: bytes


def _lease(ctx: Context) -> timedelta:
    """How long a claimed batch is left alone by other workers: long enough for every request
    of the batch to time out, so that two workers never send the same attempt."""
    return timedelta(seconds=CLAIM_BATCH * ctx.settings.webhook_timeout_seconds * 2 + 60)


def _claim(ctx: Context, limit: int, skip: set[str]) -> list[_Claimed]:
    d, e, s = t.webhook_deliveries, t.webhook_events, t.webhook_subscriptions
    with ctx.uow() as uow:
        now = ctx.now()
        stmt = (select(d.c.delivery_id, d.c.attempts).where(
                    d.c.status == DeliveryStatus.PENDING, d.c.next_attempt_at <= now)
                .order_by(d.c.next_attempt_at, d.c.delivery_id).limit(limit))
        if skip:
            stmt = stmt.where(d.c.delivery_id.not_in(sorted(skip)))
        if uow.repo.dialect == "postgresql":  # several workers: each takes other rows
            stmt = stmt.with_for_update(skip_locked=True)
        rows = uow.conn.execute(stmt).all()
        if not rows:
            return []
        ids = [row.delivery_id for row in rows]
        uow.conn.execute(update(d).where(d.c.delivery_id.in_(ids))
                         .values(next_attempt_at=now + _lease(ctx)))
        details = uow.conn.execute(
            select(d.c.delivery_id, d.c.attempts, s.c.subscription_id, s.c.url,
                   s.c.secret_key_id, s.c.secret_ciphertext, e.c.event_id, e.c.event_type,
                   e.c.created_at, e.c.payload)
            .select_from(d.join(e, e.c.event_id == d.c.event_id)
                         .join(s, s.c.subscription_id == d.c.subscription_id))
            .where(d.c.delivery_id.in_(ids))).all()
        uow.commit()
    claimed = []
    for row in sorted(details, key=lambda r: ids.index(r.delivery_id)):
        secret = ctx.cipher.decrypt(row.secret_key_id, row.secret_ciphertext,
                                    associated=_associated(row.subscription_id)).decode()
        claimed.append(_Claimed(row.delivery_id, row.attempts, row.url, secret, row.event_id,
                                row.event_type, event_body(row.event_id, row.event_type,
                                                           row.created_at, row.payload)))
    return claimed


def _send(ctx: Context, client: httpx.Client, item: _Claimed) -> tuple[int | None, str | None,
                                                                          int]:
    timestamp = int(ctx.now().timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               SIGNATURE_HEADER: signature_header(item.secret, timestamp, item.body),
               "Splitledger-Event-Id": item.event_id,
               "Splitledger-Event-Type": item.event_type,
               "Splitledger-Delivery-Id": item.delivery_id}
    started = time.perf_counter()
    try:
        response = client.post(item.url, content=item.body, headers=headers)
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        return None, error, int((time.perf_counter() - started) * 1000)
    elapsed = int((time.perf_counter() - started) * 1000)
    if 200 <= response.status_code < 300:
        return response.status_code, None, elapsed
    return response.status_code, f"HTTP {response.status_code}", elapsed


def _record(ctx: Context, item: _Claimed, status_code: int | None, error: str | None,
            duration_ms: int, rng: random.Random) -> str:
    d = t.webhook_deliveries
    settings = ctx.settings
    attempt = item.attempts + 1
    now = ctx.now()
    values: dict[str, Any] = {"attempts": attempt, "last_status_code": status_code,
                              "last_error": error}
    if error is None:
        outcome = DeliveryStatus.DELIVERED
        values.update(status=outcome, delivered_at=now, next_attempt_at=None)
    elif attempt >= settings.webhook_max_attempts:
        outcome = DeliveryStatus.FAILED
        values.update(status=outcome, next_attempt_at=None)
    else:
        outcome = DeliveryStatus.PENDING
        delay = backoff_seconds(attempt, base=settings.webhook_backoff_base_seconds,
                                cap=settings.webhook_backoff_max_seconds, jitter=rng.random())
        values.update(next_attempt_at=now + timedelta(seconds=delay))
    with ctx.uow() as uow:
        uow.conn.execute(insert(t.webhook_attempts).values(
            delivery_id=item.delivery_id, attempt=attempt, at=now, status_code=status_code,
            error=error, duration_ms=duration_ms))
        # Only a delivery still pending moves on (a disabled subscription cancelled it).
        uow.conn.execute(update(d).where(d.c.delivery_id == item.delivery_id,
                                         d.c.status == DeliveryStatus.PENDING).values(**values))
        uow.commit()
    return outcome


def deliver_due(ctx: Context, *, limit: int = 500, client: httpx.Client | None = None,
                rng: random.Random | None = None) -> DeliveryReport:
    """One pass: attempt every delivery due now (at most ``limit``), each at most once."""
    report = DeliveryReport()
    rng = rng or random.SystemRandom()
    own_client = client is None
    if client is None:
        client = httpx.Client(timeout=ctx.settings.webhook_timeout_seconds,
                              follow_redirects=False, trust_env=False)
    seen: set[str] = set()
    try:
        while report.attempted < limit:
            batch = _claim(ctx, min(CLAIM_BATCH, limit - report.attempted), seen)
            if not batch:
                break
            for item in batch:
                seen.add(item.delivery_id)
                status_code, error, duration = _send(ctx, client, item)
                outcome = _record(ctx, item, status_code, error, duration, rng)
                report.attempted += 1
                report.outcomes.append((item.delivery_id, status_code, error))
                if outcome == DeliveryStatus.DELIVERED:
                    report.delivered += 1
                elif outcome == DeliveryStatus.FAILED:
                    report.failed += 1
                else:
                    report.retrying += 1
    finally:
        if own_client:
            client.close()
    return report


def pending_count(ctx: Context) -> int:
    with ctx.uow() as uow:
        return int(uow.conn.execute(select(func.count()).select_from(t.webhook_deliveries)
                                    .where(t.webhook_deliveries.c.status
                                           == DeliveryStatus.PENDING)).scalar_one())
