"""A rolling deploy of the local stack, done the way a Deployment with maxSurge 1, maxUnavailable 0 does it,
with automatic rollback.

For each API pod: start its successor on a fresh port, wait until it is ready (within a deadline), bake it —
for a few seconds it must stay up and answer real reads on its own port before any customer reaches it — then
put it in the gateway, take the old one out, SIGTERM the old one (it drains: SSE clients are told to
reconnect, in-flight requests finish) and wait for it to exit. For the worker: start a successor generation in a
consumer group of its own (no rebalance of the group customers depend on); it catches up with the log, proves
itself (its prices equal the read model's, a probe price change comes back right) and takes the log over at a
marker on every partition (streams.handover); then a probe change must reach an SSE client, it is baked, and
the old worker, which stopped writing at the markers, is stopped. A successor that is refused never wrote
anything: it is stopped and the old worker never paused.
After the last unit the service objectives (error ratio, change freshness) are watched in the local
Prometheus for a while, and the new units must stay up.

If anything fails — a unit not ready in time, crashing, failing its reads, the objectives degrading — the
rollout stops, puts the previous version back on every unit it had replaced (the same zero-downtime steps),
marks the release failed with the reason, and exits non-zero. Every rollout and rollback is a numbered
release (ops.releases); `feastflow rollback [--to N]` returns to an earlier one.

The code to roll to is the current checkout, another checkout (`--path`), or a git ref (`--ref`, checked out
into the data folder). Pods run it with this checkout's virtualenv.
"""

import logging
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from core.settings import Settings
from core.topic_admin import delete_generation_topics
from ops.probes import Guardrails, api_checks, bake, probe_end_to_end, wait_ready, watch_objectives
from ops.releases import FAILED, SUCCEEDED, Release, ReleaseHistory
from ops.stack import (
    LocalStack,
    RolloutFailed,
    Unit,
    cli_module,
    code_of,
    free_port,
    resolve_code,
    stop_gracefully,
    stop_restarted,
)

__all__ = ["Guardrails", "RolloutFailed", "rollback", "rollout"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replaced:
    """A unit the rollout replaced: what it ran before, to put it back."""

    name: str  # api-1, api-2, worker
    previous_code: Path


async def replace_api_pod(stack: LocalStack, unit: Unit, code: Path, guard: Guardrails, say: "Say") -> Replaced:
    previous = code_of(unit.pid)
    ports = [u.port for u in stack.api_units()]
    port = free_port(set(ports))
    pid = stack.start(unit.name, "api", code, {"FEASTFLOW_API_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(f"{base}/readyz", pid, f"new {unit.name}", guard.ready_timeout_s)
        await bake(pid, f"new {unit.name}", base, api_checks(stack.settings), guard.bake_s, stack.admin_headers())
    except RolloutFailed:
        await stop_gracefully(pid, f"new {unit.name}")  # never routed: no customer ever reached it
        raise
    stack.scrape("api", unit.name, port)
    say(f"{unit.name}: new pod ready and baked on :{port} (pid {pid})")
    ports = [port if p == unit.port else p for p in ports]
    await stack.route_gateway_to(ports)
    restarted = stack.pid_of(unit.name)
    stack.record(unit.name, pid)
    stack.record_api_ports(ports)
    say(f"{unit.name}: gateway routes to {ports} only; draining the old pod on :{unit.port}")
    await stop_gracefully(unit.pid, f"old {unit.name}")
    await stop_restarted(restarted, unit, f"old {unit.name}")
    stack.unscrape("api", unit.port)
    say(f"{unit.name}: old pod (pid {unit.pid}) exited")
    return Replaced(unit.name, previous)


async def roll_api_pods(
    stack: LocalStack, code: Path, say: "Say", guard: Guardrails | None = None, replaced: list[Replaced] | None = None
) -> None:
    for unit in stack.api_units():
        done = await replace_api_pod(stack, unit, code, guard or Guardrails(), say)
        if replaced is not None:
            replaced.append(done)


async def roll_worker(
    stack: LocalStack, code: Path, say: "Say", guard: Guardrails | None = None, replaced: list[Replaced] | None = None
) -> None:
    """Hand the log over to a successor generation (streams.handover): it catches up in a consumer group of its
    own, proves itself and takes over at a marker on every partition; only then is the old worker stopped."""
    guard = guard or Guardrails()
    unit, name = stack.worker_unit()
    previous, generation = code_of(unit.pid), stack.worker_generation()
    successor = _next_name(name)
    # A generation of its own for every attempt: a group and changelogs a refused attempt (another build,
    # perhaps a wrong one) left behind under the same name must never seed this one's tables.
    successor_generation = f"{successor}-{secrets.token_hex(3)}"
    port = free_worker_port(unit.port)
    env = {
        "FEASTFLOW_WORKER_NAME": successor,
        "FEASTFLOW_WORKER_WEB_PORT": str(port),
        "FEASTFLOW_WORKER_GENERATION": successor_generation,
        "FEASTFLOW_HANDOVER_PROOF_TIMEOUT_S": str(guard.handover_stall_s),
        # The only member of its group: restarted after a crash, it takes its partitions straight back.
        "FEASTFLOW_STATIC_MEMBERSHIP": "1",
    }
    pid = stack.start("worker", "worker", code, env)
    base = f"http://127.0.0.1:{port}"
    say(f"worker: {successor} (pid {pid}) catching up in its own group and proving itself")
    took_over = False
    try:
        await wait_ready(
            f"{base}/feastflow/ready/", pid, f"worker {successor}", guard.handover_timeout_s, 2 * guard.handover_stall_s
        )
        took_over = True
        say(f"worker: {successor} took the log over; {name} stopped writing at the markers")
        seconds = await probe_end_to_end(stack.settings, f"http://127.0.0.1:{stack.api_units()[0].port}")
        say(f"worker: a probe price change reached an SSE client in {seconds * 1000:.0f} ms")
        await bake(
            pid, f"worker {successor}", base, {"/feastflow/health/": 200, "/feastflow/ready/": 200}, guard.bake_s
        )
    except RolloutFailed:
        # The old worker kept following the log: once it released a lane (the successor took over, or failed
        # part-way through taking over), it proves itself again and takes the log back.
        if took_over or await _released_lanes(unit):
            await take_back(stack, unit, name, guard, say)
        await stop_gracefully(pid, f"worker {successor}")  # if it never took over, the old worker never stopped
        shutil.rmtree(stack.worker_data_dir(successor, successor_generation), ignore_errors=True)
        await _forget(stack, successor_generation)
        raise
    stack.scrape("worker", "worker", port)
    restarted = stack.pid_of("worker")
    stack.record("worker", pid)
    stack.record_worker(successor, port, successor_generation)
    await stop_gracefully(unit.pid, f"worker {name}")
    await stop_restarted(restarted, unit, f"worker {name}")
    stack.unscrape("worker", unit.port)
    shutil.rmtree(stack.worker_data_dir(name, generation), ignore_errors=True)
    await _forget(stack, generation)
    say(f"worker: {name} (pid {unit.pid}) stopped; {successor} on :{port} holds the log")
    if replaced is not None:
        replaced.append(Replaced("worker", previous))


def free_worker_port(current: int) -> int:
    """A port for the successor's operator views that nothing listens on: the next after the current one's, in
    6066-6099 (a crashed and restarted unit of an earlier roll may still hold the obvious one)."""
    for step in range(1, 34):
        port = 6066 + (current - 6066 + step) % 34
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RolloutFailed("no free worker port between 6066 and 6099")


async def _forget(stack: LocalStack, generation: str) -> None:
    """A generation no process runs any more leaves no changelogs behind (its consumer group's offsets stay)."""
    settings = replace(stack.settings, worker_generation=generation)
    try:
        await delete_generation_topics(settings, generation)
    except Exception as exc:  # housekeeping only: never fails a rollout
        logger.warning("changelogs of generation %s not deleted: %r", generation, exc)


async def _released_lanes(unit: Unit) -> bool:
    """Whether the worker on `unit` handed any lane over (it then no longer writes for it). A worker that does
    not answer cannot take anything back: False, and the rollout goes on to stop the successor."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"http://127.0.0.1:{unit.port}/feastflow/handover/") as response,
        ):
            document = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        logger.warning("worker %s did not say which lanes it holds: %r", unit.name, exc)
        return False
    return bool(len(document["lanes_held"]) < document["lanes"])


async def take_back(stack: LocalStack, unit: Unit, name: str, guard: Guardrails, say: "Say") -> None:
    base = f"http://127.0.0.1:{unit.port}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(f"{base}/feastflow/handover/", headers=stack.admin_headers()) as response,
    ):
        if response.status != 202:
            raise RolloutFailed(f"worker {name} cannot take the log back: {await response.text()}")
    await wait_ready(
        f"{base}/feastflow/ready/", unit.pid, f"worker {name}", guard.handover_timeout_s, 2 * guard.handover_stall_s
    )
    say(f"worker: {name} took the log back")


async def restore(stack: LocalStack, replaced: list[Replaced], say: "Say") -> None:
    """Put the previous version back on every replaced unit, newest first, with the same zero-downtime steps."""
    guard = Guardrails(bake_s=0.0, watch_s=0.0)
    for done in reversed(replaced):
        if done.name == "worker":
            await roll_worker(stack, done.previous_code, say, guard)
        else:
            unit = next(u for u in stack.api_units() if u.name == done.name)
            await replace_api_pod(stack, unit, done.previous_code, guard, say)
        say(f"{done.name}: back on {done.previous_code}")


def _next_name(name: str) -> str:
    base, _, generation = name.rpartition("-g")
    return f"{base}-g{int(generation) + 1}" if base and generation.isdigit() else f"{name}-g2"


class Say:
    """A line for the operator, with the seconds since the command began: where a rollout spends its time."""

    def __init__(self, prefix: str = "rollout") -> None:
        self.prefix = prefix
        self.started = time.monotonic()

    def __call__(self, line: str) -> None:
        print(f"{self.prefix} +{time.monotonic() - self.started:.1f}s: {line}", flush=True)


async def rollout(
    settings: Settings,
    ref: str | None,
    path: str | None,
    only: str | None = None,
    guard: Guardrails | None = None,
) -> Release:
    code = resolve_code(settings, ref, path)
    return await deploy(settings, "rollout", code, ref, only, guard or Guardrails())


async def rollback(settings: Settings, to: int | None = None, guard: Guardrails | None = None) -> Release:
    """Return the stack to an earlier release: by default the last good one before the current one."""
    history = ReleaseHistory(settings.data_dir)
    current = history.last_good()
    target = history.get(to) if to is not None else history.last_good(before=current.number if current else None)
    if target is None:
        raise RolloutFailed(f"no release {to} in the history" if to else "no earlier good release to go back to")
    if to is not None and target.outcome != SUCCEEDED:
        raise RolloutFailed(f"release {to} is {target.outcome}; roll back to a release that succeeded")
    code = Path(target.code)
    if cli_module(code) is None:
        raise RolloutFailed(f"release {target.number}'s code at {code} is gone")
    return await deploy(settings, "rollback", code, f"release {target.number}", None, guard or Guardrails())


async def deploy(
    settings: Settings, kind: str, code: Path, ref: str | None, only: str | None, guard: Guardrails
) -> Release:
    say = Say()
    stack = LocalStack(settings)
    history = ReleaseHistory(settings.data_dir)
    units = stack.api_units() if only != "worker" else []
    history.ensure_baseline(code_of(units[0].pid) if units else code_of(stack.worker_unit()[0].pid))
    release = history.begin(kind, code, ref)
    say(f"release {release.number} ({kind}): rolling to {code} ({release.version})")
    replaced: list[Replaced] = []
    try:
        if only in (None, "api"):
            await roll_api_pods(stack, code, say, guard, replaced)
        if only in (None, "worker"):
            await roll_worker(stack, code, say, guard, replaced)
        await watch_objectives(stack, [r.name for r in replaced], guard, say)
    except RolloutFailed as failure:
        say(f"FAILED: {failure}; putting the previous version back on {len(replaced)} replaced unit(s)")
        try:
            await restore(stack, replaced, say)
        except RolloutFailed as second:
            history.finish(release, FAILED, f"{failure}; and the rollback failed too: {second}")
            raise RolloutFailed(f"release {release.number} failed ({failure}); its rollback too: {second}") from second
        history.finish(release, FAILED, str(failure))
        raise RolloutFailed(f"release {release.number} failed and was rolled back: {failure}") from failure
    finished = history.finish(release, SUCCEEDED)
    say(f"release {release.number} succeeded")
    return finished
