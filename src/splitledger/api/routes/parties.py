"""Parties, their bank details (write-only, shown masked) and their balances."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, Field

from splitledger.api import idempotency
from splitledger.api.deps import READ, ActingContext, Page, check_party_visible, require
from splitledger.domain.access import Permission, Principal
from splitledger.domain.bank import BankDetails
from splitledger.domain.parties import Party, PartyRole, PayoutFrequency
from splitledger.errors import Forbidden
from splitledger.services import parties as party_service
from splitledger.services import queries

router = APIRouter(prefix="/v1/parties", tags=["parties"])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


class BankDetailsIn(BaseModel):
    holder_name: str = Field(min_length=1, max_length=200)
    account_number: str = Field(min_length=4, max_length=40)
    bank_name: str = Field("", max_length=120)
    bank_code: str = Field("", max_length=40)
    country: str = Field("", max_length=2)

    def domain(self) -> BankDetails:
        return BankDetails(self.holder_name, self.account_number, self.bank_name,
                           self.bank_code, self.country)


class PartyIn(BaseModel):
    party_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    role: PartyRole
    tier: str | None = Field(None, max_length=32)
    currencies: list[str] = Field(default_factory=lambda: ["CNY"], min_length=1, max_length=20)
    payout_frequency: PayoutFrequency = PayoutFrequency.WEEKLY
    payout_delay_days: int = Field(1, ge=0, le=60)
    min_payout_minor: dict[str, int] = Field(default_factory=dict)
    hold_days: int | None = Field(None, ge=0, le=365)
    parent_party_id: str | None = Field(None, max_length=64)
    bank_details: BankDetailsIn | None = None


class PartyOut(BaseModel):
    party_id: str
    name: str
    role: str
    tier: str | None
    currencies: list[str]
    payout_frequency: str
    payout_delay_days: int
    min_payout_minor: dict[str, int]
    hold_days: int | None
    parent_party_id: str | None
    bank_masked: str | None


class PartyPage(BaseModel):
    data: list[PartyOut]
    next_cursor: str | None


class Balance(BaseModel):
    currency: str
    pending_minor: int
    available_minor: int
    in_transit_minor: int
    debt_minor: int


class BankDetailsOut(BaseModel):
    party_id: str
    bank_masked: str


@router.get("", response_model=PartyPage)
def list_parties(ctx: ActingContext, page: Annotated[Page, Depends()],
                 principal: Principal = require(*READ)) -> Any:
    """Parties, by id. A party user sees only itself."""
    rows = queries.list_parties(ctx, principal.party_filter(), page.after, page.limit + 1)
    return page.result(rows, "party_id")


@router.post("", response_model=PartyOut, status_code=201)
def create_party(body: PartyIn, ctx: ActingContext, idempotency_key: IdempotencyKey = None,
                 principal: Principal = require(Permission.WRITE_PARTIES)) -> Any:
    """Register a party; bank details are encrypted at rest and only ever shown masked."""
    def produce(key: str | None) -> tuple[int, Any]:
        party = Party(body.party_id, body.name, body.role, body.tier, tuple(body.currencies),
                      body.payout_frequency, body.payout_delay_days, dict(body.min_payout_minor),
                      body.hold_days, body.parent_party_id)
        bank = body.bank_details.domain() if body.bank_details else None
        party_service.register_party(ctx, party, bank, idempotency_key=key)
        return 201, queries.get_party(ctx, body.party_id)
    return idempotency.respond(ctx, principal, idempotency_key, "POST /v1/parties",
                               body.model_dump(mode="json"), produce)


@router.get("/{party_id}", response_model=PartyOut)
def get_party(party_id: str, ctx: ActingContext,
              principal: Principal = require(*READ)) -> Any:
    check_party_visible(principal, party_id)
    return queries.get_party(ctx, party_id)


@router.get("/{party_id}/balances", response_model=list[Balance])
def get_balances(party_id: str, ctx: ActingContext,
                 principal: Principal = require(*READ)) -> Any:
    """What is owed to the party per currency (available below zero is a debt)."""
    check_party_visible(principal, party_id)
    return queries.balances(ctx, party_id)


@router.put("/{party_id}/bank-details", response_model=BankDetailsOut)
def set_bank_details(party_id: str, body: BankDetailsIn, ctx: ActingContext,
                     principal: Principal = require(*READ)) -> Any:
    """Replace the party's bank details (staff with write:parties, or the party itself)."""
    own = principal.party_id == party_id and principal.can(Permission.WRITE_OWN_BANK)
    if not (principal.can(Permission.WRITE_PARTIES) or own):
        check_party_visible(principal, party_id)
        raise Forbidden("not allowed to change these bank details")
    masked = party_service.set_bank_details(ctx, party_id, body.domain())
    return {"party_id": party_id, "bank_masked": masked}
