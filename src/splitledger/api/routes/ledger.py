"""The journal: entries in booking order with their postings, scoped to the caller's party."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from splitledger.api.deps import READ, ActingContext, Page, require
from splitledger.api.routes.common import refuse_nul, typed_after
from splitledger.domain.access import Principal
from splitledger.services import queries

router = APIRouter(prefix="/v1/journal-entries", tags=["ledger"],
                   dependencies=[Depends(refuse_nul)])


class Posting(BaseModel):
    account: str
    currency: str
    amount_minor: int


class JournalEntry(BaseModel):
    seq: int
    entry_id: str
    kind: str
    booked_at: str
    order_id: str | None
    payout_id: str | None
    memo: str
    postings: list[Posting]


class JournalPage(BaseModel):
    data: list[JournalEntry]
    next_cursor: str | None


@router.get("", response_model=JournalPage)
def list_entries(ctx: ActingContext, page: Annotated[Page, Depends()],
                 principal: Principal = require(*READ)) -> Any:
    """Journal entries in booking order (``seq``) with their postings (debits positive). A
    party sees only the entries that touch its own accounts, and only its own postings."""
    rows = queries.list_entries(ctx, principal.party_filter(), typed_after(page, int),
                                page.limit + 1)
    return page.result(rows, "seq")
