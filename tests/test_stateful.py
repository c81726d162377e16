"""Any sequence of captures, refunds, chargebacks, releases, settlements and payout answers leaves
every balance exactly where the independent reference model (tests/reference_model.py) says."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from splitledger.domain.ledger import AccountRef, Purpose
from splitledger.domain.lifecycle import ChargebackPolicy
from splitledger.domain.orders import Discount, Funder, Order, OrderLine, Shipping
from splitledger.errors import InvalidState, RefundExceedsCaptured
from splitledger.services import orders as order_service
from splitledger.services import settlement
from splitledger.services.verify import verify_ledger
from splitledger.store import tables as t
from tests.conftest import PG_ADMIN_URL, _url_for
from tests.reference_model import LedgerModel
from tests.support import MARKETPLACE, START, FakeClock, make_context, seed_marketplace

# A fresh database for one run of the machine: its URL and how to throw it away.
DatabaseFactory = Callable[[], tuple[str, Callable[[], None]]]


@st.composite
def plain_orders(draw: st.DrawFn) -> Order:
    """One round-priced line and nothing else: shares of round numbers, where ties are common."""
    line = OrderLine("1", "SKU-1", "electronics/phones", draw(st.sampled_from(["m1", "m2"])), 1,
                     draw(st.sampled_from([1_000, 10_000, 30_000])))
    return Order("?", "CNY", (line,), START)


@st.composite
def any_orders(draw: st.DrawFn) -> Order:
    """An order the seeded marketplace can take (id and time are set at capture)."""
    currency = draw(st.sampled_from(["CNY", "CNY", "USD"]))
    merchants = ["m1", "m2"] if currency == "CNY" else ["m1"]  # m2 is paid in CNY only
    lines = []
    for index in range(draw(st.integers(min_value=1, max_value=3))):
        quantity = draw(st.integers(min_value=1, max_value=3))
        # Round prices make equal shares, and so rounding ties, common.
        price = draw(st.one_of(st.integers(min_value=0, max_value=30_000),
                               st.sampled_from([100, 1_000, 2_500, 10_000])))
        discounts, left = [], quantity * price
        for funder in draw(st.lists(st.sampled_from(Funder), max_size=2)):
            if left:
                amount = draw(st.integers(min_value=1, max_value=left))
                discounts.append(Discount(amount, funder))
                left -= amount
        lines.append(OrderLine(str(index + 1), f"SKU-{index}", "electronics/phones",
                               draw(st.sampled_from(merchants)), quantity, price,
                               draw(st.sampled_from([None, "s1"])), tuple(discounts)))
    shipping = draw(st.sampled_from([0, 0, 500, 800, 1_250]))
    paid = sum(line.net_minor for line in lines) + shipping
    if paid == 0:
        shipping = paid = 500
    return Order("?", currency, tuple(lines), START,
                 Shipping(shipping, "l1") if shipping else None,
                 psp_fee_minor=draw(st.sampled_from([0, paid * 6 // 1000, paid])),
                 affiliate_id=draw(st.sampled_from([None, "a1"])) if currency == "CNY" else None)


# A percentage (1 to 100) of what is left, or (negative) a few minor units: small odd
# multiples of 5 and 10 split round shares into exact halves, where rounding ties happen.
parts = st.one_of(st.integers(1, 100), st.sampled_from([-1, -2, -3, -5, -10, -50, -150]))


order_shapes = st.one_of(plain_orders(), any_orders(), any_orders())


def midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), datetime.min.time(), UTC)


class LedgerMachine(RuleBasedStateMachine):
    """Drives the services and the reference model side by side."""

    new_database: DatabaseFactory  # set by each test on a subclass

    orders = Bundle("orders")
    payouts = Bundle("payouts")

    def __init__(self) -> None:
        super().__init__()
        self.url, self._drop = type(self).new_database()
        self.clock = FakeClock(START)
        self.ctx = make_context(self.url, self.clock)
        self.model = LedgerModel.of(MARKETPLACE, self.ctx.settings.default_hold_days)
        self.captured = 0

    def teardown(self) -> None:
        self.ctx.engine.dispose()
        self._drop()

    def remaining(self, order_id: str) -> int:
        return self.model.orders[order_id].remaining_minor

    @staticmethod
    def amount(left: int, part: int, whole: bool) -> int:
        """What is left, a percentage of it, or a few minor units (see ``parts``)."""
        if whole:
            return left
        return min(left, -part) if part < 0 else max(1, left * part // 100)

    # -- what comes in ----------------------------------------------------------------------------
    @initialize(target=orders, shape=order_shapes)
    def first_capture(self, shape: Order) -> str:
        return self.capture(shape)

    @rule(target=orders, shape=order_shapes)
    def capture(self, shape: Order) -> str:
        self.captured += 1
        order = replace(shape, order_id=f"o-{self.captured}", captured_at=self.clock.now)
        result = order_service.capture_order(self.ctx, order)
        expected = self.model.capture(order, self.clock.now)
        assert result["captured_minor"] == expected.captured_minor == order.total_minor
        assert {a["party_id"]: a["amount_minor"] for a in result["allocations"]} == \
            expected.net_by_party()
        return order.order_id

    @rule(order_id=orders, part=parts, whole=st.booleans())
    def refund(self, order_id: str, part: int, whole: bool) -> None:
        left = self.remaining(order_id)
        if left == 0:
            with pytest.raises(RefundExceedsCaptured):
                order_service.refund_order(self.ctx, order_id, 1)
            return
        amount = self.amount(left, part, whole)
        result = order_service.refund_order(self.ctx, order_id, amount)
        self.model.refund(order_id, amount, self.clock.now)
        assert result["remaining_minor"] == left - amount

    @rule(order_id=orders, extra=st.integers(1, 10_000))
    def refund_more_than_is_left(self, order_id: str, extra: int) -> None:
        with pytest.raises(RefundExceedsCaptured) as refused:
            order_service.refund_order(self.ctx, order_id, self.remaining(order_id) + extra)
        assert refused.value.details["remaining_minor"] == self.remaining(order_id)

    @rule(order_id=orders, policy=st.sampled_from(ChargebackPolicy), part=parts,
          whole=st.booleans())
    def chargeback(self, order_id: str, policy: ChargebackPolicy, part: int, whole: bool) -> None:
        left = self.remaining(order_id)
        if left == 0:
            with pytest.raises(RefundExceedsCaptured):
                order_service.chargeback_order(self.ctx, order_id, 1, policy=policy)
            return
        amount = self.amount(left, part, whole)
        order_service.chargeback_order(self.ctx, order_id, amount, policy=policy)
        if policy is ChargebackPolicy.PROPORTIONAL:
            self.model.refund(order_id, amount, self.clock.now)
        else:
            self.model.chargeback_borne(order_id, amount, policy is ChargebackPolicy.PLATFORM,
                                        self.clock.now)

    # -- release ----------------------------------------------------------------------------------
    @rule(order_id=orders)
    def confirm(self, order_id: str) -> None:
        result = order_service.confirm_order(self.ctx, order_id)
        assert result["already_released"] is not self.model.release(order_id, self.clock.now)

    @rule(hours=st.sampled_from([1, 5, 24, 50, 80, 170]))
    def time_passes_and_holds_end(self, hours: int) -> None:
        self.clock.advance(hours=hours)
        self.release_due()

    def release_due(self) -> None:
        assert order_service.release_due(self.ctx) == self.model.release_due(self.clock.now)

    # -- settlement and payouts -------------------------------------------------------------------
    def payout_ids(self) -> set[str]:
        with self.ctx.uow() as uow:
            return set(uow.conn.execute(select(t.payouts.c.payout_id)).scalars())

    @rule(target=payouts, nights_later=st.sampled_from([0, 1, 1, 3, 8]),
          days_back=st.sampled_from([0, 0, 0, 1, 3]))
    def settle(self, nights_later: int, days_back: int):  # type: ignore[no-untyped-def]
        """Wait until ``nights_later`` midnights have passed (releasing what falls due), then
        close the period ending at a midnight ``days_back`` days before now."""
        if nights_later:
            self.clock.set(midnight(self.clock.now) + timedelta(days=nights_later, hours=1))
            self.release_due()
        period_end = midnight(self.clock.now) - timedelta(days=days_back)
        before = self.payout_ids()
        run = settlement.run_settlement(self.ctx, period_end, ignore_schedule=True)
        expected = self.model.settle(period_end, self.clock.now)
        with self.ctx.uow() as uow:
            made = [p for p in uow.conn.execute(select(t.payouts)) if p.payout_id not in before]
        assert {(p.party_id, p.currency): p.amount_minor for p in made} == expected
        assert run.payouts == len(expected)
        for payout in made:
            self.model.name_payout(payout.payout_id, payout.party_id, payout.currency,
                                   payout.amount_minor)
        # Bundle order by party, not by the random payout id, so that replays are exact.
        made.sort(key=lambda p: (p.party_id, p.currency))
        return multiple(*[p.payout_id for p in made])

    @rule(payout_id=payouts)
    def bank_confirms_payout(self, payout_id: str) -> None:
        self._bank_answers(payout_id, "paid")

    @rule(payout_id=payouts)
    def bank_returns_payout(self, payout_id: str) -> None:
        self._bank_answers(payout_id, "failed")

    def _bank_answers(self, payout_id: str, status: str) -> None:
        outcome = self.model.resolve_payout(payout_id, status, self.clock.now)

        def answer() -> dict:  # type: ignore[type-arg]
            if status == "paid":
                return settlement.mark_payout_paid(self.ctx, payout_id)
            return settlement.mark_payout_failed(self.ctx, payout_id, "account closed")

        if outcome == "invalid_state":
            with pytest.raises(InvalidState):
                answer()
        else:
            assert answer()["changed"] is (outcome == "changed")

    # -- after every step -------------------------------------------------------------------------
    @invariant()
    def every_balance_is_what_the_model_says(self) -> None:
        with self.ctx.uow() as uow:
            accounts = uow.conn.execute(
                select(t.accounts.c.party_id, t.accounts.c.purpose, t.accounts.c.currency)).all()
            stored = {(party_id, purpose, currency): uow.repo.balance(
                AccountRef(Purpose(purpose), currency, party_id))
                for party_id, purpose, currency in accounts}
        expected = {account: self.model.raw_balance(account) for account in self.model.balances}
        assert {k: v for k, v in stored.items() if v} == {k: v for k, v in expected.items() if v}

    @invariant()
    def the_ledger_verifies(self) -> None:
        report = verify_ledger(self.ctx)
        assert report.ok, report.problems
        assert set(report.trial_balance.values()) <= {0}


def run_machine(new_database: DatabaseFactory, **limits: int) -> None:
    machine = type("LedgerMachineOnce", (LedgerMachine,),
                   {"new_database": staticmethod(new_database)})
    run_state_machine_as_test(machine, settings=settings(
        deadline=None, suppress_health_check=[HealthCheck.too_slow], **limits))


# -- SQLite ---------------------------------------------------------------------------------------


def test_every_balance_follows_the_reference_model_on_sqlite(seeded_sqlite: Path) -> None:
    def new_database() -> tuple[str, Callable[[], None]]:
        workdir = tempfile.mkdtemp(prefix="sl-stateful-")
        shutil.copyfile(seeded_sqlite, Path(workdir) / "ledger.db")
        return f"sqlite:///{workdir}/ledger.db", lambda: shutil.rmtree(workdir, True)

    run_machine(new_database, max_examples=40, stateful_step_count=30)


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
def seeded_pg_template(pg_template: str | None) -> Iterator[str]:
    """A copy of conftest's migrated template with the marketplace in it, to clone per run."""
    if pg_template is None:
        pytest.skip("PostgreSQL not reachable (set CI=true to make this a failure)")
    name = f"sl_seeded_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    ctx = make_context(_url_for(name))
    seed_marketplace(ctx)
    ctx.engine.dispose()
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_every_balance_follows_the_reference_model_on_postgresql(seeded_pg_template: str) -> None:
    def new_database() -> tuple[str, Callable[[], None]]:
        name = f"sl_sm_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{seeded_pg_template}"')

        def drop() -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        return _url_for(name), drop

    run_machine(new_database, max_examples=8, stateful_step_count=20)
