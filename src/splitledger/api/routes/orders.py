"""Orders: capture, confirm, refund, chargeback; each order with its split plan."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import READ, ActingContext, Page, require
from splitledger.domain.access import Permission, Principal
from splitledger.domain.codec import order_from_dict
from splitledger.domain.lifecycle import ChargebackPolicy
from splitledger.services import orders as order_service
from splitledger.services import queries

router = APIRouter(prefix="/v1/orders", tags=["orders"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class DiscountIn(BaseModel):
    amount_minor: int = Field(gt=0, strict=True)
    funded_by: str = Field("merchant", pattern="^(merchant|platform)$")
    kind: str = Field("coupon", max_length=40)


class LineIn(BaseModel):
    line_id: str = Field(min_length=1, max_length=64)
    sku: str = Field(min_length=1, max_length=120)
    category: str = Field(min_length=1, max_length=200)
    merchant_id: str = Field(min_length=1, max_length=64)
    supplier_id: str | None = Field(None, max_length=64)
    quantity: int = Field(gt=0, strict=True, le=1_000_000)
    unit_price_minor: int = Field(ge=0, strict=True, le=10**15)
    discounts: list[DiscountIn] = Field(default_factory=list, max_length=20)


class ShippingIn(BaseModel):
    amount_minor: int = Field(ge=0, strict=True, le=10**15)
    logistics_party_id: str = Field(min_length=1, max_length=64)


class OrderIn(BaseModel):
    order_id: str = Field(min_length=1, max_length=128)
    currency: str = Field(min_length=3, max_length=3)
    captured_at: str = Field(description="ISO 8601 with a time zone")
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    shipping: ShippingIn | None = None
    psp_fee_minor: int = Field(0, ge=0, strict=True, le=10**15)
    channel: str = Field("web", max_length=40)
    region: str = Field("", max_length=40)
    payment_method: str = Field("", max_length=40)
    affiliate_id: str | None = Field(None, max_length=64)
    tags: list[str] = Field(default_factory=list, max_length=20)
    captured_minor: int | None = Field(None, strict=True, ge=0, le=10**15)


class CaptureOut(BaseModel):
    order_id: str
    currency: str
    captured_minor: int
    entry_id: str
    hold_until: str
    policy_version: str
    allocations: list[dict[str, Any]]


class AmountIn(BaseModel):
    amount_minor: int = Field(gt=0, strict=True, le=10**15)
    reason: str = Field("", max_length=500)


class ChargebackIn(AmountIn):
    policy: ChargebackPolicy | None = None


class ReversalOut(BaseModel):
    reversal_id: str
    kind: str
    order_id: str
    amount_minor: int
    policy: str
    remaining_minor: int
    entry_id: str
    released: bool


class ConfirmOut(BaseModel):
    order_id: str
    released_at: str
    entry_id: str | None
    already_released: bool


class OrderSummary(BaseModel):
    order_id: str
    currency: str
    captured_at: str
    hold_until: str
    released_at: str | None
    policy_version: str
    captured_minor: int | None = None
    refunded_minor: int | None = None


class OrderPage(BaseModel):
    data: list[OrderSummary]
    next_cursor: str | None


class OrderDetail(OrderSummary):
    lines: list[dict[str, Any]]
    allocations: list[dict[str, Any]]
    reversals: list[dict[str, Any]] | None = None


@router.post("", response_model=CaptureOut, status_code=201)
def capture(body: OrderIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
            principal: Principal = require(Permission.WRITE_ORDERS)) -> Any:
    """Capture a paid order: split it by the ruleset in force and hold every share."""
    data = body.model_dump(mode="json")

    def produce(key: str | None) -> tuple[int, Any]:
        return 201, order_service.capture_order(ctx, order_from_dict(data), idempotency_key=key)
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/orders", data, produce)


@router.get("", response_model=OrderPage)
def list_orders(ctx: ActingContext, page: Annotated[Page, Depends()],
                principal: Principal = require(*READ)) -> Any:
    """Orders by id; a party sees only orders it has a share in (and no order totals)."""
    rows = queries.list_orders(ctx, principal.party_filter(), page.after, page.limit + 1)
    return page.result(rows, "order_id")


@router.get("/{order_id}", response_model=OrderDetail)
def get_order(order_id: str, ctx: ActingContext,
              principal: Principal = require(*READ)) -> Any:
    """The order, its split plan (every amount with its rule and computation) and reversals.
    A party sees only its own lines and amounts."""
    return queries.get_order(ctx, order_id, principal.party_filter())


@router.post("/{order_id}/confirm", response_model=ConfirmOut)
def confirm(order_id: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
            principal: Principal = require(Permission.WRITE_ORDERS)) -> Any:
    """The buyer confirmed receipt: release the order's funds now."""
    return idempotency.respond(
        ctx, principal, idempotency_key, f"POST /v1/orders/{order_id}/confirm", {},
        lambda key: (200, order_service.confirm_order(ctx, order_id)))


@router.post("/{order_id}/refunds", response_model=ReversalOut, status_code=201)
def refund(order_id: str, body: AmountIn, ctx: ActingContext,
           idempotency_key: IdempotencyKey = None,
           principal: Principal = require(Permission.WRITE_ORDERS)) -> Any:
    """Refund part or all of what is left; every share is reversed in proportion."""
    return idempotency.respond(
        ctx, principal, idempotency_key, f"POST /v1/orders/{order_id}/refunds",
        body.model_dump(mode="json"),
        lambda key: (201, order_service.refund_order(ctx, order_id, body.amount_minor,
                                                     reason=body.reason, idempotency_key=key)))


@router.post("/{order_id}/chargebacks", response_model=ReversalOut, status_code=201)
def chargeback(order_id: str, body: ChargebackIn, ctx: ActingContext,
               idempotency_key: IdempotencyKey = None,
               principal: Principal = require(Permission.WRITE_ORDERS)) -> Any:
    """Book a chargeback, borne as the policy says (the configured default otherwise)."""
    return idempotency.respond(
        ctx, principal, idempotency_key, f"POST /v1/orders/{order_id}/chargebacks",
        body.model_dump(mode="json"),
        lambda key: (201, order_service.chargeback_order(
            ctx, order_id, body.amount_minor, policy=body.policy, reason=body.reason,
            idempotency_key=key)))
