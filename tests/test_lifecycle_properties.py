"""Refunds, chargebacks and releases move exactly the money the rules say, whatever the sequence."""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from splitledger.domain.ledger import AccountRef, Posting, Purpose, check_balanced
from splitledger.domain.lifecycle import (
    ChargebackPolicy,
    OrderMoney,
    borne_reversal,
    proportional_reversal,
    release_postings,
)
from splitledger.domain.split import Allocation, ShareKind, SplitPlan, Target
from splitledger.errors import InvalidAmount, RefundExceedsCaptured
from splitledger.services import orders as order_service
from splitledger.services import settlement
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from tests.support import START, FakeClock, make_context, order

# -- random plans ---------------------------------------------------------------------------------

PARTY_KINDS = [ShareKind.COMMISSION, ShareKind.MERCHANT_PROCEEDS, ShareKind.SUPPLIER_COST,
               ShareKind.SHIPPING, ShareKind.PSP_FEE_BORNE]
NEGATIVE_KINDS = {ShareKind.PSP_FEE_BORNE, ShareKind.PLATFORM_SUBSIDY}


@st.composite
def allocations(draw: st.DrawFn) -> Allocation:
    kind = draw(st.sampled_from([*PARTY_KINDS, ShareKind.PSP_FEE, ShareKind.PLATFORM_SUBSIDY]))
    party = draw(st.sampled_from(["platform", "m1", "m2", "s1", "l1"]))
    if kind is ShareKind.PSP_FEE:
        party = "psp"
    elif kind is ShareKind.PLATFORM_SUBSIDY:
        party = "platform"
    size = draw(st.integers(min_value=0, max_value=1_000_000))
    return Allocation(party, kind, -size if kind in NEGATIVE_KINDS else size, kind.value)


@st.composite
def plans(draw: st.DrawFn) -> SplitPlan:
    """Any plan that captured a positive amount: negative targets (a platform bearing the fee,
    a subsidy) and targets that net to zero included."""
    parts = draw(st.lists(allocations(), min_size=1, max_size=8))
    total = sum(a.amount_minor for a in parts)
    if total <= 0:
        parts.append(Allocation("m1", ShareKind.MERCHANT_PROCEEDS,
                                1 - total + draw(st.integers(min_value=0, max_value=10_000)),
                                "remainder"))
        total = sum(a.amount_minor for a in parts)
    return SplitPlan("o-1", "CNY", total, "test", tuple(parts))


@st.composite
def refund_amounts(draw: st.DrawFn, captured: int) -> list[int]:
    """A sequence of partial refunds whose total never exceeds ``captured``."""
    amounts, left = [], captured
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if left == 0:
            break
        amount = draw(st.one_of(st.integers(min_value=1, max_value=left),
                                st.integers(min_value=1, max_value=min(left, 3))))
        amounts.append(amount)
        left -= amount
    return amounts


def target_of(account: AccountRef) -> Target:
    if account.party_id:
        return Target(party_id=account.party_id)
    return Target(system=account.purpose.value)


def clearing(postings: tuple[Posting, ...]) -> int:
    return sum(p.amount_minor for p in postings if p.account.purpose is Purpose.CLEARING)


def refund_all(money: OrderMoney, amounts: list[int], reversed_so_far: dict[Target, int]
               ) -> OrderMoney:
    """Book each refund, check it, and add what it reversed per target to ``reversed_so_far``."""
    nets = money.plan_nets
    for amount in amounts:
        postings = proportional_reversal(money, amount)
        check_balanced(postings)
        assert clearing(postings) == -amount
        assert sum(p.amount_minor for p in postings
                   if p.account.purpose is not Purpose.CLEARING) == amount
        for posting in postings:
            if posting.account.purpose is Purpose.CLEARING:
                continue
            if posting.account.party_id:
                expected = Purpose.AVAILABLE if money.released else Purpose.PENDING
                assert posting.account.purpose is expected
            reversed_so_far[target_of(posting.account)] += posting.amount_minor
        for target, reversed_minor in reversed_so_far.items():
            net = nets[target]
            assert abs(reversed_minor) <= abs(net)
            assert reversed_minor * net >= 0  # never reversed the wrong way
        money = replace(money, refunded_minor=money.refunded_minor + amount)
    return money


# -- pure properties ------------------------------------------------------------------------------


@given(plans(), st.data())
def test_every_partial_refund_balances_and_reverses_exactly_its_amount(plan, data):
    money = OrderMoney("CNY", plan.net_by_target(), plan.total_minor)
    amounts = data.draw(refund_amounts(plan.total_minor))
    refund_all(money, amounts, defaultdict(int))


@given(plans(), st.data())
def test_a_full_refund_after_any_partial_refunds_reverses_every_share_to_the_last_cent(plan, data):
    money = OrderMoney("CNY", plan.net_by_target(), plan.total_minor,
                       released=data.draw(st.booleans()))
    amounts = data.draw(refund_amounts(plan.total_minor))
    rest = plan.total_minor - sum(amounts)
    reversed_so_far: dict[Target, int] = defaultdict(int)
    money = refund_all(money, amounts + ([rest] if rest else []), reversed_so_far)
    assert money.remaining_minor == 0
    nets = {target: net for target, net in plan.net_by_target().items() if net}
    assert dict(reversed_so_far) == {target: net for target, net in nets.items()}


@given(plans(), st.data())
def test_release_moves_exactly_what_refunds_left_of_each_party_s_share(plan, data):
    nets = plan.net_by_target()
    money = OrderMoney("CNY", nets, plan.total_minor)
    reversed_so_far: dict[Target, int] = defaultdict(int)
    money = refund_all(money, data.draw(refund_amounts(plan.total_minor)), reversed_so_far)
    postings = release_postings(money)
    lifted: dict[str, int] = defaultdict(int)   # taken off hold, per party
    granted: dict[str, int] = defaultdict(int)  # made available, per party
    for posting in postings:
        party_id = posting.account.party_id
        assert party_id is not None  # system accounts are never released
        if posting.account.purpose is Purpose.PENDING:
            lifted[party_id] += posting.amount_minor
        else:
            assert posting.account.purpose is Purpose.AVAILABLE
            granted[party_id] -= posting.amount_minor
    if postings:
        check_balanced(postings)
    for target, net in nets.items():
        if target.party_id:
            left = net - reversed_so_far[target]
            assert lifted[target.party_id] == granted[target.party_id] == left


@given(plans(), st.data())
def test_refunds_after_release_come_out_of_available_and_still_sum_exactly(plan, data):
    money = OrderMoney("CNY", plan.net_by_target(), plan.total_minor)
    before = data.draw(refund_amounts(plan.total_minor))
    reversed_so_far: dict[Target, int] = defaultdict(int)
    money = refund_all(money, before, reversed_so_far)
    money = replace(money, released=True)
    if money.remaining_minor:
        refund_all(money, data.draw(refund_amounts(money.remaining_minor)), reversed_so_far)


@given(plans(), st.data())
def test_a_refund_larger_than_what_is_left_is_refused(plan, data):
    already = data.draw(st.integers(min_value=0, max_value=plan.total_minor))
    borne = data.draw(st.integers(min_value=0, max_value=plan.total_minor - already))
    money = OrderMoney("CNY", plan.net_by_target(), plan.total_minor, already, borne)
    too_much = money.remaining_minor + data.draw(st.integers(min_value=1, max_value=10**6))
    with pytest.raises(RefundExceedsCaptured) as refused:
        proportional_reversal(money, too_much)
    assert refused.value.details["remaining_minor"] == money.remaining_minor
    with pytest.raises(RefundExceedsCaptured):
        borne_reversal(money, too_much, ChargebackPolicy.MERCHANT, "platform", ["m1"])


def test_a_rounding_tie_in_a_refund_goes_to_the_share_listed_first_in_the_plan():
    nets = {Target(party_id="platform"): 500, Target(party_id="m1"): 9_500}
    postings = proportional_reversal(OrderMoney("CNY", nets, 10_000), 50)  # 2.5 and 47.5
    taken = {p.account.party_id: p.amount_minor for p in postings if p.account.party_id}
    assert taken == {"platform": 3, "m1": 47}
    swapped = dict(reversed(nets.items()))
    postings = proportional_reversal(OrderMoney("CNY", swapped, 10_000), 50)
    taken = {p.account.party_id: p.amount_minor for p in postings if p.account.party_id}
    assert taken == {"platform": 2, "m1": 48}


@pytest.mark.parametrize("amount", [0, -1, 2.5, True])
def test_a_refund_must_be_a_positive_whole_number_of_minor_units(amount):
    money = OrderMoney("CNY", {Target(party_id="m1"): 100}, 100)
    with pytest.raises(InvalidAmount):
        proportional_reversal(money, amount)


@given(plans(), st.sampled_from([ChargebackPolicy.MERCHANT, ChargebackPolicy.PLATFORM]),
       st.data())
def test_a_one_sided_chargeback_is_borne_whole_by_that_side(plan, policy, data):
    money = OrderMoney("CNY", plan.net_by_target(), plan.total_minor)
    amount = data.draw(st.integers(min_value=1, max_value=plan.total_minor))
    postings = borne_reversal(money, amount, policy, "platform", ["m1", "m2"])
    check_balanced(postings)
    assert clearing(postings) == -amount
    bearers = {p.account for p in postings if p.account.purpose is not Purpose.CLEARING}
    if policy is ChargebackPolicy.PLATFORM:
        assert {a.purpose for a in bearers} == {Purpose.CHARGEBACK_LOSSES}
    else:
        assert {(a.party_id, a.purpose) for a in bearers} <= {
            ("m1", Purpose.AVAILABLE), ("m2", Purpose.AVAILABLE)}
        assert all(p.amount_minor > 0 for p in postings if p.account in bearers)


# -- the same promises through the services, on SQLite --------------------------------------------


def fresh_copy(template: Path, into: str) -> str:
    target = Path(into) / "ledger.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


def assert_ledger_promises(ctx) -> None:  # type: ignore[no-untyped-def]
    report = verify_ledger(ctx)
    assert report.ok, report.problems
    with ctx.uow() as uow:
        conn = uow.conn
        trial = conn.execute(select(t.postings.c.currency, func.sum(t.postings.c.amount_minor))
                             .group_by(t.postings.c.currency)).all()
        assert all(amount == 0 for _, amount in trial), trial
        for row in conn.execute(select(t.orders)):
            assert 0 <= row.refunded_minor + row.other_reversed_minor <= row.captured_minor
        # Replay each party's available account in booking order: a payout never takes more
        # than was released to the party net of the reversals and payouts before it.
        moves = conn.execute(
            select(t.accounts.c.party_id, t.accounts.c.currency, t.journal_entries.c.kind,
                   t.postings.c.amount_minor)
            .select_from(t.postings.join(t.accounts,
                                         t.accounts.c.account_id == t.postings.c.account_id)
                         .join(t.journal_entries,
                               t.journal_entries.c.entry_id == t.postings.c.entry_id))
            .where(t.accounts.c.purpose == Purpose.AVAILABLE.value)
            .order_by(t.journal_entries.c.seq))
        owed: dict[tuple[str, str], int] = defaultdict(int)
        for party_id, currency, kind, amount in moves:
            if kind == "payout":
                assert amount <= owed[(party_id, currency)], (party_id, currency)
            owed[(party_id, currency)] -= amount


captures = st.tuples(
    st.just("capture"), st.integers(1, 50_000), st.integers(1, 3), st.sampled_from(["m1", "m2"]),
    st.sampled_from([None, "s1"]), st.sampled_from([0, 800]), st.integers(0, 100),
    st.integers(0, 3_000), st.sampled_from([None, "a1"]))
steps = st.one_of(
    captures,
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100), st.booleans()),
    st.tuples(st.just("confirm"), st.integers(0, 20)),
    st.tuples(st.just("wait"), st.sampled_from([1, 30, 80, 200])),
    st.tuples(st.just("settle"), st.integers(0, 2)),
)


def apply_step(ctx, clock: FakeClock, step: tuple, captured: list[str]) -> None:  # type: ignore[no-untyped-def,type-arg]
    kind = step[0]
    if kind == "capture":
        _, price, quantity, merchant, supplier, shipping, fee_pct, coupon, affiliate = step
        paid = price * quantity + shipping
        coupon = min(coupon, price * quantity - 1)
        new = order(f"o-{len(captured)}", when=clock.now, price=price, quantity=quantity,
                    merchant=merchant, supplier=supplier, shipping=shipping,
                    fee=(paid - coupon) * fee_pct // 1000, platform_discount=coupon,
                    affiliate=affiliate)
        order_service.capture_order(ctx, new)
        captured.append(new.order_id)
    elif kind == "refund" and captured:
        _, index, percent, full = step
        order_id = captured[index % len(captured)]
        with ctx.uow() as uow:
            row = uow.repo.get_order(order_id)
        left = row.captured_minor - row.refunded_minor - row.other_reversed_minor
        amount = left if full else max(1, left * percent // 100)
        if left == 0:
            with pytest.raises(RefundExceedsCaptured):
                order_service.refund_order(ctx, order_id, 1)
        else:
            order_service.refund_order(ctx, order_id, amount)
    elif kind == "confirm" and captured:
        order_service.confirm_order(ctx, captured[step[1] % len(captured)])
    elif kind == "wait":
        clock.advance(hours=step[1])
        order_service.release_due(ctx)
    elif kind == "settle":
        midnight = datetime.combine(clock.now.date(), datetime.min.time(), UTC)
        settlement.run_settlement(ctx, midnight - timedelta(days=step[1]), ignore_schedule=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(captures, min_size=1, max_size=3), st.lists(steps, min_size=4, max_size=20))
def test_through_the_services_the_ledger_keeps_every_promise_after_every_step(
        seeded_sqlite, first_orders, later_steps):
    with tempfile.TemporaryDirectory() as workdir:
        clock = FakeClock(START)
        ctx = make_context(fresh_copy(seeded_sqlite, workdir), clock)
        try:
            captured: list[str] = []
            for step in first_orders + later_steps:
                apply_step(ctx, clock, step, captured)
                assert_ledger_promises(ctx)
        finally:
            ctx.engine.dispose()

