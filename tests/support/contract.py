"""What every hostile-input test asserts: an answer is 2xx or the contract's 4xx error body, never a 5xx,
and a refused write publishes nothing."""

from typing import Any

import aiohttp

from tests.support.stack import Stack

ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 408, 409, 413, 414, 415, 422, 429, 431, 503})


async def assert_contract_answer(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    """2xx passes (its JSON body returned when it has one); anything else must be a contract error body."""
    body = await response.read()
    assert response.status < 500 or response.status == 503, f"{response.status}: {body[:300]!r}"
    if 200 <= response.status < 300:
        return None
    assert response.status in ERROR_STATUSES, f"{response.status} is not a contract status: {body[:300]!r}"
    assert response.content_type == "application/json", f"{response.status} {response.content_type}: {body[:300]!r}"
    document = await response.json()
    assert_error_body(document)
    if response.status in (429, 503):
        assert response.headers.get("Retry-After", "").isdigit(), f"{response.status} without Retry-After"
    if response.status == 405:
        assert response.headers.get("Allow"), "405 without Allow"
    error: dict[str, Any] = document["error"]
    return error


def assert_error_body(document: Any) -> None:
    assert isinstance(document, dict) and set(document) == {"error"}, document
    error = document["error"]
    assert isinstance(error, dict), document
    assert isinstance(error.get("code"), str) and error["code"], document
    assert isinstance(error.get("message"), str) and error["message"], document
    assert set(error) <= {"code", "message", "field"}, document
    if "field" in error:
        assert isinstance(error["field"], str), document


class KafkaUnchanged:
    """`async with KafkaUnchanged(stack):` fails when anything was appended to the stack's topics inside."""

    def __init__(self, stack: Stack, *topics: str) -> None:
        self._stack = stack
        self._topics = topics or (stack.topic,)
        self._before: dict[str, dict[int, int]] = {}

    async def __aenter__(self) -> "KafkaUnchanged":
        self._before = {topic: await self._stack.end_offsets(topic) for topic in self._topics}
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is not None:
            return
        for topic in self._topics:
            after = await self._stack.end_offsets(topic)
            assert after == self._before[topic], f"{topic} grew from {self._before[topic]} to {after}"
