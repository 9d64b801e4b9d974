"""Benchmark: taking in N SSE clients at once through the gateway, then fanning changes out to all of them.

Runs against the local stack (`make run`). The clients live in several processes (one process may hold at most
20,000 open files here; each raises its limit to the hard one), and all of them connect at the same moment: a
connection storm, as after a pod drains. Then admin price changes go out at a fixed rate through the gateway;
a few probe clients per process time every change from just before its POST, the others count what arrives.

    .venv/bin/python -m bench.fanout [--clients 1000] [--rate 50] [--duration 30] [--processes 0 (auto)] [--plain]
                                     [--waves 1] [--drain]

--waves W connects each process's clients in W waves, each all at once and the next once it is in: many
concurrent clients rather than one storm of all of them. --drain SIGTERMs one API pod once changes flow: its
clients are told to reconnect and come back at once with their Last-Event-ID, as browsers do; the table says how
many resumed, how fast, whether any started over from a snapshot, and (as always) whether any change was missed.

Clients accept gzip, as browsers do (the pods send streams gzipped to them, api.gzip_stream); --plain does not.

It prints a table and writes docs/benchmarks/fanout-<N>k.{json,md}: clients connected and failed, time to the first
event (the snapshot) p50/p99, deliveries per second, change latency p50/p95/p99/max, events missing, and the
API pods' memory per connection (their resident memory after the clients connected, less before, per client;
meaningful on freshly started pods only, as Python keeps memory it once took).
"""

import argparse
import asyncio
import math
import multiprocessing
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson
import uvloop
from redis.asyncio import Redis

from bench.latency import CITY, PRICE_BASE, prepare, publish_changes
from bench.latency import Results as SendResults
from bench.machine import cpu_times, load_between, machine_rows, problems, verdict_row
from bench.report import p50_p99, percentile, report_result
from core.gc_policy import settle_after_startup
from core.redis_keys import city_keys
from core.settings import Settings
from core.tokens import Role, issue_token
from ops.sse_client import CountingStream, EventStreamParser, stream_request
from ops.stack import LocalStack

CLIENTS_PER_PROCESS = 8_000  # with the probes' and the loop's own files, well inside 20,000
# Source addresses: 127.0.1.0/24, which the local gateway exempts from its per-client limits as it does 127.0.0.1.
# From one address, each connect() to the gateway searches the ephemeral ports for one not yet used towards it:
# 20,000 clients from 127.0.0.1 spent most of their CPU in that search (a cost that grows with every client), and
# sent their requests after the gateway's header timeout. A thousand per address keeps the search short.
SOURCE_NETWORK = "127.0.1"
CLIENTS_PER_SOURCE = 1_000
IP_BIND_ADDRESS_NO_PORT = 24  # Linux: bind() leaves the port to connect(), which picks it per destination
PROBES_PER_PROCESS = 10
DEFAULT_GATEWAY = "http://127.0.0.1:8080"
CONNECT_TIMEOUT_S = 120.0
DELIVERY_TIMEOUT_S = 30.0  # after the last change is sent, for every client to have every change
# The customer page's waits between attempts (api/ui/live-menu.js): whatever the failure, it tries again.
RESUME_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)


class TimedStream(CountingStream):
    """A counting client that also notes when its first event arrived, and, as a probe, every change it gets.

    With `resume`, it comes back when its stream ends (its pod drained), as a browser's EventSource does: at once,
    with the last event id it got as `Last-Event-ID`, so the pod it reaches sends what it missed from history. An
    attempt that fails (refused, an error answer, cut before its stream began) is tried again after the customer
    page's back-off, until the benchmark ends: a client gives up no more than the page does.
    """

    def __init__(
        self, request: bytes, probe: bool, address: tuple[str, int], source: str, resume: bool = False
    ) -> None:
        super().__init__(request, "item", asyncio.Event())
        self.started = time.monotonic()
        self.first_event_s: float | None = None
        self.first_event = asyncio.Event()
        self.probe = probe
        self.parser = EventStreamParser() if probe else None
        self.changes: list[tuple[int, float]] = []  # (change number, received at), probes only
        self.lost: str | None = None  # how the connection ended, if it did: the error's name, or "EOF"
        self.address, self.source, self.resume, self.stopping = address, source, resume, False
        self.head = request.removesuffix(b"\r\n")  # the request line and headers, each ended: a reconnect adds one
        self.last_id: bytes | None = None
        self._id_tail = b"\n"  # a stream starts at a line's start
        self.ended_at: float | None = None  # when a live stream ended, until it is resumed
        self.resumed_s: list[float] = []  # from the stream's end to the resumed stream's response head
        self.reconnected_s: list[float] = []  # from the stream's end to the connection its resume came over
        self.connected_at: float | None = None  # when the latest attempt's connection was up
        self.ended: list[float] = []  # when each of its live streams ended (time.monotonic(), like the drain's)
        self.resume_snapshots = 0  # resumes that started over from a snapshot instead of history
        self.resume_failures: list[str] = []  # why each failed attempt failed (each was tried again)
        self.failed_attempts = 0  # in a row, while resuming

    @property
    def away(self) -> bool:
        """Its stream ended and it is still coming back."""
        return self.ended_at is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = type(exc).__name__ if exc is not None else "EOF"
        live = self.status == b"200" and self.first_event_s is not None
        super().connection_lost(exc)
        if not self.resume or self.stopping:
            return
        if self.away and self.status != b"200":  # an attempt that failed before its stream began
            why = f"HTTP {self.status!r}" if self.status else f"closed before an answer ({self.lost})"
            self._attempt_failed(why)
        elif live:
            self.ended_at = time.monotonic()
            self.ended.append(self.ended_at)
            asyncio.get_running_loop().create_task(self._come_back())

    def _attempt_failed(self, why: str) -> None:
        self.resume_failures.append(why)
        delay = RESUME_BACKOFF_S[min(self.failed_attempts, len(RESUME_BACKOFF_S) - 1)]
        self.failed_attempts += 1
        asyncio.get_running_loop().call_later(delay, self._try_again)

    async def _come_back(self) -> None:
        header = b"" if self.last_id is None else b"Last-Event-ID: " + self.last_id + b"\r\n"
        self.restart(self.head + header + b"\r\n")
        self.parser = EventStreamParser() if self.probe else None
        self._id_tail = b"\n"
        try:
            await open_stream(self)
        except OSError as exc:
            self._attempt_failed(type(exc).__name__)

    def data_received(self, data: bytes) -> None:
        was_waiting = self.status is None
        super().data_received(data)
        if was_waiting and self.status == b"200" and self.away:
            assert self.ended_at is not None and self.connected_at is not None
            self.resumed_s.append(time.monotonic() - self.ended_at)
            self.reconnected_s.append(self.connected_at - self.ended_at)
            self.ended_at, self.failed_attempts = None, 0

    def _try_again(self) -> None:
        if not self.stopping:
            asyncio.get_running_loop().create_task(self._come_back())

    def body_received(self, data: bytes) -> None:
        super().body_received(data)
        if self.first_event_s is None and b"\n\n" in data:
            self.first_event_s = time.monotonic() - self.started
            self.first_event.set()
        elif (self.ended_at is not None or self.resumed_s) and b"event: snapshot" in data:
            self.resume_snapshots += 1
        if self.resume:
            self._note_last_id(data)
        if self.parser is not None:
            now = time.monotonic()
            for event in self.parser.feed(data, now):
                if event.type == "item":
                    self.changes.append((event.json()["base_price_cents"] - PRICE_BASE, now))

    def _note_last_id(self, data: bytes) -> None:
        text = self._id_tail + data
        at = text.rfind(b"\nid: ")
        while at != -1:
            end = text.find(b"\n", at + 1)
            if end != -1:
                self.last_id = text[at + 5 : end]
                break
            at = text.rfind(b"\nid: ", 0, at)
        self._id_tail = text[-256:]


@dataclass
class ProcessResult:
    connected: int = 0
    failed: int = 0
    first_event_s: list[float] = field(default_factory=list)
    counted: list[int] = field(default_factory=list)  # item events per counting client
    probe_changes: list[list[tuple[int, float]]] = field(default_factory=list)
    dropped: int = 0  # streams that ended before the run did
    failures: dict[str, int] = field(default_factory=dict)  # why clients did not get their first event
    resumed_s: list[float] = field(default_factory=list)  # streams that ended and came back: how long it took
    reconnected_s: list[float] = field(default_factory=list)  # ... until their new connection to the gateway was up
    ended: list[float] = field(default_factory=list)  # when live streams ended (time.monotonic())
    resume_snapshots: int = 0
    resume_failures: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientPlan:
    """What one client process does."""

    url: str
    clients: int
    probes: int
    gzip: bool
    sources: list[str]
    waves: int
    resume: bool


def source_addresses(shares: list[int]) -> list[list[str]]:
    """Each client process's source addresses, none shared with another process."""
    counts = [math.ceil(share / CLIENTS_PER_SOURCE) for share in shares]
    if sum(counts) > 254:
        raise SystemExit(f"{sum(shares)} clients need more than the 254 source addresses of {SOURCE_NETWORK}.0/24")
    firsts = [1 + sum(counts[:n]) for n in range(len(counts))]
    return [
        [f"{SOURCE_NETWORK}.{first + n}" for n in range(count)] for first, count in zip(firsts, counts, strict=True)
    ]


def bound_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((address, 0))
    return sock


async def open_stream(stream: TimedStream) -> None:
    """Connects from the stream's source address and sends its request the moment the connection is up, a loop
    pass before the protocol would: with thousands connecting in one process that pass took seconds on the busy box,
    and the gateway closes a connection whose request has not come within its 10 s header timeout."""
    loop = asyncio.get_running_loop()
    sock = bound_socket(stream.source)
    try:
        await loop.sock_connect(sock, stream.address)
        stream.connected_at = time.monotonic()  # its answer may come before this coroutine runs again
        if sock.send(stream.request) != len(stream.request):  # ~200 bytes to a new socket: never short
            raise OSError("the request did not fit the new socket's buffer")
        stream.request_sent = True
    except BaseException:
        sock.close()
        raise
    await loop.create_connection(lambda: stream, sock=sock)


def client_process(plan: ClientPlan, pipe: Connection) -> None:
    """One process of clients: connect them all when told, report, hold them until told to stop, report."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # uvloop: the load generator shares the machine's two cores with everything it measures; asyncio's own loop
    # spent most of a 20,000-client storm's CPU in the clients, which then sent their requests too late. It holds
    # thousands of streams as a pod does, and collects its garbage as the pods do (core.gc_policy).
    settle_after_startup()
    uvloop.run(_clients(plan, pipe))


async def _clients(plan: ClientPlan, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    clients, sources = plan.clients, plan.sources
    host, port, request = stream_request(plan.url, gzip=plan.gzip)
    # HTTP/1.0: the stream comes as it is, without chunk headers that a probe's parser would have to strip.
    request = request.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    streams = [
        TimedStream(request, n < plan.probes, (host, port), sources[n % len(sources)], plan.resume)
        for n in range(clients)
    ]
    result = ProcessResult()
    await loop.run_in_executor(None, pipe.recv)  # go

    async def connect(n: int, stream: TimedStream) -> None:
        stream.started = time.monotonic()
        why = "no first event within the timeout"
        try:
            await open_stream(stream)
            first, closed = (
                asyncio.ensure_future(stream.first_event.wait()),
                asyncio.ensure_future(stream.closed.wait()),
            )
            await asyncio.wait((first, closed), timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (first, closed):
                waiter.cancel()
            if stream.status not in (None, b"200"):
                why = f"HTTP {stream.status!r}"
            elif stream.closed.is_set():
                answered = "no response" if stream.status is None else "after its headers"
                why = f"closed before its first event ({stream.lost}, {answered})"
        except OSError as exc:
            why = type(exc).__name__
        if stream.first_event_s is None:
            result.failed += 1
            result.failures[why] = result.failures.get(why, 0) + 1
            stream.close()
        else:
            result.connected += 1

    per_wave = math.ceil(clients / plan.waves)
    for first in range(0, clients, per_wave):  # one wave (by default all of them) at once, then the next
        await asyncio.gather(*(connect(n, streams[n]) for n in range(first, min(clients, first + per_wave))))
    result.first_event_s = [s.first_event_s for s in streams if s.first_event_s is not None]
    pipe.send(("connected", result.connected, result.failed, result.failures))
    changes = await loop.run_in_executor(None, pipe.recv)  # stop, once every one of `changes` had time to arrive
    live = [s for s in streams if s.first_event_s is not None]  # connected once (and perhaps resumed since)
    for _ in range(int(DELIVERY_TIMEOUT_S / 0.1)):
        if all(s.counted >= changes or (s.closed.is_set() and not s.away) for s in live):
            break
        await asyncio.sleep(0.1)
    for stream in streams:
        stream.stopping = True
    result.dropped = sum(1 for s in live if s.closed.is_set() or s.away)
    result.resumed_s = [seconds for s in streams for seconds in s.resumed_s]
    result.reconnected_s = [seconds for s in streams for seconds in s.reconnected_s]
    result.ended = [at for s in streams for at in s.ended]
    result.resume_snapshots = sum(s.resume_snapshots for s in streams)
    for why in (why for s in streams for why in s.resume_failures):
        result.resume_failures[why] = result.resume_failures.get(why, 0) + 1
    result.counted = [s.counted for s in live if s.parser is None]
    result.probe_changes = [s.changes for s in live if s.parser is not None]
    for stream in streams:
        stream.close()
    pipe.send(("done", result))


async def drain_a_pod(stack: LocalStack, sent: SendResults, rate: float) -> tuple[str, float]:
    """Once changes are flowing (a second's worth sent), SIGTERM one API pod: it tells its SSE clients to
    reconnect and stops; they come back through the gateway to the other pod with their Last-Event-ID (the
    supervisor starts the drained pod again)."""
    for _ in range(600):
        if len(sent.sent_at) >= rate:
            break
        await asyncio.sleep(0.05)
    unit = stack.api_units()[0]
    os.kill(unit.pid, signal.SIGTERM)
    return unit.name, time.monotonic()


def pods_rss_bytes(stack: LocalStack) -> int:
    """Resident memory of every API pod process, the processes each pod runs (FEASTFLOW_API_PROCESSES) included."""
    total = 0
    for unit in stack.api_units():
        for pid in [unit.pid, *_children(unit.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            total += kib * 1024
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found + [grandchild for child in found for grandchild in _children(child)]


async def watch_feed(settings: Settings, seen: dict[int, float], stop: asyncio.Event) -> None:
    """When each change reached the city's feed in Redis (the worker's write), on the probes' clock: it splits a
    change's latency into the way to the read model (admin API, Kafka, worker) and the fan-out after it (pod,
    gateway, client)."""
    redis = Redis.from_url(settings.redis_url)
    key = city_keys(settings.namespace, CITY).feed
    try:
        newest = cast(list[Any], await redis.xrevrange(key, count=1))
        last: bytes = newest[0][0] if newest else b"0-0"
        while not stop.is_set():
            for _, entries in cast(list[Any], await redis.xread({key: last}, count=1000, block=100) or []):
                now = time.monotonic()
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(b"type") == b"item":
                        seen.setdefault(orjson.loads(fields[b"data"])["base_price_cents"] - PRICE_BASE, now)
    finally:
        await redis.aclose()


def latency_split(sent: SendResults, seen: dict[int, float], probes: list[tuple[int, float]]) -> dict[str, Any]:
    """p50/p99 (ms) of each leg: the POST answered, the change in Redis, and from Redis to the probe clients."""

    return {
        "answered": p50_p99([at - sent.sent_at[n] for n, at in sent.answered_at.items()], 1000),
        "in_redis": p50_p99([at - sent.sent_at[n] for n, at in seen.items() if n in sent.sent_at], 1000),
        "fan_out": p50_p99([received - seen[n] for n, received in probes if n in seen], 1000),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings.from_env()
    stack = LocalStack(settings)
    headers = {"Authorization": f"Bearer {issue_token(settings.jwt_secret, Role.ADMIN, 'bench')}"}
    async with aiohttp.ClientSession() as session:
        await prepare(session, args.gateway, headers)
    processes = args.processes or max(1, math.ceil(args.clients / CLIENTS_PER_PROCESS))
    shares = [args.clients // processes + (1 if n < args.clients % processes else 0) for n in range(processes)]
    url = f"{args.gateway}/v1/cities/{CITY}/menu/stream"
    context = multiprocessing.get_context("spawn")
    pipes, children = [], []
    for share, sources in zip(shares, source_addresses(shares), strict=True):
        mine, theirs = context.Pipe()
        probes = min(PROBES_PER_PROCESS, share)
        plan = ClientPlan(url, share, probes, not args.plain, sources, args.waves, resume=args.drain)
        child = context.Process(target=client_process, args=(plan, theirs))
        child.start()
        pipes.append(mine)
        children.append(child)
    rss_before = pods_rss_bytes(stack)
    storm_started = time.monotonic()
    for pipe in pipes:
        pipe.send("go")
    connected = failed = 0
    failures: dict[str, int] = {}
    for pipe in pipes:
        _, ok, bad, reasons = await asyncio.to_thread(pipe.recv)
        connected, failed = connected + ok, failed + bad
        for why, count in reasons.items():
            failures[why] = failures.get(why, 0) + count
    storm_s = time.monotonic() - storm_started
    await asyncio.sleep(2)  # the pods settle (buffers handed back) before their memory is read
    rss_after = pods_rss_bytes(stack)
    sent = SendResults()
    seen: dict[int, float] = {}
    stop_watching = asyncio.Event()
    watching = asyncio.create_task(watch_feed(settings, seen, stop_watching))
    before, started = cpu_times(), time.perf_counter()
    publishing = asyncio.create_task(publish_changes(args.gateway, headers, args.rate, args.duration, sent))
    drained, drained_at = await drain_a_pod(stack, sent, args.rate) if args.drain else (None, 0.0)
    changes = await publishing
    results: list[ProcessResult] = []
    for pipe in pipes:
        pipe.send(changes - sent.post_failures)
    for pipe in pipes:
        _, result = await asyncio.to_thread(pipe.recv)
        results.append(result)
    load = load_between(before, cpu_times(), time.perf_counter() - started)
    stop_watching.set()
    await watching
    for child in children:
        child.join(timeout=30)
    first = [s for r in results for s in r.first_event_s]
    resumed = [s for r in results for s in r.resumed_s]
    reconnected = [s for r in results for s in r.reconnected_s]
    ended = [at - drained_at for r in results for at in r.ended]
    resume_failures: dict[str, int] = {}
    for why, count in (item for r in results for item in r.resume_failures.items()):
        resume_failures[why] = resume_failures.get(why, 0) + count
    probed = [(n, received) for r in results for probe in r.probe_changes for n, received in probe]
    latencies = [received - sent.sent_at[n] for n, received in probed if n in sent.sent_at]
    clients_counted = sum(len(r.counted) + len(r.probe_changes) for r in results)
    delivered = sum(sum(r.counted) + sum(len(p) for p in r.probe_changes) for r in results)
    # A POST answered with an error after waiting long (a saturated box) may have reached Kafka all the same: a
    # change a probe client received was published, and every client is owed it.
    published_anyway = sent.failed & {n for r in results for probe in r.probe_changes for n, _ in probe}
    expected = (changes - sent.post_failures + len(published_anyway)) * clients_counted
    return {
        "clients": args.clients,
        "processes": processes,
        "gateway": args.gateway,
        "encoding": "identity" if args.plain else "gzip",
        "waves": args.waves,
        "connected": connected,
        "failed": failed,
        "failures": failures,
        "storm_s": storm_s,
        "first_event_s": p50_p99(first) | {"max": max(first, default=float("nan"))},
        "drained": drained,
        "resumed": len(resumed),
        "resumed_s": p50_p99(resumed) | {"max": max(resumed, default=float("nan"))},
        "stream_end_after_sigterm_s": p50_p99(ended),
        "reconnected_s": p50_p99(reconnected),
        "resume_snapshots": sum(r.resume_snapshots for r in results),
        "resume_failures": resume_failures,
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "changes_sent": changes,
        "post_failures": sent.post_failures,
        "failed_but_published": len(published_anyway),
        "deliveries_per_s": delivered / args.duration,
        "missing": expected - delivered,
        "dropped": sum(r.dropped for r in results),
        "latency_ms": {q: percentile(latencies, v) * 1000 for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
        | {"max": max(latencies, default=float("nan")) * 1000},
        "latency_split_ms": latency_split(sent, seen, probed),
        "pods_rss_bytes": {"before": rss_before, "after": rss_after},
        "bytes_per_connection": (rss_after - rss_before) / connected if connected else float("nan"),
        "machine_load": load,
        "not_comparable": problems(sent=changes, asked_rate=args.rate, duration_s=args.duration, load=load),
    }


def report_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    first, lat = report["first_event_s"], report["latency_ms"]
    return [
        (
            "SSE clients (processes)",
            f"{report['clients']} ({report['processes']}), {_arrival(report.get('waves', 1))} via {report['gateway']},"
            f" {report.get('encoding', 'identity')} streams",
        ),
        ("connected / failed", f"{report['connected']} / {report['failed']} in {report['storm_s']:.1f} s"),
        ("why clients failed", ", ".join(f"{why}: {n}" for why, n in sorted(report["failures"].items())) or "-"),
        ("time to first event p50 / p99 / max", f"{first['p50']:.2f} / {first['p99']:.2f} / {first['max']:.2f} s"),
        *_drain_rows(report),
        (
            "admin changes sent",
            f"{report['changes_sent']} in {report['duration_s']:g} s ({report['rate_per_s']:g}/s asked),"
            f" {report['post_failures']} failed ({report.get('failed_but_published', 0)} published all the same)",
        ),
        ("deliveries/s", f"{report['deliveries_per_s']:,.0f}"),
        ("events missing / streams dropped", f"{report['missing']} / {report['dropped']}"),
        (
            "change -> SSE p50 / p95 / p99 / max",
            f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms",
        ),
        *_split_rows(report),
        (
            "API pods' memory per connection",
            f"{report['bytes_per_connection'] / 1024:.1f} KB ({report['pods_rss_bytes']['before'] / 2**20:.0f}"
            f" -> {report['pods_rss_bytes']['after'] / 2**20:.0f} MB)",
        ),
        *machine_rows(report["machine_load"]),
        verdict_row(report["not_comparable"]),
    ]


def _split_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    split = report.get("latency_split_ms")
    if split is None:  # a result written before the split was measured
        return []
    answered, in_redis, fan_out = (split[leg] for leg in ("answered", "in_redis", "fan_out"))
    return [
        (
            "of which p50 / p99",
            f"POST answered {answered['p50']:.1f} / {answered['p99']:.1f} ms; in Redis (admin API, Kafka, worker)"
            f" {in_redis['p50']:.1f} / {in_redis['p99']:.1f} ms; Redis -> SSE (pod, gateway, client)"
            f" {fan_out['p50']:.1f} / {fan_out['p99']:.1f} ms",
        )
    ]


def _drain_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    if not report.get("drained"):
        return []
    took = report["resumed_s"]
    failures = ", ".join(f"{why}: {n}" for why, n in sorted(report["resume_failures"].items())) or "none"
    return [
        ("pod drained under load", f"{report['drained']}: its clients told to reconnect"),
        (
            "clients resumed (from a snapshot instead of history)",
            f"{report['resumed']} ({report['resume_snapshots']}); failed attempts (each tried again): {failures}",
        ),
        ("stream end -> resumed p50 / p99 / max", f"{took['p50']:.2f} / {took['p99']:.2f} / {took['max']:.2f} s"),
        *_drain_timing_rows(report),
    ]


def _drain_timing_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    ended, connected = report.get("stream_end_after_sigterm_s"), report.get("reconnected_s")
    if ended is None or connected is None:  # a result written before these were measured
        return []
    return [
        (
            "of which p50 / p99",
            f"SIGTERM -> stream end {ended['p50']:.2f} / {ended['p99']:.2f} s; stream end -> connected to the gateway"
            f" again {connected['p50']:.2f} / {connected['p99']:.2f} s",
        )
    ]


def _arrival(waves: int) -> str:
    return "all at once" if waves == 1 else f"in {waves} waves (each all at once, the next once it is in)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=0, help=f"client processes (0: one per {CLIENTS_PER_PROCESS})")
    parser.add_argument("--rate", type=float, default=50.0, help="admin changes per second")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--gateway", default=DEFAULT_GATEWAY, help="or an API pod's own address, past the gateway")
    parser.add_argument("--plain", action="store_true", help="clients do not accept gzip (browsers do)")
    parser.add_argument("--waves", type=int, default=1, help="connect in this many waves, not all at once")
    parser.add_argument(
        "--drain", action="store_true", help="drain an API pod under load: its clients resume from history"
    )
    args = parser.parse_args()
    report = asyncio.run(run(args))
    kind = f"fanout-{args.clients // 1000}k" if args.clients >= 1000 else f"fanout-{args.clients}"
    kind += f"-{args.waves}-waves" if args.waves > 1 else ""
    kind += f"-drain-at-{args.rate:g}-per-s" if args.drain else ""  # a drain's storm depends on the deliveries
    kind += "-plain" if args.plain else ""
    kind += "-past-the-gateway" if args.gateway != DEFAULT_GATEWAY else ""
    print(f"\n(written to {report_result(kind, report, report_rows(report), module='fanout')})")
    for problem in report["not_comparable"]:
        print(f"warning: not comparable: {problem}", file=sys.stderr)


if __name__ == "__main__":
    main()
