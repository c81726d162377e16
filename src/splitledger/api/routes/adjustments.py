"""Manual adjustments: requested by one person, booked when a second approves (four-eyes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import ActingContext, Page, require
from splitledger.api.routes.common import refuse_nul, typed_after
from splitledger.domain.access import Permission, Principal
from splitledger.services import adjustments as adjustment_service

router = APIRouter(prefix="/v1/adjustments", tags=["adjustments"],
                   dependencies=[Depends(refuse_nul)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class AdjustmentIn(BaseModel):
    party_id: str = Field(min_length=1, max_length=64)
    currency: str = Field(min_length=3, max_length=3)
    amount_minor: int = Field(strict=True, ge=-10**13, le=10**13,
                              description="owed more to the party (+) or less (-)")
    reason: str = Field(min_length=1, max_length=500)


class AdjustmentOut(BaseModel):
    adjustment_id: str
    party_id: str
    currency: str
    amount_minor: int
    reason: str
    status: str = Field(description="pending, approved or rejected")
    requested_by: str
    requested_at: str
    decided_by: str | None
    decided_at: str | None
    entry_id: str | None


class AdjustmentPage(BaseModel):
    data: list[AdjustmentOut]
    next_cursor: str | None


@router.post("", response_model=AdjustmentOut, status_code=201)
def request(body: AdjustmentIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
            principal: Principal = require(Permission.WRITE_PAYOUTS)) -> Any:
    """Ask for an adjustment of what a party is owed; nothing is booked until another person
    approves it."""
    data = body.model_dump(mode="json")
    return idempotency.respond(
        ctx, principal, idempotency_key, "POST /v1/adjustments", data,
        lambda key: (201, adjustment_service.request_adjustment(
            ctx, body.party_id, body.currency, body.amount_minor, body.reason)))


@router.get("", response_model=AdjustmentPage)
def list_adjustments(ctx: ActingContext, page: Annotated[Page, Depends()],
                     status: Annotated[str | None, Query(max_length=16)] = None,
                     principal: Principal = require(Permission.READ_ALL)) -> Any:
    after = typed_after(page, str)
    rows = adjustment_service.list_adjustments(ctx, after, page.limit + 1, status)
    return page.result(rows, "adjustment_id")


@router.get("/{adjustment_id}", response_model=AdjustmentOut)
def get_adjustment(adjustment_id: str, ctx: ActingContext,
                   principal: Principal = require(Permission.READ_ALL)) -> Any:
    return adjustment_service.get_adjustment(ctx, adjustment_id)


@router.post("/{adjustment_id}/approve", response_model=AdjustmentOut)
def approve(adjustment_id: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
            principal: Principal = require(Permission.APPROVE)) -> Any:
    """Book the adjustment (409 ``approval_required`` for the person who requested it)."""
    return idempotency.respond(
        ctx, principal, idempotency_key, f"POST /v1/adjustments/{adjustment_id}/approve", {},
        lambda key: (200, adjustment_service.approve_adjustment(ctx, adjustment_id)))


@router.post("/{adjustment_id}/reject", response_model=AdjustmentOut)
def reject(adjustment_id: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
           principal: Principal = require(Permission.APPROVE)) -> Any:
    """Refuse it; nothing is ever booked."""
    return idempotency.respond(
        ctx, principal, idempotency_key, f"POST /v1/adjustments/{adjustment_id}/reject", {},
        lambda key: (200, adjustment_service.reject_adjustment(ctx, adjustment_id)))
