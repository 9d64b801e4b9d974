"""Property-based run against the served /v1/openapi.json of a private stack (schemathesis, OpenAPI 3.1):
requests that fit the declared contract and requests that break it, on every operation, with the tokens the
routes ask for. Asserted: no answer >= 500, every status one the document declares, every error in the
contract's shape, every declared JSON body matching its declaration; and afterwards, the pipeline still
applies a change (nothing the fuzzer got accepted stalled a partition)."""

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.schemas import APIOperation as GenericOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.tokens import Role
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.contract import ERROR_STATUSES, assert_error_body
from tests.support.stack import Stack

APIOperation = GenericOperation[Any, Any, Any, Any]
OpenApiCase = Case[Any]

# Bounded by examples, not by the clock (a loaded machine must not fail it): about 280 requests, 30 s here.
EXAMPLES = {GenerationMode.POSITIVE: 15, GenerationMode.NEGATIVE: 15}
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A private stack whose order rate limit stays out of the way: the fuzzer sends many orders a second."""
    stack = await Stack(Path(tmp_path_factory.mktemp("fuzz")), extra_env={"FEASTFLOW_ORDER_RATE": "1000"}).start()
    async with aiohttp.ClientSession() as session:
        await wait_applied(stack, await publish(stack, session, restaurant_batch("blr", "fuzz", items=2)))
    yield stack
    stack.stop()


def _token_for(stack: Stack, operation: APIOperation) -> str:
    """The role each route is for: admins write events and move orders on; customers do the rest."""
    if operation.path.startswith("/v1/admin") or operation.path.endswith("/status"):
        return stack.token(Role.ADMIN, "fuzz-admin")
    return stack.token(Role.CUSTOMER, "fuzz-customer")


def _operations(schema: Any) -> Iterator[APIOperation]:
    for result in schema.get_all_operations():
        operation: APIOperation = result.ok()
        if operation.path != "/metrics":  # Prometheus text, no contract body to check
            yield operation


def _send(case: OpenApiCase, base_url: str, token: str) -> requests.Response:
    kwargs = case.as_transport_kwargs(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
    response = requests.request(**kwargs, stream=True, timeout=10, allow_redirects=False)
    if _is_stream(response):
        response.close()  # a live stream never ends: its status and headers are the answer
    else:
        response.content  # noqa: B018 - read the whole body before the checks
    return response


def _is_stream(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/event-stream")


def _assert_contract_answer(case: OpenApiCase, response: requests.Response) -> None:
    body = "" if _is_stream(response) else response.text[:300]
    described = f"{case.method} {case.formatted_path} -> {response.status_code}: {body}"
    assert response.status_code < 500 or response.status_code == 503, described
    if response.status_code == 503:
        assert response.headers.get("Retry-After", "").isdigit(), described
    if response.status_code < 400:
        return
    assert response.status_code in ERROR_STATUSES, described
    assert response.headers.get("Content-Type", "").startswith("application/json"), described
    assert_error_body(response.json())


def _fuzz(
    operation: APIOperation, mode: GenerationMode, examples: int, base_url: str, token: str, statuses: Counter[int]
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure here reproduces
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: OpenApiCase) -> None:
        response = _send(case, base_url, token)
        statuses[response.status_code] += 1
        _assert_contract_answer(case, response)
        if not _is_stream(response):
            case.validate_response(response, checks=CHECKS)

    try:
        fuzz()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, operation.label  # an operation with no input has nothing to break


def test_no_generated_request_gets_a_5xx_or_an_answer_outside_the_contract(seeded: Stack) -> None:
    stack = seeded
    base_url = stack.api_url()
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    assert schema.specification.version.startswith("3.1")
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    for operation in _operations(schema):
        for mode, examples in EXAMPLES.items():
            _fuzz(operation, mode, examples, base_url, _token_for(stack, operation), statuses)
    assert not [status for status in statuses if status >= 500 and status != 503], dict(statuses)
    assert sum(statuses[s] for s in statuses if 200 <= s < 300) > 0, f"nothing was ever accepted: {dict(statuses)}"
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {sum(statuses.values())} requests in {elapsed:.0f}s, statuses {dict(sorted(statuses.items()))}"
    )


async def test_the_pipeline_still_applies_changes_after_the_fuzzing(seeded: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_applied(seeded, await publish(seeded, session, price_set("blr", "fuzz", "fuzz-0", 4321)), 10)
