"""Manual adjustments need two people: one requests, another approves; only then is anything
booked, as a balanced entry against the platform's adjustments account."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from splitledger.api.app import create_app
from splitledger.domain.access import Role
from splitledger.domain.ledger import Purpose, party_account, system_account
from splitledger.errors import (
    ApprovalRequired,
    CurrencyMismatch,
    InvalidAmount,
    InvalidState,
    UnknownParty,
)
from splitledger.services import access, audit
from splitledger.services import adjustments as adj
from splitledger.services.verify import verify_ledger
from tests.support import seed_marketplace


def owed(ctx, party_id: str) -> int:
    with ctx.uow() as uow:
        return -uow.repo.balance(party_account(party_id, Purpose.AVAILABLE, "CNY"))


def as_(ctx, who: str):  # type: ignore[no-untyped-def]
    return dataclasses.replace(ctx, actor=who)


def test_an_adjustment_is_booked_only_after_a_second_person_approves_it(ctx):
    seed_marketplace(ctx)
    pending = adj.request_adjustment(as_(ctx, "user:alice"), "m1", "CNY", 2_500,
                                     "compensation for a lost parcel")
    assert pending["status"] == "pending" and owed(ctx, "m1") == 0
    with pytest.raises(ApprovalRequired):
        adj.approve_adjustment(as_(ctx, "user:alice"), pending["adjustment_id"])
    assert owed(ctx, "m1") == 0
    done = adj.approve_adjustment(as_(ctx, "user:bob"), pending["adjustment_id"])
    assert done["status"] == "approved" and done["decided_by"] == "user:bob"
    assert owed(ctx, "m1") == 2_500
    with ctx.uow() as uow:
        assert uow.repo.balance(system_account(Purpose.ADJUSTMENTS, "CNY")) == 2_500
    with pytest.raises(InvalidState):
        adj.approve_adjustment(as_(ctx, "user:carol"), pending["adjustment_id"])
    assert owed(ctx, "m1") == 2_500  # approving twice books once
    assert verify_ledger(ctx).ok
    actions = [r["action"] for r in audit.list_records(ctx)]
    assert actions[-2:] == ["adjustment.request", "adjustment.approve"]


def test_a_negative_adjustment_can_put_a_party_into_debt_and_a_rejected_one_books_nothing(ctx):
    seed_marketplace(ctx)
    charge = adj.request_adjustment(as_(ctx, "user:alice"), "m1", "CNY", -700,
                                    "fee for a repeated label print")
    adj.approve_adjustment(as_(ctx, "user:bob"), charge["adjustment_id"])
    assert owed(ctx, "m1") == -700
    refused = adj.request_adjustment(as_(ctx, "user:alice"), "m1", "CNY", 9_999, "typo")
    adj.reject_adjustment(as_(ctx, "user:bob"), refused["adjustment_id"])
    assert owed(ctx, "m1") == -700
    assert adj.get_adjustment(ctx, refused["adjustment_id"])["entry_id"] is None
    assert verify_ledger(ctx).ok


@pytest.mark.parametrize(("party", "currency", "amount", "error"), [
    ("m1", "CNY", 0, InvalidAmount),
    ("m1", "CNY", 12.5, InvalidAmount),
    ("nobody", "CNY", 100, UnknownParty),
    ("m2", "USD", 100, CurrencyMismatch),
])
def test_bad_adjustment_requests_are_refused_and_write_nothing(ctx, party, currency, amount,
                                                               error):
    seed_marketplace(ctx)
    with pytest.raises(error):
        adj.request_adjustment(ctx, party, currency, amount, "why")
    assert adj.list_adjustments(ctx, None, 10) == []


def test_four_eyes_over_http(ctx):
    seed_marketplace(ctx)
    access.create_user(ctx, "fin", "correct horse battery", Role.FINANCE)
    access.create_user(ctx, "risk", "correct horse battery", Role.RISK)
    client = TestClient(create_app(ctx))

    def headers(user: str) -> dict[str, str]:
        token = client.post("/v1/auth/login", json={
            "username": user, "password": "correct horse battery"}).json()["token"]
        return {"Authorization": f"Bearer {token}"}

    fin, risk = headers("fin"), headers("risk")
    made = client.post("/v1/adjustments", headers=fin, json={
        "party_id": "m1", "currency": "CNY", "amount_minor": 1_200, "reason": "goodwill"})
    assert made.status_code == 201, made.text
    adjustment_id = made.json()["adjustment_id"]
    same = client.post(f"/v1/adjustments/{adjustment_id}/approve", headers=fin)
    assert same.status_code == 409 and same.json()["code"] == "approval_required"
    assert client.post("/v1/adjustments", headers=risk, json={
        "party_id": "m1", "currency": "CNY", "amount_minor": 1, "reason": "x"}).status_code == 403
    other = client.post(f"/v1/adjustments/{adjustment_id}/approve", headers=risk)
    assert other.status_code == 200 and other.json()["status"] == "approved"
    assert owed(ctx, "m1") == 1_200
    listed = client.get("/v1/adjustments", headers=risk).json()["data"]
    assert [a["adjustment_id"] for a in listed] == [adjustment_id]
