"""The authorisation matrix, generated from the application's route table.

Every API route, whoever adds it, is called with the credentials of every staff role, of each
party role, of API keys narrower than their role, and (for routes that take an id) with the ids
of party A's objects. What must hold:

* every route declares the permission it needs through ``require(...)``; a route without one
  fails ``test_every_route_declares_a_permission`` (only the login/logout/"who am I" routes of
  ``AUTH_ONLY`` are exempt, and they are checked separately);
* every path parameter has an entry in ``OWNED_IDS`` (a route whose parameter is unknown fails:
  add the parameter to the matrix);
* a caller without the permission gets 403, and nothing changes;
* another party (party B, and users of the other party roles) gets 403 or 404 on party A's
  objects, and the answer contains nothing of party A's (ids other than the one asked for,
  amounts, bank masks);
* support and the auditor never change money: every write route answers 403 for them (but the
  few POSTs that only compute, listed in ``READ_ONLY_POSTS``, which must then change nothing);
  the auditor changes nothing at all;
* a party user listing orders, payouts, statements or journal entries sees its own rows only,
  and all of them.

It runs on SQLite (the scoping is in the queries, the same SQL on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from splitledger.domain.access import PARTY_ROLES, Permission
from splitledger.store import tables as t
from tests.api_support import (
    PARTY_A,
    PRINCIPALS,
    SCOPED_KEYS,
    STAFF,
    WRITE_METHODS,
    Owned,
    Route,
    World,
    api_routes,
    leaks,
    path_params,
    route_permissions,
    row_counts,
    sample_body,
    world,
)

# Routes that need no permission: logging in (no credentials yet), and what any authenticated
# caller may do with its own session. Checked on their own below.
AUTH_ONLY = {"POST /v1/auth/login": "public", "POST /v1/auth/logout": "authenticated",
             "GET /v1/auth/me": "authenticated"}

# POSTs that compute an answer and change nothing; the auditor may call them (and a test
# proves that they changed nothing). Any other POST/PUT/PATCH/DELETE is a write.
READ_ONLY_POSTS = {"POST /v1/rulesets/validate", "POST /v1/rulesets/simulate",
                   "POST /v1/rulesets/backtest"}

# Path (and query) parameter -> an object owned by that party. Add new parameters here.
OWNED_IDS: dict[str, Callable[[Owned], str]] = {
    "party_id": lambda owner: owner.party_id,
    "order_id": lambda owner: owner.orders[-1],  # captured after the settlement, still held
    "payout_id": lambda owner: owner.payouts[0],
    "statement_id": lambda owner: owner.statements[0],
    # the ruleset in force: it carries party A's own commission rate
    "version": lambda owner: owner.ruleset_version,
    "prefix": lambda owner: owner.key_prefix,
    "username": lambda owner: owner.username,
    # webhooks are the platform's; a delivery carries an event about one party
    "subscription_id": lambda owner: owner.webhook_subscription,
    "delivery_id": lambda owner: owner.webhook_delivery,
    # adjustments are staff-only; one requested for each party
    "adjustment_id": lambda owner: owner.adjustment,
}

OTHER_PARTY_USERS = [who for who, (role, party) in PRINCIPALS.items()
                     if role in PARTY_ROLES and party != PARTY_A]
ALL_CALLERS = [*PRINCIPALS, *SCOPED_KEYS]


@pytest.fixture
def w(tmp_path) -> Iterator[World]:  # type: ignore[no-untyped-def]
    built = world(tmp_path)
    yield built
    built.close()


def operations(app: Any) -> list[tuple[Route, str]]:
    return [(route, method) for route in api_routes(app) for method in route.methods]


def label(route: Route, method: str) -> str:
    return f"{method} {route.path}"


def url_for(route: Route, owner: Owned) -> str:
    path = route.path
    for name in path_params(route):
        path = path.replace("{" + name + "}", OWNED_IDS[name](owner))
    return path


def matrix_operations(app: Any) -> list[tuple[Route, str]]:
    return [(r, m) for r, m in operations(app) if label(r, m) not in AUTH_ONLY]


def query_id_params(route: Route) -> list[str]:
    names: list[str] = []

    def walk(dependant: Any) -> None:
        names.extend(p.alias for p in dependant.query_params if p.alias in OWNED_IDS)
        for dep in dependant.dependencies:
            walk(dep)

    walk(route.dependant)
    return names


def is_write(route: Route, method: str) -> bool:
    return method in WRITE_METHODS and label(route, method) not in READ_ONLY_POSTS


def describe(answer: Any) -> str:
    return f"{answer.status_code} {answer.text[:300]}"


# -- the route table -------------------------------------------------------------------------

def test_every_route_declares_a_permission(w):
    missing = [label(r, m) for r, m in matrix_operations(w.app) if route_permissions(r) is None]
    assert not missing, "\n".join(f"route {op} has no permission: declare one with "
                                  "require(...) (api/deps.py)" for op in missing)
    assert set(AUTH_ONLY) <= {label(r, m) for r, m in operations(w.app)}, \
        "an AUTH_ONLY route is gone: update the matrix"


def test_every_path_parameter_is_in_the_matrix(w):
    unknown = sorted({f"{label(r, m)}: {{{name}}}" for r, m in operations(w.app)
                      for name in path_params(r) if name not in OWNED_IDS})
    assert not unknown, "\n".join(f"route {u} takes a parameter the authorisation matrix does "
                                  "not know: add it to the matrix (OWNED_IDS)" for u in unknown)


def test_the_matrix_ids_name_real_objects(w):
    """An id that does not exist would make every 404 below meaningless."""
    for route, method in matrix_operations(w.app):
        if method != "GET" or not path_params(route):
            continue
        for owner in (w.a, w.b):
            answer = w.call("admin", "GET", url_for(route, owner))
            assert answer.status_code == 200, f"GET {url_for(route, owner)}: {describe(answer)}"


def test_credentials_are_required_except_to_log_in(w):
    for route, method in operations(w.app):
        op = label(route, method)
        if AUTH_ONLY.get(op) == "public":
            continue
        url = url_for(route, w.a)
        for headers in ({}, {"Authorization": "Bearer not-a-token"},
                        {"Authorization": "Bearer slk_000000000000_forged"},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            answer = w.client.request(method, url, headers=headers)
            assert answer.status_code == 401, f"{op} with {headers}: {describe(answer)}"
            assert answer.json()["type"] == "/problems/authentication_failed"
    me = w.call("merchant_b", "GET", "/v1/auth/me", via="session").json()
    assert (me["role"], me["party_id"]) == ("merchant", "m2")
    assert Permission.READ_ALL.value not in me["permissions"]


# -- the matrix ------------------------------------------------------------------------------

def test_authorisation_matrix(w):
    """Every route x every caller: no permission -> 403 (and no change); another party on
    party A's objects -> 403/404 leaking nothing; support and auditor never write."""
    openapi = w.app.openapi()
    failures: list[str] = []
    before = row_counts(w.ctx)
    allowed_calls: list[tuple[str, Route, str, str, Any]] = []

    def expect(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    for route, method in matrix_operations(w.app):
        op = label(route, method)
        perms = route_permissions(route) or ()
        url = url_for(route, w.a)
        body = sample_body(openapi, method, route.path)
        for who in ALL_CALLERS:
            principal = w.principal(who)
            holds = any(principal.can(p) for p in perms)
            if not holds:
                for via in ("key", "session") if who in w.facts.tokens else ("key",):
                    answer = w.call(who, method, url, json=body, via=via)
                    expect(answer.status_code == 403,
                           f"{op} as {who} ({via}) lacks {perms}: {describe(answer)}")
                    if answer.status_code == 403:
                        expect(answer.json()["type"] == "/problems/forbidden",
                               f"{op} as {who}: 403 without the forbidden problem type")
                continue
            if who in OTHER_PARTY_USERS and path_params(route):
                answer = w.call(who, method, url, json=body)
                expect(answer.status_code in (403, 404),
                       f"{op} as {who} on party A's {url}: {describe(answer)}")
                found = leaks(answer.text, w.a.secret_ids(), w.a.amounts,
                              allowed=url.split("/"))
                expect(not found, f"{op} as {who} on {url} leaks party A's {found}")
                continue
            if who in ("support", "auditor") and is_write(route, method):
                answer = w.call(who, method, url, json=body)
                expect(answer.status_code == 403,
                       f"{op} as {who} must not change money: {describe(answer)}")
                continue
            allowed_calls.append((who, route, method, url, body))
        for name in query_id_params(route) if method == "GET" else ():
            for who in OTHER_PARTY_USERS:
                if not any(w.principal(who).can(p) for p in perms):
                    continue
                query_url = f"{url}?{name}={OWNED_IDS[name](w.a)}"
                answer = w.call(who, method, query_url)
                expect(answer.status_code in (403, 404),
                       f"{op}?{name}= party A's, as {who}: {describe(answer)}")
                found = leaks(answer.text, w.a.secret_ids(), w.a.amounts)
                expect(not found, f"{query_url} as {who} leaks party A's {found}")

    assert row_counts(w.ctx) == before, "a refused call changed something"
    assert not failures, f"{len(failures)} matrix failures:\n" + "\n".join(failures)

    # The callers that hold the permission: answered (no 401, no 5xx). Reads first, writes last
    # (they change the world: a revoked key, a disabled user, a paid payout), staff last.
    allowed_calls.sort(key=lambda call: (call[2] != "GET", call[0] in STAFF))
    for who, route, method, url, body in allowed_calls:
        answer = w.call(who, method, url, json=body)
        expect(answer.status_code < 500 and answer.status_code != 401,
               f"{label(route, method)} as {who} (allowed): {describe(answer)}")
        if method == "GET" and path_params(route) and w.principal(who).can(Permission.READ_ALL):
            expect(answer.status_code == 200,
                   f"{label(route, method)} as {who}: staff read {url}: {describe(answer)}")
    assert not failures, f"{len(failures)} failures of allowed calls:\n" + "\n".join(failures)


def test_a_party_reaches_its_own_objects(w):
    """The positive side of the matrix: a party user holding the permission reads its own
    objects (so the 404s above are about ownership, not a broken route)."""
    for route, method in matrix_operations(w.app):
        if method != "GET" or not path_params(route):
            continue
        perms = route_permissions(route) or ()
        for who, owner in (("merchant_a", w.a), ("merchant_b", w.b)):
            if any(w.principal(who).can(p) for p in perms):
                answer = w.call(who, "GET", url_for(route, owner))
                assert answer.status_code == 200, \
                    f"{label(route, method)} as {who} on its own: {describe(answer)}"
                other = w.b if owner is w.a else w.a
                found = leaks(answer.text, other.secret_ids(), other.amounts)
                assert not found, f"{url_for(route, owner)} as {who} leaks {found}"


def test_support_and_auditor_never_change_money_and_the_auditor_nothing(w):
    openapi = w.app.openapi()
    for who in ("support", "auditor"):
        before = row_counts(w.ctx)
        for route, method in operations(w.app):
            op = label(route, method)
            if op in AUTH_ONLY:
                continue
            for owner in (w.a, w.b):
                answer = w.call(who, method, url_for(route, owner),
                                json=sample_body(openapi, method, route.path))
                assert answer.status_code < 500, f"{op} as {who}: {describe(answer)}"
                if is_write(route, method):
                    assert answer.status_code == 403, f"{op} as {who}: {describe(answer)}"
        assert row_counts(w.ctx) == before, f"{who}'s calls changed the database"


def test_read_only_posts_change_nothing(w):
    """The POSTs the auditor may call must really be reads, for every caller."""
    openapi = w.app.openapi()
    present = {label(r, m): r for r, m in operations(w.app)}
    before = row_counts(w.ctx)
    for op in sorted(READ_ONLY_POSTS & set(present)):
        route = present[op]
        for who in ("admin", "finance", "auditor"):
            answer = w.call(who, "POST", url_for(route, w.a),
                            json=sample_body(openapi, "POST", route.path))
            assert answer.status_code < 500, f"{op} as {who}: {describe(answer)}"
    assert row_counts(w.ctx) == before


# -- lists are scoped ------------------------------------------------------------------------

SCOPED_LISTS = {"orders": "/v1/orders", "payouts": "/v1/payouts",
                "statements": "/v1/statements", "journal entries": "/v1/journal-entries"}


def _visible(w: World, party: str) -> dict[str, set[str]]:
    """What the party may see, straight from the database."""
    with w.ctx.uow() as uow:
        c = uow.conn
        orders = set(c.execute(select(t.split_allocations.c.order_id).where(
            t.split_allocations.c.party_id == party)).scalars())
        payouts = set(c.execute(select(t.payouts.c.payout_id).where(
            t.payouts.c.party_id == party)).scalars())
        statements = set(c.execute(select(t.statements.c.statement_id).where(
            t.statements.c.party_id == party)).scalars())
        entries = set(c.execute(
            select(t.postings.c.entry_id).join(
                t.accounts, t.accounts.c.account_id == t.postings.c.account_id)
            .where(t.accounts.c.party_id == party)).scalars())
    return {"order_id": orders, "payout_id": payouts, "statement_id": statements,
            "entry_id": entries}


def _check_row(row: dict[str, Any], party: str, visible: dict[str, set[str]]) -> list[str]:
    problems = []
    if "party_id" in row and row["party_id"] != party:
        problems.append(f"party_id {row['party_id']}")
    for key, ids in visible.items():
        if row.get(key) is not None and row[key] not in ids:
            problems.append(f"{key} {row[key]}")
    for posting in row.get("postings", []):
        if not posting["account"].startswith(f"party:{party}:"):
            problems.append(f"posting to {posting['account']}")
    return problems


@pytest.mark.parametrize("resource", sorted(SCOPED_LISTS))
def test_a_party_lists_only_its_own_rows(w, resource):
    path = SCOPED_LISTS[resource]
    assert any(r.path == path and "GET" in r.methods for r in api_routes(w.app)), \
        f"no list route {path} for {resource}: update SCOPED_LISTS"
    key = {"orders": "order_id", "payouts": "payout_id", "statements": "statement_id",
           "journal entries": "entry_id"}[resource]
    staff_rows = w.call("admin", "GET", f"{path}?limit=200").json()["data"]
    for who in [p for p, (role, _) in PRINCIPALS.items() if role in PARTY_ROLES]:
        party = PRINCIPALS[who][1]
        visible = _visible(w, party)
        rows, texts, cursor = [], [], None
        while True:  # walk every page: the scoping must hold past the first
            answer = w.call(who, "GET", f"{path}?limit=2" + (f"&cursor={cursor}" if cursor
                                                              else ""))
            assert answer.status_code == 200, describe(answer)
            rows += answer.json()["data"]
            texts.append(answer.text)
            cursor = answer.json()["next_cursor"]
            if not cursor:
                break
        for row in rows:
            problems = _check_row(row, party, visible)
            assert not problems, f"{who} listing {path} sees another party's {problems}"
        got = {row[key] for row in rows}
        assert got == visible[key], f"{who} listing {path}: got {got}, owns {visible[key]}"
        others = [o for o in (w.a, w.b) if o.party_id != party]
        for other in others:
            found = leaks(" ".join(texts), other.secret_ids(), other.amounts)
            assert not found, f"{who} listing {path} sees {other.party_id}'s {found}"
    assert len(staff_rows) > max(len(_visible(w, p)[key]) for p in (PARTY_A, "m2"))


def test_a_shared_order_shows_each_merchant_only_its_own_lines(w):
    mine = w.call("merchant_b", "GET", f"/v1/orders/{w.facts.shared_order}").json()
    assert {line["merchant_id"] for line in mine["lines"]} == {"m2"}
    assert {a["party_id"] for a in mine["allocations"]} == {"m2"}
    found = leaks(w.call("merchant_b", "GET", f"/v1/orders/{w.facts.shared_order}").text,
                  w.a.secret_ids(), w.a.amounts | {97_100})
    assert not found, found
    staff = w.call("support", "GET", f"/v1/orders/{w.facts.shared_order}").json()
    assert {line["merchant_id"] for line in staff["lines"]} == {"m1", "m2"}


def test_staff_roles_match_the_documented_permissions(w):
    """The matrix trusts ``Principal.can``; pin what each staff role is told it may do."""
    for who in STAFF:
        me = w.call(who, "GET", "/v1/auth/me", via="session").json()
        assert me["role"] == who
        writes = {"write:orders", "write:parties", "write:payouts", "run:settlement",
                  "write:rules", "manage:access", "approve", "review:parties"}
        if who in ("support", "auditor"):
            assert not writes & set(me["permissions"]), me
