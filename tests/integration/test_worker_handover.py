"""Worker deploys hand the log over without a rebalance (streams.handover), on the local stack `make test` starts,
under rehearsal traffic: admins change prices, customers stream and order.

- Rolling the worker to the next version (one more optional field) leaves change latency where it is, and
  every change and order arrives exactly once.
- A successor that drops price changes, prices 1% off, or crashes once caught up is refused before it takes
  over: the release fails with the reason, and customers lose nothing.
- After a SIGKILL of the only worker, changes reach customers again within 10 s (bench/failover.py measures
  the same at full length).
"""

from pathlib import Path

import pytest

from core.settings import Settings
from ops.failover import isolated_crash, measure_failover
from ops.probes import Guardrails
from ops.rehearsal import Sizes, rehearse
from ops.releases import FAILED, ReleaseHistory
from ops.rollout import RolloutFailed, rollout
from tests.integration.test_rollback import assert_nothing_failed_or_lost
from tests.integration.test_side_by_side import next_version
from tests.support.builds import build, running_code

SIZES = Sizes(sse_clients=40, menu_readers=4, admin_per_s=10.0, orders_per_s=3.0, settle_s=60)
GUARD = Guardrails(bake_s=3, watch_s=5, handover_timeout_s=150, handover_stall_s=60)
FAILOVER_BOUND_S = 10.0
DURING_ROLL_P99_MS = 500.0  # the goal is 250 ms at full size (README); CI machines are noisier

DROPS_PRICE_CHANGES = {
    "models/catalog.py": (
        "        base_price_cents=payload.price_cents,\n"
        "        price_cents=effective_price(payload.price_cents, multiplier_bp),\n",
        "",
    )
}
PRICES_ONE_PERCENT_OFF = {
    "models/catalog.py": (
        "    return (base_price_cents * multiplier_bp + 5_000) // 10_000",
        "    return (base_price_cents * multiplier_bp * 99 // 100 + 5_000) // 10_000",
    )
}
CRASHES_ONCE_CAUGHT_UP = {
    "streams/handover.py": (
        "    previous = worker.tables.view(PROBE_CITY.code).item(PROBE_ITEM)\n",
        "    import os\n\n    os._exit(3)  # a build that dies once it has caught up\n"
        "    previous = worker.tables.view(PROBE_CITY.code).item(PROBE_ITEM)\n",
    )
}


async def test_after_a_sigkill_of_the_only_worker_changes_flow_again_within_10_s() -> None:
    settings = Settings.from_env()
    await isolated_crash(settings)  # the supervisor's first back-off, as after any single crash
    measured = await measure_failover(settings)
    assert measured["failover_s"] < FAILOVER_BOUND_S, measured


async def test_a_worker_roll_under_traffic_pauses_no_price_and_decides_every_order_once(tmp_path: Path) -> None:
    settings = Settings.from_env()
    successor = next_version(tmp_path)

    async def roll_worker() -> None:
        released = await rollout(settings, None, str(successor), only="worker", guard=GUARD)
        assert released.outcome == "succeeded"

    result = await rehearse(settings, SIZES, deploy=roll_worker)
    assert_nothing_failed_or_lost(result)  # orders: every one decided, with exactly one row
    during = result["change_latency_ms"]["during_rollout"]
    assert during["count"] >= 20, f"too few changes arrived during the roll to measure it: {during}"
    assert during["p99"] < DURING_ROLL_P99_MS, f"change latency during the worker roll: {during}"
    assert running_code(settings)["worker"] == successor
    await rollout(settings, None, None, only="worker", guard=GUARD)  # and back to this checkout


@pytest.mark.parametrize(
    ("name", "patches", "reason"),
    [
        ("drops-price-changes", DROPS_PRICE_CHANGES, "handover refused: the probe's price change"),
        ("prices-one-percent-off", PRICES_ONE_PERCENT_OFF, "handover refused"),
        ("crashes-once-caught-up", CRASHES_ONCE_CAUGHT_UP, "exited before it became ready"),
    ],
)
async def test_a_wrong_worker_is_refused_before_it_takes_over_and_customers_lose_nothing(
    tmp_path: Path, name: str, patches: dict[str, tuple[str, str]], reason: str
) -> None:
    settings = Settings.from_env()
    before = running_code(settings)
    failure: list[str] = []

    async def deploy() -> None:
        with pytest.raises(RolloutFailed) as raised:
            await rollout(settings, None, str(build(tmp_path, name, patches)), only="worker", guard=GUARD)
        failure.append(str(raised.value))

    result = await rehearse(settings, SIZES, deploy=deploy)
    assert reason in failure[0], failure[0]
    assert_nothing_failed_or_lost(result)
    assert running_code(settings) == before, "the worker that held the log must still hold it"
    last = ReleaseHistory(settings.data_dir).all()[-1]
    assert last.outcome == FAILED and last.reason is not None and reason in last.reason
