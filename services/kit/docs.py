"""API docs that work without internet: Swagger UI at /docs and ReDoc at /redoc, with
their JavaScript and CSS served by the service itself, not fetched from a CDN.

Clusters without egress are common; FastAPI's own pages load their assets from
jsdelivr and render blank there. The assets come from the fastapi-offline package
(its ``static`` folder: Swagger UI, ReDoc, favicon); only its files are used.

Both pages also carry a Content-Security-Policy that lets them load from their own origin
only, so the browser itself stops anything else: ReDoc 2 shows Redocly's logo from
cdn.redoc.ly in its sidebar whatever its options say, and a reader's browser would
otherwise ask that CDN on every visit (ReDoc leaves the logo out when it cannot load).
tests/e2e/test_docs_browser.py renders both pages in Chromium with every other host cut off.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
#: Own origin only. Inline script: FastAPI's page starts Swagger UI with one; inline style
#: and data: images: both UIs inject their styles and icons; blob: workers: ReDoc's search.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; base-uri 'self'; "
            "form-action 'self'")


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    """``page`` with DOCS_CSP as its first ``<head>`` element. A ``<meta>``, not a header:
    the request middleware owns the Content-Security-Policy header (one for JSON answers)."""
    html = bytes(page.body).decode()
    head = html.index("<head>") + len("<head>")
    meta = f'\n<meta http-equiv="Content-Security-Policy" content="{DOCS_CSP}">'
    return HTMLResponse(html[:head] + meta + html[head:])


def install_docs(app: FastAPI, *, openapi_url: str, title: str) -> None:
    """Add /docs, /redoc and their assets for the document at ``openapi_url``."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _own_origin_only(get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{title} - docs",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        ))

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _own_origin_only(get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{title} - reference",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png", with_google_fonts=False,
        ))
