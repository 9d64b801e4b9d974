"""The rollout rehearsal, at a size that fits the suite, against the local stack `make test` starts:
every API pod and the worker are rolled while customers read, stream and order and admins change prices.
(`feastflow rehearse` runs it at full size.)"""

import asyncio
import subprocess
from pathlib import Path

import aiohttp

from core.settings import Settings
from ops.probes import Guardrails
from ops.rehearsal import Sizes, rehearse
from ops.rollout import rollout


async def test_a_rolling_deploy_under_traffic_fails_nothing_and_loses_nothing() -> None:
    result = await rehearse(Settings.from_env(), Sizes(sse_clients=60, rolls=1, settle_s=60))
    assert result["failures"] == {name: 0 for name in result["failures"]}, result["failure_reasons"]
    assert result["reconnects"] >= 60, "every client should have been moved off its pod at least once"
    assert result["admin_changes_acknowledged"] > 50 and result["orders_placed"] > 20
    assert result["menu_reads"] > 1000


# What this test is about is which code runs; the guardrails have tests of their own (test_rollback, test_canary).
QUICK = Guardrails(bake_s=1, watch_s=1)


async def test_rolling_to_a_git_ref_runs_that_checkout() -> None:
    settings = Settings.from_env()
    await rollout(settings, "HEAD", None, only="api", guard=QUICK)
    release = settings.data_dir / "releases" / _head()[:12]
    assert _api_pod_code_paths(settings.data_dir / "run") == [f"PYTHONPATH={release}".encode()] * 2
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get("http://127.0.0.1:8080/v1/cities/blr/menu") as response:
                assert response.status == 200
            await asyncio.sleep(0.05)
    await rollout(settings, None, None, only="api", guard=QUICK)  # and back to this checkout


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def _api_pod_code_paths(run_dir: Path) -> list[bytes]:
    paths = []
    for pid_file in sorted(run_dir.glob("api-*.pid")):
        environ = Path(f"/proc/{pid_file.read_text().strip()}/environ").read_bytes().split(b"\0")
        paths += [entry for entry in environ if entry.startswith(b"PYTHONPATH=")]
    return paths
