"""Fund security: party verification (KYC), bank details approval, four-eyes payouts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import READ, ActingContext, check_party_visible, require
from splitledger.domain.access import Permission, Principal
from splitledger.domain.kyc import EntityType, IdDocumentType, KycDetails, ReviewDecision
from splitledger.errors import Forbidden
from splitledger.services import fundsec, kyc, queries

router = APIRouter(tags=["fund security"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


# -- party verification -------------------------------------------------------------------------

class KycIn(BaseModel):
    entity_type: EntityType
    legal_name: str = Field(min_length=1, max_length=200)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166 alpha-2")
    id_document_type: IdDocumentType
    id_document_number: str = Field(min_length=3, max_length=64)
    registration_number: str = Field("", max_length=64,
                                     description="business licence / registration number; "
                                                 "required for companies")
    legal_representative: str = Field("", max_length=200)

    def domain(self) -> KycDetails:
        return KycDetails(self.entity_type, self.legal_name, self.country,
                          self.id_document_type, self.id_document_number,
                          self.registration_number, self.legal_representative)


class KycMasked(BaseModel):
    entity_type: str
    legal_name: str = Field(description="a person's name is shown by its initials")
    country: str
    registration_number: str = Field(description="masked: last characters only")
    id_document_type: str
    id_document_number: str = Field(description="masked: last characters only")
    legal_representative: str


class KycOut(BaseModel):
    party_id: str
    status: str = Field(description="pending, verified, rejected or suspended")
    details: KycMasked | None
    submitted_by: str | None
    submitted_at: str | None
    reviewed_by: str | None
    reviewed_at: str | None
    review_note: str | None


class ReviewIn(BaseModel):
    decision: ReviewDecision
    note: str = Field("", max_length=1000, description="required to reject or suspend")


@router.get("/v1/parties/{party_id}/kyc", response_model=KycOut)
def get_kyc(party_id: str, ctx: ActingContext, principal: Principal = require(*READ)) -> Any:
    """The party's verification status and its identity, masked."""
    check_party_visible(principal, party_id)
    return kyc.get_verification(ctx, party_id)


@router.put("/v1/parties/{party_id}/kyc", response_model=KycOut)
def submit_kyc(party_id: str, body: KycIn, ctx: ActingContext,
               principal: Principal = require(Permission.WRITE_PARTIES,
                                              Permission.WRITE_OWN_BANK)) -> Any:
    """Submit the party's identity for review (staff with write:parties, or the party itself,
    which maintains its payout identity with write:own_bank). The party is pending until a
    reviewer verifies it, and is not paid out meanwhile."""
    if not principal.can(Permission.WRITE_PARTIES):
        check_party_visible(principal, party_id)
        if principal.party_id != party_id:
            raise Forbidden("not allowed to submit this party's identity")
    return kyc.submit_kyc(ctx, party_id, body.domain())


@router.post("/v1/parties/{party_id}/kyc/review", response_model=KycOut)
def review_kyc(party_id: str, body: ReviewIn, ctx: ActingContext,
               idempotency_key: IdempotencyKey = None,
               principal: Principal = require(Permission.REVIEW_PARTIES)) -> Any:
    """Verify, reject or suspend the party. Verifying needs a reviewer other than the submitter
    (409 ``approval_required``); suspending holds the party's unsent payouts at once, and
    verifying a suspended party releases them."""
    def produce(key: str | None) -> tuple[int, Any]:
        return 200, kyc.review_kyc(ctx, party_id, body.decision, body.note)
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/parties/{party_id}/kyc/review",
                               body.model_dump(mode="json"), produce)


# -- bank details -------------------------------------------------------------------------------

class BankStatusOut(BaseModel):
    party_id: str
    bank_masked: str | None
    change_id: int | None = Field(description="the current details' change; name it to "
                                              "approve exactly these")
    changed_by: str | None
    changed_at: str | None
    approved_by: str | None
    approved_at: str | None
    cooling_off_until: str | None = Field(description="payable from then without approval")
    payable: bool = Field(description="a payout may go to these details now")


class BankApproveIn(BaseModel):
    change_id: int | None = Field(None, ge=1, description="refuse if the details changed "
                                                         "since this change")


class BankApprovedOut(BankStatusOut):
    changed: bool = Field(description="false when they were approved already")


@router.get("/v1/parties/{party_id}/bank-details", response_model=BankStatusOut)
def get_bank_status(party_id: str, ctx: ActingContext,
                    principal: Principal = require(*READ)) -> Any:
    """The bank details (masked), who changed them, and whether a payout may go to them yet."""
    check_party_visible(principal, party_id)
    return fundsec.bank_status(ctx, party_id)


@router.post("/v1/parties/{party_id}/bank-details/approve", response_model=BankApprovedOut)
def approve_bank_details(party_id: str, body: BankApproveIn, ctx: ActingContext,
                         idempotency_key: IdempotencyKey = None,
                         principal: Principal = require(Permission.APPROVE)) -> Any:
    """A second person approves the current bank details, so that payouts need not wait for
    the cooling-off period; not the person who entered them (409 ``approval_required``)."""
    def produce(key: str | None) -> tuple[int, Any]:
        return 200, fundsec.approve_bank_details(ctx, party_id, change_id=body.change_id)
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/parties/{party_id}/bank-details/approve",
                               body.model_dump(mode="json"), produce)


# -- four-eyes payouts --------------------------------------------------------------------------

class PayoutControlsOut(BaseModel):
    payout_id: str
    party_id: str
    currency: str
    amount_minor: int
    status: str = Field(description="in_transit (sendable), pending_approval, held, paid, "
                                    "failed or rejected")
    started_by: str | None = Field(description="who started the settlement run")
    needs_approval: bool
    threshold_minor: int | None
    decision: str | None = Field(description="approved or rejected")
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    held_from: str | None
    held_at: str | None
    held_reason: str | None


class PayoutDecisionOut(PayoutControlsOut):
    changed: bool


class RejectIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


def _controls_view(ctx: Any, payout_id: str, party: str | None) -> dict[str, Any]:
    payout = queries.get_payout(ctx, payout_id, party)
    controls = fundsec.payout_controls(ctx, payout_id) or {
        "started_by": None, "needs_approval": False, "threshold_minor": None, "decision": None,
        "decided_by": None, "decided_at": None, "decision_reason": None, "held_from": None,
        "held_at": None, "held_reason": None}
    return {key: payout[key] for key in ("payout_id", "party_id", "currency", "amount_minor",
                                         "status")} | {k: v for k, v in controls.items()
                                                       if k != "payout_id"}


@router.get("/v1/payouts/{payout_id}/controls", response_model=PayoutControlsOut)
def get_payout_controls(payout_id: str, ctx: ActingContext,
                        principal: Principal = require(*READ)) -> Any:
    """Who started the run that made the payout, whether it needs a second person, the
    decision, and any hold."""
    return _controls_view(ctx, payout_id, principal.party_filter())


@router.post("/v1/payouts/{payout_id}/approve", response_model=PayoutDecisionOut)
def approve_payout(payout_id: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                   principal: Principal = require(Permission.APPROVE)) -> Any:
    """Approve a payout above the four-eyes threshold: it becomes in_transit (sendable). The
    approver must not be the person who started the settlement run (409
    ``approval_required``)."""
    def produce(key: str | None) -> tuple[int, Any]:
        result = fundsec.approve_payout(ctx, payout_id)
        return 200, _controls_view(ctx, payout_id, None) | {"changed": result["changed"]}
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/payouts/{payout_id}/approve", {}, produce)


@router.post("/v1/payouts/{payout_id}/reject", response_model=PayoutDecisionOut)
def reject_payout(payout_id: str, body: RejectIn, ctx: ActingContext,
                  idempotency_key: IdempotencyKey = None,
                  principal: Principal = require(Permission.APPROVE)) -> Any:
    """Reject a payout awaiting approval, or a held one: its money returns to the party's
    available balance."""
    def produce(key: str | None) -> tuple[int, Any]:
        result = fundsec.reject_payout(ctx, payout_id, body.reason)
        return 200, _controls_view(ctx, payout_id, None) | {"changed": result["changed"]}
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/payouts/{payout_id}/reject",
                               body.model_dump(mode="json"), produce)
