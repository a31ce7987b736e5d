"""The backends behind the gateway: routing table from the catalog, one pooled client each."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx

from services.gateway.settings import GatewaySettings
from services.kit import catalog


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: httpx.URL
    prefixes: tuple[str, ...]
    #: Keep-alive pool for this upstream only, so a slow service cannot take the
    #: connections the others need.
    client: httpx.AsyncClient

    def url_for(self, raw_path: bytes, query_string: bytes) -> httpx.URL:
        # The raw (still percent-encoded) path, so "%2F" inside a segment stays one segment.
        path = self.base_url.raw_path.rstrip(b"/") + raw_path
        return self.base_url.copy_with(raw_path=path + (b"?" + query_string if query_string else b""))



def under(path: str, prefixes: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``prefixes`` or below one ("/api/v1/tasksfoo" is not)."""
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


def routes() -> list[tuple[str, str]]:
    """``(path prefix, backend name)`` for every route the gateway exposes."""
    return [(prefix, backend.name) for backend in catalog.BACKENDS for prefix in backend.routes]


async def open_upstreams(settings: GatewaySettings, stack: AsyncExitStack) -> dict[str, Upstream]:
    upstreams: dict[str, Upstream] = {}
    for backend in catalog.BACKENDS:
        client = httpx.AsyncClient(
            base_url=settings.upstream_url(backend.name),
            timeout=httpx.Timeout(settings.upstream_timeout(backend.name),
                                  connect=settings.upstream_connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=settings.upstream_max_connections,
                max_keepalive_connections=settings.upstream_max_keepalive,
                keepalive_expiry=settings.upstream_keepalive_expiry_seconds,
            ),
            # Service-to-service traffic must not wander through an HTTP(S)_PROXY from the env.
            trust_env=False,
            follow_redirects=False,
        )
        await stack.enter_async_context(client)
        upstreams[backend.name] = Upstream(backend.name, httpx.URL(settings.upstream_url(backend.name)),
                                           backend.routes, client)
    return upstreams
