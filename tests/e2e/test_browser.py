"""A shopper's journey in a real browser (Playwright driving Debian's Chromium).

Against the system as `tierlake up` starts it: register, browse a category,
open a product, add it to the cart, check out, see the order in the history.
The order page's screenshot is kept in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_register_browse_buy_and_see_the_order(browser, seeded_system) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda req: errors.append(f"failed: {req.url}"))

    page.goto(seeded_system.web_url)
    expect(page.get_by_test_id("product-card").first).to_be_visible()

    # Register.
    page.get_by_test_id("nav-register").click()
    email = f"shopper-{uuid.uuid4().hex[:8]}@example.com"
    page.fill("#name", "Grace Hopper")
    page.fill("#email", email)
    page.fill("#password", "correct-horse-1")
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("nav-account")).to_be_visible()

    # Browse a category and open a product that is in stock.
    page.get_by_test_id("category-link").first.click()
    expect(page).to_have_url(re.compile(r"/c/[a-z0-9-]+"))
    cards = page.get_by_test_id("product-card")
    assert cards.count() > 0
    for i in range(cards.count()):
        cards.nth(i).get_by_test_id("product-link").click()
        if page.get_by_test_id("add-to-cart").count():
            break
        page.go_back()
    else:
        pytest.fail("no product in stock in the first category")
    product_name = page.get_by_test_id("product-name").inner_text().strip()

    # Add two to the cart.
    page.fill("#quantity", "2")
    page.get_by_test_id("add-to-cart").click()
    expect(page.get_by_test_id("cart-count")).to_have_text("2")
    page.get_by_test_id("nav-cart").click()
    expect(page.get_by_test_id("cart-item")).to_have_count(1)
    expect(page.get_by_test_id("cart-item")).to_contain_text(product_name)
    total = page.get_by_test_id("cart-total").inner_text().strip()

    # Check out.
    page.get_by_test_id("checkout-link").click()
    page.fill("#ship-name", "Grace Hopper")
    page.fill("#ship-address", "1 Compiler Way")
    page.fill("#ship-city", "Arlington")
    page.fill("#ship-postcode", "22201")
    page.select_option("#ship-country", "US")
    page.get_by_test_id("place-order").click()

    expect(page.get_by_test_id("order-thanks")).to_be_visible()
    expect(page.get_by_test_id("order-line")).to_contain_text(product_name)
    expect(page.get_by_test_id("order-total")).to_contain_text(total)
    order_id = page.get_by_test_id("order-id").inner_text().strip().lstrip("#")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "order-page.png"), full_page=True)

    # The order is in the history, and the cart is empty again.
    page.get_by_test_id("nav-orders").click()
    expect(page.get_by_test_id("order-row").first).to_contain_text(order_id)
    page.get_by_test_id("nav-cart").click()
    expect(page.get_by_test_id("cart-empty")).to_be_visible()
    assert not errors, errors
