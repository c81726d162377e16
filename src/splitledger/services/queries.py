"""Read models for the API and console, each scoped to one party when asked to be.

``party`` is the caller's scope: ``None`` for platform staff, else the one party whose data may
be returned. Scoping happens in the query itself, not after it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, select

from splitledger.domain.ledger import PARTY_PURPOSES
from splitledger.domain.parties import Party
from splitledger.errors import NotFound, UnknownOrder, UnknownParty
from splitledger.services.context import Context
from splitledger.store import tables as t


def party_view(party: Party, bank_masked: str | None) -> dict[str, Any]:
    return {"party_id": party.party_id, "name": party.name, "role": party.role.value,
            "tier": party.tier, "currencies": list(party.currencies),
            "payout_frequency": party.payout_frequency.value,
            "payout_delay_days": party.payout_delay_days,
            "min_payout_minor": dict(party.min_payout_minor), "hold_days": party.hold_days,
            "parent_party_id": party.parent_party_id, "bank_masked": bank_masked}


def list_parties(ctx: Context, party: str | None, after: str | None, limit: int
                 ) -> list[dict[str, Any]]:
    from splitledger.store.repository import party_from_row
    stmt = select(t.parties).order_by(t.parties.c.party_id).limit(limit)
    if after is not None:
        stmt = stmt.where(t.parties.c.party_id > after)
    if party is not None:
        stmt = stmt.where(t.parties.c.party_id == party)
    with ctx.uow() as uow:
        return [party_view(party_from_row(row), row.bank_masked)
                for row in uow.conn.execute(stmt)]


def get_party(ctx: Context, party_id: str) -> dict[str, Any]:
    with ctx.uow() as uow:
        party = uow.repo.get_party(party_id)
        if party is None:
            raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
        bank = uow.repo.party_bank_row(party_id)
    return party_view(party, bank.bank_masked if bank else None)


def balances(ctx: Context, party_id: str) -> list[dict[str, Any]]:
    """What is owed to the party per currency: pending, available (negative: a debt) and in
    transit."""
    get_party(ctx, party_id)
    with ctx.uow() as uow:
        rows = uow.repo.balances_of_party(party_id)
    result: dict[str, dict[str, Any]] = {}
    for purpose, currency, balance in rows:
        if purpose in {p.value for p in PARTY_PURPOSES}:
            entry = result.setdefault(currency, {"currency": currency, "pending_minor": 0,
                                                 "available_minor": 0, "in_transit_minor": 0})
            entry[f"{purpose}_minor"] = -balance
    for entry in result.values():
        entry["debt_minor"] = max(0, -entry["available_minor"])
    return [result[c] for c in sorted(result)]


def _order_visible(party: str | None):  # type: ignore[no-untyped-def]
    if party is None:
        return True
    sa = t.split_allocations
    return exists().where(and_(sa.c.order_id == t.orders.c.order_id, sa.c.party_id == party))


def list_orders(ctx: Context, party: str | None, after: str | None, limit: int
                ) -> list[dict[str, Any]]:
    o = t.orders
    stmt = (select(o.c.order_id, o.c.currency, o.c.captured_minor, o.c.captured_at,
                   o.c.hold_until, o.c.released_at, o.c.refunded_minor,
                   o.c.other_reversed_minor, o.c.policy_version)
            .where(_order_visible(party)).order_by(o.c.order_id).limit(limit))
    if after is not None:
        stmt = stmt.where(o.c.order_id > after)
    with ctx.uow() as uow:
        return [_order_summary(row, party) for row in uow.conn.execute(stmt)]


def _order_summary(row: Any, party: str | None) -> dict[str, Any]:
    summary = {"order_id": row.order_id, "currency": row.currency,
               "captured_at": row.captured_at.isoformat(),
               "hold_until": row.hold_until.isoformat(),
               "released_at": row.released_at.isoformat() if row.released_at else None,
               "policy_version": row.policy_version}
    if party is None:  # amounts of the whole order are the platform's business
        summary.update(captured_minor=row.captured_minor,
                       refunded_minor=row.refunded_minor + row.other_reversed_minor)
    return summary


def get_order(ctx: Context, order_id: str, party: str | None) -> dict[str, Any]:
    """The order with its split plan and reversals. A party sees only its own amounts and
    lines; an order it has no share in does not exist for it."""
    with ctx.uow() as uow:
        row = uow.conn.execute(select(t.orders).where(t.orders.c.order_id == order_id,
                                                      _order_visible(party))).first()
        if row is None:
            raise UnknownOrder(f"unknown order {order_id!r}", order_id=order_id)
        plan = uow.repo.get_plan(row)
        reversals = uow.conn.execute(select(t.reversals).where(
            t.reversals.c.order_id == order_id).order_by(t.reversals.c.created_at)).all()
    allocations = [a._asdict() | {"kind": a.kind.value} for a in plan.allocations
                   if party is None or a.party_id == party]
    own_lines = {a["line_id"] for a in allocations}
    lines = [line for line in row.body["lines"] if party is None or line["line_id"] in own_lines]
    view = _order_summary(row, party) | {"lines": lines, "allocations": allocations}
    if party is None:
        view["reversals"] = [{"reversal_id": r.reversal_id, "kind": r.kind, "policy": r.policy,
                              "amount_minor": r.amount_minor, "reason": r.reason,
                              "created_at": r.created_at.isoformat()} for r in reversals]
    return view


def get_statement(ctx: Context, statement_id: str, party: str | None) -> dict[str, Any]:
    with ctx.uow() as uow:
        stmt = select(t.statements).where(t.statements.c.statement_id == statement_id)
        if party is not None:
            stmt = stmt.where(t.statements.c.party_id == party)
        row = uow.conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"unknown statement {statement_id!r}")
    return _statement_view(row) | {"lines": row.lines}


def _statement_view(row: Any) -> dict[str, Any]:
    return {"statement_id": row.statement_id, "party_id": row.party_id,
            "currency": row.currency, "period_start": row.period_start.isoformat(),
            "period_end": row.period_end.isoformat(), "opening_minor": row.opening_minor,
            "closing_minor": row.closing_minor, "payout_minor": row.payout_minor,
            "carried_minor": row.carried_minor, "note": row.note}


def list_statements(ctx: Context, party: str | None, after: str | None, limit: int
                    ) -> list[dict[str, Any]]:
    s = t.statements
    stmt = select(s).order_by(s.c.statement_id).limit(limit)
    if after is not None:
        stmt = stmt.where(s.c.statement_id > after)
    if party is not None:
        stmt = stmt.where(s.c.party_id == party)
    with ctx.uow() as uow:
        return [_statement_view(row) for row in uow.conn.execute(stmt)]


def _payout_view(row: Any) -> dict[str, Any]:
    return {"payout_id": row.payout_id, "party_id": row.party_id, "currency": row.currency,
            "amount_minor": row.amount_minor, "statement_id": row.statement_id,
            "status": row.status, "bank_masked": row.bank_masked,
            "value_date": row.value_date.isoformat(), "created_at": row.created_at.isoformat(),
            "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
            "failure_reason": row.failure_reason}


def list_payouts(ctx: Context, party: str | None, after: str | None, limit: int,
                 status: str | None = None) -> list[dict[str, Any]]:
    p = t.payouts
    stmt = select(p).order_by(p.c.payout_id).limit(limit)
    if after is not None:
        stmt = stmt.where(p.c.payout_id > after)
    if party is not None:
        stmt = stmt.where(p.c.party_id == party)
    if status is not None:
        stmt = stmt.where(p.c.status == status)
    with ctx.uow() as uow:
        return [_payout_view(row) for row in uow.conn.execute(stmt)]


def get_payout(ctx: Context, payout_id: str, party: str | None) -> dict[str, Any]:
    stmt = select(t.payouts).where(t.payouts.c.payout_id == payout_id)
    if party is not None:
        stmt = stmt.where(t.payouts.c.party_id == party)
    with ctx.uow() as uow:
        row = uow.conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"unknown payout {payout_id!r}")
    return _payout_view(row)


def list_entries(ctx: Context, party: str | None, after: int | None, limit: int
                 ) -> list[dict[str, Any]]:
    """Journal entries in booking order, with their postings; a party sees only the entries
    that touch its own accounts, and only its own postings in them."""
    e, p, a = t.journal_entries, t.postings, t.accounts
    stmt = select(e).order_by(e.c.seq).limit(limit)
    if after is not None:
        stmt = stmt.where(e.c.seq > after)
    if party is not None:
        stmt = stmt.where(exists().where(and_(
            p.c.entry_id == e.c.entry_id, a.c.account_id == p.c.account_id,
            a.c.party_id == party)))
    with ctx.uow() as uow:
        entries = uow.conn.execute(stmt).all()
        ids = [row.entry_id for row in entries]
        posting_stmt = (select(p.c.entry_id, a.c.code, a.c.party_id, p.c.currency,
                               p.c.amount_minor)
                        .select_from(p.join(a, a.c.account_id == p.c.account_id))
                        .where(p.c.entry_id.in_(ids)).order_by(p.c.posting_id))
        if party is not None:
            posting_stmt = posting_stmt.where(a.c.party_id == party)
        postings: dict[str, list[dict[str, Any]]] = {}
        for row in uow.conn.execute(posting_stmt):
            postings.setdefault(row.entry_id, []).append(
                {"account": row.code, "currency": row.currency,
                 "amount_minor": row.amount_minor})
    return [{"seq": row.seq, "entry_id": row.entry_id, "kind": row.kind,
             "booked_at": row.booked_at.isoformat(), "order_id": row.order_id,
             "payout_id": row.payout_id, "memo": row.memo,
             "postings": postings.get(row.entry_id, [])} for row in entries]
