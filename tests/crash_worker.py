"""Workloads that tests/test_crash.py runs in a subprocess and kills with SIGKILL part-way.

    python -m tests.crash_worker settle <database-url>
    python -m tests.crash_worker capture <database-url> <count> <seed>

Each builds its own Context from the URL with a fixed clock, exactly as a worker process would,
and prints "done" when the workload finished (which the tests treat as "killed too late").
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from typing import Any

from splitledger.domain.orders import Order
from splitledger.services import orders, settlement
from splitledger.services.context import Context
from tests.support import START, FakeClock, make_context, order

PERIOD_END = datetime(2026, 11, 9, tzinfo=UTC)
SETTLE_AT = datetime(2026, 11, 9, 2, tzinfo=UTC)
CAPTURE_MERCHANTS = ("m1", "m2")


def settle_context(url: str) -> Context:
    return make_context(url, FakeClock(SETTLE_AT))


def capture_context(url: str) -> Context:
    return make_context(url, FakeClock(START))


def capture_batch(count: int, seed: int) -> list[Order]:
    """The same orders for the same seed, in every process."""
    rng = random.Random(seed)
    return [order(f"o-{i}", price=rng.randint(100, 99_999), quantity=rng.randint(1, 4),
                  merchant=rng.choice(CAPTURE_MERCHANTS), fee=rng.randint(0, 50))
            for i in range(count)]


def capture_loop(ctx: Context, batch: list[Order]) -> list[dict[str, Any]]:
    return [orders.capture_order(ctx, item, idempotency_key=f"k-{i}")
            for i, item in enumerate(batch)]


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    if mode == "settle":
        settlement.run_settlement(settle_context(url), PERIOD_END)
    elif mode == "capture":
        capture_loop(capture_context(url), capture_batch(int(argv[2]), int(argv[3])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
