"""Requests aiohttp itself refuses (bad request lines, headers, lengths, methods, paths) answer the contract's
error body, never plain text, never a 5xx."""

import io
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.contract import assert_contract_answer
from tests.support.raw_http import assert_raw_contract_answer, raw_request
from tests.support.stack import Stack


def _host(stack: Stack) -> bytes:
    return str(urlsplit(stack.api_url()).netloc).encode()


async def test_a_huge_header_or_too_many_headers_answer_431_in_the_contract_shape(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{stack.api_url()}/v1/cities", headers={"X-Huge": "a" * 20_000}) as response:
        error = await assert_contract_answer(response)
        assert response.status == 431 and error is not None and error["code"] == "headers_too_large"
    many = {f"X-Many-{i}": "1" for i in range(200)}
    async with http.get(f"{stack.api_url()}/v1/cities", headers=many) as response:
        error = await assert_contract_answer(response)
        assert response.status == 431 and error is not None and error["code"] == "headers_too_large"


async def test_an_overlong_uri_answers_414(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.api_url()}/v1/cities/{'b' * 9000}/menu") as response:
        error = await assert_contract_answer(response)
        assert response.status == 414 and error is not None and error["code"] == "uri_too_long"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/cities", "GET"),
        ("DELETE", "/v1/orders/o1", "GET"),
        ("PATCH", "/v1/admin/events", "POST"),
        ("OPTIONS", "/v1/cities/blr/menu", "GET"),
        ("POST", "/v1/cities/blr/menu/stream", "GET"),
    ],
)
async def test_a_wrong_method_answers_405_with_allow(
    stack: Stack, http: aiohttp.ClientSession, method: str, path: str, allowed: str
) -> None:
    async with http.request(method, f"{stack.api_url()}{path}") as response:
        error = await assert_contract_answer(response)
        assert response.status == 405 and error is not None and error["code"] == "method_not_allowed"
        assert allowed in response.headers["Allow"]


async def test_unknown_routes_answer_404_in_the_contract_shape(stack: Stack, http: aiohttp.ClientSession) -> None:
    for path in ("/nope", "/v1/cities/blr/menu/extra", "/v1//cities"):
        async with http.get(f"{stack.api_url()}{path}") as response:
            await assert_contract_answer(response)
            assert response.status == 404, path


@pytest.mark.parametrize(
    "path",
    [
        "/v1/orders/%00",
        "/v1/orders/%00/stream",
        "/v1/orders/%ff%fe",
        "/v1/orders/%zz",
        "/v1/cities/%00/menu",
        "/v1/cities/blr%0a/menu",
        "/v1/cities/%zz/menu/stream",
        "/v1/cities/%e2%80%ae/pricing",
        "/v1/admin/items/blr/%00/history",
        "/v1/orders/..%2f..%2fadmin",
    ],
)
async def test_bad_percent_encoding_never_fails_the_router_or_middlewares(
    stack: Stack, http: aiohttp.ClientSession, path: str
) -> None:
    for headers in ({}, stack.admin_headers()):
        async with http.get(f"{stack.api_url()}{path}", headers=headers) as response:
            await assert_contract_answer(response)


async def test_a_body_over_the_limit_answers_413(stack: Stack, http: aiohttp.ClientSession) -> None:
    body = io.BytesIO(b'{"events": [' + b" " * (3 * 1024 * 1024) + b"]}")
    headers = {**stack.admin_headers(), "Content-Type": "application/json"}
    async with http.post(f"{stack.api_url()}/v1/admin/events", data=body, headers=headers) as response:
        await assert_contract_answer(response)
        assert response.status == 413


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/admin/events HTTP/1.1\r\nHost: {host}\r\nContent-Length: abc\r\n\r\n{{}}",
        b"POST /v1/admin/events HTTP/1.1\r\nHost: {host}\r\nContent-Length: -1\r\n\r\n{{}}",
        b"POST /v1/admin/events HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}",
        b"POST /v1/admin/events HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n",
        b"POST /v1/admin/events HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
        b"POST /v1/admin/events HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        b"G(ET /v1/cities HTTP/1.1\r\nHost: {host}\r\n\r\n",
        b"GET /v1/cities HTTP/9.9\r\nHost: {host}\r\n\r\n",
        b"GET /v1/cities\x00 HTTP/1.1\r\nHost: {host}\r\n\r\n",
        b"GET /v1/cities HTTP/1.1\r\nHost: {host}\r\nBad Header: x\r\n\r\n",
        b"GET /v1/cities HTTP/1.1\r\nHost: {host}\r\nX-Ctl: a\x01b\r\n\r\n",
        b"GET /v1/cities HTTP/1.1\r\nHost: {host}\n\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ],
)
async def test_malformed_http_answers_the_contract_400(stack: Stack, request_bytes: bytes) -> None:
    data = request_bytes.replace(b"{host}", _host(stack)).replace(b"{{}}", b"{}")
    answer = await raw_request(stack.api_url(), data)
    error = assert_raw_contract_answer(answer)
    assert answer.status == 400 and error is not None, answer


async def test_a_pod_that_refused_a_malformed_request_still_serves(stack: Stack, http: aiohttp.ClientSession) -> None:
    await raw_request(stack.api_url(), b"GET /v1/cities HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
    async with http.get(f"{stack.api_url()}/v1/cities") as response:
        assert response.status == 200
