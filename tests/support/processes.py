"""Feast Flow processes started by the tests: real workers and API pods, killed and restarted at will."""

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.polling import PollTimeout, poll_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def wait_ready(self, timeout: float = 90.0) -> None:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                if not self.alive:
                    raise RuntimeError(f"{self.name} exited while starting:\n{self.tail()}")
                async with session.get(self.ready_url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    return response.status == 200

            try:
                await poll_until(ready, timeout, 0.2, f"{self.name} not ready")
            except PollTimeout as timed_out:
                raise PollTimeout(f"{timed_out}\n{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a node dies."""
        self.send(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 40.0) -> None:
        self.send(signal.SIGTERM)
        self.wait(timeout)

    def send(self, sig: int) -> None:
        if self.alive:
            assert self.popen is not None
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
            raise

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def feastflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ops.cli", *args]
