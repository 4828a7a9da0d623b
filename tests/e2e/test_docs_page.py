"""GET /docs in a real browser: headless Chromium (Debian's package) driven by Playwright. The page
opens without a key, lists every operation of openapi.json, takes the key from Authorize, and "Try it
out" on GET /tasks answers 200.

Chromium is found on PATH (`chromium`, or CHROMIUM_PATH); Playwright never downloads a browser here.
Without one the test skips, unless BROWSER_REQUIRED=1 (CI sets it, after installing Debian's package).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.local.stack import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import stack_fixture

pytestmark = pytest.mark.e2e
KEY = "key-of-alice"

docs_stack = stack_fixture(
    environment={
        "LOCAL_API_KEYS": f"alice:{KEY}",
        "LOCAL_API_PORT": "0",
        "EMULATOR_GENERATION_SECONDS": "0.3",
        "LOCAL_RECONCILE_INTERVAL_SECONDS": "0",
    }
)


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        message = "no Chromium on PATH: apt-get install chromium (or set CHROMIUM_PATH)"
        if os.environ.get("BROWSER_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


def test_the_docs_page_needs_no_key_and_serves_swagger_ui_without_a_cdn(docs_stack: LocalStack) -> None:
    answer = httpx.get(f"{docs_stack.api_url}/docs", timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in answer.text
    assert "cdn" not in answer.text.lower().split("<body")[0]  # script and styles inlined, not fetched


def test_swagger_ui_lists_every_operation_and_tries_get_tasks_with_the_key(
    docs_stack: LocalStack, browser: Any
) -> None:
    operations = {
        operation["operationId"]
        for methods in json.loads((ROOT / "openapi.json").read_text())["paths"].values()
        for operation in methods.values()
    }
    page = browser.new_page()
    try:
        page.goto(f"{docs_stack.api_url}/docs", wait_until="load", timeout=60_000)
        page.wait_for_selector(".opblock", timeout=60_000)
        shown = {element.get_attribute("id") for element in page.query_selector_all(".opblock")}
        assert {
            f"operations-{tag}-{operation}" for tag in ("tasks", "models") for operation in operations
        } & shown
        assert all(
            any(name.endswith(f"-{operation}") for name in shown if name) for operation in operations
        ), shown

        page.click("button.authorize")
        page.fill(".modal-ux input", KEY)
        page.click(".modal-ux button.authorize")
        page.click(".modal-ux button.btn-done")

        listing = page.locator("#operations-tasks-listTasks")
        listing.locator(".opblock-summary").click()
        listing.locator("button.try-out__btn").click()
        listing.locator("button.execute").click()
        status = listing.locator(".live-responses-table tr.response .response-col_status").first
        status.wait_for(timeout=60_000)
        assert status.inner_text().strip().startswith("200"), status.inner_text()
        body = listing.locator(".live-responses-table .microlight").first.inner_text()
        assert json.loads(body)["tasks"] == []
    finally:
        page.close()
