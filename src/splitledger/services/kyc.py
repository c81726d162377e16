"""Party verification (KYC): submitting an identity, reviewing it, and what that does to payouts.

The identity is encrypted at rest (associated data ``kyc:<party_id>``) and stored beside its
masked form, which is all any response or audit record shows. A review decision is recorded
with the reviewer and the time. Verifying needs a second person: not the one who submitted the
identity. Leaving ``verified`` (suspension, rejection, a new identity to review) holds the
party's unsent payouts in the same transaction; verifying again releases them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from splitledger.domain.kyc import (
    KycDetails,
    KycStatus,
    ReviewDecision,
    status_after_review,
    status_after_submission,
)
from splitledger.errors import ApprovalRequired, InvalidState, UnknownParty, ValidationError
from splitledger.services import audit, fundsec, webhooks
from splitledger.services.context import Context, UnitOfWork
from splitledger.store import tables as t


def _associated(party_id: str) -> str:
    return f"kyc:{party_id}"


def _view(party_id: str, row: Any) -> dict[str, Any]:
    if row is None:
        return {"party_id": party_id, "status": KycStatus.PENDING.value, "details": None,
                "submitted_by": None, "submitted_at": None, "reviewed_by": None,
                "reviewed_at": None, "review_note": None}
    return {"party_id": party_id, "status": row.status, "details": row.details_masked,
            "submitted_by": row.submitted_by,
            "submitted_at": row.submitted_at.isoformat() if row.submitted_at else None,
            "reviewed_by": row.reviewed_by,
            "reviewed_at": row.reviewed_at.isoformat() if row.reviewed_at else None,
            "review_note": row.review_note}


def _row(uow: UnitOfWork, party_id: str, *, lock: bool = False) -> Any:
    pv = t.party_verifications
    stmt = select(pv).where(pv.c.party_id == party_id)
    if lock and uow.repo.dialect == "postgresql":
        stmt = stmt.with_for_update()
    return uow.conn.execute(stmt).first()


def _locked_row(ctx: Context, uow: UnitOfWork, party_id: str) -> Any:
    """The party's verification record, created pending if missing, locked for the change."""
    if uow.repo.get_party(party_id) is None:
        raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
    make = pg_insert if uow.repo.dialect == "postgresql" else sqlite_insert
    uow.conn.execute(make(t.party_verifications).values(
        party_id=party_id, status=KycStatus.PENDING.value, updated_at=ctx.now())
        .on_conflict_do_nothing())
    return _row(uow, party_id, lock=True)


def get_verification(ctx: Context, party_id: str) -> dict[str, Any]:
    """Status and masked identity. Raises UnknownParty."""
    with ctx.uow() as uow:
        if uow.repo.get_party(party_id) is None:
            raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
        return _view(party_id, _row(uow, party_id))


def _status_changed(uow: UnitOfWork, ctx: Context, party_id: str, before: KycStatus,
                    after: KycStatus, reason: str) -> None:
    if before is after:
        return
    if after is KycStatus.VERIFIED:
        fundsec.release_party_payouts(uow, ctx, party_id)
    elif before is KycStatus.VERIFIED:
        fundsec.hold_party_payouts(uow, ctx, party_id, reason)
    webhooks.emit(uow, ctx, "party.verification",
                  {"party_id": party_id, "status": after.value, "previous": before.value})


def submit_kyc(ctx: Context, party_id: str, details: KycDetails) -> dict[str, Any]:
    """Store the party's identity (encrypted) for review. The party is pending again (a
    suspended one stays suspended); a verified party's unsent payouts are held until the new
    identity is verified. Raises UnknownParty."""
    with ctx.uow() as uow:
        row = _locked_row(ctx, uow, party_id)
        before = KycStatus(row.status)
        after = status_after_submission(before)
        key_id, blob = ctx.cipher.encrypt(details.to_bytes(), associated=_associated(party_id))
        now = ctx.now()
        masked = details.masked()
        uow.conn.execute(update(t.party_verifications).where(
            t.party_verifications.c.party_id == party_id).values(
            status=after.value, details_ciphertext=blob, details_key_id=key_id,
            details_masked=masked, submitted_by=ctx.actor, submitted_at=now, updated_at=now))
        audit.record(uow, ctx, "party.kyc_submit", "party", party_id,
                     before={"status": before.value, "details": row.details_masked},
                     after={"status": after.value, "details": masked})
        _status_changed(uow, ctx, party_id, before, after, "new identity details to review")
        view = _view(party_id, _row(uow, party_id))
        uow.commit()
    return view


def review_kyc(ctx: Context, party_id: str, decision: ReviewDecision, note: str = ""
               ) -> dict[str, Any]:
    """Verify, reject or suspend the party; the reviewer (``ctx.actor``) and time are recorded.

    Verifying needs submitted identity details (or, to reinstate a suspended party, a past
    verification) and a reviewer other than the person who submitted them. Raises
    UnknownParty, InvalidState, ApprovalRequired, ValidationError."""
    if len(note) > 1000:
        raise ValidationError("a review note must be at most 1000 characters", field="note")
    with ctx.uow() as uow:
        row = _locked_row(ctx, uow, party_id)
        before = KycStatus(row.status)
        after = status_after_review(before, decision)
        if decision is ReviewDecision.VERIFY and before is KycStatus.PENDING:
            if row.details_ciphertext is None:
                raise InvalidState(f"party {party_id} has submitted no identity details to "
                                   "verify", party_id=party_id)
            if row.submitted_by == ctx.actor:
                raise ApprovalRequired("identity details must be verified by someone other than "
                                       "the person who submitted them",
                                       submitted_by=row.submitted_by)
        if decision is not ReviewDecision.VERIFY and not note.strip():
            raise ValidationError(f"say why ({decision.value} needs a note)", field="note")
        now = ctx.now()
        uow.conn.execute(update(t.party_verifications).where(
            t.party_verifications.c.party_id == party_id).values(
            status=after.value, reviewed_by=ctx.actor, reviewed_at=now, review_note=note,
            updated_at=now))
        audit.record(uow, ctx, f"party.kyc_{decision.value}", "party", party_id,
                     before={"status": before.value},
                     after={"status": after.value, "note": note})
        _status_changed(uow, ctx, party_id, before, after,
                        f"party {after.value}" + (f": {note}" if note else ""))
        view = _view(party_id, _row(uow, party_id))
        uow.commit()
    return view


def mark_verified_at_registration(uow: UnitOfWork, ctx: Context, party_id: str) -> None:
    """For ``register_party(verified=True)``: a party onboarded and checked elsewhere (the
    demo, imports of existing sellers) starts verified, reviewed by the registering actor."""
    now = ctx.now()
    uow.conn.execute(insert(t.party_verifications).values(
        party_id=party_id, status=KycStatus.VERIFIED.value, reviewed_by=ctx.actor,
        reviewed_at=now, review_note="verified at registration", updated_at=now))


def reveal_kyc(ctx: Context, party_id: str) -> KycDetails | None:
    """Decrypt the identity for a reviewer's tool. Never log or return it over the API."""
    with ctx.uow() as uow:
        row = _row(uow, party_id)
    if row is None or row.details_ciphertext is None:
        return None
    return KycDetails.from_bytes(ctx.cipher.decrypt(row.details_key_id, row.details_ciphertext,
                                                    associated=_associated(party_id)))
