"""Waiting on state: `poll_until` checks a condition until it holds, instead of sleeping a fixed time and
hoping the thing happened meanwhile (`poll_until_sync` is the same for tests that run no event loop)."""

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

import aiohttp

T = TypeVar("T")

# What "not yet" looks like: the condition's own assertion saying what is still wrong, or a dependency or
# pod that does not answer yet. Anything else is a bug in the test or the code and fails at once.
NOT_YET: tuple[type[BaseException], ...] = (AssertionError, OSError, aiohttp.ClientError)


class PollTimeout(AssertionError):
    """The condition never held: an assertion failure of the test, with what was seen last."""


class _Watch:
    def __init__(self, timeout: float, message: str) -> None:
        self.timeout = timeout
        self.message = message
        self.deadline = time.monotonic() + timeout
        self.last = "never evaluated"

    def saw(self, outcome: object) -> None:
        self.last = f"last exception: {outcome!r}" if isinstance(outcome, BaseException) else f"last value: {outcome!r}"

    def pause(self, interval: float) -> float:
        """How long to wait before the next try; fails once the time is up."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise PollTimeout(f"{self.message} (after {self.timeout:g}s; {self.last})")
        return min(interval, remaining)


@overload
async def poll_until(
    condition: Callable[[], Awaitable[T]],
    timeout: float,
    interval: float = ...,
    message: str = ...,
    *,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def poll_until(
    condition: Callable[[], T],
    timeout: float,
    interval: float = ...,
    message: str = ...,
    *,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def poll_until(
    condition: Callable[[], object],
    timeout: float,
    interval: float = 0.05,
    message: str = "condition never held",
    *,
    retry_on: tuple[type[BaseException], ...] = NOT_YET,
) -> object:
    """Evaluate `condition` (sync or async) every `interval` seconds until it returns a truthy value, and
    return that value. An exception of `retry_on` counts as not yet. After `timeout` seconds it fails with
    `message` and the last value or exception seen; it is always evaluated at least once."""
    watch = _Watch(timeout, message)
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as exc:
            watch.saw(exc)
        else:
            if value:
                return value
            watch.saw(value)
        await asyncio.sleep(watch.pause(interval))


def poll_until_sync(
    condition: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    message: str = "condition never held",
    *,
    retry_on: tuple[type[BaseException], ...] = NOT_YET,
) -> T:
    """poll_until for a synchronous test, which has no event loop to wait in: the same rules."""
    watch = _Watch(timeout, message)
    while True:
        try:
            value = condition()
        except retry_on as exc:
            watch.saw(exc)
        else:
            if value:
                return value
            watch.saw(value)
        time.sleep(watch.pause(interval))
