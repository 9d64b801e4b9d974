"""Instant queries against Prometheus, for the rollout guardrails and the canary analysis."""

import math

import aiohttp


class PrometheusUnavailable(Exception):
    pass


async def instant(session: aiohttp.ClientSession, base: str, promql: str) -> float | None:
    """The first sample's value; None when the query has no data (or NaN: nothing happened in its window)."""
    try:
        async with session.get(f"{base}/api/v1/query", params={"query": promql}) as response:
            body = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PrometheusUnavailable(f"cannot query Prometheus at {base}: {exc!r}") from None
    if body.get("status") != "success":
        raise PrometheusUnavailable(f"Prometheus refused {promql}: {body.get('error')}")
    result = body["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value
