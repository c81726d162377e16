"""The HTTP API, route by route, on SQLite and PostgreSQL: happy paths, the main errors as
problem details, cursor pages, four-eyes approval of rulesets, a whole capture -> payout flow
over HTTP with its audit trail, API keys and users, `splitledger serve`, and the promise that
docs/api.md lists every error code."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

import splitledger.errors as errors_module
from splitledger.api import problems
from splitledger.api.app import create_app
from splitledger.cli.main import app as cli_app
from splitledger.domain.access import ROLE_PERMISSIONS, Permission, Role
from splitledger.services import access as access_service
from splitledger.services import orders as order_service
from splitledger.services.context import Context
from splitledger.store import tables as t
from tests.support import START, TEST_KEYS, FakeClock, make_context, order, seed_marketplace

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
PARTY_USERS = {"m1": Role.MERCHANT, "m2": Role.MERCHANT, "s1": Role.SUPPLIER}


class Api:
    """A test client on the context, with credentials for every kind of caller."""

    def __init__(self, ctx: Context, client: TestClient) -> None:
        self.ctx = ctx
        self.client = client
        self._keys: dict[str, tuple[str, str]] = {}

    def key(self, who: str) -> tuple[dict[str, str], str]:
        """(headers, subject) for an API key acting as ``who``: a staff role name, or a
        party id of the test marketplace."""
        if who not in self._keys:
            role = PARTY_USERS.get(who) or Role(who)
            party = who if who in PARTY_USERS else None
            made = access_service.create_api_key(self.ctx, f"test {who}", role, party)
            self._keys[who] = (made["key"], f"key:{made['prefix']}")
        secret, subject = self._keys[who]
        return {"Authorization": f"Bearer {secret}"}, subject

    def as_(self, who: str) -> dict[str, str]:
        return self.key(who)[0]

    def user(self, username: str, role: Role, party: str | None = None) -> dict[str, str]:
        """A user, logged in over HTTP: headers with its session token."""
        access_service.create_user(self.ctx, username, PASSWORD, role, party)
        resp = self.client.post("/v1/auth/login",
                                json={"username": username, "password": PASSWORD})
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['token']}"}

    def get(self, path: str, who: str | dict[str, str], **kw: Any) -> httpx.Response:
        return self.client.get(path, headers=self._headers(who), **kw)

    def post(self, path: str, who: str | dict[str, str], **kw: Any) -> httpx.Response:
        headers = self._headers(who) | kw.pop("headers", {})
        return self.client.post(path, headers=headers, **kw)

    def _headers(self, who: str | dict[str, str]) -> dict[str, str]:
        return dict(who) if isinstance(who, dict) else self.as_(who)


@pytest.fixture
def api(ctx: Context):  # type: ignore[no-untyped-def]
    seed_marketplace(ctx)
    with TestClient(create_app(ctx)) as client:
        yield Api(ctx, client)


def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"/problems/{code}")
    assert body["detail"]
    return body


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def all_pages(api: Api, path: str, who: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
        body = ok(api.get(path, who, params=query))
        assert len(body["data"]) <= limit
        items += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert len(body["data"]) == limit
    raise AssertionError("pagination never ended")


def ruleset_doc(version: str, effective_from: datetime, bps: int = 500) -> dict[str, Any]:
    return {"version": version, "effective_from": effective_from.isoformat(),
            "rules": [{"id": "commission", "shares": [{"to": "platform", "bps": bps}]},
                      {"id": "supplier", "when": {"has_supplier": True},
                       "shares": [{"to": "supplier", "bps": 6000}]}]}


def order_body(order_id: str, captured_at: datetime, merchant: str = "m1",
               price: int = 10_000) -> dict[str, Any]:
    return {"order_id": order_id, "currency": "CNY", "captured_at": captured_at.isoformat(),
            "psp_fee_minor": 60, "shipping": {"amount_minor": 800, "logistics_party_id": "l1"},
            "lines": [{"line_id": "1", "sku": "PHONE", "category": "electronics/phones",
                       "merchant_id": merchant, "quantity": 1, "unit_price_minor": price}]}


def forged_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


# -- the contract -------------------------------------------------------------------------------

MY_PREFIXES = ("/v1/rulesets", "/v1/settlement-runs", "/v1/releases", "/v1/statements",
               "/v1/payouts", "/v1/journal-entries", "/v1/audit", "/v1/users", "/v1/api-keys")


def test_every_route_declares_a_response_schema_and_named_path_parameters(api):
    spec = ok(api.client.get("/openapi.json"))
    names = {"party_id", "order_id", "payout_id", "statement_id", "version", "prefix",
             "username"}
    seen = 0
    for path, operations in spec["paths"].items():
        if not path.startswith(MY_PREFIXES):
            continue
        assert set(re.findall(r"{(\w+)}", path)) <= names, path
        for method, operation in operations.items():
            seen += 1
            success = [code for code in operation["responses"] if code.startswith("2")]
            assert success, (method, path)
            content = operation["responses"][success[0]]["content"]["application/json"]
            assert "$ref" in content["schema"] or content["schema"].get("type"), (method, path)
    assert seen >= 25


def test_unauthenticated_and_forbidden_calls_are_problems(api):
    body = problem(api.client.get("/v1/payouts"), 401, "authentication_failed")
    assert body["details"] == {}
    problem(api.get("/v1/payouts", {"Authorization": "Bearer slk_nope_nope"}), 401,
            "authentication_failed")
    body = problem(api.post("/v1/settlement-runs", "support",
                            json={"period_end": "2026-11-01T00:00:00Z"}), 403, "forbidden")
    assert body["details"]["permissions"] == ["run:settlement"]
    problem(api.get("/v1/audit", "m1"), 403, "forbidden")
    problem(api.get("/v1/audit", "support"), 403, "forbidden")
    problem(api.get("/v1/users", "finance"), 403, "forbidden")
    problem(api.get("/v1/rulesets", "m1"), 403, "forbidden")
    problem(api.post("/v1/payouts/x/paid", "auditor"), 403, "forbidden")


# -- rulesets -----------------------------------------------------------------------------------

def test_validate_reports_every_problem_or_ok(api):
    good = ok(api.post("/v1/rulesets/validate", "finance",
                       json=ruleset_doc("v-ok", START + timedelta(days=1))))
    assert good == {"valid": True, "version": "v-ok", "rules": 2, "problems": []}

    bad = ruleset_doc("v-bad", START)
    bad["rules"][0]["shares"][0]["to"] = "nobody"
    bad["rules"][1]["shares"][0]["bps"] = "lots"
    report = ok(api.post("/v1/rulesets/validate", "finance", json=bad))
    assert report["valid"] is False and report["version"] is None
    assert {p["rule_id"] for p in report["problems"]} == {"supplier"}  # shape first
    assert report["problems"][0]["field"] == "shares[0].bps"

    bad["rules"][1]["shares"][0]["bps"] = 20_000
    report = ok(api.post("/v1/rulesets/validate", "finance", json=bad))
    assert {(p["rule_id"], p["field"]) for p in report["problems"]} >= {
        ("commission", "shares[0].to"), ("supplier", "shares[0].bps")}
    problem(api.post("/v1/rulesets/validate", "finance", json=["not", "an", "object"]), 422,
            "invalid_request")
    problem(api.post("/v1/rulesets/validate", "risk", json=bad), 403, "forbidden")


def test_ruleset_four_eyes_approval_over_http(api):
    alice = api.user("alice", Role.FINANCE)
    bob = api.user("bob", Role.RISK)
    doc = ruleset_doc("v2", START + timedelta(days=1))

    drafted = ok(api.post("/v1/rulesets", alice, json=doc), 201)
    assert drafted["status"] == "draft" and drafted["drafted_by"] == "user:alice"
    assert drafted["body"]["rules"][0]["id"] == "commission"
    problem(api.post("/v1/rulesets", bob, json=doc), 403, "forbidden")  # risk drafts nothing

    body = problem(api.post("/v1/rulesets/v2/approve", alice), 409, "approval_required")
    assert body["details"] == {"version": "v2"}
    approved = ok(api.post("/v1/rulesets/v2/approve", bob))
    assert (approved["status"], approved["approved_by"]) == ("approved", "user:bob")
    assert approved["approved_at"] is not None

    problem(api.post("/v1/rulesets/v2/approve", bob), 409, "invalid_state")
    problem(api.post("/v1/rulesets", alice, json=doc), 409, "invalid_state")  # immutable
    problem(api.post("/v1/rulesets/nope/approve", bob), 404, "not_found")
    problem(api.get("/v1/rulesets/nope", "support"), 404, "not_found")

    detail = ok(api.get("/v1/rulesets/v2", "auditor"))
    assert detail["body"] == approved["body"] and detail["body_hash"] == approved["body_hash"]
    listed = ok(api.get("/v1/rulesets", "support"))
    assert [r["version"] for r in listed["data"]] == ["v2"]
    assert "body" not in listed["data"][0]

    records = ok(api.get("/v1/audit", "auditor", params={"object_id": "v2"}))["data"]
    assert [(r["action"], r["actor"]) for r in records] == [
        ("ruleset.draft", "user:alice"), ("ruleset.approve", "user:bob")]


def test_invalid_and_past_rulesets_are_refused(api):
    doc = ruleset_doc("v-bad", START + timedelta(days=1))
    doc["rules"][0]["shares"][0]["to"] = "nobody"
    body = problem(api.post("/v1/rulesets", "finance", json=doc), 422, "invalid_ruleset")
    assert body["details"]["problems"][0]["rule_id"] == "commission"

    ok(api.post("/v1/rulesets", "finance", json=ruleset_doc("v-old", START - timedelta(days=1))),
       201)
    body = problem(api.post("/v1/rulesets/v-old/approve", "risk"), 422, "invalid_input")
    assert body["details"] == {"field": "effective_from"}


def test_rulesets_list_in_pages_in_order_of_effective_from(api):
    for number, days in enumerate((3, 1, 2, 1)):
        ok(api.post("/v1/rulesets", "finance",
                    json=ruleset_doc(f"r{number}", START + timedelta(days=days))), 201)
    versions = [r["version"] for r in all_pages(api, "/v1/rulesets", "support", limit=1)]
    assert versions == ["r1", "r3", "r2", "r0"]
    assert [r["version"] for r in all_pages(api, "/v1/rulesets", "support", limit=3)] == versions
    problem(api.get("/v1/rulesets", "support", params={"cursor": forged_cursor("zz")}), 422,
            "invalid_input")


def test_simulate_previews_a_split_without_writing(api):
    doc = ruleset_doc("preview", START)
    body = {"ruleset": doc, "order": order_body("sim-1", START - timedelta(hours=1))}
    plan = ok(api.post("/v1/rulesets/simulate", "finance", json=body))
    assert plan["ruleset_version"] == "preview" and plan["order_id"] == "sim-1"
    assert sum(a["amount_minor"] for a in plan["allocations"]) == plan["total_minor"] == 10_800
    assert any(a["rule_id"] == "commission" and a["rate_bps"] == 500 and a["explanation"]
               for a in plan["allocations"])
    assert sum(plan["by_party"].values()) == plan["total_minor"]
    ok(api.post("/v1/rulesets/simulate", "support", json=body))  # read:all may preview
    with api.ctx.uow() as uow:
        assert not uow.repo.order_exists("sim-1")

    body["order"]["lines"][0]["merchant_id"] = "ghost"
    body_ = problem(api.post("/v1/rulesets/simulate", "finance", json=body), 404,
                    "unknown_party")
    assert body_["details"]["party_ids"] == ["ghost"]
    problem(api.post("/v1/rulesets/simulate", "m1", json=body), 403, "forbidden")
    body["ruleset"] = {"version": "x"}
    problem(api.post("/v1/rulesets/simulate", "finance", json=body), 422, "invalid_ruleset")


def test_backtest_compares_with_what_was_booked(api):
    for number in range(3):
        order_service.capture_order(api.ctx, order(f"bt-{number}",
                                                   when=START - timedelta(hours=number + 1)))
    window = {"from": (START - timedelta(days=1)).isoformat(), "until": START.isoformat()}
    report = ok(api.post("/v1/rulesets/backtest", "finance",
                         json={"ruleset": ruleset_doc("bt", START, bps=900), **window}))
    assert report["version"] == "bt" and report["orders"] == 3
    assert report["changed_orders"] == 3 and report["refused"] == []
    platform = [d for d in report["differences"] if d["party_id"] == "platform"]
    assert platform and platform[0]["difference_minor"] == (
        platform[0]["simulated_minor"] - platform[0]["booked_minor"])
    rate = report["take_rate_bps"]["CNY"]
    assert rate["simulated"] > rate["booked"]

    backwards = {"from": window["until"], "until": window["from"]}
    problem(api.post("/v1/rulesets/backtest", "finance",
                     json={"ruleset": ruleset_doc("bt", START), **backwards}), 422,
            "invalid_input")
    problem(api.post("/v1/rulesets/backtest", "finance",
                     json={"ruleset": ruleset_doc("bt", START), "from": "2026-11-01T00:00:00",
                           "until": window["until"]}), 422, "invalid_request")  # no zone


# -- the whole flow over HTTP -------------------------------------------------------------------

def test_capture_confirm_settle_and_pay_over_http_with_its_audit_trail(api, clock: FakeClock):
    finance, finance_subject = api.key("finance")
    captured = ok(api.post("/v1/orders", finance,
                           json=order_body("web-1", START - timedelta(hours=1))), 201)
    assert captured["captured_minor"] == 10_800
    ok(api.post("/v1/orders/web-1/confirm", finance))

    problem(api.post("/v1/settlement-runs", finance,
                     json={"period_end": "2026-11-09T00:00:00Z"}), 422, "invalid_input")  # future
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    run = ok(api.post("/v1/settlement-runs", finance,
                      json={"period_end": "2026-11-09T00:00:00Z"}), 201)
    assert run["statements"] >= 2 and run["payouts"] >= 2  # m1 weekly, l1 daily
    assert run["paid_out_minor"]["CNY"] > 0
    again = ok(api.post("/v1/settlement-runs", finance,
                        json={"period_end": "2026-11-09T00:00:00Z"}), 201)
    assert again["statements"] == 0 and {s["status"] for s in again["skipped"]} == {
        "already_settled"}

    in_transit = ok(api.get("/v1/payouts", "support", params={"status": "in_transit"}))["data"]
    [payout] = [p for p in in_transit if p["party_id"] == "m1"]
    assert payout["bank_masked"].startswith("*") or "*" in payout["bank_masked"]
    assert ok(api.get("/v1/payouts", "m1"))["data"] == [payout]  # m1 sees only its own
    assert ok(api.get(f"/v1/payouts/{payout['payout_id']}", "m1")) == payout
    problem(api.get(f"/v1/payouts/{payout['payout_id']}", "m2"), 404, "not_found")
    problem(api.get("/v1/payouts", "m2", params={"party_id": "m1"}), 404, "not_found")
    problem(api.post(f"/v1/payouts/{payout['payout_id']}/paid", "m1"), 403, "forbidden")

    paid = ok(api.post(f"/v1/payouts/{payout['payout_id']}/paid", finance))
    assert (paid["status"], paid["changed"]) == ("paid", True) and paid["resolved_at"]
    assert ok(api.post(f"/v1/payouts/{payout['payout_id']}/paid", finance))["changed"] is False
    problem(api.post(f"/v1/payouts/{payout['payout_id']}/failed", finance,
                     json={"reason": "closed"}), 409, "invalid_state")
    problem(api.post("/v1/payouts/nope/paid", finance), 404, "unknown_payout")
    ok(api.get("/v1/payouts", "support", params={"status": "paid"}))

    [l1_payout] = [p for p in in_transit if p["party_id"] == "l1"]
    failed = ok(api.post(f"/v1/payouts/{l1_payout['payout_id']}/failed", finance,
                         json={"reason": "account closed"}))
    assert (failed["status"], failed["failure_reason"]) == ("failed", "account closed")
    problem(api.post(f"/v1/payouts/{l1_payout['payout_id']}/failed", finance,
                     json={"reason": ""}), 422, "invalid_request")

    statements = ok(api.get("/v1/statements", "m1"))["data"]
    assert [s["party_id"] for s in statements] == ["m1"]
    statement = ok(api.get(f"/v1/statements/{payout['statement_id']}", "m1"))
    assert statement["payout_minor"] == payout["amount_minor"] and statement["lines"]
    problem(api.get(f"/v1/statements/{payout['statement_id']}", "m2"), 404, "not_found")
    staff_view = ok(api.get("/v1/statements", "auditor", params={"party_id": "l1"}))["data"]
    assert [s["party_id"] for s in staff_view] == ["l1"]

    entries = ok(api.get("/v1/journal-entries", "m1"))["data"]
    assert [e["kind"] for e in entries][:3] == ["capture", "release", "payout"]
    assert {p["account"].split(":")[1] for e in entries for p in e["postings"]} == {"m1"}
    every = ok(api.get("/v1/journal-entries", "auditor"))["data"]
    assert len(every) > len(entries)
    assert all(sum(p["amount_minor"] for p in e["postings"]) == 0 for e in every)

    records = ok(api.get("/v1/audit", "auditor", params={"action": "payout.paid"}))["data"]
    assert [(r["object_id"], r["actor"], r["source"]) for r in records] == [
        (payout["payout_id"], finance_subject, "testclient")]
    statements_made = ok(api.get("/v1/audit", "auditor",
                                 params={"action": "settlement.statement"}))["data"]
    assert statements_made and {r["actor"] for r in statements_made} == {finance_subject}
    assert ok(api.get("/v1/audit/verify", "auditor")) == {
        "ok": True, "records": ok(api.get("/v1/audit", "auditor",
                                          params={"limit": 200}))["data"][-1]["seq"],
        "problem": None}


def test_releases_release_orders_whose_hold_ended(api, clock: FakeClock):
    order_service.capture_order(api.ctx, order("hold-1", when=START - timedelta(hours=1)))
    assert ok(api.post("/v1/releases", "finance")) == {"released": 0}
    clock.advance(days=8)
    assert ok(api.post("/v1/releases", "finance")) == {"released": 1}
    problem(api.post("/v1/releases", "risk"), 403, "forbidden")


def test_journal_and_audit_pages_cover_everything_once(api):
    for number in range(7):
        order_service.capture_order(api.ctx, order(f"p-{number}",
                                                   when=START - timedelta(minutes=number + 1)))
    entries = all_pages(api, "/v1/journal-entries", "auditor", limit=2)
    seqs = [e["seq"] for e in entries]
    assert len(seqs) == 7 and seqs == sorted(set(seqs))
    assert len(all_pages(api, "/v1/journal-entries", "m1", limit=3)) == 7
    assert all_pages(api, "/v1/journal-entries", "m2", limit=3) == []

    records = all_pages(api, "/v1/audit", "auditor", limit=3)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert len(records) >= len(PARTY_USERS) + 4  # parties, keys
    creations = all_pages(api, "/v1/audit", "auditor", limit=2, action="party.create")
    assert len(creations) == 7

    for bad in ("not base64!", forged_cursor("seven"), forged_cursor(True),
                forged_cursor(-1)):
        problem(api.get("/v1/journal-entries", "auditor", params={"cursor": bad}), 422,
                "invalid_input")
    problem(api.get("/v1/payouts", "auditor", params={"cursor": forged_cursor(5)}), 422,
            "invalid_input")
    problem(api.get("/v1/audit", "auditor", params={"limit": 0}), 422, "invalid_request")


def test_audit_verify_reports_the_first_broken_record(api):
    assert ok(api.get("/v1/audit/verify", "auditor"))["ok"] is True
    with api.ctx.uow() as uow:
        uow.conn.execute(update(t.audit_log).where(t.audit_log.c.seq == 2)
                         .values(actor="someone else"))
        uow.commit()
    report = ok(api.get("/v1/audit/verify", "auditor"))
    assert report["ok"] is False and report["problem"].startswith("record 2:")


def test_input_the_database_cannot_store_is_a_422_not_a_500(api):
    """NUL characters (PostgreSQL refuses them), dates a time zone pushes out of range, names
    longer than their columns: bad input, answered as such, before any database sees it."""
    problem(api.get("/v1/audit", "auditor", params={"object_id": "a\x00"}), 422,
            "invalid_input")
    problem(api.get("/v1/payouts/%00", "auditor"), 422, "invalid_input")
    problem(api.post("/v1/api-keys", "admin", json={"name": "a\u0000", "role": "support"}), 422,
            "invalid_input")
    problem(api.get("/v1/audit", {}, params={"object_id": "a\x00"}), 401,
            "authentication_failed")  # credentials are checked first
    far = "0001-01-01T00:00:00+01:00"
    problem(api.post("/v1/settlement-runs", "finance", json={"period_end": far}), 422,
            "invalid_request")
    problem(api.post("/v1/rulesets", "finance", json=ruleset_doc("v", START) | {
        "effective_from": far}), 422, "invalid_ruleset")
    problem(api.post("/v1/rulesets", "finance", json=ruleset_doc("v" * 65, START)), 422,
            "invalid_ruleset")
    simulate = {"ruleset": ruleset_doc("v", START), "order": order_body("x", START)}
    simulate["order"]["captured_at"] = far
    problem(api.post("/v1/rulesets/simulate", "finance", json=simulate), 422, "invalid_input")
    long_name = api.user("u" * 64, Role.FINANCE)
    body = problem(api.post("/v1/rulesets", long_name, json=ruleset_doc("v", START)), 422,
                   "invalid_input")
    assert body["details"] == {"field": "by"}


# -- access management --------------------------------------------------------------------------

def test_api_keys_are_shown_once_listed_without_secrets_and_revocable(api):
    made = api.post("/v1/api-keys", "admin", headers={"Idempotency-Key": "k-1"},
                    json={"name": "erp", "role": "finance", "scopes": ["read:all"]})
    created = ok(made, 201)
    key, prefix = created["key"], created["prefix"]
    assert key.startswith(f"slk_{prefix}_") and created["scopes"] == ["read:all"]
    secret = key[len(f"slk_{prefix}_"):]  # may itself contain "_": do not split on it
    admin_subject = api.key("admin")[1]
    assert created["created_by"] == admin_subject

    replay = api.post("/v1/api-keys", "admin", headers={"Idempotency-Key": "k-1"},
                      json={"name": "erp", "role": "finance", "scopes": ["read:all"]})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert ok(replay, 201) == created | {"key": None}

    listing = api.get("/v1/api-keys", "admin", params={"limit": 200})
    assert key not in listing.text and secret not in listing.text
    mine = [k for k in ok(listing)["data"] if k["prefix"] == prefix]
    assert mine and "key" not in mine[0] and "secret_hash" not in mine[0]
    with api.ctx.uow() as uow:  # the secret is nowhere in the database in clear
        stored = [json.dumps(row._asdict(), default=str) for table in (
            t.idempotency_keys, t.api_keys, t.audit_log) for row in uow.conn.execute(
                select(table))]
    assert not any(secret in text for text in stored)

    with_key = {"Authorization": f"Bearer {key}"}
    me = ok(api.get("/v1/auth/me", with_key))
    assert me["subject"] == f"key:{prefix}" and me["permissions"] == ["read:all"]
    problem(api.post("/v1/settlement-runs", with_key,
                     json={"period_end": "2026-11-01T00:00:00Z"}), 403, "forbidden")

    revoked = ok(api.post(f"/v1/api-keys/{prefix}/revoke", "admin"))
    assert revoked["revoked_at"] is not None
    problem(api.get("/v1/auth/me", with_key), 401, "authentication_failed")
    problem(api.post(f"/v1/api-keys/{prefix}/revoke", "admin"), 404, "not_found")
    problem(api.post("/v1/api-keys", "admin", json={"name": "x", "role": "support",
                                                    "scopes": ["run:settlement"]}),
            422, "invalid_input")
    problem(api.post("/v1/api-keys", "admin", json={"name": "x", "role": "merchant"}), 422,
            "invalid_input")
    problem(api.post("/v1/api-keys", "admin", json={"name": "x", "role": "merchant",
                                                    "party_id": "ghost"}), 404,
            "unknown_party")
    problem(api.post("/v1/api-keys", "finance", json={"name": "x", "role": "admin"}), 403,
            "forbidden")
    prefixes = [k["prefix"] for k in all_pages(api, "/v1/api-keys", "admin", limit=1)]
    assert prefixes == sorted(prefixes) and prefix in prefixes


def test_users_are_created_without_echoing_the_password_and_can_be_disabled(api):
    secret = "a very long secret passphrase"
    resp = api.post("/v1/users", "admin", headers={"Idempotency-Key": "u-1"},
                    json={"username": "mia", "password": secret, "role": "merchant",
                          "party_id": "m1"})
    user = ok(resp, 201)
    assert secret not in resp.text
    assert user == {"username": "mia", "role": "merchant", "party_id": "m1", "language": "en",
                    "created_at": user["created_at"], "disabled_at": None}
    replay = api.post("/v1/users", "admin", headers={"Idempotency-Key": "u-1"},
                      json={"username": "mia", "password": secret, "role": "merchant",
                            "party_id": "m1"})
    assert replay.headers["Idempotent-Replayed"] == "true" and ok(replay, 201) == user
    with api.ctx.uow() as uow:
        stored = [json.dumps(row._asdict(), default=str) for table in (
            t.idempotency_keys, t.audit_log, t.users) for row in uow.conn.execute(select(table))]
    assert not any(secret in text for text in stored)

    login = ok(api.client.post("/v1/auth/login", json={"username": "mia", "password": secret}))
    session = {"Authorization": f"Bearer {login['token']}"}
    assert ok(api.get("/v1/parties", session))["data"][0]["party_id"] == "m1"

    problem(api.post("/v1/users", "admin", json={"username": "mia", "password": secret,
                                                 "role": "support"}), 409, "conflict")
    weak = problem(api.post("/v1/users", "admin", json={"username": "weak", "password": "short",
                                                        "role": "support"}),
                   422, "invalid_request")
    assert "short" not in json.dumps(weak)
    problem(api.post("/v1/users", "admin", json={"username": "x", "password": secret,
                                                 "role": "merchant"}), 422, "invalid_input")
    problem(api.post("/v1/users", "admin", json={"username": "x", "password": secret,
                                                 "role": "supplier", "party_id": "m1"}),
            422, "invalid_input")
    problem(api.post("/v1/users", "risk", json={"username": "x", "password": secret,
                                                "role": "support"}), 403, "forbidden")

    assert ok(api.get("/v1/users/mia", "admin")) == user
    problem(api.get("/v1/users/nobody", "admin"), 404, "not_found")
    names = [u["username"] for u in all_pages(api, "/v1/users", "admin", limit=1)]
    assert names == ["mia"]
    assert "password" not in api.get("/v1/users", "admin").text

    disabled = ok(api.post("/v1/users/mia/disable", "admin"))
    assert disabled["disabled_at"] is not None
    problem(api.get("/v1/parties", session), 401, "authentication_failed")
    problem(api.client.post("/v1/auth/login", json={"username": "mia", "password": secret}),
            401, "authentication_failed")
    assert ok(api.get("/v1/audit", "auditor", params={"object_id": "mia"}))["data"][-1][
        "action"] == "user.disable"


# -- idempotency on these routes ----------------------------------------------------------------

def test_settlement_run_with_an_idempotency_key_runs_once(api, clock: FakeClock):
    order_service.capture_order(api.ctx, order("i-1", when=START - timedelta(hours=1)))
    order_service.confirm_order(api.ctx, "i-1")
    clock.set(datetime(2026, 11, 9, 1, tzinfo=UTC))
    body = {"period_end": "2026-11-09T00:00:00Z"}
    first = ok(api.post("/v1/settlement-runs", "finance", json=body,
                        headers={"Idempotency-Key": "run-1"}), 201)
    second = api.post("/v1/settlement-runs", "finance", json=body,
                      headers={"Idempotency-Key": "run-1"})
    assert ok(second, 201) == first and second.headers["Idempotent-Replayed"] == "true"
    problem(api.post("/v1/settlement-runs", "finance", json=body | {"ignore_schedule": True},
                     headers={"Idempotency-Key": "run-1"}), 409, "idempotency_key_reused")


# -- the server ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_starts_the_api_on_a_migrated_database(tmp_path):
    port = free_port()
    url = f"sqlite:///{tmp_path / 'served.db'}"
    env = os.environ | {"SPLITLEDGER_ENCRYPTION_KEYS": TEST_KEYS}
    process = subprocess.Popen(
        [sys.executable, "-m", "splitledger.cli.main", "serve", "--port", str(port),
         "--database", url], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        spec = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            spec = resp.json()
            break
        assert spec is not None, "the server did not answer within 60 s"
        assert "/v1/settlement-runs" in spec["paths"]
        resp = httpx.get(f"http://127.0.0.1:{port}/v1/payouts", timeout=5)
        assert resp.status_code == 401  # migrated, running, and guarded
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert b"Traceback" not in output, output.decode(errors="replace")


def test_asgi_factory_builds_the_app_from_the_environment(sqlite_url, monkeypatch):
    from splitledger.api import asgi
    monkeypatch.setenv("SPLITLEDGER_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SPLITLEDGER_ENCRYPTION_KEYS", TEST_KEYS)
    app = asgi.create()
    try:
        with TestClient(app) as client:
            assert client.get("/openapi.json").status_code == 200
            problem(client.get("/v1/audit"), 401, "authentication_failed")
    finally:
        app.state.ctx.engine.dispose()


# -- the access commands ------------------------------------------------------------------------

def cli(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli_app, list(args),
                              env={"SPLITLEDGER_ENCRYPTION_KEYS": TEST_KEYS, **(env or {})})


def test_users_apikeys_and_audit_commands(sqlite_url):
    ctx = make_context(sqlite_url)
    seed_marketplace(ctx)
    try:
        secret = "typed in by a script 42"
        added = cli("users", "add", "ops", "--role", "merchant", "--party", "m1", "-d",
                    sqlite_url, env={"SPLITLEDGER_NEW_PASSWORD": secret})
        assert added.exit_code == 0, added.stderr
        assert secret not in added.stdout + added.stderr
        assert access_service.login(ctx, "ops", secret)["party_id"] == "m1"
        prompted = cli("users", "add", "ops2", "--role", "support", "-d", sqlite_url)
        assert prompted.exit_code != 0  # no terminal and no variable: nothing to read
        listed = cli("users", "list", "-d", sqlite_url)
        assert "ops" in listed.stdout and "argon2" not in listed.stdout

        made = cli("apikeys", "create", "erp", "--role", "finance", "--scope", "read:all",
                   "-d", sqlite_url)
        assert made.exit_code == 0, made.stderr
        key = made.stdout.strip()
        assert re.fullmatch(r"slk_[0-9a-f]{12}_\S+", key) and "cannot be shown" in made.stderr
        prefix = key.split("_")[1]
        assert access_service.principal_for_api_key(ctx, key).subject == f"key:{prefix}"
        listed = cli("apikeys", "list", "-d", sqlite_url)
        assert prefix in listed.stdout and key[len(f"slk_{prefix}_"):] not in listed.stdout
        refused = cli("apikeys", "create", "x", "--role", "support", "--scope",
                      "write:orders", "-d", sqlite_url)
        assert refused.exit_code == 2 and refused.stderr.startswith("error[invalid_input]")
        assert cli("apikeys", "revoke", prefix, "-d", sqlite_url).exit_code == 0
        again = cli("apikeys", "revoke", prefix, "-d", sqlite_url)
        assert again.exit_code == 2 and again.stderr.startswith("error[not_found]")

        verified = cli("audit", "verify", "-d", sqlite_url)
        assert verified.exit_code == 0 and verified.stdout.startswith("audit log OK")
        with ctx.uow() as uow:
            actors = {row.actor for row in uow.conn.execute(select(t.audit_log)).all()
                      if row.action.startswith(("user.", "api_key."))}
            assert all(actor.startswith("cli:") for actor in actors)
            uow.conn.execute(update(t.audit_log).where(t.audit_log.c.seq == 3)
                             .values(after={"forged": True}))
            uow.commit()
        broken = cli("audit", "verify", "-d", sqlite_url)
        assert broken.exit_code == 1
        assert broken.stdout.splitlines() == [
            "audit log BROKEN at record 3: content does not match its hash (edited)"]
    finally:
        ctx.engine.dispose()


# -- the documentation --------------------------------------------------------------------------

def error_classes() -> list[type[errors_module.SplitledgerError]]:
    found, todo = [], [errors_module.SplitledgerError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_docs_list_every_error_code_with_its_status():
    text = (ROOT / "docs" / "api.md").read_text("utf-8")
    rows = {m.group(1): int(m.group(2))
            for m in re.finditer(r"^\| `([a-z_]+)` \| (\d{3}) \|", text, re.MULTILINE)}
    expected = {cls.code: problems.status_for(cls("x")) for cls in error_classes()}
    expected |= {"invariant_violation": 500, "invalid_request": 422, "not_found": 404,
                 "method_not_allowed": 405}
    missing = {code: status for code, status in expected.items() if rows.get(code) != status}
    rows_needed = "\n".join(f"| `{code}` | {status} | ... |"
                            for code, status in sorted(missing.items()))
    assert not missing, f"docs/api.md lacks (or has the wrong status for):\n{rows_needed}"


def test_docs_role_table_matches_the_code():
    text = (ROOT / "docs" / "api.md").read_text("utf-8")
    columns = list(Permission)
    expected = ["| role | " + " | ".join(f"`{p.value}`" for p in columns) + " |",
                "|---|" + "---|" * len(columns)]
    expected += [f"| `{role.value}` | " + " | ".join(
        "✓" if p in ROLE_PERMISSIONS[role] else "" for p in columns) + " |" for role in Role]
    table = "\n".join(expected)
    assert table in text, f"docs/api.md's role table should read:\n{table}"
