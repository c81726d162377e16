"""Registering parties and their bank details."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from splitledger.domain.bank import BankDetails
from splitledger.domain.parties import Party
from splitledger.errors import DuplicateParty, UnknownParty
from splitledger.services import audit, fundsec, kyc
from splitledger.services.context import Context
from splitledger.services.idempotency import run_idempotent


def register_party(ctx: Context, party: Party, bank: BankDetails | None = None, *,
                   idempotency_key: str | None = None, verified: bool = False
                   ) -> dict[str, Any]:
    """Create a party (and store its bank details encrypted). Raises DuplicateParty.

    A new party's verification is pending: it is not paid out until verified (``services.kyc``).
    ``verified=True`` is for parties onboarded and checked elsewhere (the demo, imports): the
    party starts verified and its bank details approved, both recorded as done by the
    registering actor. The API never sets it."""
    request = {"party": asdict(party), "bank": bank.masked() if bank else None}
    if verified:
        request["verified"] = True

    def work(uow):  # type: ignore[no-untyped-def]
        if uow.repo.get_party(party.party_id) is not None:
            raise DuplicateParty(f"party {party.party_id!r} already exists",
                                 party_id=party.party_id)
        now = ctx.now()
        uow.repo.insert_party(party, now)
        masked = None
        if bank is not None:
            masked = _store_bank(ctx, uow, party.party_id, bank, preapproved=verified)
        if verified:
            kyc.mark_verified_at_registration(uow, ctx, party.party_id)
        result = {"party_id": party.party_id, "role": party.role.value, "bank_masked": masked}
        audit.record(uow, ctx, "party.create", "party", party.party_id,
                     after={**request["party"], "bank": masked,
                            "verification": "verified" if verified else "pending"})
        return result

    return run_idempotent(ctx, "register_party", idempotency_key, request, work)


def set_bank_details(ctx: Context, party_id: str, bank: BankDetails) -> str:
    """Replace a party's bank details; returns the masked form. Raises UnknownParty."""
    with ctx.uow() as uow:
        if uow.repo.get_party(party_id) is None:
            raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
        before = uow.repo.party_bank_row(party_id).bank_masked
        masked = _store_bank(ctx, uow, party_id, bank)
        audit.record(uow, ctx, "party.bank_details", "party", party_id,
                     before={"bank": before}, after={"bank": masked})
        uow.commit()
        return masked


def _store_bank(ctx: Context, uow: Any, party_id: str, bank: BankDetails, *,
                preapproved: bool = False) -> str:
    key_id, blob = ctx.cipher.encrypt(bank.to_bytes(), associated=party_id)
    masked = bank.masked()
    uow.repo.set_bank_details(party_id, key_id, blob, masked, ctx.now())
    # Who changed them: new details are paid to only after the cooling-off or a second
    # person's approval (services.fundsec).
    fundsec.record_bank_change(uow, ctx, party_id, masked, preapproved=preapproved)
    return masked


def reveal_bank_details(ctx: Context, party_id: str) -> BankDetails | None:
    """Decrypt for a payout rail. Never log or display the result; show ``masked()``."""
    with ctx.uow() as uow:
        row = uow.repo.party_bank_row(party_id)
    if row is None:
        raise UnknownParty(f"unknown party {party_id!r}", party_id=party_id)
    if row.bank_ciphertext is None:
        return None
    return BankDetails.from_bytes(ctx.cipher.decrypt(row.bank_key_id, row.bank_ciphertext,
                                                     associated=party_id))
