"""Browser tests: Debian's Chromium, driven by Playwright, against a private stack of real worker and API
processes (its own namespace on the shared Kafka, Redis and PostgreSQL), seeded through the admin API."""

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from core.tokens import Role
from ops.seed import SeedPlan, city_batches
from tests.support.catalog import publish, wait_applied
from tests.support.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every run saves its screenshots beside the other test artifacts (not tracked); `make screenshots` points
# this at docs/screenshots to refresh the README's pictures.
SCREENSHOTS = Path(os.environ.get("FEASTFLOW_SCREENSHOTS_DIR") or REPO_ROOT / "tests" / "artifacts" / "screenshots")
SEED = SeedPlan(("blr", "ams"), restaurants_per_city=3, items_per_restaurant=8)


def chromium_path() -> str:
    found = (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome"))
    path = os.environ.get("FEASTFLOW_CHROMIUM") or next(filter(None, found), "/usr/bin/chromium")
    if not Path(path).exists():
        pytest.fail("no Chromium: run deploy/local/browser.sh (make deps does) or set FEASTFLOW_CHROMIUM")
    return path


@pytest.fixture(scope="package")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    running = await Stack(Path(tmp_path_factory.mktemp("browser")), extra_env={"FEASTFLOW_ORDER_RATE": "100"}).start(
        api_count=2
    )
    try:
        async with aiohttp.ClientSession() as session:
            for city in SEED.cities:
                for events in city_batches(city, SEED):
                    await wait_applied(running, await publish(running, session, {"events": events}))
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield chromium
        await chromium.close()


@dataclass
class OpenPage:
    """A page and what happened to it: uncaught script errors, and every navigation after it first loaded."""

    page: Page
    errors: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)

    async def mark_loaded(self) -> None:
        """From here on, any navigation (a reload included) is recorded and the marker would be lost."""
        self.page.on("framenavigated", lambda frame: self.navigations.append(frame.url))
        await self.page.evaluate("window.__feastflowMarker = 'still the same document'")

    async def assert_never_reloaded(self) -> None:
        assert self.navigations == []
        assert await self.page.evaluate("window.__feastflowMarker") == "still the same document"


PageOpener = Callable[..., Awaitable[OpenPage]]


@pytest.fixture
async def open_page(browser: Browser, stack: Stack) -> AsyncIterator[PageOpener]:
    """Opens `path` on an API pod in a fresh browser context (its own storage: another person)."""
    contexts: list[BrowserContext] = []

    async def opener(path: str, token: str | None = None, pod: int = 0, width: int = 1280) -> OpenPage:
        context = await browser.new_context(viewport={"width": width, "height": 900}, timezone_id="UTC")
        contexts.append(context)
        page = await context.new_page()
        opened = OpenPage(page)
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        fragment = f"#token={token}" if token else ""
        await page.goto(f"{stack.api_url(pod)}{path}{fragment}")
        return opened

    yield opener
    for context in contexts:
        await context.close()


def customer_token(stack: Stack, name: str) -> str:
    return stack.token(Role.CUSTOMER, name)


def admin_token(stack: Stack, name: str = "asha-admin") -> str:
    return stack.token(Role.ADMIN, name)


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name
