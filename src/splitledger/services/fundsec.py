"""Fund security: who may be paid, to which bank details, and which payouts need a second
person.

A settlement makes a payout only for a verified party (see ``services.kyc``) whose bank
details have been stable for ``bank_cooling_off_hours`` or were approved by a second person;
otherwise the statement is made, the balance is carried forward and the statement's note says
why. A payout above ``payout_approval_thresholds[currency]`` is created ``pending_approval``:
its money leaves ``available`` for ``in_transit`` as for any payout, but the bank rail may not
send it until someone other than the person who started the settlement run approves it;
rejecting it returns the money to ``available``. When a party stops being verified
(suspension, rejection, a new identity to review), its payouts not yet sent are ``held``: the
status changes, the money stays in ``in_transit``, and reinstatement puts each payout back in
the status it had. Every step is in the audit log and emits a webhook event.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select, update

from splitledger.domain.bank import BankDetails
from splitledger.domain.fundsec import (
    HOLDABLE,
    SENDABLE,
    PayoutState,
    bank_stability,
    needs_payout_approval,
)
from splitledger.domain.kyc import KycStatus
from splitledger.domain.ledger import EntryKind, JournalEntry
from splitledger.domain.lifecycle import payout_failed_postings
from splitledger.errors import (
    ApprovalRequired,
    Conflict,
    InvalidState,
    UnknownParty,
    UnknownPayout,
    ValidationError,
)
from splitledger.services import audit, webhooks
from splitledger.services.context import Context, UnitOfWork
from splitledger.services.orders import new_id
from splitledger.store import tables as t

# -- verification status ------------------------------------------------------------------------


def kyc_status(uow: UnitOfWork, party_id: str, *, lock: bool = False) -> KycStatus:
    """The party's verification status (no record: pending). ``lock`` takes a share lock on
    PostgreSQL, so that a settlement and a suspension of the same party serialise."""
    pv = t.party_verifications
    stmt = select(pv.c.status).where(pv.c.party_id == party_id)
    if lock and uow.repo.dialect == "postgresql":
        stmt = stmt.with_for_update(read=True)
    value = uow.conn.execute(stmt).scalar()
    return KycStatus(value) if value else KycStatus.PENDING


# -- bank details: changes, cooling-off, approval -----------------------------------------------

def record_bank_change(uow: UnitOfWork, ctx: Context, party_id: str, masked: str, *,
                       preapproved: bool = False) -> None:
    """Called wherever bank details are stored: who changed them, when."""
    now = ctx.now()
    values: dict[str, Any] = {"party_id": party_id, "bank_masked": masked,
                              "changed_by": ctx.actor, "changed_at": now}
    if preapproved:
        values.update(approved_by=ctx.actor, approved_at=now,
                      note="approved with the registration of an already verified party")
    uow.conn.execute(insert(t.bank_detail_changes).values(**values))


def _latest_change(uow: UnitOfWork, party_id: str, *, lock: bool = False) -> Any:
    c = t.bank_detail_changes
    stmt = (select(c).where(c.c.party_id == party_id).order_by(c.c.change_id.desc()).limit(1))
    if lock and uow.repo.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return uow.conn.execute(stmt).first()


def _bank_view(ctx: Context, uow: UnitOfWork, party_id: str, *, lock: bool = False
               ) -> dict[str, Any]:
    bank = uow.repo.party_bank_row(party_id)
    if bank is None:
        raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
    if bank.bank_ciphertext is None:
        return {"party_id": party_id, "bank_masked": None, "change_id": None,
                "changed_by": None, "changed_at": None, "approved_by": None,
                "approved_at": None, "cooling_off_until": None, "payable": False}
    change = _latest_change(uow, party_id, lock=lock)
    approved = change is not None and change.approved_at is not None
    cooling_off = timedelta(hours=ctx.settings.bank_cooling_off_hours)
    stability = bank_stability(bank.bank_updated_at, approved, ctx.now(), cooling_off)
    return {"party_id": party_id, "bank_masked": bank.bank_masked,
            "change_id": change.change_id if change else None,
            "changed_by": change.changed_by if change else None,
            "changed_at": bank.bank_updated_at.isoformat(),
            "approved_by": change.approved_by if approved else None,
            "approved_at": change.approved_at.isoformat() if approved else None,
            "cooling_off_until": stability.cooling_off_until.isoformat(),
            "payable": stability.payable}


def bank_status(ctx: Context, party_id: str) -> dict[str, Any]:
    """The party's bank details (masked), who changed them and whether they may be paid to
    now. Raises UnknownParty."""
    with ctx.uow() as uow:
        return _bank_view(ctx, uow, party_id)


def approve_bank_details(ctx: Context, party_id: str, *, change_id: int | None = None
                         ) -> dict[str, Any]:
    """A second person approves the party's current bank details, so that they may be paid to
    before the cooling-off ends. ``change_id``, when given, must name the current details (an
    approval never covers details changed after the approver looked). Approving twice changes
    nothing. Raises UnknownParty, InvalidState (no details), Conflict (changed since),
    ApprovalRequired (the approver entered the details)."""
    with ctx.uow() as uow:
        change = _latest_change(uow, party_id, lock=True)
        view = _bank_view(ctx, uow, party_id)
        if view["bank_masked"] is None or change is None:
            raise InvalidState(f"party {party_id} has no bank details change to approve",
                               party_id=party_id)
        if change_id is not None and change_id != change.change_id:
            raise Conflict(f"the bank details of {party_id} changed since change {change_id}; "
                           "review the current ones", change_id=change.change_id)
        if change.approved_at is not None:
            return view | {"changed": False}
        if change.changed_by == ctx.actor:
            raise ApprovalRequired("bank details must be approved by someone other than the "
                                   "person who entered them", changed_by=change.changed_by)
        now = ctx.now()
        uow.conn.execute(update(t.bank_detail_changes).where(
            t.bank_detail_changes.c.change_id == change.change_id)
            .values(approved_by=ctx.actor, approved_at=now))
        audit.record(uow, ctx, "party.bank_details_approve", "party", party_id,
                     before={"bank": change.bank_masked, "changed_by": change.changed_by},
                     after={"approved_by": ctx.actor, "change_id": change.change_id})
        view = _bank_view(ctx, uow, party_id)
        uow.commit()
    return view | {"changed": True}


def payout_block_reason(ctx: Context, uow: UnitOfWork, party_id: str) -> str | None:
    """Why the party may not be paid now (a statement note), or None. Called by settlement
    inside its transaction, with the party's available account already locked."""
    status = kyc_status(uow, party_id, lock=True)
    if status is not KycStatus.VERIFIED:
        return (f"party verification is {status.value}: no payout until it is verified; "
                "balance carried forward")
    bank = _bank_view(ctx, uow, party_id)
    if not bank["payable"]:
        return (f"bank details changed at {bank['changed_at']} are in their cooling-off period "
                f"until {bank['cooling_off_until']} and no second person approved them: "
                "balance carried forward")
    return None


# -- four-eyes payouts --------------------------------------------------------------------------

def initial_payout_status(ctx: Context, currency: str, amount_minor: int
                          ) -> tuple[str, int | None]:
    """``pending_approval`` (with the threshold) above the configured amount, else
    ``in_transit``."""
    thresholds = ctx.settings.payout_approval_thresholds
    if needs_payout_approval(amount_minor, currency, thresholds):
        return PayoutState.PENDING_APPROVAL, thresholds[currency]
    return PayoutState.IN_TRANSIT, None


def record_new_payout(uow: UnitOfWork, ctx: Context, *, payout_id: str, party_id: str,
                      currency: str, amount_minor: int, status: str, threshold: int | None,
                      statement_id: str) -> None:
    """Called by settlement right after it made a payout: who started the run, whether a
    second person must approve it, which bank details it is for; and the ``payout.created``
    event."""
    change = _latest_change(uow, party_id)
    uow.conn.execute(insert(t.payout_controls).values(
        payout_id=payout_id, started_by=ctx.actor,
        needs_approval=status == PayoutState.PENDING_APPROVAL, threshold_minor=threshold,
        bank_change_id=change.change_id if change else None))
    webhooks.emit(uow, ctx, "payout.created", {
        "payout_id": payout_id, "party_id": party_id, "currency": currency,
        "amount_minor": amount_minor, "status": status, "statement_id": statement_id})


def bank_details_for_payout(ctx: Context, payout_id: str) -> BankDetails:
    """What the bank rail sends a payout to: the party's bank details, decrypted, but only for a
    sendable payout and only if they are still the details the payout was made for. Details
    changed since then have not been through the cooling-off or approval for this payout: the
    rail must not send it, but record it failed (the money returns to available and the next
    settlement pays it to the new details once they are payable). Raises UnknownPayout,
    InvalidState. Never log or display the result."""
    with ctx.uow() as uow:
        row = uow.repo.get_payout(payout_id)
        if row is None:
            raise UnknownPayout(f"unknown payout {payout_id!r}", payout_id=payout_id)
        if row.status not in SENDABLE:
            raise InvalidState(f"payout {payout_id} is {row.status}: the bank may not send it",
                               payout_id=payout_id, status=row.status)
        controls = _controls(uow, payout_id)
        change = _latest_change(uow, row.party_id)
        current = change.change_id if change else None
        if controls is not None and controls.bank_change_id != current:
            raise InvalidState(f"the bank details of {row.party_id} changed after payout "
                               f"{payout_id} was made; record it failed and settle again",
                               payout_id=payout_id)
        bank = uow.repo.party_bank_row(row.party_id)
    if bank is None or bank.bank_ciphertext is None:
        raise InvalidState(f"party {row.party_id} has no bank details", payout_id=payout_id)
    return BankDetails.from_bytes(ctx.cipher.decrypt(bank.bank_key_id, bank.bank_ciphertext,
                                                     associated=row.party_id))


def _controls(uow: UnitOfWork, payout_id: str) -> Any:
    return uow.conn.execute(select(t.payout_controls).where(
        t.payout_controls.c.payout_id == payout_id)).first()


def _locked_payout(uow: UnitOfWork, payout_id: str) -> Any:
    row = uow.repo.get_payout(payout_id, lock=True)
    if row is None:
        raise UnknownPayout(f"unknown payout {payout_id!r}", payout_id=payout_id)
    return row


def _event(row: Any, status: str, **extra: Any) -> dict[str, Any]:
    return {"payout_id": row.payout_id, "party_id": row.party_id, "currency": row.currency,
            "amount_minor": row.amount_minor, "status": status, **extra}


def approve_payout(ctx: Context, payout_id: str) -> dict[str, Any]:
    """The second person lets a payout above the threshold go: ``pending_approval`` ->
    ``in_transit`` (sendable). Approving an approved payout again changes nothing. Raises
    UnknownPayout, InvalidState, ApprovalRequired (the approver started the settlement run)."""
    with ctx.uow() as uow:
        row = _locked_payout(uow, payout_id)
        controls = _controls(uow, payout_id)
        if row.status != PayoutState.PENDING_APPROVAL:
            if controls is not None and controls.decision == "approved":
                return {"payout_id": payout_id, "status": row.status, "changed": False}
            raise InvalidState(f"payout {payout_id} is {row.status}, not awaiting approval",
                               payout_id=payout_id, status=row.status)
        if controls is None or controls.started_by == ctx.actor:
            raise ApprovalRequired("a payout above the approval threshold must be approved by "
                                   "someone other than the person who started the settlement "
                                   "run", started_by=controls.started_by if controls else None)
        now = ctx.now()
        uow.repo.update_payout(payout_id, status=PayoutState.IN_TRANSIT)
        uow.conn.execute(update(t.payout_controls).where(
            t.payout_controls.c.payout_id == payout_id)
            .values(decision="approved", decided_by=ctx.actor, decided_at=now))
        audit.record(uow, ctx, "payout.approve", "payout", payout_id,
                     before={"status": row.status, "started_by": controls.started_by},
                     after={"status": PayoutState.IN_TRANSIT, "approved_by": ctx.actor})
        webhooks.emit(uow, ctx, "payout.approved",
                      _event(row, PayoutState.IN_TRANSIT, approved_by=ctx.actor))
        uow.commit()
    return {"payout_id": payout_id, "status": PayoutState.IN_TRANSIT, "changed": True}


def reject_payout(ctx: Context, payout_id: str, reason: str) -> dict[str, Any]:
    """Refuse a payout awaiting approval (or a held one): it becomes ``rejected`` and its money
    returns to ``available``, to be settled again later. Rejecting is the safe direction: any
    approver may do it, the starter of the run included. Raises UnknownPayout, InvalidState,
    ValidationError (no reason)."""
    if not reason.strip():
        raise ValidationError("a rejected payout needs a reason", field="reason")
    with ctx.uow() as uow:
        row = _locked_payout(uow, payout_id)
        if row.status == PayoutState.REJECTED:
            return {"payout_id": payout_id, "status": row.status, "changed": False}
        if row.status not in (PayoutState.PENDING_APPROVAL, PayoutState.HELD):
            raise InvalidState(f"payout {payout_id} is {row.status}; only a payout awaiting "
                               "approval or held can be rejected", payout_id=payout_id,
                               status=row.status)
        now = ctx.now()
        uow.repo.post(JournalEntry(
            new_id(), EntryKind.PAYOUT_FAILED, now,
            payout_failed_postings(row.party_id, row.currency, row.amount_minor),
            payout_id=payout_id, memo=f"payout {payout_id} rejected: {reason}"))
        uow.repo.update_payout(payout_id, status=PayoutState.REJECTED, resolved_at=now,
                               failure_reason=reason)
        _ensure_controls(uow, payout_id)
        uow.conn.execute(update(t.payout_controls).where(
            t.payout_controls.c.payout_id == payout_id)
            .values(decision="rejected", decided_by=ctx.actor, decided_at=now,
                    decision_reason=reason))
        audit.record(uow, ctx, "payout.reject", "payout", payout_id,
                     before={"status": row.status},
                     after={"status": PayoutState.REJECTED, "reason": reason})
        webhooks.emit(uow, ctx, "payout.rejected",
                      _event(row, PayoutState.REJECTED, reason=reason))
        uow.commit()
    return {"payout_id": payout_id, "status": PayoutState.REJECTED, "changed": True}


def payout_controls(ctx: Context, payout_id: str) -> dict[str, Any] | None:
    with ctx.uow() as uow:
        row = _controls(uow, payout_id)
    if row is None:
        return None
    return {"payout_id": row.payout_id, "started_by": row.started_by,
            "needs_approval": bool(row.needs_approval), "threshold_minor": row.threshold_minor,
            "decision": row.decision, "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            "decision_reason": row.decision_reason, "held_from": row.held_from,
            "held_at": row.held_at.isoformat() if row.held_at else None,
            "held_reason": row.held_reason}


# -- holds --------------------------------------------------------------------------------------

def _ensure_controls(uow: UnitOfWork, payout_id: str) -> None:
    """Payouts made before migration 0004 have no controls row yet."""
    if _controls(uow, payout_id) is None:
        uow.conn.execute(insert(t.payout_controls).values(
            payout_id=payout_id, started_by="(unrecorded)", needs_approval=False))


def _party_payouts(uow: UnitOfWork, party_id: str, statuses: set[str] | frozenset[str]
                   ) -> list[Any]:
    p = t.payouts
    stmt = (select(p).where(p.c.party_id == party_id, p.c.status.in_(sorted(statuses)))
            .order_by(p.c.payout_id))
    if uow.repo.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return uow.conn.execute(stmt).all()


def hold_party_payouts(uow: UnitOfWork, ctx: Context, party_id: str, reason: str) -> list[str]:
    """Hold every payout of the party that the bank has not been allowed to send yet, or may
    still be sending (``in_transit``, ``pending_approval``). The money stays in in_transit."""
    now = ctx.now()
    held = []
    for row in _party_payouts(uow, party_id, HOLDABLE):
        _ensure_controls(uow, row.payout_id)
        uow.repo.update_payout(row.payout_id, status=PayoutState.HELD)
        uow.conn.execute(update(t.payout_controls).where(
            t.payout_controls.c.payout_id == row.payout_id)
            .values(held_from=row.status, held_at=now, held_reason=reason))
        audit.record(uow, ctx, "payout.hold", "payout", row.payout_id,
                     before={"status": row.status},
                     after={"status": PayoutState.HELD, "reason": reason})
        webhooks.emit(uow, ctx, "payout.held", _event(row, PayoutState.HELD, reason=reason))
        held.append(row.payout_id)
    return held


def release_party_payouts(uow: UnitOfWork, ctx: Context, party_id: str) -> list[str]:
    """Reinstatement: every held payout of the party returns to the status it was held from."""
    released = []
    for row in _party_payouts(uow, party_id, {PayoutState.HELD}):
        controls = _controls(uow, row.payout_id)
        status = (controls.held_from if controls is not None and controls.held_from
                  else PayoutState.IN_TRANSIT)
        uow.repo.update_payout(row.payout_id, status=status)
        uow.conn.execute(update(t.payout_controls).where(
            t.payout_controls.c.payout_id == row.payout_id)
            .values(held_from=None, held_at=None, held_reason=None))
        audit.record(uow, ctx, "payout.release", "payout", row.payout_id,
                     before={"status": PayoutState.HELD}, after={"status": status})
        webhooks.emit(uow, ctx, "payout.released", _event(row, status))
        released.append(row.payout_id)
    return released
