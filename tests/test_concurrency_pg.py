"""Concurrent writers on PostgreSQL lose nothing and duplicate nothing.

Every test starts its threads together on a barrier, each running one use case on its own
pooled connection, then checks the database as a whole.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, func, select

from splitledger.domain.bank import BankDetails
from splitledger.domain.ledger import Purpose, party_account, system_account
from splitledger.domain.orders import Order, OrderLine
from splitledger.domain.parties import Party, PartyRole
from splitledger.errors import ConcurrentRequest, DuplicateOrder, RefundExceedsCaptured
from splitledger.services import orders, settlement
from splitledger.services.context import Context
from splitledger.services.parties import register_party
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from splitledger.store.db import make_engine
from tests.support import START, order, seed_marketplace

pytestmark = pytest.mark.postgres

POOL = 25  # enough for real contention, well under the server's connection limit
TIMEOUT = 120


@pytest.fixture
def cctx(pg_url, pg_ctx, clock):  # type: ignore[no-untyped-def]
    """A context whose pool lets every thread hold its own connection.

    Every deadlock PostgreSQL detects is recorded, including those a retry then hid from the
    caller (idempotent writes retry them): none may happen, whatever the test's outcome.
    """
    engine = make_engine(pg_url, pool_size=POOL, max_overflow=0, pool_timeout=TIMEOUT)
    deadlocks: list[str] = []

    @event.listens_for(engine, "handle_error")
    def _record(context):  # type: ignore[no-untyped-def]
        if isinstance(context.original_exception, psycopg.errors.DeadlockDetected):
            deadlocks.append(str(context.original_exception))

    yield Context(engine, pg_ctx.settings, clock=clock)
    engine.dispose()
    assert deadlocks == [], "PostgreSQL detected deadlocks (retried or not)"


def race(n: int, task: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run ``task(i)`` for i in range(n) on n threads released together; returns, per thread,
    ("ok", result) or ("error", exception)."""
    barrier = threading.Barrier(n, timeout=TIMEOUT)

    def run(i: int) -> tuple[str, Any]:
        barrier.wait()
        try:
            return "ok", task(i)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            return "error", exc

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(run, i) for i in range(n)]
        return [future.result(timeout=TIMEOUT) for future in futures]


def count(ctx: Context, table, *where) -> int:  # type: ignore[no-untyped-def]
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def owed(ctx: Context, party_id: str, purpose: Purpose, currency: str = "CNY") -> int:
    with ctx.uow() as uow:
        return -uow.repo.balance(party_account(party_id, purpose, currency))


def clearing(ctx: Context, currency: str = "CNY") -> int:
    with ctx.uow() as uow:
        return uow.repo.balance(system_account(Purpose.CLEARING, currency))


def assert_verified(ctx: Context) -> None:
    report = verify_ledger(ctx)
    assert report.ok, report.problems


def unexpected(outcomes: list[tuple[str, Any]], *allowed: type[Exception]) -> list[Any]:
    return [value for status, value in outcomes
            if status == "error" and not isinstance(value, allowed)]


# -- captures -----------------------------------------------------------------------------------

def test_concurrent_captures_with_one_idempotency_key_capture_once(cctx):
    seed_marketplace(cctx)
    the_order = order("o-1", price=10_000, supplier="s1", shipping=800, fee=60)
    outcomes = race(20, lambda _: orders.capture_order(cctx, the_order,
                                                        idempotency_key="key-1"))
    assert unexpected(outcomes) == []
    results = [value for _, value in outcomes]
    assert all(result == results[0] for result in results)
    assert results[0]["captured_minor"] == 10_800
    assert count(cctx, t.orders) == 1
    assert count(cctx, t.journal_entries, t.journal_entries.c.kind == "capture") == 1
    assert count(cctx, t.idempotency_keys) == 1
    with cctx.engine.connect() as conn:
        entry_id = conn.execute(select(t.orders.c.capture_entry_id)).scalar_one()
    assert results[0]["entry_id"] == entry_id
    assert clearing(cctx) == 10_800
    assert owed(cctx, "m1", Purpose.PENDING) == 3_500
    assert owed(cctx, "s1", Purpose.PENDING) == 6_000
    assert owed(cctx, "l1", Purpose.PENDING) == 800
    assert owed(cctx, "platform", Purpose.PENDING) == 440
    assert_verified(cctx)


def test_concurrent_captures_of_one_order_with_different_keys_capture_once(cctx):
    seed_marketplace(cctx)
    the_order = order("o-1", price=10_000)

    def capture(i: int) -> dict[str, Any]:
        return orders.capture_order(cctx, the_order, idempotency_key=f"key-{i}")

    outcomes = race(20, capture)
    assert unexpected(outcomes, DuplicateOrder, ConcurrentRequest) == []
    # A ConcurrentRequest is retryable: retried with the same key, it must now be a duplicate.
    for i, (_, value) in enumerate(outcomes):
        if isinstance(value, ConcurrentRequest):
            with pytest.raises(DuplicateOrder):
                capture(i)
            outcomes[i] = ("error", DuplicateOrder("retried"))
    winners = [value for status, value in outcomes if status == "ok"]
    assert len(winners) == 1
    assert sum(isinstance(value, DuplicateOrder) for _, value in outcomes) == 19
    assert count(cctx, t.orders) == 1
    assert count(cctx, t.journal_entries) == 1
    assert count(cctx, t.idempotency_keys) == 1  # failed attempts leave no key behind
    assert clearing(cctx) == 10_000
    assert owed(cctx, "m1", Purpose.PENDING) == 9_500
    assert_verified(cctx)


def _multi_merchant_order(order_id: str, merchants: list[str], rng: random.Random) -> Order:
    lines = tuple(OrderLine(str(n), f"SKU-{n}", "electronics/phones", merchant,
                            rng.randint(1, 3), rng.randint(100, 9_999))
                  for n, merchant in enumerate(merchants))
    return Order(order_id, "CNY", lines, START)


def test_captures_of_different_orders_over_shared_merchants_do_not_deadlock(cctx):
    seed_marketplace(cctx)
    for i in range(6):
        register_party(cctx, Party(f"x{i}", f"Shop {i}", PartyRole.MERCHANT))
    rng = random.Random(7)
    shops = [f"x{i}" for i in range(6)] + ["m1"]
    # Each order spans several merchants, in both orders, so that naive locking would cross.
    batch = []
    for i in range(24):
        merchants = rng.sample(shops, rng.randint(2, 5))
        if i % 2:
            merchants.reverse()
        batch.append(_multi_merchant_order(f"o-{i}", merchants, rng))
    outcomes = race(len(batch), lambda i: orders.capture_order(cctx, batch[i],
                                                               idempotency_key=f"k-{i}"))
    assert unexpected(outcomes) == []
    assert count(cctx, t.orders) == len(batch)
    assert count(cctx, t.journal_entries) == len(batch)
    assert clearing(cctx) == sum(o.total_minor for o in batch)
    assert_verified(cctx)


# -- refunds ------------------------------------------------------------------------------------

def test_concurrent_partial_refunds_never_exceed_the_capture(cctx):
    seed_marketplace(cctx)
    orders.capture_order(cctx, order("o-1", price=10_000))
    outcomes = race(50, lambda i: orders.refund_order(cctx, "o-1", 300, reason=f"r{i}"))
    assert unexpected(outcomes, RefundExceedsCaptured) == []
    succeeded = [value for status, value in outcomes if status == "ok"]
    assert len(succeeded) == 10_000 // 300 == 33
    assert sum(isinstance(value, RefundExceedsCaptured) for _, value in outcomes) == 17
    assert sorted(r["remaining_minor"] for r in succeeded) == [100 + 300 * n for n in range(33)]
    with cctx.engine.connect() as conn:
        row = conn.execute(select(t.orders)).one()
        reversed_sum = conn.execute(select(func.sum(t.reversals.c.amount_minor))).scalar_one()
    assert row.refunded_minor == reversed_sum == 9_900 <= row.captured_minor
    assert count(cctx, t.journal_entries, t.journal_entries.c.kind == "refund") == 33
    assert clearing(cctx) == 100
    assert owed(cctx, "m1", Purpose.PENDING) + owed(cctx, "platform", Purpose.PENDING) == 100
    assert_verified(cctx)


# -- settlement and release ---------------------------------------------------------------------

def _released_shops(ctx: Context, n: int) -> int:
    """n weekly merchants with bank details, each with one released order; returns what is
    owed to them in total."""
    seed_marketplace(ctx)
    rng = random.Random(11)
    for i in range(n):
        register_party(ctx, Party(f"x{i:02d}", f"Shop {i}", PartyRole.MERCHANT),
                       BankDetails(f"Owner {i}", f"6222 0000 0000 {i:04d}", "ICBC"),
                       verified=True)
        orders.capture_order(ctx, order(f"o-{i}", merchant=f"x{i:02d}",
                                        price=rng.randint(1_000, 90_000)))
        orders.confirm_order(ctx, f"o-{i}")
    return sum(owed(ctx, f"x{i:02d}", Purpose.AVAILABLE) for i in range(n))


def _check_paid_once(ctx: Context, expected_total: int) -> None:
    with ctx.engine.connect() as conn:
        payouts = conn.execute(select(t.payouts)).all()
        statements = conn.execute(select(t.statements)).all()
        available = conn.execute(select(t.accounts.c.code, t.accounts.c.balance_minor).where(
            t.accounts.c.purpose == Purpose.AVAILABLE.value)).all()
    per_period = Counter((s.party_id, s.currency, s.period_end) for s in statements)
    assert set(per_period.values()) == {1}
    assert len({p.statement_id for p in payouts}) == len(payouts)
    per_party = Counter(p.party_id for p in payouts)
    assert set(per_party.values()) == {1}, per_party  # the same money is never paid twice
    assert sum(p.amount_minor for p in payouts) == expected_total
    assert [code for code, balance in available if -balance < 0] == []  # nothing overdrawn
    in_transit = sum(owed(ctx, p.party_id, Purpose.IN_TRANSIT) for p in payouts)
    assert in_transit == expected_total
    assert_verified(ctx)


def test_concurrent_settlement_runs_pay_each_party_once(cctx, clock):
    total = _released_shops(cctx, 20)
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    end = datetime(2026, 11, 9, tzinfo=UTC)
    outcomes = race(4, lambda _: settlement.run_settlement(cctx, end))
    assert unexpected(outcomes) == []
    runs = [value for _, value in outcomes]
    assert sum(run.payouts for run in runs) == 20
    assert sum(run.paid_out_minor.get("CNY", 0) for run in runs) == total
    _check_paid_once(cctx, total)


def test_settlement_runs_for_different_periods_racing_pay_each_party_once(cctx, clock):
    total = _released_shops(cctx, 20)
    clock.set(datetime(2026, 11, 16, 1, tzinfo=UTC))
    ends = [datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC)] * 2
    outcomes = race(len(ends), lambda i: settlement.run_settlement(cctx, ends[i]))
    assert unexpected(outcomes) == []
    assert sum(run.paid_out_minor.get("CNY", 0) for _, run in outcomes) == total
    _check_paid_once(cctx, total)


def test_concurrent_release_releases_each_order_once(cctx, clock):
    seed_marketplace(cctx)
    for i in range(5):
        register_party(cctx, Party(f"x{i}", f"Shop {i}", PartyRole.MERCHANT))
    rng = random.Random(3)
    shops = [f"x{i}" for i in range(5)] + ["m1", "m2"]
    n = 150
    for i in range(n):
        merchants = rng.sample(shops, rng.randint(1, 3))
        orders.capture_order(cctx, _multi_merchant_order(f"o-{i:03d}", merchants, rng))
    for i in range(0, n, 10):  # some are refunded before release, some in full
        orders.refund_order(cctx, f"o-{i:03d}", 1)
    with cctx.engine.connect() as conn:
        captured = conn.execute(select(t.orders.c.order_id, t.orders.c.captured_minor)).all()
    for order_id, amount in captured[5:10]:
        orders.refund_order(cctx, order_id, amount - (1 if order_id.endswith("0") else 0))
    clock.advance(days=10)
    outcomes = race(6, lambda _: orders.release_due(cctx, batch_size=10))
    assert unexpected(outcomes) == []
    assert sum(value for _, value in outcomes) == n
    assert count(cctx, t.orders, t.orders.c.released_at.is_(None)) == 0
    with cctx.engine.connect() as conn:
        releases = Counter(conn.execute(select(t.journal_entries.c.order_id).where(
            t.journal_entries.c.kind == "release")).scalars())
    assert set(releases.values()) == {1}
    assert len(releases) == n - 5  # fully refunded orders have nothing to release
    for shop in shops:
        assert owed(cctx, shop, Purpose.PENDING) == 0
    assert_verified(cctx)


def test_release_racing_captures_over_shared_merchants_does_not_deadlock(cctx, clock):
    """release_due posts many entries in one transaction while captures post one each; both
    must take account locks in one order, or PostgreSQL aborts one of them as a deadlock."""
    seed_marketplace(cctx)
    n_old, n_fresh = 150, 100
    shops = ["m1", "m2"] + [f"x{i}" for i in range(6)]
    for shop in shops[2:]:
        register_party(cctx, Party(shop, f"Shop {shop}", PartyRole.MERCHANT))
    rng = random.Random(5)
    for i in range(n_old):
        orders.capture_order(cctx, _multi_merchant_order(
            f"old-{i:03d}", rng.sample(shops, rng.randint(1, 4)), rng))
    clock.advance(days=10)
    fresh = [_multi_merchant_order(f"new-{i:03d}", rng.sample(shops, rng.randint(2, 5)), rng)
             for i in range(n_fresh)]
    capturers = 8

    def work(i: int) -> int:
        if i >= capturers:
            return orders.release_due(cctx, batch_size=40)
        for item in fresh[i::capturers]:
            orders.capture_order(cctx, item, idempotency_key=item.order_id)
        return 0

    outcomes = race(capturers + 3, work)
    assert unexpected(outcomes) == []
    released = sum(value for _, value in outcomes)
    assert released + orders.release_due(cctx) == n_old + len(fresh)
    with cctx.engine.connect() as conn:
        releases = Counter(conn.execute(select(t.journal_entries.c.order_id).where(
            t.journal_entries.c.kind == "release")).scalars())
    assert len(releases) == n_old + len(fresh) and set(releases.values()) == {1}
    for shop in shops:
        assert owed(cctx, shop, Purpose.PENDING) == 0
    assert_verified(cctx)
