"""Read side: the whole journal exported (beancount, CSV), payout listings and the per-currency
figures a report or the demo summary shows.

Nothing here writes. Every export reads the journal and the accounts in one transaction (a
REPEATABLE READ snapshot on PostgreSQL; SQLite serialises anyway), so the file it produces is
one consistent moment of the ledger.

Beancount mapping (sign convention: a posting's ``amount_minor`` is debit-positive, which is
beancount's own sign, so amounts are written as they are, scaled to major units):

  party accounts            Liabilities:Parties:<Role>:<Party>:<Pending|Available|InTransit>
  the platform's accounts   Income:Platform:<Pending|Available|InTransit>
  clearing                  Assets:Clearing
  psp_fees                  Liabilities:PSP:Fees
  platform_subsidy          Expenses:PlatformSubsidy
  chargeback_losses         Expenses:ChargebackLosses
  adjustments               Expenses:Adjustments
  tax                       Liabilities:Tax

``<Party>`` is the party id made into a valid account component (``_`` and ``.`` become ``-``,
the first letter is capitalised); when two ids map to the same component the later one (in id
order) gets a ``-2``, ``-3``... suffix, so the mapping is one-to-one within a file. Each ``open``
directive carries the exact ``party_id`` as metadata.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import Connection, func, select

from splitledger.domain.ledger import Purpose
from splitledger.domain.money import exponent
from splitledger.domain.parties import UNSETTLED_ROLES, PartyRole
from splitledger.errors import InvariantViolation, ValidationError
from splitledger.services.context import Context
from splitledger.store import tables as t

SYSTEM_ACCOUNT_NAMES: dict[str, str] = {
    Purpose.CLEARING.value: "Assets:Clearing",
    Purpose.PSP_FEES.value: "Liabilities:PSP:Fees",
    Purpose.PLATFORM_SUBSIDY.value: "Expenses:PlatformSubsidy",
    Purpose.CHARGEBACK_LOSSES.value: "Expenses:ChargebackLosses",
    Purpose.ADJUSTMENTS.value: "Expenses:Adjustments",
    Purpose.TAX.value: "Liabilities:Tax",
}
PURPOSE_COMPONENTS: dict[str, str] = {
    Purpose.PENDING.value: "Pending",
    Purpose.AVAILABLE.value: "Available",
    Purpose.IN_TRANSIT.value: "InTransit",
}
ROLE_COMPONENTS: dict[str, str] = {
    PartyRole.MERCHANT.value: "Merchant",
    PartyRole.SUPPLIER.value: "Supplier",
    PartyRole.LOGISTICS.value: "Logistics",
    PartyRole.AFFILIATE.value: "Affiliate",
    PartyRole.TAX.value: "Tax",
    PartyRole.PSP.value: "PSP",
}
_COMPONENT = re.compile(r"^[A-Z0-9][A-Za-z0-9-]*$")
CSV_COLUMNS = ("seq", "entry_id", "booked_at", "kind", "order_id", "account", "party_id",
               "purpose", "currency", "amount_minor", "amount")


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """Exact major units: ``minor / 10**exponent``."""
    return Decimal(amount_minor).scaleb(-exponent(currency))


def format_amount(amount_minor: int, currency: str) -> str:
    """Plain decimal text with exactly the currency's digits, never scientific notation."""
    return f"{to_decimal(amount_minor, currency):.{exponent(currency)}f}"


@contextmanager
def _snapshot(ctx: Context) -> Iterator[Connection]:
    conn = ctx.engine.connect()
    try:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn
    finally:
        conn.close()


# -- account names -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_id: int
    code: str
    party_id: str | None
    role: str | None
    purpose: str
    currency: str
    balance_minor: int


def _accounts(conn: Connection) -> list[AccountInfo]:
    a, p = t.accounts, t.parties
    rows = conn.execute(
        select(a.c.account_id, a.c.code, a.c.party_id, p.c.role, a.c.purpose, a.c.currency,
               a.c.balance_minor)
        .select_from(a.outerjoin(p, p.c.party_id == a.c.party_id))
        .order_by(a.c.code))
    return [AccountInfo(r.account_id, r.code, r.party_id, r.role, r.purpose, r.currency,
                        int(r.balance_minor)) for r in rows]


def party_component(party_id: str) -> str:
    """A party id as a valid beancount account component (not yet made unique)."""
    text = re.sub(r"[^A-Za-z0-9-]", "-", party_id)
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text if _COMPONENT.match(text) else "X" + text


def account_names_for(accounts: list[AccountInfo]) -> dict[str, str]:
    """Account code -> beancount account name, one-to-one per (name, currency)."""
    parties = sorted({(a.role or "", a.party_id) for a in accounts if a.party_id},
                     key=lambda rp: rp[1])
    platforms = [pid for role, pid in parties if role == PartyRole.PLATFORM.value]
    prefix: dict[str, str] = {}
    used: dict[str, set[str]] = defaultdict(set)
    for role, party_id in parties:
        if role == PartyRole.PLATFORM.value:
            root = "Income:Platform"
            if len(platforms) == 1:
                prefix[party_id] = root
                continue
        else:
            root = f"Liabilities:Parties:{ROLE_COMPONENTS.get(role, 'Other')}"
        base = component = party_component(party_id)
        suffix = 2
        while component in used[root]:
            component, suffix = f"{base}-{suffix}", suffix + 1
        used[root].add(component)
        prefix[party_id] = f"{root}:{component}"
    names: dict[str, str] = {}
    for account in accounts:
        if account.party_id:
            names[account.code] = (f"{prefix[account.party_id]}:"
                                   f"{PURPOSE_COMPONENTS[account.purpose]}")
        else:
            names[account.code] = SYSTEM_ACCOUNT_NAMES.get(
                account.purpose, f"Equity:Other:{party_component(account.purpose)}")
    distinct = sorted(set(names.values()))
    for shorter, longer in zip(distinct, distinct[1:], strict=False):
        if longer.startswith(shorter + ":"):
            raise InvariantViolation(f"beancount account {shorter} would contain {longer}")
    return names


def beancount_account_names(ctx: Context) -> dict[str, str]:
    """Account code (``party:m1:pending:CNY``) -> beancount account name, as the export uses."""
    with _snapshot(ctx) as conn:
        return account_names_for(_accounts(conn))


# -- journal ---------------------------------------------------------------------------------

def _journal_rows(conn: Connection) -> Iterator[Any]:
    e, p = t.journal_entries, t.postings
    stmt = (select(e.c.seq, e.c.entry_id, e.c.kind, e.c.booked_at, e.c.order_id, e.c.payout_id,
                   e.c.statement_id, e.c.memo, p.c.account_id, p.c.currency, p.c.amount_minor)
            .select_from(e.join(p, p.c.entry_id == e.c.entry_id))
            .order_by(e.c.seq, p.c.posting_id))
    yield from conn.execute(stmt.execution_options(yield_per=2_000))


def _entries(conn: Connection) -> Iterator[tuple[Any, list[Any]]]:
    """(first row, rows) per journal entry, in booking order."""
    current: list[Any] = []
    for row in _journal_rows(conn):
        if current and row.seq != current[0].seq:
            yield current[0], current
            current = []
        current.append(row)
    if current:
        yield current[0], current


def _quote(text: str | None) -> str:
    clean = " ".join((text or "").split())
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class ExportStats:
    entries: int = 0
    postings: int = 0
    accounts: int = 0
    currencies: list[str] = field(default_factory=list)


def export_beancount(ctx: Context, out: TextIO, *, balance_assertions: bool = True
                     ) -> ExportStats:
    """Write the whole journal as a beancount file: options, an ``open`` per account dated on
    its first use, one transaction per entry (payee: the entry kind; narration: the memo;
    metadata: entry, order, payout and statement ids) and, unless told otherwise, a
    ``balance`` assertion per account and currency the day after the last entry, stating the
    stored balance, so that ``bean-check`` proves the journal and the stored balances agree."""
    stats = ExportStats()
    with _snapshot(ctx) as conn:
        accounts = _accounts(conn)
        names = account_names_for(accounts)
        by_id = {a.account_id: a for a in accounts}
        p = t.postings
        first_use = dict(conn.execute(select(p.c.account_id, func.min(p.c.booked_at))
                                      .group_by(p.c.account_id)).all())
        usage = conn.execute(select(p.c.currency, func.count()).group_by(p.c.currency)
                             .order_by(func.count().desc(), p.c.currency)).all()
        stats.currencies = [currency for currency, _ in usage]

        out.write('option "title" "splitledger journal"\n')
        for currency in stats.currencies or ["CNY"]:
            out.write(f'option "operating_currency" "{currency}"\n')
        out.write("\n")

        opened: dict[str, tuple[date, set[str], AccountInfo]] = {}
        for account in accounts:
            used_at = first_use.get(account.account_id)
            if used_at is None:
                continue
            name = names[account.code]
            day = _utc_date(used_at)
            if name in opened:
                earlier, currencies, info = opened[name]
                currencies.add(account.currency)
                opened[name] = (min(earlier, day), currencies, info)
            else:
                opened[name] = (day, {account.currency}, account)
        for name, (day, currencies, info) in sorted(opened.items(), key=lambda kv: (kv[1][0],
                                                                                     kv[0])):
            out.write(f"{day.isoformat()} open {name} {','.join(sorted(currencies))}\n")
            if info.party_id:
                out.write(f"  party_id: {_quote(info.party_id)}\n")
            out.write(f"  purpose: {_quote(info.purpose)}\n")
        stats.accounts = len(opened)
        out.write("\n")

        last_day: date | None = None
        for head, rows in _entries(conn):
            day = _utc_date(head.booked_at)
            last_day = day if last_day is None or day > last_day else last_day
            out.write(f"{day.isoformat()} * {_quote(head.kind)} {_quote(head.memo)}\n")
            out.write(f"  entry_id: {_quote(head.entry_id)}\n")
            out.write(f"  seq: {int(head.seq)}\n")
            out.write(f"  booked_at: {_quote(head.booked_at.isoformat())}\n")
            for key in ("order_id", "payout_id", "statement_id"):
                value = getattr(head, key)
                if value:
                    out.write(f"  {key}: {_quote(value)}\n")
            for row in rows:
                name = names[by_id[row.account_id].code]
                amount = format_amount(int(row.amount_minor), row.currency)
                out.write(f"  {name}  {amount} {row.currency}\n")
            out.write("\n")
            stats.entries += 1
            stats.postings += len(rows)

        if balance_assertions and last_day is not None:
            check_day = (last_day + timedelta(days=1)).isoformat()
            totals: dict[tuple[str, str], int] = defaultdict(int)
            for account in accounts:
                if account.account_id in first_use:
                    totals[(names[account.code], account.currency)] += account.balance_minor
            for (name, currency), amount in sorted(totals.items()):
                # "~ 0": exact, not beancount's default tolerance of one minor unit.
                out.write(f"{check_day} balance {name}  {format_amount(amount, currency)} "
                          f"~ {format_amount(0, currency)} {currency}\n")
    return stats


def export_csv(ctx: Context, out: TextIO) -> ExportStats:
    """One row per posting, in booking order: seq, entry_id, booked_at, kind, order_id, account
    code, party_id, purpose, currency, amount_minor (debit-positive) and amount (exact
    decimal in major units)."""
    stats = ExportStats()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    with _snapshot(ctx) as conn:
        by_id = {a.account_id: a for a in _accounts(conn)}
        currencies: set[str] = set()
        for head, rows in _entries(conn):
            for row in rows:
                account = by_id[row.account_id]
                writer.writerow([
                    int(head.seq), head.entry_id, head.booked_at.isoformat(), head.kind,
                    head.order_id or "", account.code, account.party_id or "", account.purpose,
                    row.currency, int(row.amount_minor),
                    format_amount(int(row.amount_minor), row.currency)])
                currencies.add(row.currency)
            stats.entries += 1
            stats.postings += len(rows)
        stats.accounts = len(by_id)
        stats.currencies = sorted(currencies)
    return stats


def _utc_date(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


# -- payouts and summary figures ---------------------------------------------------------------

PAYOUT_STATUSES = ("in_transit", "paid", "failed", "pending_approval", "held", "rejected")


def list_payouts(ctx: Context, *, status: str | None = None, party_id: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """Payouts, oldest first, optionally of one status and/or one party. Raises
    ValidationError for an unknown status."""
    if status is not None and status not in PAYOUT_STATUSES:
        raise ValidationError(f"payout status must be one of {', '.join(PAYOUT_STATUSES)}",
                              field="status")
    po = t.payouts
    stmt = select(po).order_by(po.c.created_at, po.c.party_id, po.c.currency, po.c.payout_id)
    if status is not None:
        stmt = stmt.where(po.c.status == status)
    if party_id is not None:
        stmt = stmt.where(po.c.party_id == party_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    with ctx.uow() as uow:
        return [{"payout_id": r.payout_id, "party_id": r.party_id, "currency": r.currency,
                 "amount_minor": int(r.amount_minor), "status": r.status,
                 "bank_masked": r.bank_masked, "value_date": r.value_date,
                 "created_at": r.created_at, "resolved_at": r.resolved_at,
                 "failure_reason": r.failure_reason, "statement_id": r.statement_id}
                for r in uow.conn.execute(stmt)]


SUMMARY_FIELDS = (
    "orders", "gmv_minor", "refunds", "refunded_minor", "chargebacks", "chargebacks_minor",
    "platform_net_minor", "subsidies_minor", "psp_fees_minor", "chargeback_losses_minor",
    "paid_out_minor", "in_transit_minor", "pending_minor", "available_minor", "debts_minor",
    "parties_in_debt", "debt_statements", "debts_incurred", "debts_recovered", "payouts",
    "payouts_failed",
    "clearing_minor",
)


def marketplace_summary(ctx: Context) -> dict[str, dict[str, int]]:
    """Per currency: orders and GMV captured, refunds and chargebacks (count and amount), the
    platform's net (its own accounts: commission less the PSP fees it bears, net of reversals),
    platform subsidies, PSP fees, chargeback losses, paid out, in transit, and what settling
    parties hold in pending, are owed in available, and owe as debts (negative available);
    statements that carried a debt; accounts that ever fell into debt (replayed from the
    journal) and those of them that are out of it again; payouts made and failed; and the
    clearing balance (money at the PSP)."""
    figures: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SUMMARY_FIELDS, 0))
    o, rv, po, st = t.orders, t.reversals, t.payouts, t.statements
    with ctx.uow() as uow:
        conn = uow.conn
        for currency, count, gmv in conn.execute(
                select(o.c.currency, func.count(), func.sum(o.c.captured_minor))
                .group_by(o.c.currency)):
            figures[currency]["orders"] = int(count)
            figures[currency]["gmv_minor"] = int(gmv or 0)
        for currency, kind, count, amount in conn.execute(
                select(o.c.currency, rv.c.kind, func.count(), func.sum(rv.c.amount_minor))
                .select_from(rv.join(o, o.c.order_id == rv.c.order_id))
                .group_by(o.c.currency, rv.c.kind)):
            if kind == "refund":
                figures[currency]["refunds"] += int(count)
                figures[currency]["refunded_minor"] += int(amount or 0)
            else:
                figures[currency]["chargebacks"] += int(count)
                figures[currency]["chargebacks_minor"] += int(amount or 0)
        for currency, status, count, amount in conn.execute(
                select(po.c.currency, po.c.status, func.count(), func.sum(po.c.amount_minor))
                .group_by(po.c.currency, po.c.status)):
            figures[currency]["payouts"] += int(count)
            if status == "paid":
                figures[currency]["paid_out_minor"] = int(amount or 0)
            elif status == "failed":
                figures[currency]["payouts_failed"] = int(count)
        for currency, count in conn.execute(
                select(st.c.currency, func.count()).where(st.c.carried_minor < 0)
                .group_by(st.c.currency)):
            figures[currency]["debt_statements"] = int(count)
        accounts = _accounts(conn)
        for account_id in _accounts_ever_in_debt(conn, accounts):
            account = next(a for a in accounts if a.account_id == account_id)
            figures[account.currency]["debts_incurred"] += 1
            if account.balance_minor <= 0:
                figures[account.currency]["debts_recovered"] += 1
        in_debt: set[tuple[str, str]] = set()
        for account in accounts:
            row = figures[account.currency]
            owed = -account.balance_minor
            if account.party_id is None:
                if account.purpose == Purpose.CLEARING.value:
                    row["clearing_minor"] += account.balance_minor
                elif account.purpose == Purpose.PSP_FEES.value:
                    row["psp_fees_minor"] += owed
                elif account.purpose == Purpose.PLATFORM_SUBSIDY.value:
                    row["subsidies_minor"] += account.balance_minor
                elif account.purpose == Purpose.CHARGEBACK_LOSSES.value:
                    row["chargeback_losses_minor"] += account.balance_minor
                continue
            if account.role == PartyRole.PLATFORM.value:
                row["platform_net_minor"] += owed
                continue
            if account.purpose == Purpose.IN_TRANSIT.value:
                row["in_transit_minor"] += owed
            elif account.role in {r.value for r in UNSETTLED_ROLES}:
                continue
            elif account.purpose == Purpose.PENDING.value:
                row["pending_minor"] += owed
            elif account.purpose == Purpose.AVAILABLE.value:
                if owed >= 0:
                    row["available_minor"] += owed
                else:
                    row["debts_minor"] += -owed
                    in_debt.add((account.party_id, account.currency))
        for _, currency in in_debt:
            figures[currency]["parties_in_debt"] += 1
    return {currency: figures[currency] for currency in sorted(figures)}


def _accounts_ever_in_debt(conn: Connection, accounts: list[AccountInfo]) -> list[int]:
    """Available accounts of settling parties whose running balance owed ever went below
    zero, replayed from the journal in booking order."""
    settling = [a.account_id for a in accounts if a.party_id
                and a.purpose == Purpose.AVAILABLE.value
                and a.role not in {r.value for r in UNSETTLED_ROLES}]
    if not settling:
        return []
    p, e = t.postings, t.journal_entries
    rows = conn.execute(
        select(p.c.account_id, p.c.amount_minor)
        .select_from(p.join(e, e.c.entry_id == p.c.entry_id))
        .where(p.c.account_id.in_(settling))
        .order_by(p.c.account_id, e.c.seq))
    owed: dict[int, int] = defaultdict(int)
    fell: list[int] = []
    for account_id, amount in rows:
        owed[account_id] -= int(amount)
        if owed[account_id] < 0 and (not fell or fell[-1] != account_id):
            fell.append(account_id)
    return fell
