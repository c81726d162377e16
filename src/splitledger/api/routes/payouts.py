"""Payouts: list them, read one, record the bank's answer (paid or failed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import READ, ActingContext, Page, check_party_visible, require
from splitledger.api.routes.common import refuse_nul, typed_after
from splitledger.domain.access import Permission, Principal
from splitledger.services import queries
from splitledger.services import settlement as settlement_service

router = APIRouter(prefix="/v1/payouts", tags=["payouts"],
                   dependencies=[Depends(refuse_nul)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class PayoutOut(BaseModel):
    payout_id: str
    party_id: str
    currency: str
    amount_minor: int
    statement_id: str | None
    status: str = Field(description="in_transit, pending_approval, held, paid, failed or "
                                    "rejected")
    bank_masked: str
    value_date: str
    created_at: str
    resolved_at: str | None
    failure_reason: str | None


class PayoutPage(BaseModel):
    data: list[PayoutOut]
    next_cursor: str | None


class PayoutResolved(PayoutOut):
    changed: bool = Field(description="false when the same answer was already recorded")


class FailedIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, description="what the bank said")


@router.get("", response_model=PayoutPage)
def list_payouts(ctx: ActingContext, page: Annotated[Page, Depends()],
                 status: Annotated[str | None, Query(max_length=32)] = None,
                 party_id: Annotated[str | None, Query(max_length=64)] = None,
                 principal: Principal = require(*READ)) -> Any:
    """Payouts by id, optionally only those in one ``status``. A party sees only its own;
    staff may filter by ``party_id``."""
    scope = principal.party_filter()
    if party_id is not None:
        check_party_visible(principal, party_id)
        scope = party_id
    rows = queries.list_payouts(ctx, scope, typed_after(page, str), page.limit + 1,
                                status=status)
    return page.result(rows, "payout_id")


@router.get("/{payout_id}", response_model=PayoutOut)
def get_payout(payout_id: str, ctx: ActingContext,
               principal: Principal = require(*READ)) -> Any:
    return queries.get_payout(ctx, payout_id, principal.party_filter())


@router.post("/{payout_id}/paid", response_model=PayoutResolved)
def payout_paid(payout_id: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                principal: Principal = require(Permission.WRITE_PAYOUTS)) -> Any:
    """The bank confirmed the payout: the money has left clearing. Recording it twice
    changes nothing; a failed payout cannot become paid (409 ``invalid_state``)."""
    def produce(key: str | None) -> tuple[int, Any]:
        result = settlement_service.mark_payout_paid(ctx, payout_id)
        return 200, queries.get_payout(ctx, payout_id, None) | {"changed": result["changed"]}
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/payouts/{payout_id}/paid", {}, produce)


@router.post("/{payout_id}/failed", response_model=PayoutResolved)
def payout_failed(payout_id: str, body: FailedIn, ctx: ActingContext,
                  idempotency_key: IdempotencyKey = None,
                  principal: Principal = require(Permission.WRITE_PAYOUTS)) -> Any:
    """The bank returned the payout: the amount is available again and is paid with the
    party's next statement."""
    data = body.model_dump(mode="json")

    def produce(key: str | None) -> tuple[int, Any]:
        result = settlement_service.mark_payout_failed(ctx, payout_id, body.reason)
        return 200, queries.get_payout(ctx, payout_id, None) | {"changed": result["changed"]}
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/payouts/{payout_id}/failed", data, produce)
