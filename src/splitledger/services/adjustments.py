"""Manual adjustments to what a party is owed, under four-eyes control.

One person requests (party, currency, signed amount, reason); nothing is booked. A second,
different person approves: the adjustment is booked on the party's available account against
the platform's ``adjustments`` account, in the same transaction as the approval and its audit
record. Or rejects it, and nothing is ever booked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from splitledger.domain.ledger import EntryKind, JournalEntry
from splitledger.domain.lifecycle import adjustment_postings
from splitledger.domain.money import check_currency, check_minor
from splitledger.errors import (
    ApprovalRequired,
    CurrencyMismatch,
    InvalidAmount,
    InvalidState,
    NotFound,
    UnknownParty,
    ValidationError,
)
from splitledger.services import audit
from splitledger.services.context import Context, UnitOfWork
from splitledger.services.orders import new_id
from splitledger.store import tables as t

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
MAX_ADJUSTMENT_MINOR = 10**13


def _view(row: Any) -> dict[str, Any]:
    return {"adjustment_id": row.adjustment_id, "party_id": row.party_id,
            "currency": row.currency, "amount_minor": row.amount_minor, "reason": row.reason,
            "status": row.status, "requested_by": row.requested_by,
            "requested_at": row.requested_at.isoformat(), "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            "entry_id": row.entry_id}


def request_adjustment(ctx: Context, party_id: str, currency: str, amount_minor: int,
                       reason: str) -> dict[str, Any]:
    """Raises InvalidAmount, UnknownCurrency, CurrencyMismatch, UnknownParty, ValidationError."""
    check_currency(currency)
    if check_minor(amount_minor) == 0 or abs(amount_minor) > MAX_ADJUSTMENT_MINOR:
        raise InvalidAmount(f"an adjustment must be non-zero and at most "
                            f"{MAX_ADJUSTMENT_MINOR} minor units", field="amount_minor")
    if not reason.strip():
        raise ValidationError("an adjustment needs a reason", field="reason")
    with ctx.uow() as uow:
        party = uow.repo.get_party(party_id)
        if party is None:
            raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
        if currency not in party.currencies:
            raise CurrencyMismatch(f"party {party_id} is not paid in {currency}",
                                   party_id=party_id, currency=currency)
        adjustment_id = new_id()
        uow.conn.execute(insert(t.adjustments).values(
            adjustment_id=adjustment_id, party_id=party_id, currency=currency,
            amount_minor=amount_minor, reason=reason, status=PENDING, requested_by=ctx.actor,
            requested_at=ctx.now()))
        row = _get(uow, adjustment_id)
        audit.record(uow, ctx, "adjustment.request", "adjustment", adjustment_id,
                     after=_view(row))
        uow.commit()
    return _view(row)


def approve_adjustment(ctx: Context, adjustment_id: str) -> dict[str, Any]:
    """Book it. Raises NotFound, InvalidState (decided already), ApprovalRequired (same
    person as the requester)."""
    with ctx.uow() as uow:
        row = _pending(uow, adjustment_id)
        if row.requested_by == ctx.actor:
            raise ApprovalRequired("the person who requested an adjustment cannot approve it")
        now = ctx.now()
        entry = JournalEntry(new_id(), EntryKind.ADJUSTMENT, now,
                             adjustment_postings(row.party_id, row.currency, row.amount_minor),
                             memo=f"adjustment {adjustment_id}: {row.reason}")
        uow.repo.post(entry)
        uow.conn.execute(update(t.adjustments)
                         .where(t.adjustments.c.adjustment_id == adjustment_id)
                         .values(status=APPROVED, decided_by=ctx.actor, decided_at=now,
                                 entry_id=entry.entry_id))
        audit.record(uow, ctx, "adjustment.approve", "adjustment", adjustment_id,
                     before={"status": PENDING},
                     after={"status": APPROVED, "entry_id": entry.entry_id})
        result = _view(_get(uow, adjustment_id))
        uow.commit()
    return result


def reject_adjustment(ctx: Context, adjustment_id: str) -> dict[str, Any]:
    with ctx.uow() as uow:
        _pending(uow, adjustment_id)
        uow.conn.execute(update(t.adjustments)
                         .where(t.adjustments.c.adjustment_id == adjustment_id)
                         .values(status=REJECTED, decided_by=ctx.actor, decided_at=ctx.now()))
        audit.record(uow, ctx, "adjustment.reject", "adjustment", adjustment_id,
                     before={"status": PENDING}, after={"status": REJECTED})
        result = _view(_get(uow, adjustment_id))
        uow.commit()
    return result


def list_adjustments(ctx: Context, after: str | None, limit: int,
                     status: str | None = None) -> list[dict[str, Any]]:
    stmt = select(t.adjustments).order_by(t.adjustments.c.adjustment_id).limit(limit)
    if after is not None:
        stmt = stmt.where(t.adjustments.c.adjustment_id > after)
    if status is not None:
        stmt = stmt.where(t.adjustments.c.status == status)
    with ctx.uow() as uow:
        return [_view(row) for row in uow.conn.execute(stmt)]


def get_adjustment(ctx: Context, adjustment_id: str) -> dict[str, Any]:
    with ctx.uow() as uow:
        row = _get(uow, adjustment_id)
    if row is None:
        raise NotFound(f"unknown adjustment {adjustment_id!r}")
    return _view(row)


def _get(uow: UnitOfWork, adjustment_id: str, lock: bool = False) -> Any:
    stmt = select(t.adjustments).where(t.adjustments.c.adjustment_id == adjustment_id)
    if lock and uow.repo.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return uow.conn.execute(stmt).first()


def _pending(uow: UnitOfWork, adjustment_id: str) -> Any:
    row = _get(uow, adjustment_id, lock=True)
    if row is None:
        raise NotFound(f"unknown adjustment {adjustment_id!r}")
    if row.status != PENDING:
        raise InvalidState(f"adjustment {adjustment_id} is already {row.status}",
                           status=row.status)
    return row
