"""Bad input is refused with its own error code, and a refused request writes nothing at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from splitledger.domain.codec import order_from_dict, order_to_dict
from splitledger.domain.orders import Order, Shipping
from splitledger.errors import (
    CurrencyMismatch,
    DuplicateOrder,
    IdempotencyConflict,
    InvalidAmount,
    RefundExceedsCaptured,
    SplitledgerError,
    UnknownCurrency,
    UnknownOrder,
    UnknownParty,
    ValidationError,
)
from splitledger.services import orders, settlement
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from tests.support import START, order, seed_marketplace

WRITTEN_TABLES = (t.postings, t.journal_entries, t.accounts, t.orders, t.split_allocations,
                  t.reversals, t.statements, t.payouts, t.idempotency_keys)


def row_counts(ctx) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with ctx.uow() as uow:
        return {table.name: uow.conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in WRITTEN_TABLES}


def assert_refused(ctx, error: type[SplitledgerError], code: str,  # type: ignore[no-untyped-def]
                   request: Callable[[], Any]) -> SplitledgerError:
    """``request`` raises exactly ``error`` with ``code`` and leaves every table as it was."""
    before = row_counts(ctx)
    with pytest.raises(error) as refused:
        request()
    assert type(refused.value) is error
    assert refused.value.code == code
    assert row_counts(ctx) == before
    report = verify_ledger(ctx)
    assert report.ok, report.problems
    return refused.value


def with_line(base: Order, **changes: Any) -> Order:
    return replace(base, lines=(replace(base.lines[0], **changes),))


@pytest.fixture
def market(ctx):  # type: ignore[no-untyped-def]
    """The test marketplace with one order already captured (so there is something to spoil)."""
    seed_marketplace(ctx)
    orders.capture_order(ctx, order("o-ok", price=10_000), idempotency_key="cap-ok")
    return ctx


# -- amounts --------------------------------------------------------------------------------------


def test_a_negative_unit_price_is_refused(market):
    bad = with_line(order("o-bad"), unit_price_minor=-100)
    error = assert_refused(market, InvalidAmount, "invalid_amount",
                           lambda: orders.capture_order(market, bad, idempotency_key="k-bad"))
    assert error.details["field"] == "lines[0].unit_price_minor"


def test_an_order_of_only_free_items_captures_nothing_and_is_refused(market):
    free = order("o-free", price=0)
    assert_refused(market, InvalidAmount, "invalid_amount",
                   lambda: orders.capture_order(market, free))


def test_a_line_needs_a_positive_quantity(market):
    for quantity in (0, -1):
        bad = order("o-bad", quantity=quantity)
        error = assert_refused(market, InvalidAmount, "invalid_amount",
                               lambda bad=bad: orders.capture_order(market, bad))
        assert error.details["field"] == "lines[0].quantity"


def test_a_refund_must_be_positive(market):
    for amount in (0, -500):
        assert_refused(market, InvalidAmount, "invalid_amount",
                       lambda amount=amount: orders.refund_order(market, "o-ok", amount,
                                                                 idempotency_key="r-1"))


def test_fractional_minor_units_are_refused_when_they_arrive_as_json(market):
    body = order_to_dict(order("o-json"))
    body["lines"][0]["unit_price_minor"] = 10.5
    body.pop("captured_minor")
    parsed = order_from_dict(body)
    error = assert_refused(market, InvalidAmount, "invalid_amount",
                           lambda: orders.capture_order(market, parsed))
    assert error.details["field"] == "lines[0].unit_price_minor"


def test_fractional_minor_units_are_refused_when_built_in_code(market):
    base = order("o-float", price=10_000)
    spoiled = [with_line(base, unit_price_minor=10.5), with_line(base, quantity=1.0),
               with_line(base, unit_price_minor=True), replace(base, psp_fee_minor=100.0),
               replace(base, captured_minor=10_000.0)]
    for bad in spoiled:
        assert_refused(market, InvalidAmount, "invalid_amount",
                       lambda bad=bad: orders.capture_order(market, bad))
    assert_refused(market, InvalidAmount, "invalid_amount",
                   lambda: orders.refund_order(market, "o-ok", 10.5))  # type: ignore[arg-type]


def test_a_refund_larger_than_what_is_left_of_the_order_is_refused(market):
    orders.refund_order(market, "o-ok", 4_000)
    error = assert_refused(
        market, RefundExceedsCaptured, "refund_exceeds_remaining",
        lambda: orders.refund_order(market, "o-ok", 6_001, idempotency_key="r-too-much"))
    assert error.details["remaining_minor"] == 6_000


def test_a_chargeback_larger_than_what_is_left_of_the_order_is_refused(market):
    assert_refused(market, RefundExceedsCaptured, "refund_exceeds_remaining",
                   lambda: orders.chargeback_order(market, "o-ok", 10_001))


def test_a_payment_fee_larger_than_the_payment_is_refused(market):
    bad = order("o-fee", price=1_000, fee=1_001)
    assert_refused(market, InvalidAmount, "invalid_amount",
                   lambda: orders.capture_order(market, bad))


def test_discounts_larger_than_the_line_are_refused(market):
    bad = order("o-disc", price=1_000, platform_discount=600, merchant_discount=500)
    assert_refused(market, InvalidAmount, "invalid_amount",
                   lambda: orders.capture_order(market, bad))


# -- currencies and parties -----------------------------------------------------------------------


def test_an_unknown_currency_is_refused(market):
    for currency in ("XYZ", "cny", "RMB"):
        bad = order("o-cur", currency=currency)
        assert_refused(market, UnknownCurrency, "unknown_currency",
                       lambda bad=bad: orders.capture_order(market, bad))


def test_an_order_in_a_currency_a_party_is_not_paid_in_is_refused(market):
    bad = order("o-usd", currency="USD", merchant="m2")  # m2 is paid in CNY only
    error = assert_refused(market, CurrencyMismatch, "currency_mismatch",
                           lambda: orders.capture_order(market, bad))
    assert error.details["party_id"] == "m2"


def test_an_order_naming_an_unknown_party_is_refused(market):
    shipped = order("o-ghost", shipping=500)
    ghost_carrier = replace(shipped, shipping=Shipping(500, "ghost"))
    for bad in (order("o-ghost", merchant="ghost"), order("o-ghost", supplier="ghost"),
                order("o-ghost", affiliate="ghost"), ghost_carrier):
        error = assert_refused(market, UnknownParty, "unknown_party",
                               lambda bad=bad: orders.capture_order(market, bad))
        assert error.details["party_ids"] == ["ghost"]


def test_a_party_in_the_wrong_role_is_refused(market):
    bad = order("o-role", merchant="s1")  # s1 is a supplier
    assert_refused(market, ValidationError, "invalid_input",
                   lambda: orders.capture_order(market, bad))


def test_a_refund_of_an_unknown_order_is_refused(market):
    assert_refused(market, UnknownOrder, "unknown_order",
                   lambda: orders.refund_order(market, "o-never", 100))


# -- repeats --------------------------------------------------------------------------------------


def test_an_order_is_captured_once(market):
    again = order("o-ok", price=20_000)
    assert_refused(market, DuplicateOrder, "duplicate_order",
                   lambda: orders.capture_order(market, again))
    assert_refused(market, DuplicateOrder, "duplicate_order",
                   lambda: orders.capture_order(market, order("o-ok", price=10_000),
                                                idempotency_key="another-key"))


def test_an_idempotency_key_reused_for_another_request_is_refused(market):
    other = order("o-other", price=5_000)
    assert_refused(market, IdempotencyConflict, "idempotency_key_reused",
                   lambda: orders.capture_order(market, other, idempotency_key="cap-ok"))
    orders.refund_order(market, "o-ok", 100, idempotency_key="refund-1")
    assert_refused(market, IdempotencyConflict, "idempotency_key_reused",
                   lambda: orders.refund_order(market, "o-ok", 200, idempotency_key="refund-1"))


def test_the_same_request_with_the_same_key_returns_the_first_answer_and_writes_nothing(market):
    before = row_counts(market)
    first_entry = orders.capture_order(market, order("o-ok", price=10_000),
                                       idempotency_key="cap-ok")["entry_id"]
    assert row_counts(market) == before
    with market.uow() as uow:
        assert uow.repo.get_order("o-ok").capture_entry_id == first_entry


# -- time -----------------------------------------------------------------------------------------


def test_a_capture_time_without_a_time_zone_is_refused(market):
    naive = replace(order("o-naive"), captured_at=datetime(2026, 11, 2, 9, 0))
    error = assert_refused(market, ValidationError, "invalid_input",
                           lambda: orders.capture_order(market, naive, idempotency_key="k-n"))
    assert error.details["field"] == "captured_at"


def test_a_capture_time_without_a_time_zone_is_refused_when_it_arrives_as_json():
    body = order_to_dict(order("o-naive-json"))
    body["captured_at"] = "2026-11-02T09:00:00"
    with pytest.raises(ValidationError) as refused:  # refused while parsing: no database reached
        order_from_dict(body)
    assert (refused.value.code, refused.value.details["field"]) == ("invalid_input", "captured_at")


def test_a_settlement_period_end_without_a_time_zone_is_refused(market, clock):
    orders.confirm_order(market, "o-ok")
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    error = assert_refused(market, ValidationError, "invalid_input",
                           lambda: settlement.run_settlement(market, datetime(2026, 11, 9)))
    assert error.details["field"] == "period_end"


def test_a_capture_time_in_the_future_is_refused(market):
    later = replace(order("o-future"), captured_at=START.replace(year=2027))
    assert_refused(market, ValidationError, "invalid_input",
                   lambda: orders.capture_order(market, later))


def test_a_line_with_a_wrong_shape_is_refused_while_parsing_naming_the_field():
    body = order_to_dict(order("o-shape"))
    del body["lines"][0]["merchant_id"]
    with pytest.raises(ValidationError) as refused:
        order_from_dict(body)
    assert refused.value.details["field"] == "lines[0].merchant_id"
