"""Pod limits: concurrent streams per client (429), streams per pod (503), a read rate per client (429), and
header and body read timeouts that close slow connections within a bound. Clients are told apart by the
X-Forwarded-For a trusted proxy (here: the test, on 127.0.0.1) appends."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from api.errors import RateLimited, Unavailable
from api.limits import ClientLimits
from tests.support.contract import assert_contract_answer
from tests.support.polling import poll_until
from tests.support.raw_http import seconds_until_closed
from tests.support.stack import Stack

LIMITED_ENV = {
    "FEASTFLOW_LIMITS_EXEMPT": "",
    "FEASTFLOW_SSE_STREAMS_PER_CLIENT": "3",
    "FEASTFLOW_SSE_MAX_CLIENTS": "8",
    "FEASTFLOW_READ_RATE": "5",
    "FEASTFLOW_READ_BURST": "10",
}
READ_TIMEOUT_BOUND_S = 15.0  # the defaults (10 s) plus timer slack and the 2 s linger after a 408


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("limits"))).start(api_count=0)
    await running.start_api(**LIMITED_ENV)  # index 0: small limits
    await running.start_api()  # index 1: the defaults
    yield running
    running.stop()


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


@contextlib.asynccontextmanager
async def _streams(http: aiohttp.ClientSession, url: str, addresses: list[str]) -> AsyncIterator[list[int]]:
    """Open one stream per address at once; yield their statuses; close the accepted ones on exit."""
    responses = await asyncio.gather(*(http.get(url, headers=_from(a)) for a in addresses))
    try:
        statuses = []
        for response in responses:
            if response.status != 200:
                await assert_contract_answer(response)
            statuses.append(response.status)
        yield statuses
    finally:
        for response in responses:
            response.close()


@contextlib.asynccontextmanager
async def _all_streams_held(http: aiohttp.ClientSession, url: str, addresses: list[str]) -> AsyncIterator[None]:
    """Open one stream per address at once, again until every one is accepted: a stream a test closed just
    before holds its slot until the pod notices the closed connection. Held until exit."""
    held: list[aiohttp.ClientResponse] = []

    async def all_accepted() -> bool:
        for response in held:
            response.close()
        held[:] = await asyncio.gather(*(http.get(url, headers=_from(a)) for a in addresses))
        for response in held:
            if response.status != 200:
                await assert_contract_answer(response)
        statuses = [response.status for response in held]
        assert statuses == [200] * len(addresses), statuses
        return True

    try:
        await poll_until(all_accepted, 10, 0.5, "the pod never had room for all of the streams")
        yield
    finally:
        for response in held:
            response.close()


async def _stream_status(http: aiohttp.ClientSession, url: str, address: str) -> aiohttp.ClientResponse:
    response = await http.get(url, headers=_from(address))
    if response.status != 200:
        await assert_contract_answer(response)
    response.close()
    return response


async def _until_accepted(http: aiohttp.ClientSession, url: str, address: str, timeout: float = 10) -> None:
    async def accepted() -> bool:
        return (await _stream_status(http, url, address)).status == 200

    # Every 0.5 s: stream starts are reads too, so stay under the read rate.
    await poll_until(accepted, timeout, 0.5, f"{address} never got a stream slot back")


async def test_too_many_streams_from_one_client_answer_429_with_retry_after(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    url = f"{stack.api_url(0)}/v1/cities/blr/menu/stream"
    async with _streams(http, url, ["198.51.100.1"] * 3) as statuses:
        assert statuses == [200, 200, 200]
        async with http.get(url, headers=_from("198.51.100.1")) as refused:
            error = await assert_contract_answer(refused)
            assert refused.status == 429 and error is not None and error["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) >= 1
        assert (await _stream_status(http, url, "198.51.100.2")).status == 200  # another client is not affected
    await _until_accepted(http, url, "198.51.100.1")  # the slots come back once the streams end


async def test_a_full_pod_answers_503_with_retry_after(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = f"{stack.api_url(0)}/v1/cities/blr/menu/stream"
    await _until_accepted(http, url, "198.51.100.10")  # nothing left over from other tests
    clients = [f"198.51.100.{n}" for n in range(20, 28)]  # 8 clients, one stream each: the pod's ceiling
    async with _all_streams_held(http, url, clients):
        async with http.get(url, headers=_from("198.51.100.30")) as refused:
            error = await assert_contract_answer(refused)
            assert refused.status == 503 and error is not None and error["code"] == "pod_full"
        async with http.get(f"{stack.api_url(0)}/v1/cities", headers=_from("198.51.100.30")) as read:
            assert read.status == 200  # only streams are refused
    await _until_accepted(http, url, "198.51.100.30")


async def test_reads_over_the_rate_answer_429_with_retry_after(stack: Stack, http: aiohttp.ClientSession) -> None:
    url = f"{stack.api_url(0)}/v1/cities"
    statuses = []
    for _ in range(30):
        async with http.get(url, headers=_from("203.0.113.5")) as response:
            error = await assert_contract_answer(response)
            statuses.append(response.status)
            if response.status == 429:
                assert error is not None and error["code"] == "rate_limited"
    assert statuses[:10] == [200] * 10, statuses  # the burst
    assert statuses.count(429) >= 15, statuses  # then about five a second
    async with http.get(url, headers=_from("203.0.113.6")) as other:
        assert other.status == 200
    async with http.get(f"{stack.api_url(0)}/healthz", headers=_from("203.0.113.5")) as probe:
        assert probe.status == 200  # probes are never limited


async def test_loopback_clients_skip_the_per_client_limits_by_default(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    """The local stack's bench and rehearsal: hundreds of clients, all 127.0.0.1 behind the local gateway."""
    statuses = []
    for _ in range(60):
        async with http.get(f"{stack.api_url(1)}/v1/cities") as response:
            statuses.append(response.status)
    assert statuses == [200] * 60
    async with _streams(http, f"{stack.api_url(1)}/v1/cities/blr/menu/stream", ["127.0.0.1"] * 25) as opened:
        assert opened == [200] * 25


async def test_slow_header_and_slow_body_connections_are_closed_within_the_bound(stack: Stack) -> None:
    """Against the defaults (10 s each): a client trickling one byte a second is cut off, measured."""
    url = stack.api_url(1)
    idle, slow_head, slow_body = await asyncio.gather(
        seconds_until_closed(url, b"", b"", every_s=60, limit_s=40),
        seconds_until_closed(url, b"GET /v1/cities HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 200, 1.0, 40),
        seconds_until_closed(
            url,
            b"POST /v1/admin/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 500\r\n\r\n{",
            b" " * 500,
            1.0,
            40,
        ),
    )
    for kind, seconds in (("idle", idle), ("slow header", slow_head), ("slow body", slow_body)):
        assert 8 <= seconds <= READ_TIMEOUT_BOUND_S, f"{kind} connection kept {seconds:.1f}s"


def test_the_read_bucket_refills_at_the_rate() -> None:
    limits = ClientLimits(
        streams_per_client=1, max_streams=1, reads_per_s=2, read_burst=2, trusted_proxies=(), exempt=()
    )
    limits.take_read("c", now=100.0)
    limits.take_read("c", now=100.0)
    with pytest.raises(RateLimited) as refused:
        limits.take_read("c", now=100.1)
    assert refused.value.headers["Retry-After"] == "1"
    limits.take_read("c", now=100.6)  # half a second later: one more token
    limits.open_stream("c", exempt=False)
    with pytest.raises(Unavailable):
        limits.open_stream("d", exempt=True)  # the pod ceiling holds for exempt clients too
    limits.close_stream("c")
    assert limits.open_streams == 0
