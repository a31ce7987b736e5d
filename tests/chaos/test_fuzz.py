"""Schemathesis against the gateway's merged OpenAPI document, over HTTP, authenticated.

Every operation, valid (positive) and invalid (negative) inputs, a bounded number of
examples each. Failures are collected rather than raised, so one run reports all of
them (and Hypothesis does not spend the budget shrinking the first one).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
import schemathesis

# Loaded now, at collection, not lazily inside the test: pytest rewrites schemathesis's
# modules (it is a pytest plugin) with ast.parse as they load, and CPython 3.11 keeps the
# AST constructor's recursion counter per interpreter, not per thread, so a parse racing
# one in another thread of the process fails with "SystemError: AST constructor recursion
# depth mismatch" (seen once, in random order, inside schemathesis.openapi.from_url).
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.kit import catalog
from tests.chaos.conftest import Scale
from tests.support.error_shape import ERROR_FIELDS
from tests.support.stack import Stack, bearer, gateway, register_and_login

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.redis]


class ErrorShapeViolation(AssertionError):
    pass


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer is exactly the one error shape, with the request id header."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        raise ErrorShapeViolation(f"{response.status_code} body is not JSON: {response.text[:200]!r}") from None
    if not isinstance(body, dict) or set(body) != ERROR_FIELDS:
        shape = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise ErrorShapeViolation(f"{response.status_code} body is not the error shape: {shape}")
    if [body["request_id"]] != response.headers.get("x-request-id"):
        raise ErrorShapeViolation("request_id does not match the X-Request-Id header")
    return True


CHECKS = [not_a_server_error, response_schema_conformance, error_shape]


def test_fuzz_every_operation_through_the_gateway(calm_stack: Stack, scale: Scale) -> None:
    base_url = calm_stack.url(catalog.GATEWAY)
    with gateway(calm_stack) as client:
        headers = bearer(register_and_login(client, f"fuzz-{uuid.uuid4().hex[:8]}@example.com"))
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every service's API is in the merged document

    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: dict[str, str] = {}
    failed_cases = 0

    def fuzz(operation: Any, mode: GenerationMode, label: str) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=scale.fuzz_examples, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            nonlocal failed_cases
            cases[label] += 1
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as exc:  # collected: every failing operation is reported
                failed_cases += 1
                failures.setdefault(label, f"{response.status_code}: {str(exc)[:800]}")

        run()

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
            try:
                fuzz(operation, mode, label)
            except Unsatisfiable:
                # no invalid input exists (e.g. GET /.well-known/jwks.json has no parameters)
                assert mode is GenerationMode.NEGATIVE, label

    total = sum(cases.values())
    print(f"\n[chaos] fuzz: {len(operations)} operations, cases run={total} failed={failed_cases}; "
          f"statuses: {dict(sorted(statuses.items()))}")
    assert not failures, "\n\n".join(f"{label}\n{message}" for label, message in failures.items())
    assert statuses[500] == 0
