"""What the gateway holds while it runs: upstream pools, breakers, limiter, merged docs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import aiohttp
from fastapi import Depends, Request
from limits import RateLimitItem

from services.gateway.forward import Forwarder, GatewayOverloaded
from services.gateway.openapi import MergedOpenApi
from services.gateway.ratelimit import EdgeRateLimiter, parse_limits
from services.gateway.settings import GatewaySettings
from services.gateway.upstreams import Upstream, open_upstreams
from services.kit.app import VERSION, Kit, Worker, get_kit
from services.kit.breaker import Breakers

#: Routes anyone may call: getting a token cannot require a token. Everything else needs one.
PUBLIC_ROUTES: frozenset[tuple[str, str]] = frozenset({
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/.well-known/jwks.json"),
    ("HEAD", "/.well-known/jwks.json"),
})


@dataclass
class Gateway:
    settings: GatewaySettings
    upstreams: dict[str, Upstream]
    breakers: Breakers
    forwarder: Forwarder
    limiter: EdgeRateLimiter
    user_limits: tuple[RateLimitItem, ...]
    ip_limits: tuple[RateLimitItem, ...]
    openapi: MergedOpenApi


class UpstreamNotReady(Exception):
    pass


def _health_checks(kit: Kit, gateway: Gateway) -> None:
    for upstream in gateway.upstreams.values():
        async def check(upstream: Upstream = upstream) -> None:
            async with upstream.session.get(upstream.url("/health/ready"),
                                            timeout=aiohttp.ClientTimeout(total=1.5)) as response:
                if response.status != 200:
                    raise UpstreamNotReady(f"{upstream.name} answered {response.status}")

        async def describe(name: str = upstream.name) -> dict[str, Any]:
            return {"breaker": await gateway.breakers.state(name)}

        # Not critical: with one service down the gateway still serves the others, so it
        # must stay in its load balancer; the report shows the outage as "degraded".
        kit.health.add(upstream.name, check, critical=False, describe=describe)


def gateway_worker(settings: GatewaySettings) -> Worker:
    @asynccontextmanager
    async def run(kit: Kit) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            upstreams = await open_upstreams(settings, stack)
            breakers = Breakers(kit.metrics, threshold=settings.breaker_threshold,
                                recovery_seconds=settings.breaker_recovery_seconds,
                                first_recovery_seconds=settings.breaker_first_recovery_seconds,
                                # The gateway's own pool limit says nothing about the upstream.
                                ignore=[GatewayOverloaded])
            limiter = EdgeRateLimiter(redis_url=settings.redis_url.get_secret_value(),
                                      redis_timeout=settings.redis_timeout_seconds,
                                      redis_retry_seconds=settings.rate_limit_redis_retry_seconds)
            stack.push_async_callback(limiter.close)
            gateway = Gateway(
                settings=settings,
                upstreams=upstreams,
                breakers=breakers,
                forwarder=Forwarder(breakers, retry_attempts=settings.retry_attempts,
                                    backoff_seconds=settings.retry_backoff_seconds,
                                    backoff_max_seconds=settings.retry_backoff_max_seconds,
                                    retry_after_seconds=settings.retry_after_seconds),
                limiter=limiter,
                user_limits=parse_limits(settings.rate_limit_per_user),
                ip_limits=parse_limits(settings.rate_limit_per_ip),
                openapi=MergedOpenApi(upstreams, public=PUBLIC_ROUTES, version=VERSION,
                                      retry_seconds=settings.openapi_retry_seconds),
            )
            _health_checks(kit, gateway)
            kit.runtime = gateway
            yield

    return run


def get_gateway(request: Request) -> Gateway:
    return get_kit(request).runtime_as(Gateway)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
