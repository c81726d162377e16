"""schemathesis against ``/openapi.json``: no 5xx, and no response that breaks the schema.

Every operation of the app is exercised in-process (schemathesis' ASGI transport, no server)
as an admin, over the populated marketplace of ``tests.api_support``, with generated data that
fits the schema (positive) and data that does not (negative), half of the time with the path
parameters naming real objects so that the handlers run past their lookups. Each response must
not be a 5xx, must match the documented schema of its status code and must carry a documented
content type (errors: ``application/problem+json``).

The number of examples per operation is bounded for CI. For a longer run:

    SPLITLEDGER_LONG_TESTS=1 .venv/bin/python -m pytest -q tests/test_api_schema.py

(``SPLITLEDGER_SCHEMA_EXAMPLES=<n>`` sets the number of examples per operation and mode
directly; the long run uses 300.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from splitledger.api.app import create_app
from tests.api_support import World, world
from tests.support import make_context
from tests.test_api_authz import OWNED_IDS

LONG = os.environ.get("SPLITLEDGER_LONG_TESTS") == "1"
EXAMPLES = int(os.environ.get("SPLITLEDGER_SCHEMA_EXAMPLES", 300 if LONG else 20))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
          response_headers_conformance]


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, read from the schema of an app with no database."""
    app = create_app(make_context("sqlite://"))
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> Iterator[World]:  # type: ignore[no-untyped-def]
    built = world(tmp_path_factory.mktemp("schema"), raise_server_exceptions=False)
    yield built
    built.close()


@pytest.fixture(scope="module")
def api(w):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_asgi("/openapi.json", w.app)


def _strategy(operation: Any, w: World) -> Any:
    auth = {"Authorization": w.headers("admin")["Authorization"]}
    names = [p.name for p in operation.path_parameters]
    options = [operation.as_strategy(generation_mode=mode, headers=auth)
               for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    if names and all(name in OWNED_IDS for name in names):
        for owner in (w.a, w.b):  # real objects: the handlers run past their lookups
            real = {name: OWNED_IDS[name](owner) for name in names}
            options.append(operation.as_strategy(headers=auth, path_parameters=real))
    return st.one_of(options)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_its_schema(api, w, method, path):
    operation = api[path][method]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not LONG,
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, w))
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


def test_errors_are_documented_as_the_problem_documents_they_are(w):
    """Regression: the OpenAPI document described 422 answers as FastAPI's
    ``{"detail": [...]}`` in ``application/json``; they are problem details in
    ``application/problem+json``, like every other error."""
    openapi = w.app.openapi()
    problem = openapi["components"]["schemas"]["Problem"]
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            for status in ("422", "default"):
                if status == "422" and status not in operation["responses"]:
                    continue
                content = operation["responses"][status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
    answer = w.call("finance", "POST", "/v1/orders", json={"order_id": ""})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert set(problem["required"]) <= set(answer.json())
