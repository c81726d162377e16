"""The whole life of an order's money, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from splitledger.domain.ledger import Purpose, party_account, system_account
from splitledger.services import orders, settlement
from splitledger.services.verify import verify_ledger
from tests.support import order, seed_marketplace


def owed(ctx, party_id: str, purpose: Purpose, currency: str = "CNY") -> int:
    with ctx.uow() as uow:
        return -uow.repo.balance(party_account(party_id, purpose, currency))


def test_capture_holds_every_share_in_pending_until_the_hold_ends(ctx, clock):
    seed_marketplace(ctx)
    result = orders.capture_order(ctx, order(price=10_000, supplier="s1", shipping=800, fee=60))
    assert result["captured_minor"] == 10_800
    # 5 % commission less the 60 fee the platform bears; 60 % to the supplier; shipping to l1.
    assert owed(ctx, "platform", Purpose.PENDING) == 500 - 60
    assert owed(ctx, "s1", Purpose.PENDING) == 6_000
    assert owed(ctx, "m1", Purpose.PENDING) == 3_500
    assert owed(ctx, "l1", Purpose.PENDING) == 800
    assert orders.release_due(ctx) == 0
    clock.advance(days=7)
    assert orders.release_due(ctx) == 1
    assert owed(ctx, "m1", Purpose.PENDING) == 0
    assert owed(ctx, "m1", Purpose.AVAILABLE) == 3_500
    assert verify_ledger(ctx).ok


def test_refund_after_payout_leaves_a_debt_that_the_next_statement_recovers(ctx, clock):
    seed_marketplace(ctx)
    orders.capture_order(ctx, order("o-1", price=10_000))
    orders.confirm_order(ctx, "o-1")
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    run = settlement.run_settlement(ctx, datetime(2026, 11, 9, tzinfo=UTC))
    assert run.paid_out_minor == {"CNY": 9_500}
    orders.refund_order(ctx, "o-1", 10_000, reason="returned")
    assert owed(ctx, "m1", Purpose.AVAILABLE) == -9_500  # a debt
    orders.capture_order(ctx, order("o-2", price=20_000, when=clock.now))
    orders.confirm_order(ctx, "o-2")
    clock.set(datetime(2026, 11, 16, 1, tzinfo=UTC))
    run = settlement.run_settlement(ctx, datetime(2026, 11, 16, tzinfo=UTC))
    assert run.paid_out_minor == {"CNY": 19_000 - 9_500}
    assert owed(ctx, "m1", Purpose.AVAILABLE) == 0
    report = verify_ledger(ctx)
    assert report.ok, report.problems
    assert report.trial_balance == {"CNY": 0}


def test_failed_payout_returns_the_money_and_is_paid_with_the_next_statement(ctx, clock):
    seed_marketplace(ctx)
    orders.capture_order(ctx, order("o-1", price=10_000))
    orders.confirm_order(ctx, "o-1")
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    settlement.run_settlement(ctx, datetime(2026, 11, 9, tzinfo=UTC))
    with ctx.uow() as uow:
        payout = uow.conn.exec_driver_sql(
            "SELECT payout_id FROM payouts WHERE party_id = 'm1'").scalar_one()
    settlement.mark_payout_failed(ctx, payout, "account closed")
    assert owed(ctx, "m1", Purpose.AVAILABLE) == 9_500
    assert owed(ctx, "m1", Purpose.IN_TRANSIT) == 0
    clock.set(datetime(2026, 11, 16, 1, tzinfo=UTC))
    run = settlement.run_settlement(ctx, datetime(2026, 11, 16, tzinfo=UTC))
    assert run.paid_out_minor["CNY"] >= 9_500
    with ctx.uow() as uow:
        clearing = uow.repo.balance(system_account(Purpose.CLEARING, "CNY"))
    assert clearing == 10_000  # nothing has reached a bank yet
    assert verify_ledger(ctx).ok


def test_settlement_of_a_period_is_done_once(ctx, clock):
    seed_marketplace(ctx)
    orders.capture_order(ctx, order("o-1"))
    orders.confirm_order(ctx, "o-1")
    clock.advance(days=8)
    end = datetime(2026, 11, 9, tzinfo=UTC)
    first = settlement.run_settlement(ctx, end)
    second = settlement.run_settlement(ctx, end)
    assert first.payouts == 1 and second.payouts == 0  # only m1 has earned anything
    assert {s for _, _, s in second.skipped} == {"already_settled"}
