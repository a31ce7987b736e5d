"""Sending one request upstream: circuit breaker, timeouts, retries for idempotent reads.

What counts against an upstream's breaker: it could not be reached (connect error or
timeout), it broke the exchange, or it answered 502/503/504 (it says it cannot serve,
or something in front of it says so). A 4xx is the client's fault and a 500 is a bug
hit by one request; the upstream answered, so both prove it alive and pass through.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from yarl import URL

from services.gateway.errors import BadGateway, UpstreamTimeout
from services.gateway.headers import RawHeaders
from services.gateway.upstreams import PoolExhausted, Upstream
from services.kit.breaker import Breakers
from services.kit.errors import SHED_HEADER, DependencyUnavailable, FlotillaError

log = structlog.get_logger("flotilla.gateway")

FAILURE_STATUSES = frozenset({502, 503, 504})
_SHED_HEADER = SHED_HEADER.lower().encode()
#: Safe to send twice. POST/PATCH/DELETE never are: a retry could create a second task.
RETRYABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: URL
    headers: list[tuple[str, str]]
    body: bytes | None


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
    def __init__(self, upstream: str, cause: Exception) -> None:
        super().__init__(f"{upstream}: {type(cause).__name__}")
        self.upstream = upstream
        self.cause = cause

    @property
    def never_connected(self) -> bool:
        """The request never reached the upstream, so sending it again cannot repeat it."""
        # ConnectionTimeoutError is a TimeoutError too, so this test comes first.
        return isinstance(self.cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)

    def as_error(self, retry_after: int) -> FlotillaError:
        if self.never_connected:
            return DependencyUnavailable(self.upstream, retry_after=retry_after, shed=False)
        if isinstance(self.cause, TimeoutError):
            return UpstreamTimeout(self.upstream, retry_after=retry_after, shed=False,
                                   message=f"{self.upstream} did not answer in time; retry later")
        return BadGateway(self.upstream, retry_after=retry_after, shed=False,
                          message=f"{self.upstream} closed the connection; retry later")


class GatewayOverloaded(Exception):
    """No free pooled connection in time: the gateway's own limit, not the upstream's fault."""


def _shed(reply: UpstreamReply) -> bool:
    """A 503 a live service chose to send (at capacity, or a dependency of its own down):
    no breaker failure, and no retry (it would only add to the load, or fail the same)."""
    return any(name.lower() == _SHED_HEADER for name, _ in reply.headers)


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

    async def forward(self, upstream: Upstream, request: UpstreamRequest) -> UpstreamReply:
        try:
            try:
                return await self._attempt(upstream, request)
            except (UpstreamFailed, UpstreamUnreachable) as first:
                if request.method not in RETRYABLE_METHODS or not self.retry_attempts or not _worth_retrying(first):
                    raise
                return await self._retry(upstream, request, first)
        except UpstreamFailed as failed:
            # Services answer in the error shape with their own Retry-After: pass it on.
            return failed.reply
        except UpstreamUnreachable as failed:
            log.warning("upstream_unreachable", upstream=upstream.name, error_type=type(failed.cause).__name__)
            raise failed.as_error(self.retry_after_seconds) from None
        except GatewayOverloaded:
            log.warning("upstream_pool_exhausted", upstream=upstream.name)
            raise DependencyUnavailable(upstream.name, retry_after=1, shed=False,
                                        message=f"too many requests in flight to {upstream.name}; retry later"
                                        ) from None

    async def _retry(self, upstream: Upstream, request: UpstreamRequest, first: Exception) -> UpstreamReply:
        # The first attempt runs outside tenacity: building and stepping a retry loop per
        # request cost about 5 % of the gateway's CPU, and nearly every request succeeds
        # at once. Its failure is replayed as tenacity's attempt 1, so the backoff schedule
        # and the stop rule stay tenacity's own.
        pending: Exception | None = first
        retrying = AsyncRetrying(
            stop=stop_after_attempt(1 + self.retry_attempts),
            wait=wait_random_exponential(multiplier=self.backoff_seconds, max=self.backoff_max_seconds),
            retry=retry_if_exception(_worth_retrying),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if pending is not None:
                    failure, pending = pending, None
                    raise failure
                return await self._attempt(upstream, request)
        raise AssertionError("tenacity re-raises the last failure")  # pragma: no cover

    async def _attempt(self, upstream: Upstream, request: UpstreamRequest) -> UpstreamReply:
        # One breaker call per attempt: each attempt is real evidence about the upstream,
        # and once the breaker opens mid-retry the next attempt fails fast (and stops).
        async with self.breakers.guard(upstream.name):
            try:
                await upstream.acquire_slot()
            except PoolExhausted as exc:
                raise GatewayOverloaded() from exc
            try:
                async with upstream.session.request(request.method, request.url, headers=request.headers,
                                                    data=request.body, allow_redirects=False) as response:
                    body = await response.read()
                    reply = UpstreamReply(response.status, list(response.raw_headers), body)
            # TimeoutError covers aiohttp's own timeouts (ServerTimeoutError subclasses it)
            # and the whole-request timeout, which aiohttp raises as a bare TimeoutError.
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamUnreachable(upstream.name, exc) from exc
            finally:
                upstream.slots.release()
            if reply.status_code in FAILURE_STATUSES and not _shed(reply):
                raise UpstreamFailed(reply)
        return reply
