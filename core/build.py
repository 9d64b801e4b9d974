"""Which build is running: FEASTFLOW_VERSION (set by the image build and the chart), else the checkout's commit."""

import functools
import os
import subprocess

from prometheus_client import Gauge

from core.settings import REPO_ROOT

BUILD_INFO = Gauge(
    "feastflow_build_info", "1 per running build: version and role", ["version", "role"], multiprocess_mode="livemax"
)


@functools.cache
def version() -> str:
    if configured := os.environ.get("FEASTFLOW_VERSION"):
        return configured
    try:
        described = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip() or "unknown"


def announce(role: str) -> None:
    """Export this process's build as a metric (dashboards mark deploys by it; canary queries split by it)."""
    BUILD_INFO.labels(version(), role).set(1)
