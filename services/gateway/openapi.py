"""One OpenAPI document for the whole API, merged from every service's own.

Each service documents its paths; the gateway adds what only it knows: which paths it
routes (only those are merged), that every operation needs a bearer token except the
public auth routes (so answers 401 at the edge), that every operation may meet its rate
limits (429), and which services could not be asked. Component names that two
services define differently get the service's name as a prefix (and every ``$ref``
in that service's part is rewritten), so no service's schema silently replaces another's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import structlog

from services.gateway.upstreams import Upstream, under
from services.kit.openapi import ERROR_DESCRIPTIONS

log = structlog.get_logger("flotilla.gateway.openapi")

TITLE = "Flotilla API"
BEARER = "bearerAuth"
_REF_PREFIX = "#/components/"

Document = dict[str, Any]
Renames = set[tuple[str, str]]  # (component section, name) to prefix, per service


def _rewrite_refs(node: Any, service: str, renames: Renames) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF_PREFIX):
                section, _, name = value.removeprefix(_REF_PREFIX).partition("/")
                if (section, name) in renames:
                    value = f"{_REF_PREFIX}{section}/{service}_{name}"
                out[key] = value
            else:
                out[key] = _rewrite_refs(value, service, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, service, renames) for item in node]
    return node


def _collisions(documents: Mapping[str, Document]) -> dict[str, Renames]:
    """Per service, the components to prefix: names defined differently by two services.

    Repeated until stable, because renaming a schema changes every definition that
    refers to it, which may turn two identical definitions into different ones.
    """
    renames: dict[str, Renames] = {service: set() for service in documents}
    while True:
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for service, doc in documents.items():
            components = _rewrite_refs(doc.get("components", {}), service, renames[service])
            for section, entries in components.items():
                for name, definition in entries.items():
                    if (section, name) not in renames[service]:
                        seen.setdefault((section, name), {})[service] = definition
        added = False
        for key, by_service in seen.items():
            definitions = list(by_service.values())
            if any(d != definitions[0] for d in definitions[1:]):
                for service in by_service:
                    renames[service].add(key)
                added = True
        if not added:
            return renames


def _document_edge_errors(operation: Document, service: str, renames: Renames, *, public: bool) -> None:
    """The statuses the gateway itself answers for a routed operation, in the error shape."""
    name = f"{service}_Error" if ("schemas", "Error") in renames else "Error"
    responses = operation.setdefault("responses", {})
    for status in (429,) if public else (401, 429):
        responses.setdefault(str(status), {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": f"{_REF_PREFIX}schemas/{name}"}}},
        })


def merge(
    documents: Mapping[str, Document],
    *,
    routes: Mapping[str, Iterable[str]],
    public: Iterable[tuple[str, str]],
    missing: Iterable[str] = (),
    version: str,
) -> Document:
    """The merged document. ``routes``: service -> the path prefixes the gateway sends it."""
    missing = sorted(missing)
    public_ops = {(method.lower(), path) for method, path in public}
    description = "Every Flotilla service behind one gateway. Send `Authorization: Bearer <access token>` " \
                  "from `POST /api/v1/auth/login`."
    if missing:
        description += f"\n\n**Not available when this document was built:** {', '.join(missing)}."
    merged: Document = {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": version, "description": description},
        "paths": {},
        "components": {"securitySchemes": {BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{BEARER: []}],
        "tags": [],
        "x-flotilla-missing-services": missing,
    }
    renames = _collisions(documents)
    tag_names: set[str] = set()
    for service, doc in documents.items():
        doc = _rewrite_refs(doc, service, renames[service])
        prefixes = tuple(routes.get(service, ()))
        has_error_schema = "Error" in doc.get("components", {}).get("schemas", {})
        for path, operations in doc.get("paths", {}).items():
            if not under(path, prefixes):
                continue  # not reachable through the gateway
            for method, operation in operations.items():
                if not isinstance(operation, dict):
                    continue
                public_op = (method, path) in public_ops
                if public_op:
                    operation["security"] = []
                if has_error_schema:
                    _document_edge_errors(operation, service, renames[service], public=public_op)
            merged["paths"][path] = operations
        for section, entries in doc.get("components", {}).items():
            target = merged["components"].setdefault(section, {})
            for name, definition in entries.items():
                target[f"{service}_{name}" if (section, name) in renames[service] else name] = definition
        for tag in doc.get("tags", []):
            if tag.get("name") not in tag_names:
                tag_names.add(tag.get("name"))
                merged["tags"].append(tag)
    return merged


class MergedOpenApi:
    """The merged document, fetched on first use and cached.

    While a service is missing from it, it is rebuilt at most every ``retry_seconds``,
    so the document completes itself once the service is back.
    """

    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        *,
        public: Iterable[tuple[str, str]],
        version: str,
        retry_seconds: float,
        fetch_timeout: float = 3.0,
    ) -> None:
        self.upstreams = upstreams
        self.public = tuple(public)
        self.version = version
        self.retry_seconds = retry_seconds
        self.fetch_timeout = fetch_timeout
        self._document: Document | None = None
        self._missing: list[str] = []
        self._built_at = -float("inf")
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._document is not None and (
            not self._missing or time.monotonic() - self._built_at < self.retry_seconds
        )

    async def document(self) -> Document:
        if self._fresh():
            assert self._document is not None
            return self._document
        async with self._lock:
            if not self._fresh():
                await self._build()
            assert self._document is not None
            return self._document

    async def _fetch(self, upstream: Upstream) -> Document | None:
        try:
            async with upstream.session.get(upstream.url("/openapi.json"),
                                            timeout=aiohttp.ClientTimeout(total=self.fetch_timeout)) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("openapi_fetch_failed", upstream=upstream.name, error_type=type(exc).__name__)
            return None
        return document if isinstance(document, dict) else None

    async def _build(self) -> None:
        names = list(self.upstreams)
        fetched = await asyncio.gather(*(self._fetch(self.upstreams[name]) for name in names))
        documents = {name: doc for name, doc in zip(names, fetched, strict=True) if doc is not None}
        self._missing = [name for name in names if name not in documents]
        self._document = merge(
            documents,
            routes={name: upstream.prefixes for name, upstream in self.upstreams.items()},
            public=self.public,
            missing=self._missing,
            version=self.version,
        )
        self._built_at = time.monotonic()
