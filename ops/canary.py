"""The pricing canary on the local stack: `feastflow canary --candidate <git ref or path>`.

1. The candidate starts in shadow (streams/shadow.py): its own consumer group over the catalog log, its own
   tables, compared with the stable read model; it writes nothing customers see.
2. It must catch up — reach the end of the log and compare its first items — within the policy's time. Once it
   has spent `JUDGED_AFTER_S` processing, its time per record is held to the window's threshold already: a
   candidate several times slower than the stable version is aborted then, not at the end of the catch-up.
3. For the policy's window, Prometheus is asked at every interval: the share of items that diverge beyond the
   declared expected change, records it failed to apply, its lag, its time per record against the stable
   version's. One breach aborts the canary.
4. Either way the shadow is stopped and its topics deleted. Passed: the candidate is rolled out with the
   rolling deploy (zero downtime, with its own automatic rollback), then every city is repriced by the new
   algorithm in order with other changes. Aborted: the stable version was never touched.

Thresholds live in deploy/canary/pricing.toml (the Argo Rollouts AnalysisTemplate carries the same).
"""

import asyncio
import logging
import shutil
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient

from core.settings import REPO_ROOT, Settings
from core.system_events import publish_system_event
from core.topics import consumer_group
from models.events import PricingReprice
from models.shadow import parse_expected_changes
from ops.probes import Guardrails, wait_ready
from ops.prometheus import PrometheusUnavailable, instant
from ops.releases import ABORTED, PASSED, ReleaseHistory
from ops.results import markdown_table
from ops.rollout import Say, rollout
from ops.stack import LocalStack, RolloutFailed, cli_module, free_port, process_alive, resolve_code, stop_gracefully

logger = logging.getLogger(__name__)

DEFAULT_POLICY = REPO_ROOT / "deploy" / "canary" / "pricing.toml"
P99_SLACK_S = 0.025
NOMINAL_P99_S = 0.01  # what the stable version is held to when Prometheus has never seen it process a record
JUDGED_AFTER_S = 10.0  # processing time after which a catching-up candidate's time per record is judged


class CanaryAborted(Exception):
    pass


@dataclass(frozen=True)
class CanaryPolicy:
    catch_up_timeout_s: float
    window_s: float
    interval_s: float
    max_divergence_ratio: float
    max_errors: float
    max_lag: float
    min_items_compared: float
    max_processing_p99_ratio: float

    @classmethod
    def load(cls, path: Path = DEFAULT_POLICY) -> "CanaryPolicy":
        document = tomllib.loads(path.read_text())
        return cls(
            catch_up_timeout_s=float(document["catch_up"]["timeout_s"]),
            window_s=float(document["window"]["seconds"]),
            interval_s=float(document["window"]["interval_s"]),
            **{name: float(value) for name, value in document["thresholds"].items()},
        )


@dataclass
class Measurements:
    """The worst of each number over the window."""

    divergence_ratio: float = 0.0
    errors: float = 0.0
    lag: float = 0.0
    compared_min: float | None = None
    p99_ratio: float = 0.0
    samples: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Shadow:
    """The running candidate: its process, web port and consumer-group label."""

    pid: int
    port: int
    label: str

    @property
    def unit(self) -> str:
        return f"shadow-{self.label}"

    @property
    def selector(self) -> str:
        """Its series, and no earlier shadow's (a port may be used again; the label never is)."""
        return f'unit="{self.unit}"'

    def gauge(self, name: str) -> str:
        return f"max(feastflow_shadow_{name}{{{self.selector}}})"


async def canary(
    settings: Settings,
    candidate: str,
    expect: str = "",
    policy: CanaryPolicy | None = None,
    promote: bool = True,
    prometheus: str = "http://127.0.0.1:9090",
    guard: Guardrails | None = None,
) -> dict[str, Any]:
    policy = policy or CanaryPolicy.load()
    parse_expected_changes(expect)  # a malformed declaration stops here, before anything starts
    as_path = Path(candidate)
    ref, path = (None, candidate) if cli_module(as_path) is not None else (candidate, None)
    code = resolve_code(settings, ref, path)
    say = Say("canary")
    history = ReleaseHistory(settings.data_dir)
    record = history.begin("canary", code, candidate)
    say(f"canary {record.number}: {code} ({record.version}) in shadow; expected changes: {expect or 'none'}")
    stack = LocalStack(settings)
    shadow: Shadow | None = None
    measured = Measurements()
    try:
        shadow = await start_shadow(stack, code, expect)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await catch_up(session, prometheus, shadow, policy, say)
            measured = await watch(session, prometheus, shadow, policy, say)
    except (CanaryAborted, PrometheusUnavailable) as abort:
        history.finish(record, ABORTED, str(abort))
        say(f"ABORTED: {abort}; the stable version was never touched")
        raise CanaryAborted(str(abort)) from None
    finally:
        if shadow is not None:
            await stop_shadow(stack, shadow, settings)
    history.finish(record, PASSED)
    report = {"canary": record.number, "code": str(code), "measurements": asdict(measured), "promoted": None}
    print_measurements(measured, policy)
    if not promote:
        say("analysis passed; not promoted (--no-promote)")
        return report
    say("analysis passed: promoting with a rolling deploy")
    try:
        release = await rollout(settings, ref, path, guard=guard)
    except RolloutFailed as failure:
        raise CanaryAborted(f"the analysis passed but the rollout failed and was rolled back: {failure}") from None
    await reprice_every_city(settings)
    say(f"promoted as release {release.number}; every city repriced by the new version")
    report["promoted"] = release.number
    return report


async def start_shadow(stack: LocalStack, code: Path, expect: str) -> Shadow:
    label = f"c{int(time.time())}"
    port = free_port({u.port for u in stack.api_units()} | {stack.worker_unit()[0].port})
    env = {
        "FEASTFLOW_WORKER_SERVICE": "shadow",
        "FEASTFLOW_SHADOW_LABEL": label,
        "FEASTFLOW_SHADOW_EXPECT": expect,
        "FEASTFLOW_WORKER_NAME": f"shadow-{label}",
        "FEASTFLOW_WORKER_WEB_PORT": str(port),
    }
    pid = stack.start("shadow", "worker", code, env)
    shadow = Shadow(pid, port, label)
    try:
        await wait_ready(f"http://127.0.0.1:{port}/feastflow/health/", pid, "the candidate")
    except RolloutFailed as failure:
        await stop_shadow(stack, shadow, stack.settings)
        raise CanaryAborted(str(failure)) from None
    stack.scrape("shadow", shadow.unit, port)
    return shadow


async def stop_shadow(stack: LocalStack, shadow: Shadow, settings: Settings) -> None:
    await stop_gracefully(shadow.pid, "the candidate")
    stack.unscrape("shadow", shadow.port)
    group = consumer_group(settings.namespace, "shadow", shadow.label)
    shutil.rmtree(settings.worker_data_dir(group, shadow.unit).parent, ignore_errors=True)
    prefix = f"{group}-"  # Faust names the group's changelog topics after it
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="feastflow-canary")
    await admin.start()
    try:
        leftovers = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if leftovers:
            await admin.delete_topics(leftovers)
    except Exception as exc:  # leftovers are harmless: name them and go on
        logger.warning("could not delete the shadow's topics %s*: %r", prefix, exc)
    finally:
        await admin.close()


async def catch_up(
    session: aiohttp.ClientSession, prometheus: str, shadow: Shadow, policy: CanaryPolicy, say: Say
) -> None:
    started = time.monotonic()
    lag = compared = None
    while time.monotonic() - started < policy.catch_up_timeout_s:
        if not process_alive(shadow.pid):
            raise CanaryAborted(f"the candidate exited {time.monotonic() - started:.0f}s into catching up")
        lag = await instant(session, prometheus, shadow.gauge("lag_records"))
        compared = await instant(session, prometheus, shadow.gauge("items_compared"))
        if lag is not None and lag <= policy.max_lag and (compared or 0) >= policy.min_items_compared:
            say(f"caught up in {time.monotonic() - started:.0f}s (lag {lag:.0f}, {compared:.0f} items compared)")
            return
        busy = await instant(session, prometheus, f"sum(feastflow_worker_processing_seconds_sum{{{shadow.selector}}})")
        if (busy or 0.0) >= JUDGED_AFTER_S:
            ratio = await processing_ratio(session, prometheus, shadow)
            if ratio > policy.max_processing_p99_ratio:
                raise CanaryAborted(
                    f"{ratio:.1f}x slower per record than the stable version, "
                    f"{time.monotonic() - started:.0f}s into catching up ({lag or 0:.0f} records behind)"
                )
        await asyncio.sleep(2)
    raise CanaryAborted(
        f"lag not converging: after {policy.catch_up_timeout_s:.0f}s the candidate is "
        f"{'an unknown number of' if lag is None else f'{lag:.0f}'} records behind, {compared or 0:.0f} items compared"
    )


async def watch(
    session: aiohttp.ClientSession, prometheus: str, shadow: Shadow, policy: CanaryPolicy, say: Say
) -> Measurements:
    """Every interval of the window, every threshold must hold; the first breach aborts."""
    measured = Measurements()
    selector = shadow.selector
    window = f"{int(policy.window_s)}s"
    ends = time.monotonic() + policy.window_s
    while time.monotonic() < ends:
        await asyncio.sleep(policy.interval_s)
        if not process_alive(shadow.pid):
            raise CanaryAborted("the candidate exited during the analysis")
        compared = await instant(session, prometheus, shadow.gauge("items_compared")) or 0.0
        diverged = await instant(session, prometheus, shadow.gauge("items_diverged")) or 0.0
        errors = await instant(
            session, prometheus, f"sum(increase(feastflow_shadow_errors_total{{{selector}}}[{window}])) or vector(0)"
        )
        lag = await instant(session, prometheus, shadow.gauge("lag_records"))
        measured.samples += 1
        measured.divergence_ratio = max(measured.divergence_ratio, diverged / max(compared, 1.0))
        measured.errors = max(measured.errors, errors or 0.0)
        measured.lag = max(measured.lag, float("inf") if lag is None else lag)
        measured.compared_min = compared if measured.compared_min is None else min(measured.compared_min, compared)
        measured.p99_ratio = max(measured.p99_ratio, await processing_ratio(session, prometheus, shadow))
        if breaches := breached(measured, policy):
            print_measurements(measured, policy)
            raise CanaryAborted("; ".join(breaches))
    say(f"held every threshold for {policy.window_s:.0f}s ({measured.samples} measurements)")
    return measured


async def processing_ratio(session: aiohttp.ClientSession, prometheus: str, shadow: Shadow) -> float:
    """The candidate's p99 time per record (less the slack) as a multiple of the stable version's; 0 while the
    candidate has none. Its last minutes include its catch-up; an idle stable version is judged by its last hour."""
    candidate_p99 = await instant(session, prometheus, _p99(f'agent="shadow",{shadow.selector}', "5m"))
    if candidate_p99 is None:
        return 0.0
    stable_p99 = await instant(session, prometheus, _p99('agent="catalog"', "1m")) or await instant(
        session, prometheus, _p99('agent="catalog"', "1h")
    )
    return max(0.0, candidate_p99 - P99_SLACK_S) / (stable_p99 or NOMINAL_P99_S)


def _p99(selector: str, window: str) -> str:
    rate = f"rate(feastflow_worker_processing_seconds_bucket{{{selector}}}[{window}])"
    return f"histogram_quantile(0.99, sum by (le) ({rate}))"


def breached(measured: Measurements, policy: CanaryPolicy) -> list[str]:
    reasons = []
    if measured.divergence_ratio > policy.max_divergence_ratio:
        reasons.append(
            f"prices diverge: {measured.divergence_ratio:.1%} of compared items differ beyond the declared change"
        )
    if measured.errors > policy.max_errors:
        reasons.append(f"{measured.errors:.0f} records the candidate failed to apply")
    if measured.lag > policy.max_lag:
        reasons.append(f"lag not converging: {measured.lag:.0f} records behind (at most {policy.max_lag:.0f})")
    if measured.compared_min is not None and measured.compared_min < policy.min_items_compared:
        reasons.append("nothing compared: the candidate and the stable version never stood at the same position")
    if measured.p99_ratio > policy.max_processing_p99_ratio:
        reasons.append(f"{measured.p99_ratio:.1f}x slower per record than the stable version")
    return reasons


def print_measurements(measured: Measurements, policy: CanaryPolicy) -> None:
    rows = [
        ("divergence (share of items)", f"{measured.divergence_ratio:.2%}", f"<= {policy.max_divergence_ratio:.2%}"),
        ("records failed to apply", f"{measured.errors:.0f}", f"<= {policy.max_errors:.0f}"),
        ("lag (records)", f"{measured.lag:.0f}", f"<= {policy.max_lag:.0f}"),
        ("items compared (fewest)", f"{measured.compared_min or 0:.0f}", f">= {policy.min_items_compared:.0f}"),
        ("p99 per record vs stable", f"{measured.p99_ratio:.2f}x", f"<= {policy.max_processing_p99_ratio:.1f}x"),
    ]
    print(markdown_table(("check", "worst", "threshold"), rows))


async def reprice_every_city(settings: Settings) -> None:
    """The promoted version computes every effective price again, in order with the other changes."""
    await publish_system_event(settings, settings.city_codes, PricingReprice(), "system:canary")
