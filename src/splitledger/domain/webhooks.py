"""Webhook events (pure): the event types, the body, the signature and the retry schedule.

The body of a delivery is the JSON envelope ``{"id", "type", "created_at", "data"}``. It is
signed with the subscription's secret: ``Splitledger-Signature: t=<unix seconds>,v1=<hex>``,
where ``<hex>`` is HMAC-SHA256 over ``"<t>.<body>"``. A receiver recomputes it (see
``splitledger.webhook_verify``), refuses old timestamps and remembers signatures it has seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

SIGNATURE_HEADER = "Splitledger-Signature"

EVENT_TYPES = (
    "order.captured",
    "order.refunded",
    "order.chargeback",
    "order.released",
    "statement.created",
    "payout.created",
    "payout.approved",
    "payout.rejected",
    "payout.paid",
    "payout.failed",
    "payout.held",
    "payout.released",
    "party.verification",
)


def event_body(event_id: str, event_type: str, created_at: datetime, data: Any) -> bytes:
    """The exact bytes that are sent and signed (compact JSON, keys sorted, UTF-8)."""
    envelope = {"id": event_id, "type": event_type, "created_at": created_at.isoformat(),
                "data": data}
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def backoff_seconds(attempt: int, *, base: float, cap: float, jitter: float) -> float:
    """Delay before retry number ``attempt`` (1 after the first failure): exponential,
    ``base * 2**(attempt-1)`` capped at ``cap``, then "equal jitter": half of it fixed and
    half scaled by ``jitter`` in [0, 1), so that receivers that come back are not hit by every
    retry at the same instant."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    delay = min(cap, base * 2 ** min(attempt - 1, 32))
    return delay / 2 + delay / 2 * jitter
