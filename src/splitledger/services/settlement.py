"""Settlement runs and payouts.

A run closes one period for every party whose payout schedule ends a period then. Each
(party, currency) is settled in its own transaction: the party's available account is locked,
a statement already made for that period means "done", and the unique index on
(party, currency, period_end) is the last word if two runs race. A run killed half-way is
simply run again: the parties already settled are skipped, the others are settled once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from splitledger.domain.ledger import EntryKind, JournalEntry, Purpose, party_account
from splitledger.domain.lifecycle import (
    payout_failed_postings,
    payout_paid_postings,
    payout_postings,
)
from splitledger.domain.parties import Party
from splitledger.domain.settlement import (
    StatementLine,
    build_statement,
    period_closes_at,
    period_start_for,
)
from splitledger.errors import (
    InvalidState,
    InvariantViolation,
    UnknownParty,
    UnknownPayout,
    ValidationError,
)
from splitledger.services import audit, fundsec, webhooks
from splitledger.services.context import Context, UnitOfWork
from splitledger.services.orders import new_id


class PayoutStatus:
    IN_TRANSIT = "in_transit"   # the only status the bank rail may send (see services.fundsec)
    PAID = "paid"
    FAILED = "failed"
    PENDING_APPROVAL = "pending_approval"  # above the four-eyes threshold: not sendable yet
    HELD = "held"               # the party is not verified any more: not sendable
    REJECTED = "rejected"       # refused at approval: the money went back to available


@dataclass
class SettlementRun:
    """What a run did: statements made, payouts created, parties skipped and why."""

    period_end: datetime
    statements: int = 0
    payouts: int = 0
    paid_out_minor: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def run_settlement(ctx: Context, period_end: datetime, *, party_ids: list[str] | None = None,
                   ignore_schedule: bool = False, progress: Any = None) -> SettlementRun:
    """Settle every settling party whose schedule closes a period at ``period_end``.

    Raises ValidationError (a period without a time zone, or one that has not ended)."""
    if period_end.utcoffset() is None:
        raise ValidationError("period_end needs a time zone (for example 2026-11-09T00:00:00Z)",
                              field="period_end")
    if period_end > ctx.now():
        raise ValidationError("cannot settle a period that has not ended yet", field="period_end")
    with ctx.uow() as uow:
        parties = [p for p in uow.repo.list_parties() if p.settles
                   and (party_ids is None or p.party_id in party_ids)
                   and (ignore_schedule or period_closes_at(p.payout_frequency, period_end))]
        work = [(p, c) for p in parties
                for c in uow.repo.party_currencies_with_accounts(p.party_id)]
    run = SettlementRun(period_end)
    for party, currency in work:
        outcome = settle_party(ctx, party, currency, period_end)
        if outcome["status"] == "settled":
            run.statements += 1
            if outcome["payout_minor"]:
                run.payouts += 1
                run.paid_out_minor[currency] = (run.paid_out_minor.get(currency, 0)
                                                + outcome["payout_minor"])
        else:
            run.skipped.append((party.party_id, currency, outcome["status"]))
        if progress is not None:
            progress()
    return run


def settle_party(ctx: Context, party: Party, currency: str, period_end: datetime
                 ) -> dict[str, Any]:
    """Make the party's statement for the period ending ``period_end`` and its payout.

    Returns ``status`` "settled", "already_settled" or "period_covered" (a later period was
    settled already).
    """
    try:
        with ctx.uow() as uow:
            result = _settle_locked(ctx, uow, party, currency, period_end)
            uow.commit()
            return result
    except IntegrityError:
        # Another run committed this statement between our check and our insert.
        with ctx.uow() as uow:
            if uow.repo.statement_exists(party.party_id, currency, period_end):
                return {"status": "already_settled", "payout_minor": 0}
        raise


def _settle_locked(ctx: Context, uow: UnitOfWork, party: Party, currency: str,
                   period_end: datetime) -> dict[str, Any]:
    available = party_account(party.party_id, Purpose.AVAILABLE, currency)
    owed_now = -uow.repo.balance(available, lock=True)  # serialises runs for this party
    if uow.repo.statement_exists(party.party_id, currency, period_end):
        return {"status": "already_settled", "payout_minor": 0}
    start = (uow.repo.last_statement_end(party.party_id, currency)
             or period_start_for(party.payout_frequency, period_end))
    if start >= period_end:
        return {"status": "period_covered", "payout_minor": 0}
    opening = -uow.repo.balance_as_of(available, start)
    closing = -uow.repo.balance_as_of(available, period_end)
    lines = tuple(
        StatementLine(m.entry_id, m.kind, m.booked_at, -m.amount_minor, m.order_id, m.memo)
        for m in uow.repo.account_movements(available, start, period_end))
    statement = build_statement(party.party_id, currency, start, period_end, opening, lines,
                                closing, owed_now, party.min_payout(currency))
    bank = uow.repo.party_bank_row(party.party_id)
    payout_minor, note = statement.payout_minor, ""
    if payout_minor and (bank is None or bank.bank_ciphertext is None):
        payout_minor, note = 0, "no bank details on file: balance carried forward"
    elif payout_minor and (blocked := fundsec.payout_block_reason(ctx, uow, party.party_id)):
        payout_minor, note = 0, blocked  # not verified, or bank details cooling off
    elif statement.closing_minor > 0 and not payout_minor:
        note = "below the minimum payout: balance carried forward"
    elif statement.closing_minor < 0:
        note = "debt carried forward, recovered from later earnings"
    now = ctx.now()
    statement_id = new_id()
    uow.repo.insert_statement(
        statement_id=statement_id, party_id=party.party_id, currency=currency,
        period_start=start, period_end=period_end, opening_minor=opening,
        closing_minor=closing, payout_minor=payout_minor,
        carried_minor=closing - payout_minor, note=note, created_at=now,
        lines=[{"entry_id": line.entry_id, "kind": line.kind, "order_id": line.order_id,
                "booked_at": line.booked_at.isoformat(), "amount_minor": line.amount_minor,
                "memo": line.memo} for line in lines])
    payout_id = None
    if payout_minor:
        payout_id = new_id()
        status, threshold = fundsec.initial_payout_status(ctx, currency, payout_minor)
        uow.repo.insert_payout(
            payout_id=payout_id, party_id=party.party_id, currency=currency,
            amount_minor=payout_minor, statement_id=statement_id,
            status=status, bank_masked=bank.bank_masked,
            value_date=period_end + timedelta(days=party.payout_delay_days), created_at=now)
        uow.repo.post(JournalEntry(
            new_id(), EntryKind.PAYOUT, now,
            payout_postings(party.party_id, currency, payout_minor), payout_id=payout_id,
            statement_id=statement_id, memo=f"payout to {party.party_id} for period ending "
                                            f"{period_end.date().isoformat()}"))
        if -uow.repo.balance(available) < 0:
            raise InvariantViolation(f"payout would overdraw {party.party_id}")
        fundsec.record_new_payout(uow, ctx, payout_id=payout_id, party_id=party.party_id,
                                  currency=currency, amount_minor=payout_minor, status=status,
                                  threshold=threshold, statement_id=statement_id)
    audit.record(uow, ctx, "settlement.statement", "statement", statement_id,
                 after={"party_id": party.party_id, "currency": currency,
                        "period_end": period_end.isoformat(), "closing_minor": closing,
                        "payout_id": payout_id, "payout_minor": payout_minor})
    webhooks.emit(uow, ctx, "statement.created", {
        "statement_id": statement_id, "party_id": party.party_id, "currency": currency,
        "period_start": start.isoformat(), "period_end": period_end.isoformat(),
        "opening_minor": opening, "closing_minor": closing, "payout_minor": payout_minor,
        "carried_minor": closing - payout_minor, "payout_id": payout_id, "note": note})
    return {"status": "settled", "statement_id": statement_id, "payout_id": payout_id,
            "payout_minor": payout_minor, "closing_minor": closing}


def _resolve_payout(ctx: Context, payout_id: str, status: str, reason: str | None
                    ) -> dict[str, Any]:
    with ctx.uow() as uow:
        row = uow.repo.get_payout(payout_id, lock=True)
        if row is None:
            raise UnknownPayout(f"unknown payout {payout_id!r}", payout_id=payout_id)
        if row.status == status:  # the bank told us twice: same answer, nothing changes
            return {"payout_id": payout_id, "status": status, "changed": False}
        if row.status != PayoutStatus.IN_TRANSIT:  # only a sendable payout has an answer
            raise InvalidState(f"payout {payout_id} is {row.status}, not in transit",
                               payout_id=payout_id, status=row.status)
        now = ctx.now()
        make = payout_paid_postings if status == PayoutStatus.PAID else payout_failed_postings
        kind = EntryKind.PAYOUT_PAID if status == PayoutStatus.PAID else EntryKind.PAYOUT_FAILED
        uow.repo.post(JournalEntry(new_id(), kind, now,
                                   make(row.party_id, row.currency, row.amount_minor),
                                   payout_id=payout_id,
                                   memo=f"payout {payout_id} {status}"
                                        + (f": {reason}" if reason else "")))
        uow.repo.update_payout(payout_id, status=status, resolved_at=now, failure_reason=reason)
        audit.record(uow, ctx, f"payout.{status}", "payout", payout_id,
                     before={"status": row.status}, after={"status": status, "reason": reason})
        webhooks.emit(uow, ctx, f"payout.{status}", {
            "payout_id": payout_id, "party_id": row.party_id, "currency": row.currency,
            "amount_minor": row.amount_minor, "status": status, "reason": reason})
        uow.commit()
        return {"payout_id": payout_id, "status": status, "changed": True}


def mark_payout_paid(ctx: Context, payout_id: str) -> dict[str, Any]:
    """The bank confirmed the payout. Raises UnknownPayout, InvalidState (already failed)."""
    return _resolve_payout(ctx, payout_id, PayoutStatus.PAID, None)


def mark_payout_failed(ctx: Context, payout_id: str, reason: str) -> dict[str, Any]:
    """The bank returned the payout: the money goes back to available and is paid with the
    next statement. Raises UnknownPayout, InvalidState (already paid)."""
    if not reason.strip():
        raise ValidationError("a failed payout needs a reason", field="reason")
    return _resolve_payout(ctx, payout_id, PayoutStatus.FAILED, reason)


def party_or_error(ctx: Context, party_id: str) -> Party:
    with ctx.uow() as uow:
        party = uow.repo.get_party(party_id)
    if party is None:
        raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
    return party
