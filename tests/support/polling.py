"""Waiting on state: `poll_until` checks a condition until it holds, instead of sleeping a fixed time and
hoping the thing happened meanwhile."""

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
    deadline = time.monotonic() + timeout
    last = "never evaluated"
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as exc:
            last = f"last exception: {exc!r}"
        else:
            if value:
                return value
            last = f"last value: {value!r}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PollTimeout(f"{message} (after {timeout:g}s; {last})")
        await asyncio.sleep(min(interval, remaining))
