"""poll_until: returns what the condition returned once it holds, and fails with what it saw last."""

import itertools

import pytest

from tests.support.polling import PollTimeout, poll_until, poll_until_sync


async def test_a_sync_condition_is_polled_until_it_holds_and_its_value_returned() -> None:
    counter = itertools.count()
    assert await poll_until(lambda: next(counter) >= 3 and "done", 1.0, 0.001) == "done"
    assert next(counter) == 4


async def test_an_async_condition_is_awaited() -> None:
    seen: list[int] = []

    async def grows() -> list[int]:
        seen.append(len(seen))
        return seen if len(seen) > 2 else []

    assert await poll_until(grows, 1.0, 0.001) == [0, 1, 2]


async def test_exceptions_count_as_not_yet() -> None:
    counter = itertools.count()

    def flaky() -> int:
        n = next(counter)
        if n < 2:
            raise ConnectionError("not up yet")
        return n

    assert await poll_until(flaky, 1.0, 0.001) == 2


async def test_on_timeout_it_fails_with_the_message_and_the_last_value() -> None:
    order = {"status": "pending"}
    with pytest.raises(PollTimeout, match=r"^order never decided \(after 0.05s; last value: False\)$"):
        await poll_until(lambda: order["status"] == "accepted", 0.05, 0.01, "order never decided")


async def test_on_timeout_it_reports_the_last_exception() -> None:
    def failing() -> bool:
        raise AssertionError("status is still 503")

    with pytest.raises(PollTimeout, match="status is still 503"):
        await poll_until(failing, 0.05, 0.01, "not ready")


async def test_a_timeout_of_zero_still_evaluates_once() -> None:
    assert await poll_until(lambda: 7, 0) == 7


async def test_an_unexpected_exception_fails_at_once() -> None:
    calls = itertools.count()

    def broken() -> bool:
        next(calls)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await poll_until(broken, 10.0, 0.001)
    assert next(calls) == 1


def test_the_sync_variant_follows_the_same_rules() -> None:
    counter = itertools.count()
    assert poll_until_sync(lambda: next(counter) >= 2, 1.0, 0.001) is True
    with pytest.raises(PollTimeout, match=r"^gone \(after 0.02s; last value: 0\)$"):
        poll_until_sync(lambda: 0, 0.02, 0.005, "gone")
