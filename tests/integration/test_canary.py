"""The pricing canary on the local stack `make test` starts, with its real Prometheus: a candidate runs in
shadow and is promoted or aborted by the analysis alone — customers never see an aborted candidate's prices."""

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.settings import Settings
from core.tokens import Role, issue_token
from models.catalog import effective_price
from ops.canary import CanaryAborted, CanaryPolicy, canary
from ops.probes import Guardrails
from ops.rehearsal import Sizes, rehearse
from ops.releases import ABORTED, PASSED, ReleaseHistory
from ops.rollout import rollback
from ops.stack import LocalStack
from tests.support.builds import build, running_code
from tests.support.polling import poll_until
from tests.support.sse import SseClient

GATEWAY = "http://127.0.0.1:8080"
CITY = "del"  # the rehearsal traffic uses blr; a surge there would move the prices it checks
SURGE_BP = 12_000
POLICY = replace(CanaryPolicy.load(), catch_up_timeout_s=300, window_s=15)
GUARD = Guardrails(ready_timeout_s=30, bake_s=2, watch_s=5)

DESSERTS_TEN_PERCENT_TOO_HIGH = {
    "models/catalog.py": (
        "        price = effective_price(item.base_price_cents, multiplier_bp)\n",
        '        bumped = multiplier_bp * 11 // 10 if item.category == "Desserts" else multiplier_bp  # the bug\n'
        "        price = effective_price(item.base_price_cents, bumped)\n",
    )
}
FIVE_PERCENT_UPLIFT = {
    "models/catalog.py": (
        "    return (base_price_cents * multiplier_bp + 5_000) // 10_000\n",
        "    return (base_price_cents * multiplier_bp * 105 // 100 + 5_000) // 10_000\n",
    )
}
REFACTOR = {
    "models/catalog.py": (
        "def effective_price(base_price_cents: int, multiplier_bp: int) -> int:\n",
        "def effective_price(base_price_cents: int, multiplier_bp: int) -> int:  # refactored: same arithmetic\n",
    )
}
CRASHES = {
    "streams/shadow.py": (
        "    async def compare_with_stable() -> None:\n",
        "    async def compare_with_stable() -> None:\n        os._exit(3)\n",
    )
}
SLOW = {  # every record, alone or in a group, is prepared here
    "streams/catalog_agent.py": (
        "    await worker.handover.decided.wait()  # whether this generation holds the log (streams.handover)\n",
        "    await worker.handover.decided.wait()  # whether this generation holds the log (streams.handover)\n"
        '    await __import__("asyncio").sleep(1.0)  # a slow candidate: one record a second\n',
    ),
}


async def set_surge(settings: Settings, multiplier: float | None) -> None:
    token = issue_token(settings.jwt_secret, Role.ADMIN, "canary-test", 600)
    rule = {"multiplier": multiplier} if multiplier else None
    body = {"type": "pricing.rule_set", "city": CITY, "rule": rule}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(f"{GATEWAY}/v1/admin/events", json=body) as response:
            assert response.status == 202, await response.text()
            (event_id,) = (await response.json())["event_ids"]

        async def applied() -> bool:  # so the menu read next already shows it
            async with http.get(f"{GATEWAY}/v1/admin/events/{event_id}") as response:
                return response.status == 200 and (await response.json())["status"] == "applied"

        await poll_until(applied, 10, 0.05, f"the surge {multiplier} was never applied")


async def menu_items(city: str) -> list[dict[str, Any]]:
    """As a pod has it now: the gateway may answer from a copy up to a second old (the menu's s-maxage)."""
    pod = f"http://127.0.0.1:{LocalStack(Settings.from_env()).api_units()[0].port}"
    async with aiohttp.ClientSession() as http, http.get(f"{pod}/v1/cities/{city}/menu") as response:
        menu = await response.json()
    return [item for restaurant in menu["restaurants"] for item in restaurant["items"]]


@pytest.fixture
async def surge_in_the_log() -> Any:
    """A city-wide surge in the log: every candidate reprices the city with its own algorithm on catch-up."""
    settings = Settings.from_env()
    await set_surge(settings, SURGE_BP / 10_000)
    yield settings
    await set_surge(settings, None)


async def test_a_candidate_that_prices_desserts_too_high_is_aborted_and_never_seen(
    tmp_path: Path, surge_in_the_log: Settings
) -> None:
    settings = surge_in_the_log
    before = await menu_items(CITY)
    async with SseClient(f"{GATEWAY}/v1/cities/{CITY}/menu/stream") as customer:
        with pytest.raises(CanaryAborted, match="prices diverge"):
            await canary(settings, str(build(tmp_path, "bug", DESSERTS_TEN_PERCENT_TOO_HIGH)), policy=POLICY)
        changes = [e for e in customer.events if e.type not in ("snapshot", "ping")]
    assert changes == [], "an aborted candidate must never reach a customer's stream"
    after = await menu_items(CITY)
    assert after == before
    desserts = [i for i in after if i["category"] == "Desserts"]
    assert desserts and all(i["price_cents"] == effective_price(i["base_price_cents"], SURGE_BP) for i in desserts)
    last = ReleaseHistory(settings.data_dir).all()[-1]
    assert (last.kind, last.outcome) == ("canary", ABORTED) and "diverge" in (last.reason or "")


async def test_a_declared_change_passes_the_analysis(tmp_path: Path, surge_in_the_log: Settings) -> None:
    uplift = str(build(tmp_path, "uplift", FIVE_PERCENT_UPLIFT))
    with pytest.raises(CanaryAborted, match="prices diverge"):  # undeclared, the same change is a divergence
        await canary(surge_in_the_log, uplift, policy=POLICY, promote=False)
    report = await canary(surge_in_the_log, uplift, expect='[{"ratio": 1.05}]', policy=POLICY, promote=False)
    assert report["promoted"] is None and report["measurements"]["divergence_ratio"] == 0
    assert report["measurements"]["compared_min"] > 100
    assert ReleaseHistory(surge_in_the_log.data_dir).all()[-1].outcome == PASSED


async def test_a_candidate_that_crashes_is_aborted(tmp_path: Path) -> None:
    settings = Settings.from_env()
    before = running_code(settings)
    with pytest.raises(CanaryAborted, match="exited"):
        await canary(settings, str(build(tmp_path, "crashes", CRASHES)), policy=POLICY)
    assert running_code(settings) == before


async def test_a_slow_candidate_is_aborted_even_when_nothing_changes(tmp_path: Path) -> None:
    """With no live changes there is no recent stable timing to compare with: its last hour stands in. The
    candidate is judged per record while it catches up, long before it could reach the end of the log."""
    settings = Settings.from_env()
    with pytest.raises(CanaryAborted, match=r"slower per record than the stable version, \d+s into catching up"):
        await canary(settings, str(build(tmp_path, "idle-slow", SLOW)), policy=replace(POLICY, catch_up_timeout_s=120))


async def test_a_candidate_that_cannot_keep_up_with_the_log_is_aborted(tmp_path: Path) -> None:
    """Ten changes a second against a candidate that applies one: its lag can only grow."""
    settings = Settings.from_env()
    before = running_code(settings)
    candidate = str(build(tmp_path, "slow", SLOW))
    token = issue_token(settings.jwt_secret, Role.ADMIN, "canary-test", 600)
    item = next(i for i in await menu_items(CITY))
    stop = asyncio.Event()

    async def change_prices() -> None:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for n in itertools.count():
                if stop.is_set():
                    return
                body = {
                    "type": "price.set",
                    "city": CITY,
                    "restaurant_id": item["restaurant_id"],
                    "item_id": item["item_id"],
                    "price_cents": item["base_price_cents"] + n % 50,
                }
                async with http.post(f"{GATEWAY}/v1/admin/events", json=body) as response:
                    assert response.status == 202, await response.text()
                await asyncio.sleep(0.1)

    traffic = asyncio.create_task(change_prices())
    try:
        with pytest.raises(CanaryAborted, match=r"lag not converging|slower per record"):
            await canary(settings, candidate, policy=replace(POLICY, catch_up_timeout_s=60))
    finally:
        stop.set()
        await traffic
    assert running_code(settings) == before


async def test_a_harmless_candidate_is_promoted_under_traffic_with_zero_failed_requests(tmp_path: Path) -> None:
    settings = Settings.from_env()
    before = running_code(settings)
    candidate = build(tmp_path, "refactor", REFACTOR)
    reports: list[dict[str, Any]] = []

    async def promote() -> None:
        reports.append(await canary(settings, str(candidate), policy=POLICY, guard=GUARD))

    result = await rehearse(
        settings, Sizes(sse_clients=30, menu_readers=4, admin_per_s=5.0, orders_per_s=2.0), deploy=promote
    )
    failures = result["failures"]
    assert failures == {name: 0 for name in failures}, result["failure_reasons"]
    assert reports[0]["promoted"] is not None
    assert set(running_code(settings).values()) == {candidate}, "the candidate now serves every unit"
    async with aiohttp.ClientSession() as http, http.get(f"{GATEWAY}/v1/cities/{CITY}/menu") as response:
        assert response.status == 200
    await rollback(settings, guard=GUARD)  # leave the stack as the suite found it
    assert running_code(settings) == before
