"""Automatic rollback on the local stack `make test` starts, under rehearsal traffic: builds that never become
ready, that crash seconds after becoming ready, or that answer 500s are rolled back by themselves, and
customers see zero failed requests and zero lost changes; `feastflow rollback` returns to an earlier release."""

from pathlib import Path

import pytest

from core.settings import Settings
from ops.probes import Guardrails
from ops.rehearsal import Sizes, rehearse
from ops.releases import FAILED, SUCCEEDED, ReleaseHistory
from ops.rollout import RolloutFailed, rollback, rollout
from tests.support.builds import build, running_code

SIZES = Sizes(sse_clients=30, menu_readers=4, admin_per_s=5.0, orders_per_s=2.0, settle_s=60)
GUARD = Guardrails(ready_timeout_s=20, bake_s=5, watch_s=5, handover_timeout_s=150, handover_stall_s=60)

NEVER_READY = {"api/ops_views.py": ("    ready = not draining and readiness.ok\n", "    ready = False\n")}
CRASHES_AFTER_READY = {
    "streams/operator_views.py": (
        '        return answer(self, request, "Readiness", {"ready": is_ready',
        "        if is_ready:  # a build that dies a few seconds into its life\n"
        "            import asyncio, os\n"
        "            asyncio.get_running_loop().call_later(3.0, os._exit, 3)\n"
        '        return answer(self, request, "Readiness", {"ready": is_ready',
    )
}
ANSWERS_500 = {
    "api/menu_views.py": (
        "async def get_menu(request: web.Request) -> web.Response:\n",
        "async def get_menu(request: web.Request) -> web.Response:\n    raise RuntimeError('a bad build')\n",
    )
}


async def rolled_back_under_traffic(settings: Settings, code: Path) -> tuple[dict[str, object], str]:
    failure: list[str] = []

    async def deploy() -> None:
        with pytest.raises(RolloutFailed) as raised:
            await rollout(settings, None, str(code), guard=GUARD)
        failure.append(str(raised.value))

    result = await rehearse(settings, SIZES, deploy=deploy)
    return result, failure[0]


def assert_nothing_failed_or_lost(result: dict[str, object]) -> None:
    failures = result["failures"]
    assert isinstance(failures, dict)
    assert failures == {name: 0 for name in failures}, result["failure_reasons"]
    assert isinstance(result["admin_changes_acknowledged"], int) and result["admin_changes_acknowledged"] > 20


@pytest.mark.parametrize(
    ("name", "patches", "reason"),
    [
        ("never-ready", NEVER_READY, "was not ready within 20s"),
        ("crashes-after-ready", CRASHES_AFTER_READY, "exited"),
        ("answers-500", ANSWERS_500, "answered 500 to GET /v1/cities/"),
    ],
)
async def test_a_bad_build_is_rolled_back_by_itself_and_customers_notice_nothing(
    tmp_path: Path, name: str, patches: dict[str, tuple[str, str]], reason: str
) -> None:
    settings = Settings.from_env()
    before = running_code(settings)
    result, failure = await rolled_back_under_traffic(settings, build(tmp_path, name, patches))
    assert reason in failure and "rolled back" in failure, failure
    assert_nothing_failed_or_lost(result)
    assert running_code(settings) == before, "every unit must run what it ran before the release"
    last = ReleaseHistory(settings.data_dir).all()[-1]
    assert (last.kind, last.outcome, last.code) == ("rollout", FAILED, str(tmp_path / name))
    assert last.reason is not None and reason in last.reason


async def test_rollback_returns_to_the_previous_release_with_zero_failed_requests(tmp_path: Path) -> None:
    settings = Settings.from_env()
    before = running_code(settings)
    good = build(tmp_path, "good", {})
    released = await rollout(settings, None, str(good), guard=GUARD)
    assert released.outcome == SUCCEEDED
    assert set(running_code(settings).values()) == {good}

    async def go_back() -> None:
        back = await rollback(settings, guard=GUARD)
        assert back.kind == "rollback" and back.outcome == SUCCEEDED

    result = await rehearse(settings, SIZES, deploy=go_back)
    assert_nothing_failed_or_lost(result)
    assert running_code(settings) == before
    history = ReleaseHistory(settings.data_dir).all()
    assert history[-1].kind == "rollback" and history[-1].code == str(before["api-1"])
