"""Debian's Chromium, driven by Playwright, with every host but this machine cut off.

Two walls: the browser resolves no name but ``localhost`` and ``DOCS_HOST`` (which it maps
to 127.0.0.1), and every request a page makes is routed through ``OfflineBrowser``, which
aborts and records any whose host is not on this machine. A third record comes from the
pages themselves: what their Content-Security-Policy refused before it left the browser.

``make test`` installs Chromium (scripts/ensure-servers.sh); without it this raises rather
than skips. Playwright never downloads a browser here: it drives /usr/bin/chromium.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM_BIN = "/usr/bin/chromium"
#: A name the pages are opened under, resolved to 127.0.0.1 by the browser alone. The
#: pages see a host that is not "localhost", as in a cluster: a UI that would reach out
#: only for non-local documents (Swagger UI's validator badge does) is caught too.
DOCS_HOST = "flotilla-docs.test"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", DOCS_HOST})
#: Every wait (navigation, an element appearing, a response shown) may take this long
#: before it fails: generous for one loaded core; Playwright returns as soon as it is met.
TIMEOUT_MS = 90_000
SCREENSHOT_TIMEOUT_MS = 20_000
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    # Without these Chromium's own background connections (updates, sync, field trials)
    # start at launch and, refused here, pile up.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    f"--host-resolver-rules=MAP {DOCS_HOST} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE localhost",
)
#: Reads the CSP refusals a page has seen (recorded by _RECORD_CSP from its first script on).
_CSP_BLOCKED = "() => window.__flotillaCspBlocked || []"
_RECORD_CSP = """
window.__flotillaCspBlocked = [];
document.addEventListener('securitypolicyviolation',
                          (event) => window.__flotillaCspBlocked.push(event.blockedURI));
"""


def chromium_binary() -> str:
    found = shutil.which("chromium") or CHROMIUM_BIN
    if not Path(found).exists():
        raise RuntimeError("chromium not found; `make test` installs it (scripts/ensure-servers.sh), "
                           "or: apt-get install chromium")
    return found


@dataclass
class OfflineBrowser:
    context: BrowserContext
    #: Requests to any other host: aborted before they left the browser.
    off_host: list[str] = field(default_factory=list)

    def open(self, url: str) -> Page:
        page = self.context.new_page()
        page.goto(url)
        return page

    @staticmethod
    def csp_blocked(page: Page) -> list[str]:
        """What ``page``'s Content-Security-Policy refused to load (never sent)."""
        blocked: list[str] = page.evaluate(_CSP_BLOCKED)
        return blocked

    def _route(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.off_host.append(route.request.url)
            route.abort("blockedbyclient")


@contextmanager
def offline_browser(screenshots: Path) -> Iterator[OfflineBrowser]:
    """Chromium with a fresh profile (Playwright makes one per launch) and no network but
    this machine. When the block fails, every open page is saved as a PNG in
    ``screenshots`` and the failure says where."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_binary(), args=list(CHROMIUM_ARGS),
                                             headless=True, timeout=TIMEOUT_MS)
        try:
            # No service worker: its requests would bypass the route.
            context = browser.new_context(service_workers="block")
            context.set_default_timeout(TIMEOUT_MS)
            context.add_init_script(_RECORD_CSP)
            offline = OfflineBrowser(context)
            context.route("**/*", offline._route)
            try:
                yield offline
            except Exception as exc:
                exc.add_note(f"requests to other hosts (aborted): {offline.off_host}")
                screenshots.mkdir(parents=True, exist_ok=True)
                for number, page in enumerate(context.pages):
                    path = screenshots / f"page-{number}.png"
                    try:
                        refused = offline.csp_blocked(page)
                        page.screenshot(path=path, full_page=True, timeout=SCREENSHOT_TIMEOUT_MS)
                    except PlaywrightError as failed:
                        exc.add_note(f"{page.url}: no screenshot ({failed.message.splitlines()[0]})")
                    else:
                        exc.add_note(f"{page.url}: refused by its CSP: {refused}; screenshot: {path}")
                raise
        finally:
            browser.close()
