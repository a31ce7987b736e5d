"""The app factory: one call builds a service with everything the kit provides."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import httpx
import structlog
from fastapi import APIRouter, FastAPI, Request
from starlette.middleware import Middleware

from services.kit.breaker import Breakers
from services.kit.cache import Cache, CacheBackend, MemoryBackend, NoBackend, RedisBackend, redis_client
from services.kit.docs import install_docs
from services.kit.errors import install_error_handlers
from services.kit.health import DEPENDENCY_REFRESH_SECONDS, Health
from services.kit.logging import configure_logging
from services.kit.loops import ServiceLoop
from services.kit.metrics import ServiceMetrics
from services.kit.middleware import RequestContextMiddleware
from services.kit.openapi import install_error_documentation
from services.kit.security import TokenVerifier
from services.kit.settings import ServiceSettings

if TYPE_CHECKING:
    from services.kit.db import Database

log = structlog.get_logger("flotilla.app")

#: The installed distribution's version: pyproject.toml is its one source.
VERSION = version("flotilla")

R = TypeVar("R")


@dataclass
class Kit:
    """Everything a service's routes and workers share; lives on ``app.state.kit``."""

    settings: ServiceSettings
    metrics: ServiceMetrics
    health: Health
    breakers: Breakers
    http: httpx.AsyncClient
    verifier: TokenVerifier
    cache: Cache
    db: Database | None = None
    #: The service's own runtime object (its keys, limiter, upstreams...), set by its worker.
    runtime: object | None = None

    @property
    def database(self) -> Database:
        if self.db is None:
            raise RuntimeError(f"service {self.settings.service_name} has no database")
        return self.db

    def runtime_as(self, kind: type[R]) -> R:
        """The runtime object, typed; fails loudly if the service set none or another kind."""
        if not isinstance(self.runtime, kind):
            raise RuntimeError(f"service {self.settings.service_name} has no {kind.__name__} runtime")
        return self.runtime


def get_kit(request: Request) -> Kit:
    """The running service's Kit (set by the lifespan)."""
    return cast(Kit, request.app.state.kit)


#: A background worker: entered after start-up, exited before shutdown finishes.
Worker = Callable[[Kit], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    migrations: Path | None = None,
    workers: Sequence[Worker] = (),
    openapi_url: str | None = "/openapi.json",
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """Build a Flotilla service: middleware, errors, health, metrics, pools, workers.

    ``middleware`` runs inside the request context (request id, access log, error
    boundary) and outside metrics and routing: a service's own plain-ASGI paths, which
    then record their metrics themselves (``ServiceMetrics.record_request``).

    ``openapi_url=None`` turns off FastAPI's own schema and docs routes, for a service
    (the gateway) that serves a document of its own at those paths.
    """
    service = settings.service_name
    configure_logging(level=settings.log_level, json=settings.log_json, service=service)
    metrics = ServiceMetrics(service, VERSION)
    health = Health(metrics, retry_after_seconds=settings.retry_after_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            kit = await _open_kit(settings, metrics, health, stack, migrations)
            app.state.kit = kit
            for worker in workers:
                await stack.enter_async_context(worker(kit))
            # After the workers: they add checks (upstreams, events); stopped before them.
            checks = ServiceLoop("dependency-checks", health.refresh, idle_seconds=DEPENDENCY_REFRESH_SECONDS,
                                 backoff_max_seconds=DEPENDENCY_REFRESH_SECONDS)
            await stack.enter_async_context(checks.running(grace_seconds=3.0))
            log.info("service_started", database=kit.db.engine.dialect.name if kit.db else None,
                     cache=type(kit.cache.backend).__name__.removesuffix("Backend").lower())
            yield
            health.draining = True
            log.info("service_stopping")

    # redirect_slashes=False: "/api/v1/tasks/" is a 404, not a 307 whose Location names
    # this service's own (internal) address.
    otel = settings.otel_enabled
    # Operation ids "<service>-<endpoint>" ("tasks-list-tasks") instead of FastAPI's
    # "list_tasks_api_v1_tasks_get": stable names for generated clients, unique across the
    # merged document because each service's carry its name.
    app = FastAPI(title=title, description=description, version=VERSION, lifespan=lifespan,
                  openapi_url=openapi_url, redirect_slashes=False, docs_url=None, redoc_url=None,
                  generate_unique_id_function=lambda route: f"{service}-{route.name.replace('_', '-')}",
                  telemetry={"tracing": otel, "metrics": otel, "logs": otel})
    if openapi_url is not None:
        install_docs(app, openapi_url=openapi_url, title=title)
    app.state.metrics = metrics
    app.state.health = health
    app.state.settings = settings
    install_error_handlers(app, database=migrations is not None)
    install_error_documentation(app)
    metrics.instrument(app)
    for item in reversed(middleware):  # add_middleware puts each outside the previous
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    # Added last = outermost: the request id and error boundary wrap everything else.
    app.add_middleware(RequestContextMiddleware, retry_after_seconds=settings.retry_after_seconds,
                       body_timeout_seconds=settings.body_read_timeout_seconds,
                       max_body_bytes=settings.max_body_bytes)
    app.include_router(health.router())
    for router in routers:
        app.include_router(router)
    return app


async def _open_kit(
    settings: ServiceSettings,
    metrics: ServiceMetrics,
    health: Health,
    stack: AsyncExitStack,
    migrations: Path | None,
) -> Kit:
    http = await stack.enter_async_context(
        httpx.AsyncClient(timeout=httpx.Timeout(5.0), limits=httpx.Limits(max_keepalive_connections=50))
    )
    backend: CacheBackend
    redis_url = settings.redis_url.get_secret_value()
    if not settings.cache_enabled:
        backend = NoBackend()
    elif redis_url:
        backend = RedisBackend(redis_client(redis_url, timeout=None), timeout=settings.redis_timeout_seconds)
    else:
        backend = MemoryBackend(ttl=settings.cache_ttl_seconds)
    cache = Cache(backend, prefix=f"{settings.service_name}:", ttl=settings.cache_ttl_seconds, metrics=metrics)
    stack.push_async_callback(cache.close)
    if redis_url and settings.cache_enabled:
        health.add("redis", cache.check, critical=False)

    db: Database | None = None
    if migrations is not None:
        # Imported here: a service without a database (the gateway) never loads
        # SQLAlchemy and asyncpg, about 20 MB of its resident memory.
        from services.kit.db import Database
        from services.kit.migrations import upgrade

        db = Database(settings)
        stack.push_async_callback(db.dispose)
        metrics.track_pool(db.checked_out)
        health.add("database", db.ping, critical=True)
        if settings.should_migrate_on_start:
            await upgrade(db, service=settings.service_name, script_location=migrations)

    verifier = TokenVerifier(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        jwks_json=settings.jwt_public_jwks,
        jwks_url=settings.jwks_url,
        http=http,
    )
    return Kit(settings=settings, metrics=metrics, health=health, breakers=Breakers(metrics),
               http=http, verifier=verifier, cache=cache, db=db)
