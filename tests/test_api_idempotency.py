"""``Idempotency-Key`` over HTTP, with Stripe-like semantics.

* Every POST (but logging in and out) takes the header.
* The same key and body: the first response again, marked ``Idempotent-Replayed: true``, and
  nothing changes (row counts of every table).
* The same key and another body (or another URL): 409 ``idempotency_key_reused``.
* Keys belong to the caller: two API keys may use the same key independently.
* 20 concurrent duplicates of ``POST /v1/orders`` on PostgreSQL make exactly one order and one
  capture entry; every answer is the 201 or a retryable 409 ``concurrent_request``, and
  retrying those with the same key returns the same 201.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from splitledger.api.app import create_app
from splitledger.domain.access import Role
from splitledger.services import access
from splitledger.store import tables as t
from tests.api_support import NOW, World, api_routes, row_counts, sample_body, world
from tests.support import seed_marketplace

NOT_IDEMPOTENT = {"POST /v1/auth/login", "POST /v1/auth/logout"}  # sessions, not resources
# A replay answers with these fields emptied: the secret is shown once only.
SHOWN_ONCE = {"POST /v1/api-keys": {"key"}, "POST /v1/webhooks/subscriptions": {"secret"}}


@pytest.fixture
def w(tmp_path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    built = world(tmp_path)
    yield built
    built.close()


def order_body(order_id: str, price: int = 12_345, merchant: str = "m2") -> dict[str, Any]:
    return {"order_id": order_id, "currency": "CNY", "captured_at": NOW.isoformat(),
            "lines": [{"line_id": "1", "sku": "SKU-9", "category": "books",
                       "merchant_id": merchant, "quantity": 1, "unit_price_minor": price}]}


def takes_idempotency_key(route: Any) -> bool:
    names: list[str] = []

    def walk(dependant: Any) -> None:
        names.extend(p.alias.lower() for p in dependant.header_params)
        for dep in dependant.dependencies:
            walk(dep)

    walk(route.dependant)
    return "idempotency-key" in names


def post_routes(w: World) -> list[Any]:
    return [r for r in api_routes(w.app) if "POST" in r.methods
            and f"POST {r.path}" not in NOT_IDEMPOTENT]


def test_every_post_takes_an_idempotency_key(w):
    missing = [r.path for r in post_routes(w) if not takes_idempotency_key(r)]
    assert not missing, f"POST routes without an Idempotency-Key header: {missing}"


def _url(route: Any, w: World) -> str:
    from tests.test_api_authz import url_for
    return url_for(route, w.a)


def test_same_key_and_body_replays_the_first_answer_and_changes_nothing(w):
    openapi = w.app.openapi()
    for route in post_routes(w):
        op = f"POST {route.path}"
        url = _url(route, w)
        body = sample_body(openapi, "POST", route.path)
        key = {"Idempotency-Key": f"k-{route.path}"}
        first = w.call("admin", "POST", url, json=body, headers=key)
        assert first.status_code < 500, f"{op}: {first.status_code} {first.text}"
        assert first.headers.get("Idempotent-Replayed") is None
        before = row_counts(w.ctx)
        again = w.call("admin", "POST", url, json=body, headers=key)
        assert row_counts(w.ctx) == before, f"{op}: the replay changed the database"
        assert again.status_code == first.status_code, op
        assert again.headers.get("Idempotent-Replayed") == "true", op
        expected = first.json()
        for field in SHOWN_ONCE.get(op, ()) if first.status_code < 400 else ():
            expected[field] = None
        assert again.json() == expected, op
        if body:  # another body under the same key is refused, and changes nothing
            for other in _variants(body):
                refused = w.call("admin", "POST", url, json=other, headers=key)
                if refused.status_code != 422:  # an invalid variant never reaches the key
                    break
            assert refused.status_code == 409, f"{op}: {refused.status_code} {refused.text}"
            assert refused.json()["code"] == "idempotency_key_reused", op
            assert row_counts(w.ctx) == before


def _variants(body: Any) -> Iterator[Any]:
    """The body with one value changed, for each value in turn."""
    if isinstance(body, dict):
        for name, value in body.items():
            for changed in _variants(value):
                yield {**body, name: changed}
    elif isinstance(body, list) and body:
        for changed in _variants(body[0]):
            yield [changed, *body[1:]]
    else:
        changed = _another(body)
        if changed != body:
            yield changed


def _another(body: Any) -> Any:
    """The same request with one value changed (still valid)."""
    if isinstance(body, dict):
        for name, value in body.items():
            changed = _another(value)
            if changed != value:
                return {**body, name: changed}
    if isinstance(body, list) and body:
        return [_another(body[0]), *body[1:]]
    if isinstance(body, bool):
        return not body
    if isinstance(body, int):
        return body + 1
    if isinstance(body, str):
        try:  # a time: a day earlier (still in the past)
            return (datetime.fromisoformat(body.replace("Z", "+00:00"))
                    - timedelta(days=1)).isoformat()
        except ValueError:
            return body + "2"
    return body


def test_a_key_used_on_another_url_is_refused(w):
    key = {"Idempotency-Key": "confirm-1"}
    assert w.call("finance", "POST", "/v1/orders/ord-B-2/confirm", headers=key).status_code \
        == 200
    refused = w.call("finance", "POST", "/v1/orders/ord-A-3/confirm", headers=key)
    assert refused.status_code == 409 and refused.json()["code"] == "idempotency_key_reused"
    with w.ctx.uow() as uow:
        released = uow.conn.execute(select(t.orders.c.released_at).where(
            t.orders.c.order_id == "ord-A-3")).scalar_one()
    assert released is None


def test_same_body_other_key_is_a_new_request(w):
    first = w.call("finance", "POST", "/v1/orders/ord-B-2/refunds",
                   json={"amount_minor": 1_000}, headers={"Idempotency-Key": "r-1"})
    second = w.call("finance", "POST", "/v1/orders/ord-B-2/refunds",
                    json={"amount_minor": 1_000}, headers={"Idempotency-Key": "r-2"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["reversal_id"] != second.json()["reversal_id"]
    assert second.json()["remaining_minor"] == first.json()["remaining_minor"] - 1_000


def test_keys_belong_to_the_caller(w):
    key = {"Idempotency-Key": "shared-key-1"}
    one = w.call("finance", "POST", "/v1/orders", json=order_body("ord-k-1"), headers=key)
    two = w.call("admin", "POST", "/v1/orders", json=order_body("ord-k-2"), headers=key)
    assert (one.status_code, two.status_code) == (201, 201), (one.text, two.text)
    assert two.headers.get("Idempotent-Replayed") is None
    assert one.json()["order_id"] == "ord-k-1" and two.json()["order_id"] == "ord-k-2"
    # and each caller replays its own
    again = w.call("admin", "POST", "/v1/orders", json=order_body("ord-k-2"), headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == two.json()
    # the same body under the other caller's key is that caller's first request
    three = w.call("risk", "POST", "/v1/orders", json=order_body("ord-k-1"), headers=key)
    assert three.status_code == 403  # risk may not capture: refused before the key counts
    assert w.call("finance", "POST", "/v1/orders", json=order_body("ord-k-2"),
                  headers=key).json()["code"] == "idempotency_key_reused"


def test_a_refused_request_can_be_retried_with_its_key_once_fixed(w):
    """An error is the answer to that request: replayed as it was. A retryable error is not
    pinned to the key."""
    key = {"Idempotency-Key": "too-much"}
    refused = w.call("finance", "POST", "/v1/orders/ord-B-2/refunds",
                     json={"amount_minor": 10**12}, headers=key)
    assert refused.status_code == 409
    again = w.call("finance", "POST", "/v1/orders/ord-B-2/refunds",
                   json={"amount_minor": 10**12}, headers=key)
    assert again.status_code == 409 and again.json() == refused.json()
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_keys_are_kept_at_least_a_day(w):
    key = {"Idempotency-Key": "day-old"}
    first = w.call("finance", "POST", "/v1/orders", json=order_body("ord-day"), headers=key)
    assert first.status_code == 201
    w.clock.advance(hours=24, minutes=5)
    before = row_counts(w.ctx)
    again = w.call("finance", "POST", "/v1/orders", json=order_body("ord-day"), headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (again.status_code, again.json()) == (201, first.json())
    assert row_counts(w.ctx) == before


def test_a_key_longer_than_allowed_is_refused_before_anything_happens(w):
    before = row_counts(w.ctx)
    answer = w.call("finance", "POST", "/v1/orders", json=order_body("ord-long"),
                    headers={"Idempotency-Key": "k" * 201})
    assert answer.status_code in (409, 422), answer.text
    assert row_counts(w.ctx) == before


# -- concurrency on PostgreSQL ---------------------------------------------------------------

@pytest.mark.postgres
def test_twenty_concurrent_duplicates_capture_once(pg_ctx, clock):
    clock.set(NOW)
    seed_marketplace(pg_ctx)
    key = access.create_api_key(pg_ctx, "shop", Role.FINANCE)["key"]
    app = create_app(pg_ctx)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "dup-1"}
    body = order_body("ord-dup-1", price=77_777)
    n = 20
    barrier = threading.Barrier(n)
    answers: list[Any] = [None] * n

    def post(i: int) -> None:
        # one client per thread (a TestClient is not thread-safe); a 500 is an answer here
        with TestClient(app, raise_server_exceptions=False) as client:
            barrier.wait()
            answers[i] = client.post("/v1/orders", json=body, headers=headers)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(answers), "a request did not finish"
    statuses = sorted(a.status_code for a in answers)
    created = [a for a in answers if a.status_code == 201]
    busy = [a for a in answers if a.status_code == 409]
    assert len(created) + len(busy) == n, [(a.status_code, a.text) for a in answers]
    for answer in busy:
        problem = answer.json()
        assert problem["code"] == "concurrent_request" and problem["retryable"], problem
    assert created, statuses
    first = created[0].json()
    assert all(a.json() == first for a in created)

    with TestClient(app) as client:  # retries of the 409s get the same 201
        for _ in busy:
            for _attempt in range(50):
                retry = client.post("/v1/orders", json=body, headers=headers)
                if retry.status_code != 409:
                    break
                time.sleep(0.05)
            assert retry.status_code == 201 and retry.json() == first, retry.text

    with pg_ctx.uow() as uow:
        orders = uow.conn.execute(select(func.count()).select_from(t.orders)).scalar_one()
        captures = uow.conn.execute(select(func.count()).select_from(t.journal_entries).where(
            t.journal_entries.c.order_id == "ord-dup-1",
            t.journal_entries.c.kind == "capture")).scalar_one()
    assert (orders, captures) == (1, 1)


@pytest.mark.postgres
def test_a_duplicate_that_loses_the_race_for_the_key_is_told_to_retry(pg_ctx, clock):
    """Regression: the second of two simultaneous requests with one key found no key row,
    then lost the insert to the first one's commit, and answered 500 (a unique violation)."""
    clock.set(NOW)
    seed_marketplace(pg_ctx)
    made = access.create_api_key(pg_ctx, "shop", Role.FINANCE)
    app = create_app(pg_ctx)
    headers = {"Authorization": f"Bearer {made['key']}", "Idempotency-Key": "race-1"}
    scope = "http:" + hashlib.sha256(f"key:{made['prefix']}".encode()).hexdigest()[:32]
    answer: list[Any] = []
    with pg_ctx.engine.connect() as rival:  # the first request, between its insert and commit
        rival.execute(insert(t.idempotency_keys).values(
            scope=scope, key="race-1", request_hash="0" * 64, response={}, created_at=NOW))
        with TestClient(app, raise_server_exceptions=False) as client:
            thread = threading.Thread(target=lambda: answer.append(client.post(
                "/v1/orders", json=order_body("ord-race"), headers=headers)))
            thread.start()
            time.sleep(0.5)  # the request now waits on the key's unique index
            rival.commit()
            thread.join(30)
    assert answer[0].status_code == 409, answer[0].text
    assert answer[0].json()["code"] == "concurrent_request" and answer[0].json()["retryable"]
