"""Settlement runs, releases of held funds, and the statements that runs produce."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import READ, ActingContext, Page, check_party_visible, require
from splitledger.api.routes.common import Moment, refuse_nul, typed_after
from splitledger.domain.access import Permission, Principal
from splitledger.services import orders as order_service
from splitledger.services import queries
from splitledger.services import settlement as settlement_service

router = APIRouter(prefix="/v1", tags=["settlement"],
                   dependencies=[Depends(refuse_nul)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
PartyQuery = Annotated[str | None, Query(max_length=64, description="only this party")]


class SettlementRunIn(BaseModel):
    period_end: Moment = Field(description="end of the period to settle (in the past), "
                                                  "e.g. 2026-11-16T00:00:00Z")
    ignore_schedule: bool = Field(False, description="settle every party now, whatever its "
                                                     "payout schedule says")


class Skipped(BaseModel):
    party_id: str
    currency: str
    status: str = Field(description="why: already_settled or period_covered")


class SettlementRunOut(BaseModel):
    period_end: str
    statements: int
    payouts: int
    paid_out_minor: dict[str, int] = Field(description="total put in transit per currency")
    skipped: list[Skipped]


class ReleaseOut(BaseModel):
    released: int = Field(description="orders whose hold had ended and were released")


class StatementSummary(BaseModel):
    statement_id: str
    party_id: str
    currency: str
    period_start: str
    period_end: str
    opening_minor: int
    closing_minor: int
    payout_minor: int
    carried_minor: int
    note: str


class StatementLine(BaseModel):
    entry_id: str
    kind: str
    order_id: str | None
    booked_at: str
    amount_minor: int
    memo: str


class StatementDetail(StatementSummary):
    lines: list[StatementLine]


class StatementPage(BaseModel):
    data: list[StatementSummary]
    next_cursor: str | None


@router.post("/settlement-runs", response_model=SettlementRunOut, status_code=201)
def run_settlement(body: SettlementRunIn, ctx: ActingContext,
                   idempotency_key: IdempotencyKey = None,
                   principal: Principal = require(Permission.RUN_SETTLEMENT)) -> Any:
    """Close the period ending ``period_end``: a statement per party and currency whose
    schedule closes a period then, and a payout when one is due. Running it again is safe:
    parties already settled for the period are skipped."""
    data = body.model_dump(mode="json")

    def produce(key: str | None) -> tuple[int, Any]:
        run = settlement_service.run_settlement(ctx, body.period_end,
                                                ignore_schedule=body.ignore_schedule)
        return 201, {"period_end": run.period_end.isoformat(), "statements": run.statements,
                     "payouts": run.payouts, "paid_out_minor": dict(run.paid_out_minor),
                     "skipped": [{"party_id": p, "currency": c, "status": s}
                                 for p, c, s in run.skipped]}
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/settlement-runs",
                               data, produce)


@router.post("/releases", response_model=ReleaseOut)
def release_due(ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                principal: Principal = require(Permission.RUN_SETTLEMENT)) -> Any:
    """Release every order whose hold period has ended (pending -> available)."""
    return idempotency.respond(
        ctx, principal, idempotency_key, "POST /v1/releases", {},
        lambda key: (200, {"released": order_service.release_due(ctx)}))


@router.get("/statements", response_model=StatementPage)
def list_statements(ctx: ActingContext, page: Annotated[Page, Depends()],
                    party_id: PartyQuery = None,
                    principal: Principal = require(*READ)) -> Any:
    """Statements by id. A party sees only its own; staff may filter by ``party_id``."""
    scope = principal.party_filter()
    if party_id is not None:
        check_party_visible(principal, party_id)
        scope = party_id
    rows = queries.list_statements(ctx, scope, typed_after(page, str), page.limit + 1)
    return page.result(rows, "statement_id")


@router.get("/statements/{statement_id}", response_model=StatementDetail)
def get_statement(statement_id: str, ctx: ActingContext,
                  principal: Principal = require(*READ)) -> Any:
    """One statement with its lines (every entry netted into it)."""
    return queries.get_statement(ctx, statement_id, principal.party_filter())
