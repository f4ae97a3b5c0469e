"""Signing in to the running node (`radrouter up`) in headless Chromium: a page without a session sends
the browser to sign in and back, a viewer's forged Read is refused, a POST without the CSRF token is
refused, and five wrong passwords lock the account."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import Page, expect

from radrouter.config.access import Role
from tests.access import PASSWORD, add_user, browser_sign_in
from tests.browser import screenshot
from tests.services import Node

FORGED_READ = """async ([uid, token]) => {
  const headers = {"Content-Type": "application/json"};
  if (token) headers["X-CSRF-Token"] = document.querySelector('meta[name="csrf-token"]').content;
  const response = await fetch(`/api/worklist/${uid}/read`, {method: "POST", headers, body: "{}"});
  return response.status;
}"""


def test_up_says_how_to_make_the_first_admin(node: Node) -> None:
    assert "radrouter users add <name> --role admin" in node.log_path.read_text()


def test_without_a_session_a_page_sends_the_browser_to_sign_in_and_back(
    browser_page: Page, node: Node
) -> None:
    assert httpx.get(f"{node.api}/worklist").status_code == 401
    assert httpx.get(f"{node.url}/dicomweb/studies/1.2.3").status_code == 401
    browser_page.goto(f"{node.url}/dashboard")
    expect(browser_page).to_have_url(f"{node.url}/signin?next=%2Fdashboard")
    screenshot(browser_page, "signin")
    browser_page.get_by_label("Name").fill(node.user(Role.ADMIN))
    browser_page.get_by_label("Password").fill(PASSWORD)
    browser_page.get_by_role("button", name="Sign in").click()
    expect(browser_page).to_have_url(f"{node.url}/dashboard")


def test_a_viewer_cannot_read_and_a_post_without_csrf_token_is_refused(
    browser_page: Page, node: Node
) -> None:
    browser_sign_in(browser_page, node.url, node.user(Role.VIEWER))
    browser_page.goto(f"{node.url}/worklist")
    expect(browser_page.locator("#worklist")).to_have_attribute("data-can-read", "false")
    expect(browser_page.get_by_role("button", name="Read")).to_have_count(0)  # no Read for a viewer
    statuses: list[Any] = [browser_page.evaluate(FORGED_READ, ["1.2.3", True])]
    assert statuses == [403]  # a viewer's read, even with the page's own CSRF token

    browser_page.context.clear_cookies()
    browser_sign_in(browser_page, node.url, node.user(Role.RADIOLOGIST))
    browser_page.goto(f"{node.url}/worklist")
    expect(browser_page.locator("#worklist")).to_have_attribute("data-can-read", "true")
    assert browser_page.evaluate(FORGED_READ, ["1.2.3", False]) == 403  # no CSRF token
    assert browser_page.evaluate(FORGED_READ, ["1.2.3", True]) == 404  # allowed: no such study


def test_five_wrong_passwords_lock_the_account(browser_page: Page, node: Node) -> None:
    name = "dr-locked"  # an account of its own: the others stay usable for the other tests
    add_user(node.config_path, name, Role.RADIOLOGIST)
    for _ in range(5):
        browser_page.goto(f"{node.url}/signin")
        browser_page.get_by_label("Name").fill(name)
        browser_page.get_by_label("Password").fill("wrong password")
        browser_page.get_by_role("button", name="Sign in").click()
        expect(browser_page.get_by_role("alert")).to_have_text("wrong name or password")
    browser_page.get_by_label("Password").fill(PASSWORD)
    browser_page.get_by_role("button", name="Sign in").click()
    expect(browser_page.get_by_role("alert")).to_contain_text("account locked until")
    events = node.http.get(f"{node.api}/audit/access").json()
    assert [e["kind"] for e in events if e["user"] == name][-7:] == ["sign_in_failed"] * 5 + [
        "locked",
        "sign_in_failed",
    ]
