"""What a new unit must show before and after customers reach it: ready in time, then answering real reads
on its own port for a while (bake), then — once it carries traffic — the service objectives holding in
Prometheus. Any miss raises RolloutFailed, which rolls the release back."""

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from core.publisher import EventPublisher
from core.settings import Settings
from models.events import utc_now
from models.handover import PROBE_CITY, PROBE_ITEM, next_probe_price, probe_batches
from ops.prometheus import PrometheusUnavailable, instant
from ops.sse_client import EventSource, ServerSentEvent
from ops.stack import LocalStack, RolloutFailed, process_alive

READY_TIMEOUT_S = 120.0
PROBE_TIMEOUT_S = 10.0
REFUSED = "handover refused"  # how a worker's readiness says it will never take over


@dataclass(frozen=True)
class Guardrails:
    """What a new version must show before and after customers reach it."""

    ready_timeout_s: float = READY_TIMEOUT_S
    bake_s: float = 5.0  # up and answering on its own port before it is routed (or before the old worker stops)
    watch_s: float = 15.0  # after the last unit: the objectives must hold and the new units stay up this long
    max_error_ratio: float = 0.01  # 5xx share of API requests over the last minute
    max_freshness_s: float = 10.0  # p99 change freshness over the last minute
    handover_timeout_s: float = 1800.0  # a worker successor catches up with the log and proves itself by then
    handover_stall_s: float = 120.0  # it is refused sooner when its catch-up stalls or its proof takes this long
    prometheus: str | None = "http://127.0.0.1:9090"  # None: objectives are not watched (and the rollout says so)


async def wait_ready(
    url: str, pid: int, name: str, timeout_s: float = READY_TIMEOUT_S, stall_s: float | None = None
) -> None:
    """Until the unit answers 200 on its readiness page. A worker refused in its handover (streams.handover)
    never becomes ready: that fails at once, with the worker's own reason. With `stall_s`, a unit whose reason
    for not being ready stays the same that long (a worker's handover reports its progress in it) fails too."""
    started = time.monotonic()
    deadline = started + timeout_s
    last, since = "no answer", started
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if not process_alive(pid):
                raise RolloutFailed(f"{name} exited before it became ready (last: {last})")
            reason = last
            try:
                async with session.get(url, headers={"Accept": "application/json"}) as response:
                    if response.status == 200:
                        return
                    reason = await _reason(response)
            except aiohttp.ClientError:
                pass
            if reason != last:
                last, since = reason, time.monotonic()
            if last.startswith(REFUSED):
                raise RolloutFailed(f"{name} {last}")
            if stall_s is not None and time.monotonic() - since > stall_s:
                raise RolloutFailed(f"{name} made no progress for {stall_s:.0f}s (last: {last})")
            await asyncio.sleep(0.25)
    raise RolloutFailed(f"{name} was not ready within {timeout_s:.0f}s (last: {last})")


async def _reason(response: aiohttp.ClientResponse) -> str:
    try:
        document = await response.json(content_type=None)
    except ValueError:
        return f"HTTP {response.status}"
    return str(document.get("reason", "")) if isinstance(document, dict) else f"HTTP {response.status}"


async def bake(
    pid: int, name: str, base: str, expected: dict[str, int], seconds: float, headers: dict[str, str] | None = None
) -> None:
    """The new unit must stay alive and answer every path as expected, again and again, for `seconds`."""
    started = time.monotonic()
    async with aiohttp.ClientSession(base, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            for path, wanted in expected.items():
                if not process_alive(pid):
                    raise RolloutFailed(f"{name} exited {time.monotonic() - started:.1f}s after it was ready")
                try:
                    async with session.get(path) as response:
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise RolloutFailed(f"{name} did not answer GET {path}: {exc!r}") from None
                if status != wanted:
                    raise RolloutFailed(f"{name} answered {status} to GET {path} (expected {wanted})")
            if time.monotonic() - started >= seconds:
                return
            await asyncio.sleep(0.5)


async def probe_end_to_end(settings: Settings, api: str, timeout_s: float = PROBE_TIMEOUT_S) -> float:
    """A price change to the handover probe's item (models.handover), published to the log, must reach an SSE
    client of the probe city with that price: the worker holding the log applied and projected it, the API
    served it. Returns the seconds it took."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_s)) as session:
        source = EventSource(session, f"{api}/v1/cities/{PROBE_CITY.code}/menu/stream", backoff=None)
        events = source.events()
        opened = asyncio.ensure_future(anext(events))
        try:
            await asyncio.wait_for(source.opened.wait(), timeout_s)
            price = next_probe_price(None, random.randrange(1 << 30))
            setup, change = probe_batches(price, "system:rollout", utc_now())
            publisher = EventPublisher(settings.kafka_bootstrap, settings.namespace)
            await publisher.start()
            try:
                started = time.monotonic()
                await publisher.publish(setup)
                await publisher.publish(change)
            finally:
                await publisher.stop()
            async with asyncio.timeout(timeout_s):
                event = await opened
                while not _shows_price(event, price):
                    event = await anext(events)
            return time.monotonic() - started
        except TimeoutError:
            raise RolloutFailed(f"the probe price change never reached an SSE client within {timeout_s:g}s") from None
        finally:
            opened.cancel()
            await events.aclose()


def _shows_price(event: ServerSentEvent, price: int) -> bool:
    if event.type != "item":
        return False
    item = event.json()
    return bool(item.get("item_id") == PROBE_ITEM and item.get("price_cents") == price)


def api_checks(settings: Settings) -> dict[str, int]:
    """Reads a new API pod must answer before customers reach it: probes, public reads, and an authenticated
    admin read (a pod that cannot verify tokens would fail every admin change and order)."""
    return {
        "/readyz": 200,
        "/v1/cities": 200,
        f"/v1/cities/{settings.city_codes[0]}/menu": 200,
        "/v1/admin/events/rollout-check": 404,
    }


async def watch_objectives(stack: LocalStack, names: list[str], guard: Guardrails, say: Callable[[str], None]) -> None:
    """For `watch_s`: every replaced unit stays up, and the objectives hold in the local Prometheus."""
    if guard.watch_s <= 0 or not names:
        return
    if guard.prometheus is None:
        say("objectives NOT watched (no Prometheus given); only the units' liveness is checked")
    pids = {name: stack.pid_of(name) for name in names}
    deadline = time.monotonic() + guard.watch_s
    worst = {"error_ratio": 0.0, "freshness_p99_s": 0.0}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            for name, pid in pids.items():
                if pid is None or not process_alive(pid):
                    raise RolloutFailed(f"{name} exited after it took traffic")
            if guard.prometheus is not None:
                error_ratio = await _query(session, guard.prometheus, "feastflow:api_errors:ratio_rate1m")
                freshness = await _query(session, guard.prometheus, "feastflow:freshness_seconds:p99_1m")
                worst["error_ratio"] = max(worst["error_ratio"], error_ratio or 0.0)
                worst["freshness_p99_s"] = max(worst["freshness_p99_s"], freshness or 0.0)
                if error_ratio is not None and error_ratio > guard.max_error_ratio:
                    raise RolloutFailed(f"API error ratio {error_ratio:.1%} > {guard.max_error_ratio:.1%} (Prometheus)")
                if freshness is not None and freshness > guard.max_freshness_s:
                    limit = guard.max_freshness_s
                    raise RolloutFailed(f"change freshness p99 {freshness:.2f}s > {limit:.2f}s (Prometheus)")
            await asyncio.sleep(2.5)
    say(
        f"objectives held for {guard.watch_s:.0f}s: worst error ratio {worst['error_ratio']:.2%}, "
        f"worst freshness p99 {worst['freshness_p99_s'] * 1000:.0f} ms"
    )


async def _query(session: aiohttp.ClientSession, prometheus: str, promql: str) -> float | None:
    """Unreachable Prometheus fails the rollout: a guardrail that cannot look is not a guardrail."""
    try:
        return await instant(session, prometheus, promql)
    except PrometheusUnavailable as exc:
        raise RolloutFailed(f"cannot read the objectives: {exc}") from None
