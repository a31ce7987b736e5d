"""A newcomer with no internet egress opens the API docs in a browser and tries the API.

Chromium (Debian's, driven by Playwright) opens the docs of a running stack with every
host but this machine cut off (tests/support/browser.py). /docs (Swagger UI) and /redoc
(ReDoc) must show every operation of the document, load nothing from anywhere else, and
Swagger UI's "Try it out" must work: register, log in, authorize with the token, create a
task and list it, as README's "Using it" does with curl.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from services.kit import catalog
from services.kit.catalog import ServiceInfo
from services.launcher import Stack
from tests.e2e.conftest import PASSWORD, running_embedded_stack
from tests.support.browser import DOCS_HOST, TIMEOUT_MS, OfflineBrowser, offline_browser

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: What a newcomer looks for first; stable operation ids, so a client's method names.
FIRST_OPERATIONS = {"auth-register", "auth-login", "tasks-create-task", "tasks-list-tasks"}
#: ReDoc 2 puts Redocly's logo from its CDN in the sidebar, whatever its options say. The
#: pages' Content-Security-Policy refuses it inside the browser (services/kit/docs.py):
#: the one attempt allowed, and only as a refusal, never as a request.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One embedded stack for the module's pages."""
    yield from running_embedded_stack(tmp_path_factory.mktemp("docs-stack"))


def docs_url(stack: Stack, service: ServiceInfo) -> str:
    """The service's address under DOCS_HOST: a host name that is not "localhost"."""
    return f"http://{DOCS_HOST}:{stack.port(service)}"


def operations(stack: Stack, service: ServiceInfo) -> dict[str, str]:
    """operationId -> its first tag, from the document the pages render."""
    document: dict[str, Any] = httpx.get(f"{stack.url(service)}/openapi.json", timeout=30).json()
    assert document.get("x-flotilla-missing-services", []) == []
    return {operation["operationId"]: operation.get("tags", ["default"])[0]
            for path in document["paths"].values() for operation in path.values()}


def assert_swagger_ui_shows(page: Page, expected: dict[str, str]) -> None:
    blocks = page.locator(".opblock")
    expect(blocks).to_have_count(len(expected), timeout=TIMEOUT_MS)
    assert set(blocks.evaluate_all("blocks => blocks.map(b => b.id)")) == {
        f"operations-{tag}-{operation_id}" for operation_id, tag in expected.items()}


def assert_redoc_shows(page: Page, expected: dict[str, str]) -> None:
    sections = page.locator("[data-section-id^='operation/']")
    expect(sections).to_have_count(len(expected), timeout=TIMEOUT_MS)
    assert set(sections.evaluate_all("sections => sections.map(s => s.dataset.sectionId)")) == {
        f"operation/{operation_id}" for operation_id in expected}


def assert_loaded_nothing_from_elsewhere(browser: OfflineBrowser, page: Page, allowed: frozenset[str]) -> None:
    assert browser.off_host == [], f"{page.url} tried other hosts (aborted): {browser.off_host}"
    refused = set(browser.csp_blocked(page)) - allowed
    assert not refused, f"{page.url} tried to load from elsewhere (refused by its CSP): {refused}"


def try_it_out(page: Page, tag: str, operation: str, status: str, body: dict[str, str] | None = None) -> str:
    """In Swagger UI: open the operation, "Try it out", fill its JSON body, "Execute"; waits
    for the response status shown on the page and returns the response body shown."""
    block = page.locator(f"#operations-{tag}-{operation}")
    block.locator(".opblock-summary").click()
    block.get_by_role("button", name="Try it out").click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(json.dumps(body))
    block.get_by_role("button", name="Execute").click()
    response: Locator = block.locator(".live-responses-table .response")
    expect(response.locator(".response-col_status")).to_have_text(status, timeout=TIMEOUT_MS)
    return response.locator(".microlight").first.inner_text()


def authorize(page: Page, access_token: str) -> None:
    """The padlock at the top: paste the bearer token, apply, close."""
    page.locator(".auth-wrapper .authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.get_by_label("auth-bearer-value").fill(access_token)
    dialog.get_by_role("button", name="Apply credentials").click()
    dialog.get_by_role("button", name="Close", exact=True).click()
    expect(dialog).to_be_hidden(timeout=TIMEOUT_MS)


def test_the_gateway_docs_render_offline_and_try_the_api(stack: Stack, tmp_path: Path) -> None:
    expected = operations(stack, catalog.GATEWAY)
    assert FIRST_OPERATIONS.issubset(expected), sorted(expected)
    base = docs_url(stack, catalog.GATEWAY)
    with offline_browser(tmp_path / "screenshots") as browser:
        reference = browser.open(f"{base}/redoc")
        # Right after the load event (what a CDN reference would have fetched), and after rendering.
        assert_loaded_nothing_from_elsewhere(browser, reference, allowed=frozenset({REDOC_LOGO}))
        assert_redoc_shows(reference, expected)
        reference.get_by_placeholder("Search...").fill("register")  # a worker of its own: CSP allows it
        expect(reference.locator("[data-role='search:results'] [data-item-id$='/operation/auth-register']")
               ).to_be_visible(timeout=TIMEOUT_MS)
        assert_loaded_nothing_from_elsewhere(browser, reference, allowed=frozenset({REDOC_LOGO}))

        docs = browser.open(f"{base}/docs")
        assert_loaded_nothing_from_elsewhere(browser, docs, allowed=frozenset())
        assert_swagger_ui_shows(docs, expected)
        email = f"newcomer-{uuid.uuid4().hex[:10]}@example.com"
        credentials = {"email": email, "password": PASSWORD}
        registered = json.loads(try_it_out(docs, "auth", "auth-register", "201", credentials))
        assert registered["email"] == email
        tokens = json.loads(try_it_out(docs, "auth", "auth-login", "200", credentials))
        authorize(docs, tokens["access_token"])
        try_it_out(docs, "tasks", "tasks-create-task", "201", {"title": "Ship it", "priority": "high"})
        listing = json.loads(try_it_out(docs, "tasks", "tasks-list-tasks", "200"))
        assert [task["title"] for task in listing["data"]] == ["Ship it"]
        assert_loaded_nothing_from_elsewhere(browser, docs, allowed=frozenset())


def test_a_service_serves_its_own_docs_offline(stack: Stack, tmp_path: Path) -> None:
    """Each service has /docs and /redoc too (a port-forward to one pod). One is enough
    here: the pages are the kit's, and every service's operations and schemas are in the
    gateway's document above."""
    expected = operations(stack, catalog.TASKS)
    base = docs_url(stack, catalog.TASKS)
    with offline_browser(tmp_path / "screenshots") as browser:
        for path, shows, allowed in (("/docs", assert_swagger_ui_shows, frozenset[str]()),
                                     ("/redoc", assert_redoc_shows, frozenset({REDOC_LOGO}))):
            page = browser.open(f"{base}{path}")
            assert_loaded_nothing_from_elsewhere(browser, page, allowed)
            shows(page, expected)
            assert_loaded_nothing_from_elsewhere(browser, page, allowed)
