"""Reads and writes of one transaction. Every method runs on the connection it was given;
committing is the unit of work's business."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from splitledger.domain.ledger import AccountRef, JournalEntry, Purpose
from splitledger.domain.orders import Order
from splitledger.domain.parties import Party, PartyRole, PayoutFrequency
from splitledger.domain.split import Allocation, ShareKind, SplitPlan, Target
from splitledger.store import tables as t


def party_from_row(row: Any) -> Party:
    return Party(
        party_id=row.party_id, name=row.name, role=PartyRole(row.role), tier=row.tier,
        currencies=tuple(row.currencies), payout_frequency=PayoutFrequency(row.payout_frequency),
        payout_delay_days=row.payout_delay_days, min_payout_minor=dict(row.min_payout),
        hold_days=row.hold_days, parent_party_id=row.parent_party_id)


class Repository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    def _insert_ignore(self, table: t.Table, rows: list[dict[str, Any]]) -> None:
        make = pg_insert if self.dialect == "postgresql" else sqlite_insert
        self.conn.execute(make(table).on_conflict_do_nothing(), rows)

    def _for_update(self, stmt: Any) -> Any:
        # SQLite serialises writers with BEGIN IMMEDIATE; FOR UPDATE is for PostgreSQL.
        return stmt.with_for_update() if self.dialect == "postgresql" else stmt

    # -- parties -------------------------------------------------------------------------------
    def insert_party(self, party: Party, now: datetime) -> None:
        self.conn.execute(insert(t.parties).values(
            party_id=party.party_id, name=party.name, role=party.role.value, tier=party.tier,
            currencies=list(party.currencies), payout_frequency=party.payout_frequency.value,
            payout_delay_days=party.payout_delay_days, min_payout=dict(party.min_payout_minor),
            hold_days=party.hold_days, parent_party_id=party.parent_party_id, created_at=now))

    def get_party(self, party_id: str) -> Party | None:
        row = self.conn.execute(select(t.parties).where(t.parties.c.party_id == party_id)).first()
        return party_from_row(row) if row else None

    def get_parties(self, party_ids: Iterable[str]) -> dict[str, Party]:
        ids = sorted(set(party_ids))
        rows = self.conn.execute(select(t.parties).where(t.parties.c.party_id.in_(ids)))
        return {row.party_id: party_from_row(row) for row in rows}

    def list_parties(self, role: PartyRole | None = None) -> list[Party]:
        stmt = select(t.parties).order_by(t.parties.c.party_id)
        if role:
            stmt = stmt.where(t.parties.c.role == role.value)
        return [party_from_row(row) for row in self.conn.execute(stmt)]

    def party_bank_row(self, party_id: str) -> Any:
        return self.conn.execute(select(
            t.parties.c.bank_ciphertext, t.parties.c.bank_key_id, t.parties.c.bank_masked,
            t.parties.c.bank_updated_at).where(t.parties.c.party_id == party_id)).first()

    def set_bank_details(self, party_id: str, key_id: str, blob: bytes, masked: str,
                         now: datetime) -> None:
        self.conn.execute(update(t.parties).where(t.parties.c.party_id == party_id).values(
            bank_ciphertext=blob, bank_key_id=key_id, bank_masked=masked, bank_updated_at=now))

    # -- accounts and postings -----------------------------------------------------------------
    def account_ids(self, refs: Iterable[AccountRef]) -> dict[AccountRef, int]:
        """Ids of the accounts, creating the missing ones (safe under concurrency)."""
        by_code = {str(ref): ref for ref in refs}
        found = self._account_rows(by_code)
        missing = [ref for code, ref in by_code.items() if code not in found]
        if missing:
            self._insert_ignore(t.accounts, [
                {"code": str(ref), "party_id": ref.party_id, "purpose": ref.purpose.value,
                 "currency": ref.currency, "balance_minor": 0} for ref in missing])
            found = self._account_rows(by_code)
        return {ref: found[code] for code, ref in by_code.items()}

    def _account_rows(self, by_code: dict[str, AccountRef]) -> dict[str, int]:
        rows = self.conn.execute(select(t.accounts.c.code, t.accounts.c.account_id)
                                 .where(t.accounts.c.code.in_(list(by_code))))
        return {row.code: row.account_id for row in rows}

    def post(self, entry: JournalEntry) -> None:
        """Write a balanced entry and move the stored balances in the same transaction.

        Postings first, then the header that seals them (the database checks the balance).
        Balances are updated in account-id order, so concurrent entries lock rows in one
        order and cannot deadlock on each other.
        """
        ids = self.account_ids(p.account for p in entry.postings)
        self.conn.execute(insert(t.postings), [
            {"entry_id": entry.entry_id, "account_id": ids[p.account],
             "currency": p.account.currency, "amount_minor": p.amount_minor,
             "booked_at": entry.booked_at} for p in entry.postings])
        self.conn.execute(insert(t.journal_entries).values(
            entry_id=entry.entry_id, kind=entry.kind.value, booked_at=entry.booked_at,
            order_id=entry.order_id, payout_id=entry.payout_id, statement_id=entry.statement_id,
            reverses_entry_id=entry.reverses_entry_id, memo=entry.memo,
            posting_count=len(entry.postings)))
        deltas: dict[int, int] = {}
        for posting in entry.postings:
            account_id = ids[posting.account]
            deltas[account_id] = deltas.get(account_id, 0) + posting.amount_minor
        for account_id in sorted(deltas):
            self.conn.execute(
                update(t.accounts).where(t.accounts.c.account_id == account_id)
                .values(balance_minor=t.accounts.c.balance_minor + deltas[account_id],
                        updated_at=entry.booked_at))

    def lock_accounts(self, refs: Iterable[AccountRef]) -> None:
        """Lock the accounts (creating missing ones) in account-id order, the order ``post``
        updates balances in. A transaction that posts several entries calls this first, so
        that it never holds one account while waiting for another that a writer of a single
        entry holds. (SQLite serialises writers; nothing to lock there.)

        The lock is FOR NO KEY UPDATE, the one a balance update takes: FOR UPDATE would also
        block the key-share locks that other writers' postings take on their accounts (the
        foreign key check), and those are taken in posting order, not in account-id order.
        """
        ids = sorted(self.account_ids(sorted(set(refs), key=str)).values())
        if ids and self.dialect == "postgresql":
            self.conn.execute(select(t.accounts.c.account_id)
                              .where(t.accounts.c.account_id.in_(ids))
                              .order_by(t.accounts.c.account_id)
                              .with_for_update(key_share=True))

    def balance(self, ref: AccountRef, *, lock: bool = False) -> int:
        """Raw (debit-positive) stored balance; 0 for an account never used."""
        stmt = select(t.accounts.c.balance_minor).where(t.accounts.c.code == str(ref))
        value = self.conn.execute(self._for_update(stmt) if lock else stmt).scalar()
        return int(value or 0)

    def balance_as_of(self, ref: AccountRef, moment: datetime) -> int:
        """Raw balance from the journal: every posting booked strictly before ``moment``."""
        stmt = (select(func.coalesce(func.sum(t.postings.c.amount_minor), 0))
                .select_from(t.postings.join(t.accounts,
                                             t.accounts.c.account_id == t.postings.c.account_id))
                .where(t.accounts.c.code == str(ref), t.postings.c.booked_at < moment))
        return int(self.conn.execute(stmt).scalar_one())

    def account_movements(self, ref: AccountRef, start: datetime, end: datetime) -> list[Any]:
        """Postings to one account booked in [start, end), with their entries, in order."""
        p, e, a = t.postings, t.journal_entries, t.accounts
        stmt = (select(e.c.entry_id, e.c.kind, e.c.booked_at, e.c.order_id, e.c.memo,
                       p.c.amount_minor, e.c.seq)
                .select_from(p.join(a, a.c.account_id == p.c.account_id)
                             .join(e, e.c.entry_id == p.c.entry_id))
                .where(a.c.code == str(ref), p.c.booked_at >= start, p.c.booked_at < end)
                .order_by(e.c.seq))
        return list(self.conn.execute(stmt))

    def balances_of_party(self, party_id: str) -> list[Any]:
        return list(self.conn.execute(
            select(t.accounts.c.purpose, t.accounts.c.currency, t.accounts.c.balance_minor)
            .where(t.accounts.c.party_id == party_id)
            .order_by(t.accounts.c.currency, t.accounts.c.purpose)))

    # -- orders --------------------------------------------------------------------------------
    def order_exists(self, order_id: str) -> bool:
        stmt = select(t.orders.c.order_id).where(t.orders.c.order_id == order_id)
        return self.conn.execute(stmt).first() is not None

    def insert_order(self, *, body: dict[str, Any], plan: SplitPlan, captured_at: datetime,
                     hold_until: datetime, psp_fee_minor: int, merchant_ids: Sequence[str],
                     entry_id: str) -> None:
        self.conn.execute(insert(t.orders).values(
            order_id=plan.order_id, currency=plan.currency, captured_minor=plan.total_minor,
            psp_fee_minor=psp_fee_minor, captured_at=captured_at, hold_until=hold_until,
            refunded_minor=0, other_reversed_minor=0, policy_version=plan.policy_version,
            capture_entry_id=entry_id, merchant_ids=list(merchant_ids), body=body))
        self.conn.execute(insert(t.split_allocations), [
            {"order_id": plan.order_id, "seq": seq, "party_id": a.party_id, "kind": a.kind.value,
             "amount_minor": a.amount_minor, "rule_id": a.rule_id, "line_id": a.line_id,
             "basis": a.basis, "basis_minor": a.basis_minor, "rate_bps": a.rate_bps,
             "explanation": a.explanation} for seq, a in enumerate(plan.allocations)])

    def insert_order_merchants(self, order: Order) -> None:
        gmv: dict[str, int] = {}
        for line in order.lines:
            gmv[line.merchant_id] = gmv.get(line.merchant_id, 0) + line.merchant_basis_minor
        self.conn.execute(insert(t.order_merchants), [
            {"order_id": order.order_id, "merchant_id": merchant_id, "currency": order.currency,
             "captured_at": order.captured_at, "gmv_minor": amount}
            for merchant_id, amount in sorted(gmv.items())])

    def get_order(self, order_id: str, *, lock: bool = False) -> Any:
        stmt = select(t.orders).where(t.orders.c.order_id == order_id)
        return self.conn.execute(self._for_update(stmt) if lock else stmt).first()

    def get_plan(self, order_row: Any) -> SplitPlan:
        rows = self.conn.execute(select(t.split_allocations)
                                 .where(t.split_allocations.c.order_id == order_row.order_id)
                                 .order_by(t.split_allocations.c.seq))
        allocations = tuple(
            Allocation(r.party_id, ShareKind(r.kind), r.amount_minor, r.rule_id, r.line_id,
                       r.basis, r.basis_minor, r.rate_bps, r.explanation) for r in rows)
        return SplitPlan(order_row.order_id, order_row.currency, order_row.captured_minor,
                         order_row.policy_version, allocations)

    def update_order(self, order_id: str, **values: Any) -> None:
        self.conn.execute(update(t.orders).where(t.orders.c.order_id == order_id).values(**values))

    def due_order_ids(self, now: datetime, limit: int) -> list[str]:
        stmt = (select(t.orders.c.order_id)
                .where(t.orders.c.released_at.is_(None), t.orders.c.hold_until <= now)
                .order_by(t.orders.c.hold_until, t.orders.c.order_id).limit(limit))
        return list(self.conn.execute(stmt).scalars())

    def insert_reversal(self, **values: Any) -> None:
        self.conn.execute(insert(t.reversals).values(**values))

    # -- settlement and payouts ----------------------------------------------------------------
    def last_statement_end(self, party_id: str, currency: str) -> datetime | None:
        return self.conn.execute(
            select(func.max(t.statements.c.period_end))
            .where(t.statements.c.party_id == party_id, t.statements.c.currency == currency)
        ).scalar()

    def statement_exists(self, party_id: str, currency: str, period_end: datetime) -> bool:
        return self.conn.execute(select(t.statements.c.statement_id).where(and_(
            t.statements.c.party_id == party_id, t.statements.c.currency == currency,
            t.statements.c.period_end == period_end))).first() is not None

    def insert_statement(self, **values: Any) -> None:
        self.conn.execute(insert(t.statements).values(**values))

    def insert_payout(self, **values: Any) -> None:
        self.conn.execute(insert(t.payouts).values(**values))

    def get_payout(self, payout_id: str, *, lock: bool = False) -> Any:
        stmt = select(t.payouts).where(t.payouts.c.payout_id == payout_id)
        return self.conn.execute(self._for_update(stmt) if lock else stmt).first()

    def update_payout(self, payout_id: str, **values: Any) -> None:
        self.conn.execute(update(t.payouts).where(t.payouts.c.payout_id == payout_id)
                          .values(**values))

    def party_currencies_with_accounts(self, party_id: str) -> list[str]:
        stmt = (select(t.accounts.c.currency).distinct()
                .where(t.accounts.c.party_id == party_id,
                       t.accounts.c.purpose == Purpose.AVAILABLE.value)
                .order_by(t.accounts.c.currency))
        return list(self.conn.execute(stmt).scalars())

    # -- idempotency ---------------------------------------------------------------------------
    def get_idempotency(self, scope: str, key: str) -> Any:
        return self.conn.execute(select(t.idempotency_keys).where(
            t.idempotency_keys.c.scope == scope, t.idempotency_keys.c.key == key)).first()

    def insert_idempotency(self, scope: str, key: str, request_hash: str,
                           response: dict[str, Any], now: datetime) -> None:
        self.conn.execute(insert(t.idempotency_keys).values(
            scope=scope, key=key, request_hash=request_hash, response=response, created_at=now))


def target_of(allocation_row: Any) -> Target:
    return Allocation(allocation_row.party_id, ShareKind(allocation_row.kind), 0, "").target
