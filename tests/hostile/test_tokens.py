"""Hostile tokens against a real API pod: every one is refused with the contract's 401/403/429 body, nothing is
published, and a client that keeps failing is throttled."""

import base64
import itertools
import json
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from core.tokens import ISSUER, MAX_LIFETIME_S, Role, audience, fingerprint, issue_token
from tests.support.contract import KafkaUnchanged, assert_contract_answer
from tests.support.processes import feastflow_command, free_port
from tests.support.stack import Stack

NEW_KEY, OLD_KEY = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
FAILURES_ALLOWED = 5
_clients = itertools.count(1)

ADMIN_READ = "/v1/admin/events/evt-unknown"  # 404 unknown_event once authenticated as an admin
CUSTOMER_READ = "/v1/orders/ord-unknown"  # 404 unknown_order once authenticated


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    env = {
        # A rotation under way: "new" signs, "old" still verifies (the stack's own secret verifies too).
        "FEASTFLOW_JWT_KEYS": f"new:{NEW_KEY},old:{OLD_KEY}",
        "FEASTFLOW_AUTH_FAILURES_MAX": str(FAILURES_ALLOWED),
    }
    running = await Stack(Path(tmp_path_factory.mktemp("tokens")), extra_env=env).start(api_count=1)
    yield running
    running.stop()


@pytest.fixture
def client_ip() -> str:
    """Each test speaks for a client of its own (the pod trusts X-Forwarded-For from loopback), so the
    failed-auth throttle of one test never answers another's requests."""
    return f"198.51.100.{next(_clients)}"


def claims(role: Role = Role.ADMIN, lifetime_s: int = 600, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    document = {"sub": "mallory", "role": role.value, "iss": ISSUER, "aud": audience(role), "iat": now}
    document["exp"] = now + lifetime_s
    document.update(overrides)
    return {k: v for k, v in document.items() if v is not None}


def signed(document: dict[str, Any], secret: str = NEW_KEY, kid: str = "new", alg: str = "HS256") -> str:
    return jwt.encode(document, secret, algorithm=alg, headers={"kid": kid})


def forged(header: dict[str, Any], document: dict[str, Any], signature: bytes = b"") -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    return ".".join((part(json.dumps(header).encode()), part(json.dumps(document).encode()), part(signature)))


async def answer(
    http: aiohttp.ClientSession, stack: Stack, path: str, client: str, token: str | None = None, method: str = "GET"
) -> tuple[int, dict[str, Any] | None]:
    headers = {"X-Forwarded-For": client}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, f"{stack.api_url()}{path}", headers=headers) as response:
        return response.status, await assert_contract_answer(response)


async def assert_refused(
    http: aiohttp.ClientSession, stack: Stack, token: str, client: str, code: str = "invalid_token"
) -> None:
    status, error = await answer(http, stack, ADMIN_READ, client, token)
    assert (status, error and error["code"]) == (401, code), error


async def test_expired_token_is_refused(stack: Stack, http: aiohttp.ClientSession, client_ip: str) -> None:
    expired = signed(claims(iat=int(time.time()) - 3600, exp=int(time.time()) - 30))
    await assert_refused(http, stack, expired, client_ip, "token_expired")


@pytest.mark.parametrize("alg", ["none", "RS256", "HS512"])
async def test_only_hs256_is_accepted(stack: Stack, http: aiohttp.ClientSession, client_ip: str, alg: str) -> None:
    if alg == "HS512":  # well signed with the real key, in the wrong algorithm
        token = signed(claims(), alg="HS512")
    else:
        token = forged({"alg": alg, "kid": "new"}, claims(), secrets.token_bytes(256) if alg == "RS256" else b"")
    await assert_refused(http, stack, token, client_ip)


@pytest.mark.parametrize(
    "aud", [None, audience(Role.CUSTOMER), "feastflow", ["feastflow:admin", "feastflow:customer"]], ids=str
)
async def test_wrong_or_missing_audience_is_refused(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str, aud: Any
) -> None:
    await assert_refused(http, stack, signed(claims(aud=aud)), client_ip)


async def test_a_signed_token_living_longer_than_its_roles_cap_is_refused(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str
) -> None:
    ten_years = signed(claims(lifetime_s=10 * 365 * 24 * 3600))
    await assert_refused(http, stack, ten_years, client_ip, "token_lifetime")
    just_over = signed(claims(lifetime_s=MAX_LIFETIME_S[Role.ADMIN] + 1))
    await assert_refused(http, stack, just_over, client_ip, "token_lifetime")


async def test_unknown_or_missing_key_id_is_refused(stack: Stack, http: aiohttp.ClientSession, client_ip: str) -> None:
    await assert_refused(http, stack, signed(claims(), kid="retired"), client_ip, "unknown_key")
    await assert_refused(http, stack, jwt.encode(claims(), NEW_KEY, algorithm="HS256"), client_ip, "unknown_key")
    # The right key id does not help a token signed with another key.
    await assert_refused(http, stack, signed(claims(), secret=OLD_KEY, kid="new"), client_ip)


async def test_both_keys_of_a_rotation_are_accepted(stack: Stack, http: aiohttp.ClientSession, client_ip: str) -> None:
    for token in (
        signed(claims(), NEW_KEY, "new"),
        signed(claims(), OLD_KEY, "old"),
        issue_token(OLD_KEY, Role.ADMIN, "ops"),  # named by the old key's fingerprint
        stack.token(),
    ):
        status, error = await answer(http, stack, ADMIN_READ, client_ip, token)
        assert (status, error and error["code"]) == (404, "unknown_event"), error
    assert fingerprint(OLD_KEY) != "old"


@pytest.mark.parametrize(
    "garbage",
    ["x", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "..", "Bearer", "ü.ü.ü", "x" * 5000],
    ids=["word", "three-parts", "empty-parts", "dots", "bearer", "non-ascii", "oversize"],
)
async def test_garbage_tokens_are_refused(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str, garbage: str
) -> None:
    headers = {"X-Forwarded-For": client_ip, "Authorization": f"Bearer {garbage}"}
    if not garbage.isascii():
        headers["Authorization"] = headers["Authorization"].encode().decode("latin-1")
    async with http.get(f"{stack.api_url()}{ADMIN_READ}", headers=headers) as response:
        error = await assert_contract_answer(response)
        assert response.status == 401 and error is not None, error


async def test_an_oversize_signed_token_is_refused_before_it_is_read(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str
) -> None:
    await assert_refused(http, stack, signed(claims(padding="p" * 5000)), client_ip)


async def test_a_token_in_the_query_is_refused_outside_the_streams(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str
) -> None:
    token = stack.token(Role.CUSTOMER, "c-query")
    headers = {"X-Forwarded-For": client_ip}
    async with http.get(f"{stack.api_url()}{CUSTOMER_READ}?access_token={token}", headers=headers) as response:
        error = await assert_contract_answer(response)
        assert (response.status, error and error["code"]) == (401, "token_in_query"), error
    async with KafkaUnchanged(stack):
        body = {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "price_cents": 100}
        admin = stack.token()
        url = f"{stack.api_url()}/v1/admin/events?access_token={admin}"
        async with http.post(url, json=body, headers=headers) as response:
            error = await assert_contract_answer(response)
            assert (response.status, error and error["code"]) == (401, "token_in_query"), error


async def test_a_token_in_the_query_is_accepted_by_the_order_stream(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str
) -> None:
    token = stack.token(Role.CUSTOMER, "c-query")
    headers = {"X-Forwarded-For": client_ip}
    async with http.get(f"{stack.api_url()}{CUSTOMER_READ}/stream?access_token={token}", headers=headers) as response:
        error = await assert_contract_answer(response)
        # Authenticated: the only refusal left is that this customer has no such order.
        assert (response.status, error and error["code"]) == (404, "unknown_order"), error


async def test_a_token_of_another_role_is_forbidden_and_publishes_nothing(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str
) -> None:
    body = {"type": "price.set", "city": "blr", "restaurant_id": "r1", "item_id": "i1", "price_cents": 100}
    async with KafkaUnchanged(stack):
        for role in (Role.CUSTOMER, Role.RESTAURANT):
            headers = {"X-Forwarded-For": client_ip, **stack.bearer(role)}
            async with http.post(f"{stack.api_url()}/v1/admin/events", json=body, headers=headers) as response:
                error = await assert_contract_answer(response)
                assert (response.status, error and error["code"]) == (403, "forbidden"), error


async def test_a_missing_token_is_refused(stack: Stack, http: aiohttp.ClientSession, client_ip: str) -> None:
    status, error = await answer(http, stack, ADMIN_READ, client_ip)
    assert (status, error and error["code"]) == (401, "missing_token"), error


async def test_repeated_failures_throttle_the_client_not_others(
    stack: Stack, http: aiohttp.ClientSession, client_ip: str
) -> None:
    for _ in range(FAILURES_ALLOWED):
        await assert_refused(http, stack, signed(claims(), kid="guess"), client_ip, "unknown_key")
    for token in (signed(claims(), kid="guess"), stack.token()):  # even a good token waits out the window
        status, error = await answer(http, stack, ADMIN_READ, client_ip, token)
        assert (status, error and error["code"]) == (429, "auth_throttled"), error
    neighbour = "203.0.113.1"
    status, error = await answer(http, stack, ADMIN_READ, neighbour, stack.token())
    assert (status, error and error["code"]) == (404, "unknown_event"), error


def run_feastflow(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEASTFLOW_")}
    environment.update(env)
    return subprocess.run(feastflow_command(*args), env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "keys",
    [
        {"FEASTFLOW_JWT_SECRET": "s" * 31},
        {"FEASTFLOW_JWT_KEYS": f"new:{NEW_KEY},old:short"},
        {"FEASTFLOW_JWT_KEYS": "no-colon-here"},
        {},
    ],
    ids=["short-secret", "one-short-key", "malformed-keys", "no-secret"],
)
def test_an_api_pod_refuses_to_start_with_a_weak_or_missing_key(tmp_path: Path, keys: dict[str, str]) -> None:
    result = run_feastflow("api", FEASTFLOW_DATA=str(tmp_path), FEASTFLOW_API_PORT=str(free_port()), **keys)
    assert result.returncode != 0
    assert "FEASTFLOW_JWT" in result.stderr, result.stderr


def test_the_token_command_caps_lifetimes_and_signs_with_the_first_key(tmp_path: Path) -> None:
    keys = {"FEASTFLOW_DATA": str(tmp_path), "FEASTFLOW_JWT_KEYS": f"new:{NEW_KEY},old:{OLD_KEY}"}
    refused = run_feastflow("token", "--role", "admin", "--ttl", str(MAX_LIFETIME_S[Role.ADMIN] + 1), **keys)
    assert refused.returncode == 2 and "at most" in refused.stderr, refused.stderr
    issued = run_feastflow("token", "--role", "admin", **keys)
    token = issued.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == "new"
    document = jwt.decode(token, NEW_KEY, algorithms=["HS256"], audience=audience(Role.ADMIN))
    assert document["exp"] - document["iat"] == MAX_LIFETIME_S[Role.ADMIN]
