"""The backends behind the gateway: routing table from the catalog, one pooled client each.

The proxy path uses aiohttp rather than httpx: under load httpcore's pool scans every
pooled connection (with a socket liveness check each) on every request, which took
about 40 % of the gateway's CPU; aiohttp's connector hands out an idle connection in
constant time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
from yarl import URL

from services.gateway.settings import GatewaySettings
from services.kit import catalog


class PoolExhausted(Exception):
    """No free connection to the upstream within the wait allowed for one."""


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    prefixes: tuple[str, ...]
    #: Keep-alive pool for this upstream only, so a slow service cannot take the
    #: connections the others need.
    session: aiohttp.ClientSession
    #: Gates the pool. aiohttp reports "waited too long for a pooled connection" and
    #: "could not connect" as the same ConnectionTimeoutError, but only the second says
    #: anything about the upstream (the breaker must ignore the first), so the wait for
    #: a connection slot happens here, where it can be told apart.
    slots: asyncio.Semaphore
    pool_timeout: float
    #: ``scheme://host:port`` as the upstream writes it in its own Location headers.
    origin: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", str(URL(self.base_url).origin()).encode("latin-1"))

    def url_for(self, raw_path: bytes, query_string: bytes) -> URL:
        # The raw (still percent-encoded) path, so "%2F" inside a segment stays one segment:
        # encoded=True keeps yarl from normalising or re-quoting it.
        target = raw_path + (b"?" + query_string if query_string else b"")
        return URL(self.base_url + target.decode("latin-1"), encoded=True)

    def url(self, path: str) -> URL:
        return URL(self.base_url + path, encoded=True)


    async def acquire_slot(self) -> None:
        try:
            async with asyncio.timeout(self.pool_timeout):
                await self.slots.acquire()
        except TimeoutError:
            raise PoolExhausted(self.name) from None


def under(path: str, prefixes: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``prefixes`` or below one ("/api/v1/tasksfoo" is not)."""
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


def routes() -> list[tuple[str, str]]:
    """``(path prefix, backend name)`` for every route the gateway exposes."""
    return [(prefix, backend.name) for backend in catalog.BACKENDS for prefix in backend.routes]


def _session(settings: GatewaySettings, name: str) -> aiohttp.ClientSession:
    expiry = settings.upstream_keepalive_expiry_seconds
    keep_alive = settings.upstream_max_keepalive > 0 and expiry > 0
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_max_connections,
        limit_per_host=0,
        # aiohttp has no separate cap on idle connections: idle ones count against
        # ``limit`` and are dropped after the expiry; 0 keep-alive means none are kept.
        force_close=not keep_alive,
        keepalive_timeout=expiry if keep_alive else None,
        enable_cleanup_closed=False,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=settings.upstream_timeout(name),
                                      sock_connect=settings.upstream_connect_timeout_seconds),
        # Service-to-service traffic must not wander through an HTTP(S)_PROXY from the env.
        trust_env=False,
        # The body is relayed byte for byte, as the upstream encoded it.
        auto_decompress=False,
        # A body the client sent without a type must reach the service without one too.
        skip_auto_headers=("Content-Type",),
        raise_for_status=False,
    )
    # aiohttp resends an idempotent request once when a reused connection breaks; a
    # broken exchange must reach the client as 502 and count against the breaker, and a
    # request the upstream may have acted on must not be sent twice behind its back.
    # (No public switch exists; ClientSession warns if the attribute ever goes away.)
    session._retry_connection = False
    return session


async def open_upstreams(settings: GatewaySettings, stack: AsyncExitStack) -> dict[str, Upstream]:
    upstreams: dict[str, Upstream] = {}
    for backend in catalog.BACKENDS:
        session = _session(settings, backend.name)
        stack.push_async_callback(session.close)
        upstreams[backend.name] = Upstream(
            name=backend.name,
            base_url=settings.upstream_url(backend.name),
            prefixes=backend.routes,
            session=session,
            slots=asyncio.Semaphore(settings.upstream_max_connections),
            # As httpx did: waiting for a connection may take as long as a whole request.
            pool_timeout=settings.upstream_timeout(backend.name),
        )
    return upstreams
