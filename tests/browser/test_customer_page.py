"""The customer page in a real browser: a live menu that survives a pod restart, and ordering end to end."""

import asyncio

import aiohttp
from playwright.async_api import expect

from core.tokens import Role
from tests.browser.conftest import PageOpener, customer_token, screenshot_path
from tests.support.catalog import price_set, publish, wait_applied
from tests.support.stack import Stack, items_by_id

LIVE_TIMEOUT_MS = 10_000


def rupees(cents: int) -> str:
    return f"₹{cents / 100:,.2f}"


async def test_an_order_is_placed_at_the_prices_shown_and_each_status_change_shows_live(
    stack: Stack, open_page: PageOpener, http: aiohttp.ClientSession
) -> None:
    customer = await open_page("/app/", customer_token(stack, "ravi"))
    page = customer.page
    item = page.locator('[data-item-id="blr-r02-i001"]')
    shown = int(await item.locator(".price").get_attribute("data-price-cents") or "0")
    await item.locator("button.add").click()
    await item.locator("button.add").click()
    await expect(page.locator("#cart-count")).to_have_text("2")
    await expect(page.locator("#cart-total")).to_have_text(f"Total {rupees(2 * shown)}")
    await customer.mark_loaded()

    await page.click("#place-order")
    tracking = page.locator("#order-tracking")
    await expect(tracking).to_have_attribute("data-status", "accepted", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#cart-count")).to_have_text("0")
    order_id = await tracking.get_attribute("data-order-id")
    assert order_id
    ravi = {"Authorization": f"Bearer {customer_token(stack, 'ravi')}"}
    async with http.get(f"{stack.api_url()}/v1/orders/{order_id}", headers=ravi) as response:
        order = await response.json()
    assert order["lines"] == [{"item_id": "blr-r02-i001", "quantity": 2, "price_cents": shown}]
    assert order["total_cents"] == 2 * shown

    kitchen = {"Authorization": f"Bearer {stack.token(Role.RESTAURANT, 'blr-r02')}"}
    steps = (("preparing", "Being prepared"), ("out_for_delivery", "On its way"), ("delivered", "Delivered"))
    for step, label in steps:
        async with http.post(
            f"{stack.api_url(1)}/v1/orders/{order_id}/status", json={"status": step}, headers=kitchen
        ) as response:
            assert response.status == 202, await response.text()
        await expect(tracking).to_have_attribute("data-status", step, timeout=LIVE_TIMEOUT_MS)
        await expect(page.locator("#order-status")).to_have_text(label)
        await expect(page.locator(f'#order-steps [data-step="{step}"]')).to_have_attribute("data-done", "true")
    await expect(page.locator("#new-order")).to_be_visible()
    await page.screenshot(path=screenshot_path("customer-order.png"))
    await customer.assert_never_reloaded()
    assert customer.errors == []


async def test_a_price_changed_between_viewing_and_ordering_asks_to_confirm_the_new_price(
    stack: Stack, open_page: PageOpener, http: aiohttp.ClientSession
) -> None:
    customer = await open_page("/app/", customer_token(stack, "mira"))
    page = customer.page
    item = page.locator('[data-item-id="blr-r02-i002"]')
    seen = int(await item.locator(".price").get_attribute("data-price-cents") or "0")
    await item.locator("button.add").click()
    await customer.mark_loaded()
    raised = seen + 5000
    await wait_applied(stack, await publish(stack, http, price_set("blr", "blr-r02", "blr-r02-i002", raised), 1))
    await expect(item.locator(".price")).to_have_attribute("data-price-cents", str(raised))
    await expect(page.locator('.cart-line[data-item-id="blr-r02-i002"] .line-note')).to_contain_text(rupees(raised))

    await page.click("#place-order")
    confirm = page.locator("#price-confirm")
    await expect(confirm).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    change = confirm.locator('[data-item-id="blr-r02-i002"]')
    await expect(change).to_contain_text(f"{rupees(seen)} → {rupees(raised)}")
    await expect(page.locator("#new-total")).to_have_text(f"New total {rupees(raised)}")
    await expect(page.locator("#confirm-prices")).to_be_focused()

    await page.click("#confirm-prices")
    tracking = page.locator("#order-tracking")
    await expect(tracking).to_have_attribute("data-status", "accepted", timeout=LIVE_TIMEOUT_MS)
    order_id = await tracking.get_attribute("data-order-id")
    mira = {"Authorization": f"Bearer {customer_token(stack, 'mira')}"}
    async with http.get(f"{stack.api_url()}/v1/orders/{order_id}", headers=mira) as response:
        order = await response.json()
    assert order["status"] == "accepted"
    assert order["lines"] == [{"item_id": "blr-r02-i002", "quantity": 1, "price_cents": raised}]
    await customer.assert_never_reloaded()
    assert customer.errors == []


async def _sse_resumes(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    counts = {}
    for line in text.splitlines():
        if line.startswith('feastflow_api_sse_resumes_total{kind="menu"'):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.rsplit(" ", 1)[1])
    return counts


async def test_the_customer_page_survives_an_api_pod_restart_and_misses_nothing(
    stack: Stack, open_page: PageOpener, http: aiohttp.ClientSession
) -> None:
    customer = await open_page("/app/", pod=0)
    page = customer.page
    connection = page.locator("#connection")
    await expect(connection).to_have_attribute("data-state", "live")
    await expect(page.locator('[data-item-id="blr-r03-i002"]')).to_be_visible()
    await customer.mark_loaded()
    pod = stack.apis[0]

    await asyncio.to_thread(pod.terminate)
    await expect(connection).to_have_attribute("data-state", "reconnecting")
    before = items_by_id(await stack.menu(http, "blr", index=1))
    changes = [
        price_set("blr", "blr-r03", "blr-r03-i001", before["blr-r03-i001"]["price_cents"] + 700),
        {"type": "item.removed", "city": "blr", "restaurant_id": "blr-r03", "item_id": "blr-r03-i002"},
        {
            "type": "item.availability_set",
            "city": "blr",
            "restaurant_id": "blr-r03",
            "item_id": "blr-r03-i003",
            "available": False,
        },
        {
            "type": "item.upserted",
            "city": "blr",
            "restaurant_id": "blr-r03",
            "item_id": "blr-r03-i099",
            "name": "Midnight Churros",
            "category": "Desserts",
            "price_cents": 9900,
        },
    ]
    for change in changes:  # published through the other pod while this page's pod is down
        await wait_applied(stack, await publish(stack, http, change, 1))
    await expect(connection).to_have_attribute("data-state", "reconnecting")

    pod.start()
    await pod.wait_ready()
    await expect(connection).to_have_attribute("data-state", "live", timeout=LIVE_TIMEOUT_MS)
    new_price = str(before["blr-r03-i001"]["price_cents"] + 700)
    await expect(page.locator('[data-item-id="blr-r03-i001"] .price')).to_have_attribute("data-price-cents", new_price)
    await expect(page.locator('[data-item-id="blr-r03-i002"]')).to_have_count(0)
    await expect(page.locator('[data-item-id="blr-r03-i003"]')).to_have_attribute("data-available", "false")
    await expect(page.locator('[data-item-id="blr-r03-i099"]')).to_contain_text("Midnight Churros")
    # The restarted pod resumed the page from its Last-Event-ID rather than sending a whole new menu.
    assert (await _sse_resumes(http, stack.api_url(0))).get("history", 0) >= 1
    await customer.assert_never_reloaded()
    assert customer.errors == []
