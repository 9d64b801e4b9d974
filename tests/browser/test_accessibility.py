"""Basic accessibility of both pages: labelled controls, ordering by keyboard alone with a visible focus,
and WCAG AA contrast of the text as the browser actually renders it."""

from playwright.async_api import Page, expect

from tests.browser.conftest import PageOpener, admin_token, customer_token
from tests.support.stack import Stack

# Every visible or hidden form control, and how it is named (label element, aria-label, aria-labelledby).
UNLABELLED_CONTROLS = """() =>
  [...document.querySelectorAll("input, select, textarea")]
    .filter((c) => c.type !== "hidden")
    .filter((c) => !(c.labels && c.labels.length))
    .filter((c) => !c.getAttribute("aria-label") && !c.getAttribute("aria-labelledby"))
    .map((c) => c.outerHTML)
"""

# The contrast of every rendered element with text of its own, against the background behind it
# (https://www.w3.org/TR/WCAG21/#contrast-minimum; large text needs 3:1, other text 4.5:1; disabled
# controls are exempt).
LOW_CONTRAST_TEXT = """() => {
  const parse = (value) => {
    const [r, g, b, a = 1] = value.match(/[\\d.]+/g).map(Number);
    return { r, g, b, a };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const background = (node) => {
    const layers = [];
    for (let n = node; n; n = n.parentElement) {
      const colour = parse(getComputedStyle(n).backgroundColor);
      if (colour.a > 0) layers.push(colour);
      if (colour.a === 1) break;
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), { r: 255, g: 255, b: 255, a: 1 });
  };
  const luminance = ({ r, g, b }) => {
    const [R, G, B] = [r, g, b].map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const failures = [];
  for (const node of document.querySelectorAll("body *")) {
    const ownText = [...node.childNodes].some((c) => c.nodeType === Node.TEXT_NODE && c.textContent.trim());
    if (!ownText || !node.getClientRects().length || node.closest("[hidden]") || node.disabled) continue;
    const style = getComputedStyle(node);
    if (style.visibility !== "visible" || Number(style.opacity) === 0) continue;
    const back = background(node);
    const text = over(parse(style.color), back);
    const [light, dark] = [luminance(text), luminance(back)].sort((x, y) => y - x);
    const ratio = (light + 0.05) / (dark + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) failures.push(`${node.textContent.trim().slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return failures;
}"""

FOCUS_RING = """() => {
  const style = getComputedStyle(document.activeElement);
  return style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
}"""


async def assert_accessible(page: Page) -> None:
    assert await page.evaluate(UNLABELLED_CONTROLS) == []
    assert await page.evaluate(LOW_CONTRAST_TEXT) == []


async def test_every_control_is_labelled_and_all_text_meets_wcag_aa_contrast(
    stack: Stack, open_page: PageOpener
) -> None:
    customer = await open_page("/app/", width=390)  # a phone's width
    await expect(customer.page.locator(".item").first).to_be_visible()
    await customer.page.locator(".item button.add").first.click()
    await assert_accessible(customer.page)

    signed_out_admin = await open_page("/admin/")
    await expect(signed_out_admin.page.locator("#admin-token")).to_be_visible()
    await assert_accessible(signed_out_admin.page)

    admin = await open_page("/admin/", admin_token(stack))
    await expect(admin.page.locator("tr[data-item-id]").first).to_be_visible()
    await admin.page.locator("tr[data-item-id] button").first.click()
    await expect(admin.page.locator("#history tbody tr").first).to_be_visible()
    await assert_accessible(admin.page)

    # The checks themselves catch what they look for.
    await admin.page.evaluate(
        "document.body.append(Object.assign(document.createElement('p'), {textContent: 'faint', style: 'color:#bbb'}),"
        " document.createElement('input'))"
    )
    assert await admin.page.evaluate(LOW_CONTRAST_TEXT) == ["faint: 1.92"]
    assert await admin.page.evaluate(UNLABELLED_CONTROLS) == ["<input>"]


async def test_a_customer_fills_the_cart_with_the_keyboard_alone_and_sees_where_the_focus_is(
    stack: Stack, open_page: PageOpener
) -> None:
    customer = await open_page("/app/", customer_token(stack, "kiran"))
    page = customer.page
    await expect(page.locator(".item button.add").first).to_be_visible()
    first_dish = await page.locator(".item").first.get_attribute("data-item-id")
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.matches('.item button.add')"):
            break
    else:
        raise AssertionError("ten Tab presses never reached an Add button")
    assert await page.evaluate(FOCUS_RING), "the focused Add button shows no focus ring"
    await page.keyboard.press("Enter")
    await page.keyboard.press("Space")
    await expect(page.locator("#cart-count")).to_have_text("2")
    await expect(page.locator(f'.cart-line[data-item-id="{first_dish}"] .qty-value')).to_have_text("2")

    for _ in range(10):  # back up to the skip link, which takes the focus to the cart
        await page.keyboard.press("Shift+Tab")
        if await page.evaluate("document.activeElement.matches('a.skip')"):
            break
    else:
        raise AssertionError("ten Shift+Tab presses never reached the skip link")
    assert await page.evaluate(FOCUS_RING)
    await page.keyboard.press("Enter")
    await expect(page.locator("#cart")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="One less", exact=False)).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#cart-count")).to_have_text("1")
