"""The gateway (deploy/local/gateway.sh's nginx) on ports of its own in front of a private stack: its own errors
answer the contract's JSON body, a dead upstream is a 503 with Retry-After, per-client limits answer 429, slow
clients are cut off, and no query string reaches its logs."""

import asyncio
import io
import os
import subprocess
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from core.settings import REPO_ROOT
from tests.support.catalog import price_set, publish, restaurant_batch, wait_applied
from tests.support.contract import assert_contract_answer, assert_error_body
from tests.support.polling import poll_until
from tests.support.processes import free_port
from tests.support.sse import SseClient
from tests.support.stack import Stack, items_by_id

GATEWAY_SH = REPO_ROOT / "deploy" / "local" / "gateway.sh"
STREAMS_PER_CLIENT = 3
LIMITED_CLIENT = "127.0.0.2"  # 127.0.0.1 stays exempt, as the local stack's load tools are
RATE_CLIENT = "127.0.0.3"


@dataclass
class Gateway:
    data: Path
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        logs = self.data / "nginx" / "logs"
        return "".join(path.read_text(errors="replace") for path in sorted(logs.glob("*.log")))

    def run(self, command: str) -> None:
        subprocess.run(["bash", str(GATEWAY_SH), command], env=self.env, check=True, capture_output=True, timeout=60)


def start_gateway(root: Path, api_ports: str, **limits: str) -> Gateway:
    port = free_port()
    env = {
        **os.environ,
        "FEASTFLOW_DATA": str(root),
        "FEASTFLOW_GATEWAY_PORT": str(port),
        "FEASTFLOW_API_PORTS": api_ports,
        **{f"FEASTFLOW_GATEWAY_{name.upper()}": value for name, value in limits.items()},
    }
    gateway = Gateway(root, port, env)
    gateway.run("up")
    return gateway


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("gateway-stack"))).start(api_count=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    api_port = stack.api_url().rsplit(":", 1)[1]
    running = start_gateway(
        tmp_path_factory.mktemp("gateway"),
        api_port,
        exempt="127.0.0.1",
        streams_per_client=str(STREAMS_PER_CLIENT),
        read_rate="2",
        read_burst="5",
        header_timeout="1",
        body_timeout="1",
    )
    yield running
    running.run("down")


def client_from(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True))


async def raw_exchange(gateway: Gateway, request: bytes, pause_s: float = 0.0) -> bytes:
    """Sends bytes as they are (no client library would send these) and reads until the gateway closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10 + pause_s)
    finally:
        writer.close()


def parse_raw(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, orjson.loads(body)


async def test_the_gateway_passes_ordinary_requests(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/v1/cities") as response:
        assert response.status == 200
        assert response.headers.get("X-Request-Id")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"])
async def test_a_method_no_route_serves_is_a_json_405_with_allow(
    gateway: Gateway, http: aiohttp.ClientSession, method: str
) -> None:
    async with http.request(method, f"{gateway.url}/v1/cities") as response:
        error = await assert_contract_answer(response)
        assert response.status == 405 and error is not None
        assert response.headers["Allow"] == "GET, HEAD, POST"


async def test_a_body_over_the_limit_is_a_json_413(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    body = io.BytesIO(b"[" + b"0," * (1536 * 1024) + b"0]")
    headers = {"Content-Type": "application/json", "Authorization": "Bearer x"}
    async with http.post(f"{gateway.url}/v1/admin/events", data=body, headers=headers) as response:
        error = await assert_contract_answer(response)
        assert (response.status, error and error["code"]) == (413, "payload_too_large")


async def test_a_url_over_the_limit_is_a_json_414(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/v1/cities/{'a' * 9000}/menu") as response:
        error = await assert_contract_answer(response)
        assert (response.status, error and error["code"]) == (414, "uri_too_long")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET /v1/cities HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /v1/cities HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    ],
    ids=["not-http", "no-host", "bad-version", "bad-transfer-coding", "two-hosts"],
)
async def test_a_malformed_request_is_a_json_400(gateway: Gateway, request_bytes: bytes) -> None:
    status, _headers, document = parse_raw(await raw_exchange(gateway, request_bytes))
    assert status == 400, document
    assert_error_body(document)


async def test_headers_over_the_limit_are_a_json_431(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/v1/cities", headers={"X-Padding": "p" * 9000}) as response:
        assert response.status == 431
        assert_error_body(await response.json())


async def test_a_client_that_stalls_its_headers_is_cut_off(gateway: Gateway) -> None:
    started = asyncio.get_running_loop().time()
    answer = await raw_exchange(gateway, b"GET /v1/cities HTTP/1.1\r\nHost: x\r\n", pause_s=3)
    assert asyncio.get_running_loop().time() - started < 5
    if answer:  # nginx may close without a word; if it answers, it is the contract's 408
        status, _headers, document = parse_raw(answer)
        assert status == 408
        assert_error_body(document)


async def test_a_client_that_stalls_its_body_is_cut_off(gateway: Gateway) -> None:
    started = asyncio.get_running_loop().time()
    head = b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    answer = await raw_exchange(gateway, head, pause_s=3)
    assert asyncio.get_running_loop().time() - started < 5
    if answer:
        status, _headers, document = parse_raw(answer)
        assert status == 408
        assert_error_body(document)


async def test_too_many_streams_from_one_client_are_a_json_429(gateway: Gateway) -> None:
    async with client_from(LIMITED_CLIENT) as limited:
        opened: list[aiohttp.ClientResponse] = []
        try:
            for _ in range(STREAMS_PER_CLIENT):
                response = await limited.get(f"{gateway.url}/v1/cities/blr/menu/stream")
                assert response.status == 200
                await response.content.readuntil(b"\n\n")  # the snapshot: the stream is really open
                opened.append(response)
            async with limited.get(f"{gateway.url}/v1/cities/blr/menu/stream") as refused:
                error = await assert_contract_answer(refused)
                assert (refused.status, error and error["code"]) == (429, "rate_limited")
        finally:
            for response in opened:
                response.close()
    async with aiohttp.ClientSession() as exempt:  # the exempt address is not counted
        streams = [await exempt.get(f"{gateway.url}/v1/cities/blr/menu/stream") for _ in range(STREAMS_PER_CLIENT + 1)]
        try:
            assert [s.status for s in streams] == [200] * (STREAMS_PER_CLIENT + 1)
        finally:
            for response in streams:
                response.close()


async def test_reads_over_the_rate_from_one_client_are_a_json_429(gateway: Gateway) -> None:
    statuses: list[int] = []
    async with client_from(RATE_CLIENT) as limited:
        for _ in range(20):
            async with limited.get(f"{gateway.url}/v1/cities") as response:
                statuses.append(response.status)
                if response.status == 429:
                    error = await assert_contract_answer(response)
                    assert error is not None and error["code"] == "rate_limited"
    assert statuses[0] == 200 and 429 in statuses, statuses


async def test_no_query_string_reaches_the_gateways_logs(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    marker = "leak-canary-5f1c0d"
    for path in (f"/v1/orders/o-1/stream?access_token={marker}", f"/v1/cities?access_token={marker}&x={marker}"):
        async with http.get(f"{gateway.url}{path}") as response:
            await assert_contract_answer(response)
    logs = gateway.logs()
    assert "/v1/orders/o-1/stream" in logs  # the path is logged (nginx writes the line when the request ends)
    assert marker not in logs


async def test_a_dead_upstream_is_a_json_503_with_retry_after(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    dead = start_gateway(tmp_path, str(free_port()))
    try:
        for method, path in (("GET", "/v1/cities"), ("POST", "/v1/orders"), ("GET", "/v1/cities/blr/menu/stream")):
            async with http.request(method, f"{dead.url}{path}", json={}) as response:
                error = await assert_contract_answer(response)
                assert (response.status, error and error["code"]) == (503, "unavailable")
    finally:
        dead.run("down")


def test_the_gateway_has_room_for_50000_streams_within_the_open_file_limit(tmp_path: Path) -> None:
    """A proxied stream holds two connections (client and pod); no nginx worker may need more files than one
    process can open (the hard limit)."""
    env = {**os.environ, "FEASTFLOW_DATA": str(tmp_path), "FEASTFLOW_API_PORTS": "8081 8082"}
    config = subprocess.run(["bash", str(GATEWAY_SH), "render"], env=env, check=True, capture_output=True, text=True)
    directives = dict(
        line.strip().rstrip(";").split(None, 1)
        for line in config.stdout.splitlines()
        if line.strip().startswith(("worker_processes", "worker_rlimit_nofile", "worker_connections"))
    )
    workers, files = int(directives["worker_processes"]), int(directives["worker_rlimit_nofile"])
    connections = int(directives["worker_connections"])
    hard_limit = int(subprocess.run(["bash", "-c", "ulimit -Hn"], check=True, capture_output=True, text=True).stdout)
    assert files <= hard_limit and connections < files
    assert workers * connections // 2 >= 50_000
    assert "backlog=" in config.stdout


async def test_the_gateways_connections_to_a_pod_leave_from_many_loopback_addresses(
    stack: Stack, gateway: Gateway
) -> None:
    """From one source address every connect() to a pod searches the ephemeral ports for one not yet paired with
    it, a search that grows with the streams the pod holds; the gateway spreads them over 127.0.2.100-199."""
    api_port = int(stack.api_url().rsplit(":", 1)[1])
    url = f"{gateway.url}/v1/cities/blr/menu/stream"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        streams = [await http.get(url) for _ in range(STREAMS_PER_CLIENT * 4)]  # from 127.0.0.1: exempt
        try:
            assert all(stream.status == 200 for stream in streams)
            # Other connections to the pod (the test's own, from 127.0.0.1) may be open too: only the gateway's count.
            from_gateway = [address for address in sources_connected_to(api_port) if address.startswith("127.0.2.")]
            assert len(from_gateway) >= len(streams), from_gateway
            assert len(set(from_gateway)) >= 4, from_gateway
            assert all(100 <= int(address.rsplit(".", 1)[1]) <= 199 for address in from_gateway)
        finally:
            for stream in streams:
                stream.close()


def sources_connected_to(port: int) -> list[str]:
    """The source address of every established IPv4 connection to 127.0.0.1:`port` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        remote_address, remote_port = remote.split(":")
        if state == "01" and int(remote_port, 16) == port and remote_address == "0100007F":
            found.append(".".join(str(b) for b in reversed(bytes.fromhex(local.split(":")[0]))))
    return found


async def test_a_stream_comes_gzipped_through_the_gateway_to_a_client_that_accepts_it(
    stack: Stack, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """The snapshot and every change after it arrive as one gzip stream that inflates as it comes."""
    await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "dosa", items=30)))
    url = f"{gateway.url}/v1/cities/blr/menu/stream"
    async with (
        aiohttp.ClientSession(auto_decompress=False) as raw,
        raw.get(url, headers={"Accept-Encoding": "gzip"}) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Encoding"] == "gzip" and response.headers["Vary"] == "Accept-Encoding"
        inflater, text, received = zlib.decompressobj(31), b"", 0

        async def read_until(needle: bytes) -> None:
            nonlocal text, received
            while needle not in text:
                data = await asyncio.wait_for(response.content.readany(), 10)
                assert data, f"the stream ended before {needle!r}"
                received += len(data)
                text += inflater.decompress(data)

        await read_until(b"event: snapshot")
        await read_until(b"\n\n")
        assert received < len(text) / 3  # a menu compresses well: the snapshot came gzipped
        await publish(stack, http, price_set("blr", "dosa", "dosa-2", 777))
        await read_until(b'"price_cents":777')


@dataclass
class Answer:
    status: int
    headers: "CIMultiDictProxy[str]"
    body: bytes

    def menu(self) -> dict[str, Any]:
        menu: dict[str, Any] = orjson.loads(self.body)
        return menu


async def gateway_menu(http: aiohttp.ClientSession, gateway: Gateway, **headers: str) -> Answer:
    async with http.get(f"{gateway.url}/v1/cities/blr/menu", headers=headers) as response:
        return Answer(response.status, response.headers, await response.read())


async def test_menu_reads_are_answered_from_a_copy_at_most_a_second_old_and_the_stream_fills_the_gap(
    stack: Stack, gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    """The pods mark a menu shareable for a second; the gateway keeps it. A customer handed the older copy opens
    the stream from that copy's cursor and receives the change the copy does not show yet."""
    await wait_applied(stack, await publish(stack, http, restaurant_batch("blr", "cache", items=3)))

    async def kept() -> Answer | None:
        answer = await gateway_menu(http, gateway)
        return answer if answer.headers.get("X-Cache") == "HIT" else None

    copy = await poll_until(kept, timeout=5, message="the gateway never answered a menu read from its copy")
    assert copy is not None
    assert copy.status == 200 and copy.headers["Cache-Control"] == "public, max-age=0, s-maxage=1"
    assert items_by_id(copy.menu())["cache-0"]["price_cents"] == 1000

    await wait_applied(stack, await publish(stack, http, price_set("blr", "cache", "cache-0", 4242)))
    assert items_by_id(await stack.menu(http, "blr"))["cache-0"]["price_cents"] == 4242

    async def refreshed() -> bool:
        answer = await gateway_menu(http, gateway)
        return answer.status == 200 and items_by_id(answer.menu())["cache-0"]["price_cents"] == 4242

    # The copy is kept 1 s; the refresh that replaces it is one request to a pod.
    await poll_until(refreshed, timeout=3, message="the gateway kept a menu copy longer than a second")

    async with SseClient(f"{gateway.url}/v1/cities/blr/menu/stream", last_event_id=copy.menu()["cursor"]) as client:
        events = await client.wait_for(
            lambda evs: any(e.type == "item" and e.json()["price_cents"] == 4242 for e in evs), timeout=5
        )
        assert all(e.type != "snapshot" for e in events)


async def test_a_cached_menu_keeps_each_request_its_own_id_encoding_and_304(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    for request_id in ("cached-a", "cached-b"):
        answer = await gateway_menu(http, gateway, **{"X-Request-Id": request_id})
        assert answer.headers.getall("X-Request-Id") == [request_id]

    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        menus = set()
        for accept in ("gzip, deflate, br", "gzip;q=0", "gzip;q=abc", ";;;,,,", "*;q=1", "identity"):
            answer = await gateway_menu(raw, gateway, **{"Accept-Encoding": accept})
            assert answer.status == 200, accept
            gzipped = answer.headers.get("Content-Encoding") == "gzip"
            assert gzipped == (accept == "gzip, deflate, br"), accept
            menus.add(zlib.decompress(answer.body, 31) if gzipped else answer.body)
        assert len({orjson.dumps(orjson.loads(body)) for body in menus}) == 1

        etag = (await gateway_menu(raw, gateway)).headers["ETag"]
        answer = await gateway_menu(raw, gateway, **{"If-None-Match": etag})
        assert (answer.status, answer.body) == (304, b"")


async def test_an_unknown_citys_menu_is_never_kept(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        async with http.get(f"{gateway.url}/v1/cities/nowhere/menu") as response:
            error = await assert_contract_answer(response)
            assert (response.status, error and error["code"]) == (404, "unknown_city")
            assert response.headers["X-Cache"] == "MISS"
