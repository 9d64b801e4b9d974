"""The admin dashboard in a real browser, next to an open customer page: changes reach customers live, the
API's validation messages sit next to their fields, conflicts explain themselves, history and status show."""

import re
from datetime import UTC, datetime, timedelta

import aiohttp
from playwright.async_api import Page, expect

from tests.browser.conftest import OpenPage, PageOpener, admin_token, screenshot_path
from tests.support.catalog import price_set, publish, wait_applied
from tests.support.stack import Stack, items_by_id

LIVE_TIMEOUT_MS = 10_000


async def edit(admin: Page, item_id: str) -> None:
    await admin.locator(f'tr[data-item-id="{item_id}"] button').click()
    await expect(admin.locator("#item-id")).to_have_value(item_id)


async def signed_in_admin(open_page: PageOpener, stack: Stack) -> OpenPage:
    admin = await open_page("/admin/", admin_token(stack))
    await expect(admin.page.locator("#dashboard")).to_be_visible()
    await expect(admin.page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(admin.page.locator("tr[data-item-id]").first).to_be_visible()
    return admin


async def test_a_price_changed_on_the_dashboard_shows_on_an_open_customer_page_within_a_second(
    stack: Stack, open_page: PageOpener
) -> None:
    customer = await open_page("/app/")
    await expect(customer.page.locator("#connection")).to_have_attribute("data-state", "live")
    dish = customer.page.locator('[data-item-id="blr-r01-i001"]')
    await expect(dish).to_be_visible()
    await customer.mark_loaded()
    admin = await signed_in_admin(open_page, stack)

    await edit(admin.page, "blr-r01-i001")
    await admin.page.fill("#item-price", "321.00")
    clicked_at = await admin.page.evaluate("Date.now()")
    await admin.page.click("#save-item")
    await expect(dish.locator(".price")).to_have_attribute("data-price-cents", "32100", timeout=LIVE_TIMEOUT_MS)
    changed_at = int(await dish.get_attribute("data-changed-at") or "0")
    assert changed_at - clicked_at < 1000, f"the new price took {changed_at - clicked_at} ms to show"
    await expect(dish.locator(".price")).to_have_text("₹321.00")
    await expect(dish.locator(".price")).to_have_class(re.compile(r"\bchanged\b"))  # briefly highlighted
    await expect(dish.locator(".was")).to_contain_text("was ₹")

    await edit(admin.page, "blr-r01-i002")
    await admin.page.uncheck("#item-available")
    await admin.page.click("#save-item")
    greyed = customer.page.locator('[data-item-id="blr-r01-i002"]')
    await expect(greyed).to_have_attribute("data-available", "false", timeout=LIVE_TIMEOUT_MS)
    await expect(greyed.locator("button.add")).to_be_disabled()
    await expect(greyed.locator(".unavailable-note")).to_be_visible()
    # Waits: the row's background fades in over 0.3 s (a CSS transition), so at first it is still transparent.
    await expect(greyed).not_to_have_css("background-color", "rgba(0, 0, 0, 0)")

    activity = admin.page.locator("#activity li").first
    await expect(activity.locator(".badge")).to_have_text("applied", timeout=LIVE_TIMEOUT_MS)
    await expect(activity).to_have_attribute("data-reached-ms", re.compile(r"^\d+$"), timeout=LIVE_TIMEOUT_MS)
    await customer.page.screenshot(path=screenshot_path("customer.png"))
    await customer.assert_never_reloaded()
    assert customer.errors == [] and admin.errors == []


async def test_the_apis_validation_messages_show_next_to_their_fields(stack: Stack, open_page: PageOpener) -> None:
    admin = await signed_in_admin(open_page, stack)
    page = admin.page
    await edit(page, "blr-r01-i003")
    await page.fill("#item-price", "2000000")  # 200,000,000 paise: above the API's limit
    await page.click("#save-item")
    await expect(page.locator("#item-price-error")).to_have_text("must be at most 100000000")
    await expect(page.locator("#item-price")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#item-price")).to_be_focused()

    await page.fill("#item-price", "12.50")
    await page.fill("#item-name", "   ")
    await page.click("#save-item")
    await expect(page.locator("#item-name-error")).to_have_text("must not be empty")
    await expect(page.locator("#item-price-error")).to_have_text("")

    await page.fill("#item-price", "twelve")
    await page.click("#save-item")
    await expect(page.locator("#item-price-error")).to_have_text("Enter a price like 12.50.")

    await page.select_option("#city", "ams")
    await expect(page.locator('tr[data-item-id="ams-r01-i001"]')).to_be_visible()
    soon = datetime.now(UTC) + timedelta(hours=1)
    await page.fill("#rule-multiplier", "1.5")
    await page.fill("#rule-effective", soon.strftime("%Y-%m-%dT%H:%M:%S"))
    await page.fill("#rule-until", (soon - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"))
    await page.locator("#rule-form button[type=submit]").click()
    await expect(page.locator("#rule-until-error")).to_have_text("must be later than effective_at")
    await page.fill("#rule-multiplier", "40")
    await page.fill("#rule-until", "")
    await page.locator("#rule-form button[type=submit]").click()
    await expect(page.locator("#rule-multiplier-error")).to_have_text("must be at most 10")
    assert admin.errors == []


async def test_a_stale_edit_is_explained_as_a_conflict_and_offers_to_reload(
    stack: Stack, open_page: PageOpener, http: aiohttp.ClientSession
) -> None:
    admin = await signed_in_admin(open_page, stack)
    page = admin.page
    await edit(page, "blr-r01-i004")
    current = items_by_id(await stack.menu(http, "blr"))["blr-r01-i004"]["base_price_cents"]
    # Another admin changes the item while this form is open.
    await wait_applied(stack, await publish(stack, http, price_set("blr", "blr-r01", "blr-r01-i004", current + 100)))
    await expect(page.locator("#editor-note")).to_contain_text("Someone else changed this item")
    await page.fill("#item-name", "Lasagne al Forno")
    await page.click("#save-item")
    conflict = page.locator("#conflict")
    await expect(conflict).to_be_visible()
    await expect(conflict).to_contain_text("expected version 1 but the current version is 2")
    await expect(page.locator("#reload-item")).to_be_focused()

    await page.click("#reload-item")
    await expect(conflict).to_be_hidden()
    await expect(page.locator("#item-price")).to_have_value(f"{(current + 100) / 100:.2f}")
    await expect(page.locator("#item-name")).to_have_value("Lasagne")
    await page.fill("#item-name", "Lasagne al Forno")
    await page.click("#save-item")
    await expect(page.locator("#activity li").first.locator(".badge")).to_have_text("applied", timeout=LIVE_TIMEOUT_MS)
    assert items_by_id(await stack.menu(http, "blr"))["blr-r01-i004"]["name"] == "Lasagne al Forno"
    assert admin.errors == []


async def test_history_status_and_reach_of_each_change_and_adding_and_removing_items(
    stack: Stack, open_page: PageOpener
) -> None:
    customer = await open_page("/app/")
    await expect(customer.page.locator("#connection")).to_have_attribute("data-state", "live")
    await customer.mark_loaded()
    admin = await signed_in_admin(open_page, stack)
    page = admin.page
    await edit(page, "blr-r01-i005")
    await page.fill("#item-price", "88.00")
    await page.click("#save-item")
    change = page.locator("#activity li").first
    await expect(change).to_contain_text("price.set blr-r01-i005")
    await expect(change.locator(".badge")).to_have_text("applied", timeout=LIVE_TIMEOUT_MS)
    await expect(change).to_contain_text(re.compile(r"on the live customer menu \d+ ms after you submitted"))
    newest = page.locator("#history tbody tr").first
    await expect(newest).to_contain_text("price.set", timeout=LIVE_TIMEOUT_MS)
    await expect(newest).to_contain_text("asha-admin")
    await expect(newest).to_contain_text(re.compile(r"base_price_cents: ₹[\d,.]+ → ₹88\.00"))
    await page.screenshot(path=screenshot_path("admin.png"), full_page=True)

    await page.fill("#search", "tiramisu")
    await expect(page.locator("tr[data-item-id]")).to_have_count(
        await customer.page.locator(".item", has_text="Tiramisu").count()
    )

    await page.fill("#search", "")
    await page.click("#add-item")
    await page.fill("#item-id", "blr-r01-i050")
    await page.fill("#item-name", "Paneer Pizza")
    await page.fill("#item-category", "Mains")
    await page.fill("#item-price", "199")
    await page.click("#save-item")
    added = customer.page.locator('[data-item-id="blr-r01-i050"]')
    await expect(added).to_contain_text("Paneer Pizza", timeout=LIVE_TIMEOUT_MS)
    await expect(added.locator(".price")).to_have_text("₹199.00")
    await expect(page.locator("#item-id")).to_have_value("blr-r01-i050")  # the form now edits what was added

    await page.click("#remove-item")
    await expect(page.locator("#remove-question")).to_contain_text("Remove Paneer Pizza")
    await page.click("#remove-yes")
    await expect(added).to_have_count(0, timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator('tr[data-item-id="blr-r01-i050"]')).to_have_count(0)
    await customer.assert_never_reloaded()
    assert customer.errors == [] and admin.errors == []


async def test_a_city_pricing_rule_takes_effect_at_its_time_on_the_customer_page(
    stack: Stack, open_page: PageOpener, http: aiohttp.ClientSession
) -> None:
    customer = await open_page("/app/")
    await customer.page.select_option("#city", "ams")
    dish = customer.page.locator('[data-item-id="ams-r02-i001"] .price')
    await expect(dish).to_be_visible()
    base = int(await dish.get_attribute("data-price-cents") or "0")
    admin = await signed_in_admin(open_page, stack)
    page = admin.page
    await page.select_option("#city", "ams")
    await expect(page.locator('tr[data-item-id="ams-r01-i001"]')).to_be_visible()
    # Whole seconds: the form takes no fraction, and the rule starts at the second typed in.
    starts = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    await page.fill("#rule-multiplier", "2")
    await page.fill("#rule-name", "Storm surge")
    await page.fill("#rule-effective", starts.strftime("%Y-%m-%dT%H:%M:%S"))
    await page.locator("#rule-form button[type=submit]").click()
    await expect(page.locator("#pricing-current")).to_contain_text(
        "\N{MULTIPLICATION SIGN}2 “Storm surge” from", timeout=LIVE_TIMEOUT_MS
    )
    await expect(page.locator("#pricing-current")).to_contain_text("not in effect now")
    assert int(await dish.get_attribute("data-price-cents") or "0") == base
    await expect(dish).to_have_attribute("data-price-cents", str(2 * base), timeout=LIVE_TIMEOUT_MS)
    assert datetime.now(UTC) >= starts - timedelta(milliseconds=500)
    await expect(page.locator("#pricing-current")).to_contain_text("— in effect now", timeout=LIVE_TIMEOUT_MS)

    await page.click("#clear-rule")
    await expect(dish).to_have_attribute("data-price-cents", str(base), timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#pricing-current")).to_have_text("No rule: customers pay base prices.")
    assert customer.errors == [] and admin.errors == []
