"""The API pod's entry point (`feastflow api`): one process, or several in one pod (FEASTFLOW_API_PROCESSES > 1).

Each process accepts on the same port (SO_REUSEPORT, the kernel spreads connections) and runs the whole app
with its own Redis readers and SSE fan-out. The parent only supervises: it forwards SIGTERM and SIGINT so
every process drains as a single one would, and starts a process again if one dies on its own.

Each process runs on uvloop (libuv's event loop): a pod's work is mostly accepting connections and writing the
same bytes to thousands of sockets, and the standard loop's Python transports spent more of it than the app did.

Metrics stay correct across processes through prometheus-client's multiprocess mode: every process writes
its samples under PROMETHEUS_MULTIPROC_DIR, and /metrics in any process aggregates them all.
"""

import logging
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TypeVarTuple

import uvloop

from api.auth import require_signing_keys
from api.main import create_app, serve
from api.metrics import multiprocess_metrics_dir
from core.logs import configure_logging
from core.settings import Settings

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

logger = logging.getLogger(__name__)

RESTART_PAUSE_S = 1.0
Ts = TypeVarTuple("Ts")


class PodLoop(uvloop.Loop):
    """uvloop, with one repair. When PostgreSQL refuses a connection during its handshake, aiopg leaves the socket's
    reader registered (aio-libs/aiopg#909, open), and uvloop keeps a closed poll handle for that descriptor: the next
    connection given the same descriptor number could not register ("the handler is closed", a RuntimeError), so a
    PostgreSQL outage answered 500 instead of 503. The stale registration is dropped and the reader added again."""

    def add_reader(self, fd: "FileDescriptorLike", callback: Callable[[*Ts], object], *args: *Ts) -> None:
        try:
            super().add_reader(fd, callback, *args)
        except RuntimeError:
            self.remove_reader(fd)
            super().add_reader(fd, callback, *args)


def run_api(settings: Settings) -> None:
    require_signing_keys(settings)
    if settings.api_processes > 1:
        run_api_processes(settings)
    else:
        uvloop.run(serve(create_app(settings), settings), loop_factory=PodLoop)


def run_api_processes(settings: Settings) -> None:
    metrics_dir = Path(multiprocess_metrics_dir() or tempfile.mkdtemp(prefix="feastflow-metrics-"))
    metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):  # samples of an earlier run of this pod would be summed in
        stale.unlink()
    # Set before any process starts: prometheus-client picks its storage when a process first imports it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> BaseProcess:
        process = context.Process(target=_serve_one, args=(settings,), name=f"api-{index}", daemon=False)
        process.start()
        logger.info("api process %d started", index, extra={"pid": process.pid})
        return process

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signum)

    processes = [start(i) for i in range(settings.api_processes)]
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while any(p.is_alive() for p in processes):
        for index, process in enumerate(processes):
            process.join(timeout=0.2)
            if process.is_alive() or stopping:
                continue
            _forget(process)
            logger.error("api process %d exited with %s; starting it again", index, process.exitcode)
            time.sleep(RESTART_PAUSE_S)
            if not stopping:
                processes[index] = start(index)
    for process in processes:
        _forget(process)


def _forget(process: BaseProcess) -> None:
    from prometheus_client import multiprocess

    if process.pid is not None:
        multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


def _serve_one(settings: Settings) -> None:
    configure_logging()
    uvloop.run(serve(create_app(settings), settings, reuse_port=True), loop_factory=PodLoop)
