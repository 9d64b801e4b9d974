"""The worker's operator web server: listening on loopback only, and its one mutating view (replay) refused to
anyone without an admin token."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.tokens import Role
from tests.support.contract import assert_error_body
from tests.support.stack import Stack

LISTEN = "0A"  # the TCP state /proc/net/tcp gives a listening socket


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("operator"))).start(api_count=0)
    yield running
    running.stop()


def listening_addresses(port: int) -> set[str]:
    """Every local address with a socket listening on `port`, from the kernel's tables (IPv4 and IPv6)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, port_hex = local.partition(":")
            if state == LISTEN and int(port_hex, 16) == port:
                found.add(_decode(address))
    return found


def _decode(address: str) -> str:
    if len(address) == 8:  # IPv4, little-endian
        return ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
    return "::1" if address == "00000000000000000000000001000000" else address


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_the_operator_web_server_listens_on_loopback_only(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.worker_url()}/feastflow/health/") as response:
        assert response.status == 200
    assert listening_addresses(_port_of(stack.worker_url())) == {"127.0.0.1"}


async def _replay(
    http: aiohttp.ClientSession, stack: Stack, headers: dict[str, str], partition: str = "0"
) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{stack.worker_url()}/feastflow/replay/{partition}/0/", headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_token"),
        ({"Authorization": "Bearer not-a-token"}, 401, "invalid_token"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401, "missing_token"),
    ],
    ids=["no-token", "garbage", "basic-auth"],
)
async def test_replay_is_refused_without_an_admin_token(
    stack: Stack, http: aiohttp.ClientSession, headers: dict[str, str], status: int, code: str
) -> None:
    answered, document = await _replay(http, stack, headers)
    assert_error_body(document)
    assert (answered, document["error"]["code"]) == (status, code), document


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.RESTAURANT])
async def test_replay_is_forbidden_to_other_roles(stack: Stack, http: aiohttp.ClientSession, role: Role) -> None:
    status, document = await _replay(http, stack, stack.bearer(role))
    assert_error_body(document)
    assert status == 403, document


async def test_replay_runs_for_an_admin(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.worker_url()}/feastflow/assignment/") as response:
        assignment = await response.json()
    partition = next(p["partition"] for p in assignment["partitions"] if p["topic"] == stack.topic)
    status, document = await _replay(http, stack, stack.bearer(Role.ADMIN), str(partition))
    assert (status, document) == (200, {"replaying": {"partition": partition, "from": 0}})


@pytest.mark.parametrize("partition", ["x", "-1", "²", "99999999999999999999999"])
async def test_replay_of_a_malformed_partition_is_refused(
    stack: Stack, http: aiohttp.ClientSession, partition: str
) -> None:
    status, document = await _replay(http, stack, stack.bearer(Role.ADMIN), partition)
    assert_error_body(document)
    assert status in (404, 409, 422), document
