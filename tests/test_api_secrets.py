"""Secrets never appear in clear: not in any API response, not in the database, not in the logs.

The secrets: bank account numbers (whole, without spaces, and the part the mask hides), the
identity and business-licence numbers of KYC, passwords, API keys, session tokens and webhook
signing secrets. Those of the populated marketplace (``tests.api_support``) and those that a
whole flow over HTTP adds (new bank details, a new party, a new user, a new API key and webhook
subscription with replays, logins good and bad, malformed and invalid requests).

* Responses: every GET route, with party A's and party B's ids, as admin, auditor and every
  party user; and every response of the flow except the one that shows a new secret once.
* Database: every column of every table, and the bytes of the SQLite files (database and
  write-ahead log: deleted or overwritten rows linger there).
* Logs: everything logged at DEBUG by any logger (SQLAlchemy's statements and parameters
  included) and everything written to stdout/stderr during the flow.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from splitledger.store import tables as t
from tests.api_support import PRINCIPALS, World, api_routes, path_params, world
from tests.test_api_authz import OWNED_IDS

NEW_ACCOUNT = "6288 1357 2468 0991"     # a new party registered over HTTP
OWN_ACCOUNT = "6277 4410 8835 2264"     # party B changes its own bank details
NEW_KYC = ("91440300MA5H9TKL6W", "440305199203157729")
NEW_PASSWORD = "a-New-Secret-Password-9931"
MASK = re.compile(r"^(.* )?\*{4}[0-9A-Z]{4}$")


@pytest.fixture
def w(tmp_path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    built = world(tmp_path)
    yield built
    built.close()


def find(secrets: dict[str, str], text: str) -> list[str]:
    return sorted(name for name, secret in secrets.items() if secret and secret in text)


def account_variants(number: str, name: str) -> dict[str, str]:
    digits = number.replace(" ", "")
    return {name: number, f"{name} (digits)": digits, f"{name} (hidden digits)": digits[:12],
            f"{name} (hidden part)": number[:14]}


def flow(w: World) -> tuple[dict[str, str], list[tuple[str, Any]]]:
    """A day of HTTP traffic touching every secret. Returns the secrets it added and the
    answers that may be shown to the caller (all but those that show a new secret once)."""
    added = {**account_variants(NEW_ACCOUNT, "new party's account"),
             **account_variants(OWN_ACCOUNT, "party B's new account"),
             "new registration number": NEW_KYC[0], "new identity number": NEW_KYC[1],
             "new user's password": NEW_PASSWORD}
    shown: list[tuple[str, Any]] = []

    def call(label: str, who: str | None, method: str, path: str, **kwargs: Any) -> Any:
        answer = w.call(who, method, path, **kwargs)
        assert answer.status_code < 500, f"{label}: {answer.status_code} {answer.text}"
        shown.append((label, answer))
        return answer

    facts = w.facts
    # logins: wrong password, unknown user (with someone's real password), a good one
    for username, password in ((facts.users["admin"], facts.passwords["finance"]),
                               ("nobody", facts.passwords["merchant_a"]),
                               (facts.users["merchant_b"], facts.passwords["merchant_b"] + "x")):
        answer = call("bad login", None, "POST", "/v1/auth/login",
                      json={"username": username, "password": password})
        assert answer.status_code == 401
    good = w.client.post("/v1/auth/login", json={"username": facts.users["merchant_b"],
                                                  "password": facts.passwords["merchant_b"]})
    assert good.status_code == 200
    added["fresh session token"] = good.json()["token"]
    session = {"Authorization": f"Bearer {good.json()['token']}"}
    # credentials that do not work, built from real ones
    for bearer in (facts.keys["finance"] + "x", facts.keys["finance"].replace("slk_", "slk_0"),
                   facts.tokens["admin"][:-2]):
        answer = call("bad credentials", None, "GET", "/v1/orders",
                      headers={"Authorization": f"Bearer {bearer}"})
        assert answer.status_code == 401
    # malformed and invalid requests carrying secrets
    bank = {"holder_name": "B", "account_number": OWN_ACCOUNT, "bank_name": "ABC"}
    call("malformed json", "finance", "PUT", "/v1/parties/m2/bank-details",
         headers={"content-type": "application/json"}, content=json.dumps(bank)[:-3])
    call("too long", "finance", "PUT", "/v1/parties/m2/bank-details",
         json={**bank, "account_number": (OWN_ACCOUNT + " ") * 3})
    call("bad letters", "finance", "PUT", "/v1/parties/m2/bank-details",
         json={**bank, "account_number": OWN_ACCOUNT + " ?"})
    call("someone else's", "merchant_a", "PUT", "/v1/parties/m2/bank-details", json=bank)
    call("no right", "support", "PUT", "/v1/parties/m2/bank-details", json=bank)
    # bank details: a party changes its own, a new party registered with them (and replayed)
    answer = call("own bank details", "merchant_b", "PUT", "/v1/parties/m2/bank-details",
                  json=bank)
    assert answer.status_code == 200 and MASK.match(answer.json()["bank_masked"]), answer.text
    party = {"party_id": "m9", "name": "Merchant Nine", "role": "merchant",
             "bank_details": {"holder_name": "Nine", "account_number": NEW_ACCOUNT,
                              "bank_name": "BOC"}}
    for _ in range(2):
        answer = call("new party", "finance", "POST", "/v1/parties", json=party,
                      headers={"Idempotency-Key": "party-m9"})
        assert answer.status_code == 201, answer.text
    call("bank status", "admin", "GET", "/v1/parties/m9/bank-details")
    call("approve bank details", "risk", "POST", "/v1/parties/m9/bank-details/approve",
         json={})
    # identity
    kyc = {"entity_type": "company", "legal_name": "Merchant Two Ltd", "country": "CN",
           "id_document_type": "national_id", "id_document_number": NEW_KYC[1],
           "registration_number": NEW_KYC[0], "legal_representative": "Li Si"}
    call("kyc", "merchant_b", "PUT", "/v1/parties/m2/kyc", json=kyc)
    call("kyc (malformed)", "merchant_b", "PUT", "/v1/parties/m2/kyc",
         json={**kyc, "id_document_number": NEW_KYC[1] + "!" * 70})
    call("kyc review", "risk", "POST", "/v1/parties/m2/kyc/review",
         json={"decision": "verify"})
    # a user, an API key and a webhook subscription, each created and replayed
    user = {"username": "new.clerk", "password": NEW_PASSWORD, "role": "support"}
    for _ in range(2):
        call("new user", "admin", "POST", "/v1/users", json=user,
             headers={"Idempotency-Key": "user-1"})
    call("weak password", "admin", "POST", "/v1/users",
         json={**user, "username": "weak", "password": NEW_PASSWORD[:8]})
    created = w.call("admin", "POST", "/v1/api-keys", json={"name": "erp", "role": "finance"},
                     headers={"Idempotency-Key": "key-1"})
    assert created.status_code == 201 and created.json()["key"], created.text
    added["API key made over HTTP"] = created.json()["key"]
    replay = call("key replay", "admin", "POST", "/v1/api-keys",
                  json={"name": "erp", "role": "finance"}, headers={"Idempotency-Key": "key-1"})
    assert replay.json().get("key") is None, "a replay shows the API key again"
    call("new key works", None, "GET", "/v1/orders",
         headers={"Authorization": f"Bearer {added['API key made over HTTP']}"})
    hook = {"url": "https://hooks.example.test/erp", "event_types": ["*"]}
    made = w.call("admin", "POST", "/v1/webhooks/subscriptions", json=hook,
                  headers={"Idempotency-Key": "hook-1"})
    assert made.status_code == 201 and made.json()["secret"], made.text
    added["webhook secret made over HTTP"] = made.json()["secret"]
    call("hook replay", "admin", "POST", "/v1/webhooks/subscriptions", json=hook,
         headers={"Idempotency-Key": "hook-1"})
    # money moves: a refund, a settlement run, a payout's answer
    call("refund", "finance", "POST", "/v1/orders/ord-B-2/refunds",
         json={"amount_minor": 1_500, "reason": "return"}, headers={"Idempotency-Key": "r-1"})
    call("run", "finance", "POST", "/v1/settlement-runs",
         json={"period_end": "2026-11-09T00:00:00Z", "ignore_schedule": True})
    call("failed payout", "finance", "POST", f"/v1/payouts/{w.a.payouts[0]}/failed",
         json={"reason": "account closed"})
    call("logout", None, "POST", "/v1/auth/logout", headers=session)
    return added, shown


def walk_get_routes(w: World) -> list[tuple[str, Any]]:
    """Every GET route, with each party's ids, as admin, auditor and every party user."""
    answers = []
    for route in api_routes(w.app):
        if "GET" not in route.methods:
            continue
        for owner in (w.a, w.b):
            path = route.path
            for name in path_params(route):
                path = path.replace("{" + name + "}", OWNED_IDS[name](owner))
            if not path_params(route):
                path += "?limit=200"
            for who in ("admin", "auditor", *[p for p, (_, party) in PRINCIPALS.items()
                                             if party]):
                answer = w.call(who, "GET", path)
                assert answer.status_code < 500, f"GET {path} as {who}: {answer.text}"
                answers.append((f"GET {path} as {who}", answer))
    return answers


def _masks_are_masks(label: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("bank_masked", "bank") and isinstance(item, str):
                assert MASK.match(item), f"{label}: {key} {item!r} is not masked"
            _masks_are_masks(label, item)
    elif isinstance(value, list):
        for item in value:
            _masks_are_masks(label, item)


def test_no_response_shows_a_secret(w):
    added, shown = flow(w)
    secrets = w.secrets() | added
    answers = shown + walk_get_routes(w)
    for label, answer in answers:
        found = find(secrets, answer.text) + find(secrets, str(answer.headers))
        assert not found, f"{label} shows {found}"
        if answer.headers.get("content-type", "").endswith("json") and answer.content:
            _masks_are_masks(label, answer.json())
    assert len(answers) > 100


def _database_text(w: World) -> Iterator[tuple[str, str]]:
    with w.ctx.uow() as uow:
        for table in t.metadata.sorted_tables:
            for row in uow.conn.execute(select(table)):
                for column, value in row._mapping.items():
                    if value is None:
                        continue
                    if isinstance(value, bytes):
                        text = value.decode("latin-1")
                    elif isinstance(value, dict | list):
                        text = json.dumps(value, ensure_ascii=False)
                    else:
                        text = str(value)
                    yield f"{table.name}.{column}", text


def test_the_database_holds_no_secret_in_clear(w):
    added, _ = flow(w)
    secrets = w.secrets() | added
    for where, text in _database_text(w):
        found = find(secrets, text)
        assert not found, f"{where} holds {found} in clear"
    w.ctx.engine.dispose()  # let SQLite write what it holds; then read the files themselves
    files = [p for p in w.db_path.parent.iterdir() if p.name.startswith(w.db_path.name)]
    assert files
    for path in files:
        data = path.read_bytes()
        found = [name for name, secret in secrets.items()
                 if secret.encode() in data or secret.encode("utf-16-le") in data]
        assert not found, f"{path.name} holds {found} in clear"


def test_the_logs_hold_no_secret(w, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "splitledger", "httpx", "uvicorn", "fastapi"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        w.ctx.engine.dispose()  # new connections see the DEBUG level (SQL and parameters)
        added, _ = flow(w)
        walk_get_routes(w)
    finally:
        for name in ("sqlalchemy.engine", "splitledger", "httpx", "uvicorn", "fastapi"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    secrets = w.secrets() | added
    assert any("SELECT" in r.getMessage() for r in caplog.records), "SQL was not logged"
    for record in caplog.records:
        text = " ".join([record.getMessage(), repr(record.args), record.exc_text or "",
                         repr(record.__dict__)])
        found = find(secrets, text)
        assert not found, f"log record {record.name}:{record.lineno} holds {found}"
    out, err = capfd.readouterr()
    found = find(secrets, out + err)
    assert not found, f"stdout/stderr hold {found}"
