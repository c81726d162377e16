"""Reference verifier for splitledger webhooks: standard library only, copy it freely.

    guard = ReplayGuard()                      # one per receiver process, kept alive
    event = verify_webhook(request_body_bytes, request.headers.get("Splitledger-Signature"),
                           secret, guard)      # raises WebhookVerificationError: answer 400

It refuses a body or header that was changed, a timestamp more than five minutes away from
the receiver's clock, and a replay: the same timestamp and signature seen before.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from typing import Any

TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """Refuse the delivery (answer 400) and do not act on it."""


class ReplayGuard:
    """Remembers the (timestamp, signature) pairs accepted within the tolerance window.

    Older pairs can be forgotten: their timestamp alone gets them refused. Several receiver
    processes need a shared store instead (for example a table with a unique index)."""

    def __init__(self, tolerance: int = TOLERANCE_SECONDS) -> None:
        self.tolerance = tolerance
        self._seen: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def check_and_remember(self, timestamp: int, signature: str, now: int) -> None:
        with self._lock:
            for key in [k for k in self._seen if k[0] < now - self.tolerance]:
                del self._seen[key]
            if (timestamp, signature) in self._seen:
                raise WebhookVerificationError("replayed delivery: signature already seen")
            self._seen[(timestamp, signature)] = now


def verify_webhook(body: bytes, header: str | None, secret: str, guard: ReplayGuard, *,
                   tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> Any:
    """Check ``Splitledger-Signature: t=<unix>,v1=<hex>`` over the raw body; return the event.

    ``<hex>`` is HMAC-SHA256 under the subscription's secret of ``"<t>.<body>"``."""
    if not header:
        raise WebhookVerificationError("missing Splitledger-Signature header")
    pairs = [item.strip().partition("=") for item in header.split(",")]
    stamps = [value for key, _, value in pairs if key == "t"]
    signatures = [value for key, _, value in pairs if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise WebhookVerificationError("malformed Splitledger-Signature header")
    timestamp = int(stamps[0])
    current = int(time.time() if now is None else now)
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance window")
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookVerificationError("signature does not match the body")
    guard.check_and_remember(timestamp, expected, current)
    return json.loads(body)
