"""Rulesets: validate, draft, approve (four-eyes), preview a split, back-test.

A ruleset travels as the JSON form of the rule language (docs/rules.md), the structure that
``rules_io.ruleset_from_data`` reads. Every problem with it is reported the same way as on the
command line: ``invalid_ruleset`` with ``details.problems`` (rule id, field, message).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import ActingContext, Page, require
from splitledger.api.routes.common import (
    Moment,
    in_range,
    refuse_nul,
    typed_after,
)
from splitledger.api.routes.orders import OrderIn
from splitledger.domain.access import Permission, Principal
from splitledger.domain.codec import order_from_dict
from splitledger.domain.rules.engine import RulesPolicy
from splitledger.domain.rules.model import Ruleset
from splitledger.errors import InvalidRuleset, ValidationError
from splitledger.rules_io import ruleset_from_data
from splitledger.services import rules as rules_service

router = APIRouter(prefix="/v1/rulesets", tags=["rulesets"],
                   dependencies=[Depends(refuse_nul)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]

RULESET_EXAMPLE = {
    "version": "example-2", "effective_from": "2026-12-01T00:00:00+00:00",
    "rules": [{"id": "default", "shares": [{"to": "platform", "of": "line_net", "bps": 500}]}],
}
RulesetDoc = Annotated[dict[str, Any], Body(
    description="A ruleset in the JSON form of the rule language (see docs/rules.md).",
    examples=[RULESET_EXAMPLE])]


class RulesetProblem(BaseModel):
    rule_id: str | None
    field: str
    message: str
    line: int | None = None


class ValidationOut(BaseModel):
    valid: bool
    version: str | None = None
    rules: int | None = Field(None, description="how many rules (when valid)")
    problems: list[RulesetProblem]


class RulesetSummary(BaseModel):
    version: str
    effective_from: str
    status: str = Field(description="draft or approved")
    drafted_by: str
    drafted_at: str
    approved_by: str | None
    approved_at: str | None
    body_hash: str = Field(description="SHA-256 of the canonical body")


class RulesetPage(BaseModel):
    data: list[RulesetSummary]
    next_cursor: str | None


class RulesetDetail(RulesetSummary):
    body: dict[str, Any] = Field(description="the ruleset in its JSON form")


class SimulateIn(BaseModel):
    ruleset: dict[str, Any] = Field(description="a ruleset in its JSON form",
                                    examples=[RULESET_EXAMPLE])
    order: OrderIn


class PlanAllocation(BaseModel):
    line_id: str | None
    party_id: str
    kind: str
    amount_minor: int
    rule_id: str
    basis: str
    basis_minor: int
    rate_bps: int | None
    explanation: str


class PlanOut(BaseModel):
    order_id: str
    currency: str
    total_minor: int
    ruleset_version: str
    allocations: list[PlanAllocation]
    by_party: dict[str, int] = Field(description="net amount per party")


class BacktestIn(BaseModel):
    ruleset: dict[str, Any] = Field(description="a ruleset in its JSON form",
                                    examples=[RULESET_EXAMPLE])
    start: Moment = Field(alias="from", description="first capture time included")
    end: Moment = Field(alias="until", description="capture time excluded")


class RefusedOrder(BaseModel):
    order_id: str
    reason: str


class BacktestDifference(BaseModel):
    party_id: str
    currency: str
    booked_minor: int
    simulated_minor: int
    difference_minor: int


class TakeRate(BaseModel):
    booked: float
    simulated: float


class BacktestOut(BaseModel):
    version: str
    start: str
    end: str
    orders: int
    changed_orders: int
    refused: list[RefusedOrder]
    differences: list[BacktestDifference]
    take_rate_bps: dict[str, TakeRate] = Field(
        description="the platform's net share of GMV per currency, in basis points")


def parse_ruleset(data: Any) -> Ruleset:
    """The ruleset of a request, validated; raises InvalidRuleset listing every problem."""
    ruleset = ruleset_from_data(data)
    RulesPolicy(ruleset)
    if not in_range(ruleset.effective_from):
        raise InvalidRuleset("ruleset: effective_from: must be between 1970 and 9000", problems=[
            {"rule_id": None, "field": "effective_from",
             "message": "must be between 1970 and 9000"}])
    return ruleset


@router.post("/validate", response_model=ValidationOut)
def validate(ruleset: RulesetDoc, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
             principal: Principal = require(Permission.WRITE_RULES)) -> Any:
    """Check a ruleset without storing it: ``valid`` and, if not, every problem found (rule
    id, field, message). An invalid ruleset is an answer here, not an error."""
    def produce(key: str | None) -> tuple[int, Any]:
        try:
            parsed = parse_ruleset(ruleset)
        except InvalidRuleset as exc:
            problems = [{k: p.get(k) for k in ("rule_id", "field", "message", "line")}
                        for p in exc.details.get("problems", [])]
            return 200, {"valid": False, "version": None, "rules": None, "problems": problems}
        return 200, {"valid": True, "version": parsed.version, "rules": len(parsed.rules),
                     "problems": []}
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/rulesets/validate",
                               ruleset, produce)


@router.post("", response_model=RulesetDetail, status_code=201)
def draft(ruleset: RulesetDoc, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
          principal: Principal = require(Permission.WRITE_RULES)) -> Any:
    """Store a ruleset as a draft (drafted by the caller); a draft of the same version is
    replaced. It takes effect only once another person approves it."""
    def produce(key: str | None) -> tuple[int, Any]:
        parsed = parse_ruleset(ruleset)
        rules_service.draft_ruleset(ctx, parsed, by=principal.subject)
        return 201, rules_service.get_ruleset_record(ctx, parsed.version)
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/rulesets", ruleset,
                               produce)


@router.get("", response_model=RulesetPage)
def list_rulesets(ctx: ActingContext, page: Annotated[Page, Depends()],
                  principal: Principal = require(Permission.READ_ALL)) -> Any:
    """Every version, in order of effective_from (platform staff only)."""
    rows = rules_service.list_ruleset_records(ctx, typed_after(page, str), page.limit + 1)
    return page.result(rows, "version")


@router.post("/simulate", response_model=PlanOut)
def simulate(body: SimulateIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
             principal: Principal = require(Permission.WRITE_RULES, Permission.READ_ALL)
             ) -> Any:
    """Preview how a ruleset splits an order, with the rule and computation behind every
    amount. Parties (tiers, affiliate parents) and merchants' GMV come from the database;
    nothing is written."""
    data = body.model_dump(mode="json")

    def produce(key: str | None) -> tuple[int, Any]:
        parsed = parse_ruleset(data["ruleset"])
        order = order_from_dict(data["order"])  # dates out of range: ValidationError
        if not in_range(order.captured_at):
            raise ValidationError("captured_at must be between 1970 and 9000",
                                  field="captured_at")
        plan = rules_service.preview_split(ctx, parsed, order)
        return 200, plan.as_dict()
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/rulesets/simulate",
                               data, produce)


@router.post("/backtest", response_model=BacktestOut)
def backtest(body: BacktestIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
             principal: Principal = require(Permission.WRITE_RULES, Permission.READ_ALL)
             ) -> Any:
    """Split the orders captured in [from, until) again with a ruleset and compare with what
    was booked. Writes nothing."""
    data = body.model_dump(mode="json", by_alias=True)

    def produce(key: str | None) -> tuple[int, Any]:
        if body.end <= body.start:
            raise ValidationError("until must be after from", field="until")
        parsed = parse_ruleset(data["ruleset"])
        report = rules_service.backtest(ctx, parsed, body.start, body.end)
        platform = parsed.platform_party_id
        currencies = sorted({c for _, c in report.booked} | {c for _, c in report.simulated})
        return 200, {
            "version": report.version, "start": report.start.isoformat(),
            "end": report.end.isoformat(), "orders": report.orders,
            "changed_orders": report.changed_orders,
            "refused": [{"order_id": o, "reason": r} for o, r in report.refused],
            "differences": [{"party_id": p, "currency": c,
                             "booked_minor": report.booked.get((p, c), 0),
                             "simulated_minor": report.simulated.get((p, c), 0),
                             "difference_minor": d}
                            for (p, c), d in report.differences().items()],
            "take_rate_bps": {c: {
                "booked": round(report.take_rate_bps(report.booked, platform, c), 2),
                "simulated": round(report.take_rate_bps(report.simulated, platform, c), 2)}
                for c in currencies}}
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/rulesets/backtest",
                               data, produce)


@router.get("/{version}", response_model=RulesetDetail)
def get_ruleset(version: str, ctx: ActingContext,
                principal: Principal = require(Permission.READ_ALL)) -> Any:
    """One version with its status, drafter, approver and body (platform staff only)."""
    return rules_service.get_ruleset_record(ctx, version)


@router.post("/{version}/approve", response_model=RulesetDetail)
def approve(version: str, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
            principal: Principal = require(Permission.APPROVE)) -> Any:
    """Approve a draft: it applies to orders captured from its effective_from on. Four-eyes:
    the approver (the caller) must not be the drafter (409 ``approval_required``)."""
    def produce(key: str | None) -> tuple[int, Any]:
        rules_service.approve_ruleset(ctx, version, by=principal.subject)
        return 200, rules_service.get_ruleset_record(ctx, version)
    return idempotency.respond(ctx, principal, idempotency_key,
                               f"POST /v1/rulesets/{version}/approve", {}, produce)
