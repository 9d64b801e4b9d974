"""The rollout rehearsal, at a size that fits the suite, against the local stack `make test` starts:
every API pod and the worker are rolled while customers read, stream and order and admins change prices.
(`feastflow rehearse` runs it at full size.)"""

from feastflow.rehearsal import Sizes, rehearse
from feastflow.settings import Settings


async def test_a_rolling_deploy_under_traffic_fails_nothing_and_loses_nothing() -> None:
    result = await rehearse(Settings.from_env(), Sizes(sse_clients=60, rolls=1, settle_s=60))
    assert result["failures"] == {name: 0 for name in result["failures"]}, result
    assert result["reconnects"] >= 60, "every client should have been moved off its pod at least once"
    assert result["admin_changes_acknowledged"] > 50 and result["orders_placed"] > 20
    assert result["menu_reads"] > 1000
