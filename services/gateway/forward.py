"""Sending one request upstream: circuit breaker, timeouts, retries for idempotent reads.

What counts against an upstream's breaker: it could not be reached (connect error or
timeout), it broke the exchange, or it answered 502/503/504 (it says it cannot serve,
or something in front of it says so). A 4xx is the client's fault and a 500 is a bug
hit by one request; the upstream answered, so both prove it alive and pass through.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from services.gateway.errors import BadGateway, UpstreamTimeout
from services.gateway.headers import RawHeaders
from services.gateway.upstreams import Upstream
from services.kit.breaker import Breakers
from services.kit.errors import DependencyUnavailable, FlotillaError

log = structlog.get_logger("flotilla.gateway")

FAILURE_STATUSES = frozenset({502, 503, 504})
#: Safe to send twice. POST/PATCH/DELETE never are: a retry could create a second task.
RETRYABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    status_code: int
    headers: RawHeaders
    body: bytes


class UpstreamFailed(Exception):
    """An answer that counts against the breaker; passed through to the client if final."""

    def __init__(self, reply: UpstreamReply) -> None:
        super().__init__(f"upstream answered {reply.status_code}")
        self.reply = reply


class UpstreamUnreachable(Exception):
    def __init__(self, upstream: str, cause: httpx.TransportError) -> None:
        super().__init__(f"{upstream}: {type(cause).__name__}")
        self.upstream = upstream
        self.cause = cause

    @property
    def never_connected(self) -> bool:
        """The request never reached the upstream, so sending it again cannot repeat it."""
        return isinstance(self.cause, httpx.ConnectError | httpx.ConnectTimeout)

    def as_error(self, retry_after: int) -> FlotillaError:
        if self.never_connected:
            return DependencyUnavailable(self.upstream, retry_after=retry_after)
        if isinstance(self.cause, httpx.TimeoutException):
            return UpstreamTimeout(self.upstream, retry_after=retry_after,
                                   message=f"{self.upstream} did not answer in time; retry later")
        return BadGateway(self.upstream, retry_after=retry_after,
                          message=f"{self.upstream} closed the connection; retry later")


class GatewayOverloaded(Exception):
    """No free pooled connection in time: the gateway's own limit, not the upstream's fault."""


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, UpstreamFailed):
        return True
    return isinstance(exc, UpstreamUnreachable) and exc.never_connected


class Forwarder:
    def __init__(
        self,
        breakers: Breakers,
        *,
        retry_attempts: int,
        backoff_seconds: float,
        backoff_max_seconds: float,
        retry_after_seconds: int,
    ) -> None:
        self.breakers = breakers
        self.retry_attempts = retry_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.retry_after_seconds = retry_after_seconds

    async def forward(self, upstream: Upstream, request: httpx.Request) -> UpstreamReply:
        attempts = 1 + (self.retry_attempts if request.method in RETRYABLE_METHODS else 0)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=self.backoff_seconds, max=self.backoff_max_seconds),
            retry=retry_if_exception(_worth_retrying),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(upstream, request)
        except UpstreamFailed as failed:
            # Services answer in the error shape with their own Retry-After: pass it on.
            return failed.reply
        except UpstreamUnreachable as failed:
            log.warning("upstream_unreachable", upstream=upstream.name, error_type=type(failed.cause).__name__)
            raise failed.as_error(self.retry_after_seconds) from None
        except GatewayOverloaded:
            log.warning("upstream_pool_exhausted", upstream=upstream.name)
            raise DependencyUnavailable(upstream.name, retry_after=1,
                                        message=f"too many requests in flight to {upstream.name}; retry later"
                                        ) from None
        raise AssertionError("tenacity re-raises the last failure")  # pragma: no cover

    async def _attempt(self, upstream: Upstream, request: httpx.Request) -> UpstreamReply:
        # One breaker call per attempt: each attempt is real evidence about the upstream,
        # and once the breaker opens mid-retry the next attempt fails fast (and stops).
        async with self.breakers.guard(upstream.name):
            try:
                response = await upstream.client.send(request, stream=True)
                try:
                    # Raw bytes: the body is relayed as the upstream encoded it.
                    body = b"".join([chunk async for chunk in response.aiter_raw()])
                finally:
                    await response.aclose()
            except httpx.PoolTimeout as exc:
                raise GatewayOverloaded() from exc
            except httpx.TransportError as exc:
                raise UpstreamUnreachable(upstream.name, exc) from exc
            reply = UpstreamReply(response.status_code, list(response.headers.raw), body)
            if reply.status_code in FAILURE_STATUSES:
                raise UpstreamFailed(reply)
        return reply
