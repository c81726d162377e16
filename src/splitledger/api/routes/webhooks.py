"""Webhook subscriptions, the delivery log and manual redelivery (platform staff)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import ActingContext, Page, require
from splitledger.domain.access import Permission, Principal
from splitledger.domain.webhooks import EVENT_TYPES
from splitledger.errors import ValidationError
from splitledger.services import webhooks

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
READ_HOOKS = (Permission.MANAGE_ACCESS, Permission.READ_AUDIT)


class SubscriptionIn(BaseModel):
    url: str = Field(min_length=8, max_length=2000, description="http(s) URL to POST to")
    event_types: list[str] = Field(min_length=1, max_length=len(EVENT_TYPES) + 1,
                                   description="event types, or * for all")
    description: str = Field("", max_length=200)


class SubscriptionOut(BaseModel):
    subscription_id: str
    url: str
    event_types: list[str]
    description: str
    secret_hint: str = Field(description="the first characters of the secret")
    created_by: str
    created_at: str
    disabled_at: str | None


class SubscriptionCreated(SubscriptionOut):
    secret: str | None = Field(description="the signing secret, shown in this response only "
                                           "(null when an Idempotency-Key replays it)")


class SubscriptionPage(BaseModel):
    data: list[SubscriptionOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    delivery_id: str
    event_id: str
    event_type: str
    subscription_id: str
    status: str = Field(description="pending, delivered, failed or cancelled")
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    redelivery_of: str | None


class AttemptOut(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


def _after(page: Page) -> str | None:
    if page.after is not None and not isinstance(page.after, str):
        raise ValidationError("invalid cursor", field="cursor")
    return page.after  # type: ignore[no-any-return]


@router.get("/event-types", response_model=list[str])
def event_types(principal: Principal = require(*READ_HOOKS)) -> Any:
    """Every event type a subscription may name."""
    return list(EVENT_TYPES)


@router.post("/subscriptions", response_model=SubscriptionCreated, status_code=201)
def create_subscription(body: SubscriptionIn, ctx: ActingContext,
                        idempotency_key: IdempotencyKey = None,
                        principal: Principal = require(Permission.MANAGE_ACCESS)) -> Any:
    """Subscribe a URL to event types. The signing secret is in this response only: it is
    stored encrypted and never shown again (an idempotent replay answers without it)."""
    created: dict[str, Any] = {}

    def produce(key: str | None) -> tuple[int, Any]:
        created.update(webhooks.create_subscription(ctx, body.url, body.event_types,
                                                    description=body.description))
        return 201, created | {"secret": None}  # what the idempotency record keeps

    response = idempotency.respond(ctx, principal, idempotency_key,
                                   "POST /v1/webhooks/subscriptions",
                                   body.model_dump(mode="json"), produce)
    return JSONResponse(created, status_code=201) if created else response


@router.get("/subscriptions", response_model=SubscriptionPage)
def list_subscriptions(ctx: ActingContext, page: Annotated[Page, Depends()],
                       principal: Principal = require(*READ_HOOKS)) -> Any:
    rows = webhooks.list_subscriptions(ctx, _after(page), page.limit + 1)
    return page.result(rows, "subscription_id")


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def get_subscription(subscription_id: str, ctx: ActingContext,
                     principal: Principal = require(*READ_HOOKS)) -> Any:
    return webhooks.get_subscription(ctx, subscription_id)


@router.delete("/subscriptions/{subscription_id}", response_model=SubscriptionOut)
def disable_subscription(subscription_id: str, ctx: ActingContext,
                         principal: Principal = require(Permission.MANAGE_ACCESS)) -> Any:
    """Disable the subscription: nothing more is sent to it; pending deliveries are
    cancelled. The delivery log is kept."""
    return webhooks.disable_subscription(ctx, subscription_id)


@router.get("/deliveries", response_model=DeliveryPage)
def list_deliveries(ctx: ActingContext, page: Annotated[Page, Depends()],
                    subscription_id: Annotated[str | None, Query(max_length=36)] = None,
                    status: Annotated[str | None, Query(max_length=16)] = None,
                    event_id: Annotated[str | None, Query(max_length=36)] = None,
                    principal: Principal = require(*READ_HOOKS)) -> Any:
    """The delivery log, by id; filter by subscription, status or event."""
    rows = webhooks.list_deliveries(ctx, subscription_id=subscription_id, status=status,
                                    event_id=event_id, after=_after(page),
                                    limit=page.limit + 1)
    return page.result(rows, "delivery_id")


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail)
def get_delivery(delivery_id: str, ctx: ActingContext,
                 principal: Principal = require(*READ_HOOKS)) -> Any:
    """One delivery with its event's payload and every attempt (status code, error)."""
    return webhooks.get_delivery(ctx, delivery_id)


@router.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryDetail,
             status_code=201)
def redeliver(delivery_id: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
              principal: Principal = require(Permission.MANAGE_ACCESS)) -> Any:
    """Send the delivery's event again, as a new delivery due now (the next
    ``splitledger webhooks deliver`` pass sends it)."""
    def produce(key: str | None) -> tuple[int, Any]:
        return 201, webhooks.redeliver(ctx, delivery_id)
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/webhooks/deliveries/{delivery_id}/redeliver", {},
                               produce)
