"""Rulesets in the store, on SQLite and PostgreSQL: four-eyes approval, the version in force at
capture, immutability, volume tiers over captured GMV, and back-tests that write nothing."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping
from splitledger.domain.rules.model import Ruleset
from splitledger.errors import (
    ApprovalRequired,
    InvalidRuleset,
    InvalidState,
    NotFound,
    ValidationError,
)
from splitledger.rules_io import ruleset_from_data
from splitledger.services import orders as order_service
from splitledger.services.rules import (
    approve_ruleset,
    backtest,
    draft_ruleset,
    get_ruleset,
    list_rulesets,
    policy_for,
)
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from tests.support import START, order, seed_marketplace

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
US = timedelta(microseconds=1)


def ruleset(version: str, effective_from: datetime, *rules: dict[str, Any], **top: Any
            ) -> Ruleset:
    return ruleset_from_data({"version": version, "effective_from": effective_from.isoformat(),
                              "rules": list(rules), **top})


def commission(version: str, effective_from: datetime, bps: int, **top: Any) -> Ruleset:
    return ruleset(version, effective_from,
                   {"id": "commission", "shares": [{"to": "platform", "bps": bps}]},
                   {"id": "supplier", "when": {"has_supplier": True},
                    "shares": [{"to": "supplier", "bps": 6000}]}, **top)


def activate(ctx, rs: Ruleset) -> None:  # type: ignore[no-untyped-def]
    draft_ruleset(ctx, rs, by="alice")
    approve_ruleset(ctx, rs.version, by="bob")


def capture(ctx, clock, o: Order) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if clock.now < o.captured_at:
        clock.set(o.captured_at)
    return order_service.capture_order(ctx, o)


def stored_version(ctx, order_id: str) -> str:  # type: ignore[no-untyped-def]
    with ctx.uow() as uow:
        return uow.conn.execute(select(t.orders.c.policy_version)
                                .where(t.orders.c.order_id == order_id)).scalar_one()


def plan_rows(ctx, order_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with ctx.uow() as uow:
        return [dict(row._mapping) for row in uow.conn.execute(
            select(t.split_allocations).where(t.split_allocations.c.order_id == order_id)
            .order_by(t.split_allocations.c.seq))]


def platform_take(result: dict[str, Any]) -> int:
    return next(a["amount_minor"] for a in result["allocations"] if a["party_id"] == "platform")


def row_counts(ctx) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with ctx.uow() as uow:
        return {name: uow.conn.execute(select(func.count()).select_from(table)).scalar_one()
                for name, table in t.metadata.tables.items()}


# -- approval and the version in force ----------------------------------------------------------

def test_an_approved_ruleset_applies_from_its_effective_from(ctx, clock):
    seed_marketplace(ctx)
    first = capture(ctx, clock, order("o-0", when=START))
    assert first["policy_version"] == "simple-1" == stored_version(ctx, "o-0")
    assert platform_take(first) == 500  # the built-in 5 %

    a_from = START + DAY
    activate(ctx, commission("A", a_from, 300))
    before = capture(ctx, clock, order("o-1", when=a_from - US))
    at = capture(ctx, clock, order("o-2", when=a_from))
    assert (before["policy_version"], at["policy_version"]) == ("simple-1", "A")
    assert (platform_take(before), platform_take(at)) == (500, 300)

    b_from = START + 3 * DAY
    activate(ctx, commission("B", b_from, 100))
    last_a = capture(ctx, clock, order("o-3", when=b_from - US))
    first_b = capture(ctx, clock, order("o-4", when=b_from + HOUR))
    assert (last_a["policy_version"], first_b["policy_version"]) == ("A", "B")
    assert (platform_take(last_a), platform_take(first_b)) == (300, 100)
    assert [stored_version(ctx, f"o-{i}") for i in range(5)] == \
        ["simple-1", "simple-1", "A", "A", "B"]
    # an order reported late is split by the version in force at its own capture time
    late = capture(ctx, clock, order("o-late", when=b_from - HOUR))
    assert late["policy_version"] == "A"
    assert [(r["version"], r["status"], r["drafted_by"], r["approved_by"])
            for r in list_rulesets(ctx)] == [("A", "approved", "alice", "bob"),
                                             ("B", "approved", "alice", "bob")]
    assert verify_ledger(ctx).ok


def test_a_draft_is_not_in_force_until_approved(ctx, clock):
    seed_marketplace(ctx)
    draft = draft_ruleset(ctx, commission("D", START + HOUR, 100), by="alice")
    assert draft["status"] == "draft"
    result = capture(ctx, clock, order("o-1", when=START + 2 * HOUR))
    assert result["policy_version"] == "simple-1"
    with ctx.uow() as uow:
        assert policy_for(ctx, uow, START + 30 * DAY).version == "simple-1"


def test_the_drafter_cannot_approve(ctx, clock):
    seed_marketplace(ctx)
    draft_ruleset(ctx, commission("A", START + DAY, 300), by="alice")
    with pytest.raises(ApprovalRequired) as caught:
        approve_ruleset(ctx, "A", by="alice")
    assert caught.value.code == "approval_required"
    assert list_rulesets(ctx)[0]["status"] == "draft"
    # redrafting replaces the draft and its drafter: then the first author may approve it
    draft_ruleset(ctx, commission("A", START + DAY, 250), by="carol")
    with pytest.raises(ApprovalRequired):
        approve_ruleset(ctx, "A", by="carol")
    approve_ruleset(ctx, "A", by="alice")
    assert get_ruleset(ctx, "A").rules[0].shares[0].bps == 250


def test_approval_cannot_be_retroactive(ctx, clock):
    seed_marketplace(ctx)
    with pytest.raises(ValidationError) as caught:
        activate(ctx, commission("past", START - US, 300))
    assert caught.value.details["field"] == "effective_from"
    # a draft whose time passed before anyone approved it must be drafted again
    draft_ruleset(ctx, commission("slow", START + HOUR, 300), by="alice")
    clock.advance(hours=2)
    with pytest.raises(ValidationError):
        approve_ruleset(ctx, "slow", by="bob")
    draft_ruleset(ctx, commission("slow", clock.now + HOUR, 300), by="alice")
    approve_ruleset(ctx, "slow", by="bob")
    # exactly now is not the past; the same instant as another approved version is refused
    activate(ctx, commission("now", clock.now, 200))
    with pytest.raises(ValidationError):
        activate(ctx, commission("twin", clock.now + HOUR, 100))
    assert {r["version"]: r["status"] for r in list_rulesets(ctx)} == {
        "past": "draft", "slow": "approved", "now": "approved", "twin": "draft"}


def test_an_approved_ruleset_is_immutable(ctx, clock):
    seed_marketplace(ctx)
    activate(ctx, commission("A", START + DAY, 300))
    with pytest.raises(InvalidState) as caught:
        draft_ruleset(ctx, commission("A", START + 2 * DAY, 100), by="carol")
    assert caught.value.code == "invalid_state"
    with pytest.raises(InvalidState):
        approve_ruleset(ctx, "A", by="carol")
    with pytest.raises(NotFound):
        approve_ruleset(ctx, "nope", by="carol")
    for statement in ("UPDATE rulesets SET body_hash = 'x' WHERE version = 'A'",
                      "UPDATE rulesets SET status = 'draft' WHERE version = 'A'",
                      "UPDATE rulesets SET effective_from = effective_from WHERE version = 'A'",
                      "DELETE FROM rulesets WHERE version = 'A'"):
        with pytest.raises(DBAPIError) as refused, ctx.engine.begin() as conn:
            conn.execute(text(statement))
        assert "immutable" in str(refused.value)
    assert get_ruleset(ctx, "A").rules[0].shares[0].bps == 300
    # drafts are not protected: they may be replaced until approved
    draft_ruleset(ctx, commission("B", START + 2 * DAY, 100), by="carol")
    with ctx.engine.begin() as conn:
        conn.execute(text("UPDATE rulesets SET source = 'edited' WHERE version = 'B'"))
        conn.execute(text("DELETE FROM rulesets WHERE version = 'B'"))
    assert [r["version"] for r in list_rulesets(ctx)] == ["A"]


def test_an_invalid_ruleset_is_never_stored(ctx):
    good = ruleset("ok", START + DAY, {"id": "r", "shares": [{"to": "platform", "bps": 1}]})
    broken = dataclasses.replace(good, version="bad", rules=(dataclasses.replace(
        good.rules[0], shares=(dataclasses.replace(good.rules[0].shares[0], bps=10_001),)),))
    with pytest.raises(InvalidRuleset):
        draft_ruleset(ctx, broken, by="alice")
    assert list_rulesets(ctx) == []


def test_a_new_ruleset_never_changes_the_plan_of_an_earlier_order(ctx, clock):
    seed_marketplace(ctx)
    activate(ctx, commission("A", START + HOUR, 300, psp_fee_bearer="merchant"))
    old = order("o-old", when=START + 2 * HOUR, price=12_345, supplier="s1", shipping=800,
                fee=77, merchant_discount=345, platform_discount=1_000, affiliate="a1")
    capture(ctx, clock, old)
    with ctx.uow() as uow:
        order_row = dict(uow.conn.execute(select(t.orders).where(
            t.orders.c.order_id == "o-old")).one()._mapping)
    rows = plan_rows(ctx, "o-old")
    assert {r["rule_id"] for r in rows} >= {"commission", "supplier", "remainder"}
    assert all(r["explanation"] for r in rows)

    activate(ctx, ruleset("B", START + DAY, {"id": "flat", "shares": [
        {"to": "platform", "bps": 900}, {"to": "affiliate", "bps": 500}]}))
    capture(ctx, clock, order("o-new", when=START + 2 * DAY, price=12_345))
    assert stored_version(ctx, "o-new") == "B"
    assert plan_rows(ctx, "o-old") == rows
    order_service.refund_order(ctx, "o-old", 1_000, reason="partial")
    assert plan_rows(ctx, "o-old") == rows
    with ctx.uow() as uow:
        after = dict(uow.conn.execute(select(t.orders).where(
            t.orders.c.order_id == "o-old")).one()._mapping)
    assert after.pop("refunded_minor") == 1_000
    order_row.pop("refunded_minor")
    assert after == order_row
    assert stored_version(ctx, "o-old") == "A"
    assert verify_ledger(ctx).ok


# -- volume tiers over captured GMV -------------------------------------------------------------

TIERED = [{"id": "volume", "shares": [{"to": "platform", "window_days": 7, "tiers": [
    {"from_gmv_minor": 0, "bps": 500}, {"from_gmv_minor": 30_000, "bps": 300},
    {"from_gmv_minor": 100_000, "bps": 100}]}]}]


def test_tiered_commission_follows_the_merchant_gmv_in_the_window(ctx, clock):
    seed_marketplace(ctx)
    t0 = START + HOUR
    activate(ctx, ruleset("T", t0, *TIERED))

    def rate(order_id: str, when: datetime, merchant: str = "m1", price: int = 10_000,
             currency: str = "CNY", **kw: Any) -> int:
        result = capture(ctx, clock, order(order_id, when=when, merchant=merchant, price=price,
                                           currency=currency, **kw))
        assert result["policy_version"] == "T"
        with ctx.uow() as uow:
            return uow.conn.execute(select(t.split_allocations.c.rate_bps).where(
                t.split_allocations.c.order_id == order_id,
                t.split_allocations.c.party_id == "platform",
                t.split_allocations.c.kind == "commission")).scalar_one()

    # GMV counts the merchant's own price: a merchant-funded discount lowers it, a
    # platform-funded one does not
    assert rate("o-1", t0, merchant_discount=1_000) == 500                        # GMV 0
    assert rate("o-2", t0 + DAY, platform_discount=5_000) == 500                  # GMV 9000
    assert rate("o-3", t0 + 2 * DAY) == 500                                       # 19000
    assert rate("o-x", t0 + 2 * DAY + HOUR, merchant="m2", price=90_000) == 500   # m2: 0
    assert rate("o-usd", t0 + 2 * DAY + HOUR, currency="USD", price=90_000) == 500  # USD: 0
    assert rate("o-4", t0 + 2 * DAY + 2 * HOUR, price=1_000) == 500               # 29000
    assert rate("o-5", t0 + 3 * DAY, price=1_000) == 300                         # 30000
    # the window is [capture - 7 days, capture): o-1 (9000) counts exactly 7 days later only
    assert rate("o-6", t0 + 7 * DAY, price=5_000) == 300          # 31000 with o-1
    assert rate("o-7", t0 + 7 * DAY + US, price=500) == 500       # 36000 - 9000 = 27000
    assert rate("o-8", t0 + 10 * DAY) == 500                      # o-5, o-6, o-7: 6500
    # a merchant crossing the top tier within one day
    for i in range(9):
        rate(f"o-big-{i}", t0 + 20 * DAY + i * HOUR, merchant="m2", price=12_500)
    assert rate("o-big-9", t0 + 20 * DAY + 9 * HOUR, merchant="m2") == 100  # 112500
    # orders captured at the same instant do not count for each other: only earlier ones do
    assert rate("o-twin-a", t0 + 30 * DAY, price=30_000) == 500
    assert rate("o-twin-b", t0 + 30 * DAY) == 500
    assert rate("o-after", t0 + 30 * DAY + US) == 300      # both twins: 40000
    report = backtest(ctx, ruleset("T", t0, *TIERED), t0, clock.now + HOUR)
    assert report.orders == 23 and report.changed_orders == 0 and not report.differences()


# -- back-tests ---------------------------------------------------------------------------------

def _book_a_period(ctx, clock) -> Ruleset:  # type: ignore[no-untyped-def]
    a = commission("A", START + HOUR, 500)
    activate(ctx, a)
    capture(ctx, clock, order("o-1", when=START + 2 * HOUR, price=10_000))
    capture(ctx, clock, order("o-2", when=START + 3 * HOUR, price=20_000, merchant="m2",
                              shipping=800, fee=100))
    capture(ctx, clock, order("o-3", when=START + 4 * HOUR, price=30_000, supplier="s1"))
    capture(ctx, clock, order("o-out", when=START + 2 * DAY, price=50_000))
    return a


def test_a_backtest_of_the_booking_ruleset_reports_no_difference(ctx, clock):
    seed_marketplace(ctx)
    a = _book_a_period(ctx, clock)
    report = backtest(ctx, a, START, START + DAY)
    assert (report.orders, report.changed_orders, report.refused) == (3, 0, [])
    assert report.differences() == {}
    assert report.booked == report.simulated
    assert report.gmv == {"CNY": 60_800}
    # platform: 5 % of 60000 less the 100 fee it bears
    assert report.booked[("platform", "CNY")] == 3_000 - 100
    assert report.take_rate_bps(report.booked, "platform", "CNY") == \
        report.take_rate_bps(report.simulated, "platform", "CNY") == 2_900 * 10_000 / 60_800


def test_a_backtest_of_a_cheaper_ruleset_reports_each_party_difference(ctx, clock):
    seed_marketplace(ctx)
    _book_a_period(ctx, clock)
    before = row_counts(ctx)
    cheaper = commission("C", START + 5 * DAY, 300)
    report = backtest(ctx, cheaper, START, START + DAY)
    assert row_counts(ctx) == before  # a back-test writes nothing
    assert report.version == "C" and report.orders == 3 and report.changed_orders == 3
    assert report.differences() == {("platform", "CNY"): -1_200, ("m1", "CNY"): 800,
                                    ("m2", "CNY"): 400}
    assert report.take_rate_bps(report.booked, "platform", "CNY") == 2_900 * 10_000 / 60_800
    assert report.take_rate_bps(report.simulated, "platform", "CNY") == 1_700 * 10_000 / 60_800
    # a draft that would refuse some orders lists them and leaves them out of the totals
    capped = commission("cap", START + 5 * DAY, 500,
                        constraints={"max_share_to_others_bps": 3000})
    report = backtest(ctx, capped, START, START + DAY)
    assert [order_id for order_id, _ in report.refused] == ["o-3"]  # 65 % to others
    assert report.orders == 3 and report.gmv == {"CNY": 30_800}
    assert row_counts(ctx) == before
    with pytest.raises(InvalidRuleset):
        backtest(ctx, Ruleset("", START, ()), START, START + DAY)


_counter = itertools.count()


@st.composite
def random_orders(draw: st.DrawFn) -> list[tuple[timedelta, Order]]:
    result = []
    for i in range(draw(st.integers(1, 4))):
        lines = []
        for j in range(draw(st.integers(1, 3))):
            price = draw(st.integers(100, 40_000))
            discounts = []
            if draw(st.booleans()):
                discounts.append(Discount(draw(st.integers(1, price // 2)),
                                          draw(st.sampled_from(list(Funder))),
                                          draw(st.sampled_from(["coupon", "campaign"]))))
            lines.append(OrderLine(str(j), "SKU", draw(st.sampled_from(
                ["electronics/phones", "apparel", "home"])), draw(st.sampled_from(["m1", "m2"])),
                draw(st.integers(1, 2)), price, draw(st.sampled_from([None, "s1"])),
                tuple(discounts)))
        shipping = draw(st.sampled_from([0, 500, 1_200]))
        total = sum(line.net_minor for line in lines) + shipping
        if total <= 0:
            continue
        offset = timedelta(hours=draw(st.integers(1, 20 * 24)))
        result.append((offset, Order(
            f"p-{i}", "CNY", tuple(lines), START, Shipping(shipping, "l1") if shipping else None,
            psp_fee_minor=draw(st.integers(0, min(total, 300))),
            affiliate_id=draw(st.sampled_from([None, "a1"])))))
    return sorted(result, key=lambda pair: pair[0])


BOOKED = ruleset(
    "P", START + HOUR,
    {"id": "default", "shares": [{"to": "platform", "bps": 500, "min_minor": 1}]},
    {"id": "phones", "priority": 5, "when": {"category": "electronics"},
     "shares": [{"to": "platform", "window_days": 3, "tiers": [
         {"from_gmv_minor": 0, "bps": 300}, {"from_gmv_minor": 40_000, "bps": 150}]}]},
    {"id": "supplier", "when": {"has_supplier": True}, "shares": [{"to": "supplier",
                                                                   "bps": 5000}]},
    {"id": "affiliate", "when": {"has_affiliate": True}, "shares": [
        {"to": "affiliate", "bps": 200}, {"to": "affiliate", "of": "order_total", "bps": 50}]},
    {"id": "shipping", "shares": [{"to": "platform", "of": "shipping", "bps": 1000,
                                   "max_minor": 100}]},
    discount_funding={"campaign": "platform"}, psp_fee_bearer="merchant")


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=random_orders())
def test_a_backtest_reproduces_what_random_orders_booked(ctx, clock, batch):
    """Across examples the database is shared: each example books a later, separate period."""
    with ctx.uow() as uow:
        seeded = uow.repo.get_party("platform") is not None
    if not seeded:
        seed_marketplace(ctx)
        activate(ctx, BOOKED)
    n = next(_counter)
    base = START + HOUR + n * 30 * DAY
    ids = []
    for offset, o in batch:
        o = Order(f"{o.order_id}-{n}", o.currency, o.lines, base + offset, o.shipping,
                  o.psp_fee_minor, affiliate_id=o.affiliate_id)
        result = capture(ctx, clock, o)
        assert result["policy_version"] == "P"
        ids.append(o.order_id)
    report = backtest(ctx, BOOKED, base, base + 30 * DAY)
    assert report.orders == len(ids)
    assert (report.changed_orders, report.differences(), report.refused) == (0, {}, [])
    with ctx.uow() as uow:
        stored = uow.conn.execute(select(t.split_allocations.c.party_id,
                                         func.sum(t.split_allocations.c.amount_minor))
                                  .where(t.split_allocations.c.order_id.in_(ids))
                                  .group_by(t.split_allocations.c.party_id)).all()
    assert {(party, "CNY"): int(amount) for party, amount in stored if amount} == \
        {k: v for k, v in report.booked.items() if v}
