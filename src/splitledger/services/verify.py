"""``ledger verify``: every invariant of DESIGN.md checked over a whole database.

Each check reads the journal itself, not the projections it is checking, and reports every
problem it finds (not just the first), so an operator sees the extent of any damage.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select

from splitledger.domain.ledger import Purpose
from splitledger.domain.lifecycle import OrderMoney
from splitledger.services.context import Context
from splitledger.store import tables as t


@dataclass
class VerifyReport:
    entries: int = 0
    postings: int = 0
    orders: int = 0
    accounts: int = 0
    trial_balance: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_ledger(ctx: Context, *, max_problems: int = 100) -> VerifyReport:
    report = VerifyReport()
    with ctx.uow() as uow:
        conn = uow.conn
        p, e, a = t.postings, t.journal_entries, t.accounts
        report.entries = conn.execute(select(func.count()).select_from(e)).scalar_one()
        report.postings = conn.execute(select(func.count()).select_from(p)).scalar_one()
        report.accounts = conn.execute(select(func.count()).select_from(a)).scalar_one()

        # 1. Every entry balances per currency, and has the postings its header counts.
        unbalanced = conn.execute(
            select(p.c.entry_id, p.c.currency, func.sum(p.c.amount_minor))
            .group_by(p.c.entry_id, p.c.currency).having(func.sum(p.c.amount_minor) != 0))
        for entry_id, currency, amount in unbalanced:
            report.problems.append(f"entry {entry_id} is off by {amount} {currency}")
        counts = conn.execute(
            select(e.c.entry_id, e.c.posting_count, func.count(p.c.posting_id))
            .select_from(e.outerjoin(p, p.c.entry_id == e.c.entry_id))
            .group_by(e.c.entry_id, e.c.posting_count)
            .having(func.count(p.c.posting_id) != e.c.posting_count))
        for entry_id, expected, found in counts:
            report.problems.append(f"entry {entry_id} has {found} postings, header says {expected}")
        orphans = conn.execute(select(func.count()).select_from(
            p.outerjoin(e, e.c.entry_id == p.c.entry_id)).where(e.c.entry_id.is_(None))
        ).scalar_one()
        if orphans:
            report.problems.append(f"{orphans} postings belong to no entry")

        # 2. The trial balance of the whole ledger is zero in every currency.
        for currency, amount in conn.execute(
                select(p.c.currency, func.sum(p.c.amount_minor)).group_by(p.c.currency)):
            report.trial_balance[currency] = int(amount)
            if amount:
                report.problems.append(f"trial balance of {currency} is {amount}, not zero")

        # 3. Stored balances equal the journal.
        journal = dict(conn.execute(select(p.c.account_id, func.sum(p.c.amount_minor))
                                    .group_by(p.c.account_id)).all())
        for account_id, code, stored in conn.execute(
                select(a.c.account_id, a.c.code, a.c.balance_minor)):
            if int(journal.get(account_id, 0)) != stored:
                report.problems.append(f"account {code}: stored balance {stored}, journal says "
                                       f"{journal.get(account_id, 0)}")

        # 4. Per order: the plan sums to the capture, refunds stay within it, and the pending
        #    accounts hold exactly the unreleased shares.
        expected_pending: dict[tuple[str, str], int] = defaultdict(int)
        for row in conn.execute(select(t.orders)):
            report.orders += 1
            try:
                plan = uow.repo.get_plan(row)
            except Exception as exc:  # InvariantViolation from SplitPlan: report, go on
                report.problems.append(f"order {row.order_id}: {exc}")
                continue
            reversed_total = row.refunded_minor + row.other_reversed_minor
            if not 0 <= reversed_total <= row.captured_minor:
                report.problems.append(f"order {row.order_id}: reversed {reversed_total} of "
                                       f"{row.captured_minor} captured")
            if row.released_at is None:
                money = OrderMoney(row.currency, plan.net_by_target(), row.captured_minor,
                                   row.refunded_minor, row.other_reversed_minor)
                for target, amount in money.pending_by_target().items():
                    if target.party_id:
                        expected_pending[(target.party_id, row.currency)] += amount
        reversal_sums = dict(conn.execute(
            select(t.reversals.c.order_id, func.sum(t.reversals.c.amount_minor))
            .group_by(t.reversals.c.order_id)).all())
        for order_id, refunded, other in conn.execute(
                select(t.orders.c.order_id, t.orders.c.refunded_minor,
                       t.orders.c.other_reversed_minor)):
            if int(reversal_sums.get(order_id, 0)) != refunded + other:
                report.problems.append(f"order {order_id}: reversal records disagree with its "
                                       "refunded total")
        for party_id, currency, balance in conn.execute(
                select(a.c.party_id, a.c.currency, a.c.balance_minor)
                .where(a.c.purpose == Purpose.PENDING.value)):
            expected = expected_pending.pop((party_id, currency), 0)
            if -balance != expected:
                report.problems.append(f"pending of {party_id} {currency} is {-balance}, its "
                                       f"unreleased orders hold {expected}")
        for (party_id, currency), amount in expected_pending.items():
            if amount:
                report.problems.append(f"{party_id} {currency}: {amount} unreleased but no "
                                       "pending account")

        # 5. No party is ever paid out more than was released to it net of reversals: replay
        #    each available account; right after every payout, what is owed must be >= 0.
        _check_payouts_covered(conn, report)
    del report.problems[max_problems:]
    return report


def _check_payouts_covered(conn, report: VerifyReport) -> None:  # type: ignore[no-untyped-def]
    p, e, a = t.postings, t.journal_entries, t.accounts
    rows = conn.execute(
        select(a.c.code, e.c.kind, e.c.entry_id, p.c.amount_minor)
        .select_from(p.join(a, a.c.account_id == p.c.account_id)
                     .join(e, e.c.entry_id == p.c.entry_id))
        .where(a.c.purpose == Purpose.AVAILABLE.value)
        .order_by(a.c.code, e.c.seq))
    owed: dict[str, int] = defaultdict(int)
    for code, kind, entry_id, amount in rows:
        owed[code] -= amount
        if kind == "payout" and owed[code] < 0:
            report.problems.append(f"payout entry {entry_id} overdrew {code} to {owed[code]}")

