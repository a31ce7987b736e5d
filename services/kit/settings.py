"""Service settings from the environment (12-factor), one prefix per service.

A service named ``tasks`` reads ``TASKS_DATABASE_URL``, ``TASKS_REDIS_URL`` and so on.
The embedded defaults (SQLite file, in-process cache) let a laptop run the stack with
nothing installed; a cluster sets the URLs from the Secrets the operator writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.kit import catalog

DEFAULT_DATA_DIR = Path(".flotilla")
DEV_ISSUER = "flotilla-auth"
DEV_AUDIENCE = "flotilla"
SUPPORTED_DATABASE_SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://", "sqlite+aiosqlite://")


class ServiceSettings(BaseSettings):
    """Settings every service shares. Subclasses set ``service_name`` and add fields."""

    service_name: ClassVar[str] = "service"

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    #: SQLAlchemy URL. ``postgresql://`` URLs are rewritten to the asyncpg driver.
    #: Empty means the embedded default: a SQLite file in ``data_dir``.
    database_url: SecretStr = SecretStr("")
    #: Empty means no Redis: an in-process cache (and in-process events).
    redis_url: SecretStr = SecretStr("")
    #: The Redis holding the task-event stream (tasks publishes, data consumes), when
    #: it should not be the one in ``redis_url``: a cache may evict keys
    #: (``allkeys-*``) or run without persistence, a stream must not. Empty: ``redis_url``.
    events_redis_url: SecretStr = SecretStr("")
    data_dir: Path = DEFAULT_DATA_DIR

    #: Connections per process. Size it to the process's real concurrency against the
    #: database; replicas x pool size must stay below PostgreSQL's max_connections.
    db_pool_size: int = Field(default=20, ge=1)
    #: Extra connections above the pool size under bursts. Each is closed when returned,
    #: so a non-zero value opens and closes connections per request under steady load.
    db_max_overflow: int = Field(default=0, ge=0)
    #: Longest wait for a pooled connection (and for a new one to connect) before 503.
    #: Below the gateway's upstream timeout, so a saturated service answers 503 +
    #: Retry-After itself instead of the gateway timing out with a 504.
    db_pool_timeout_seconds: float = Field(default=2.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=1800, ge=-1)
    db_statement_timeout_ms: int = Field(default=5000, ge=0)
    #: Apply Alembic migrations on start. Default: only for the embedded SQLite mode;
    #: on PostgreSQL run `flotilla migrate` (a Helm hook / init step) instead.
    migrate_on_start: bool | None = None

    #: Off: every read goes to the database (lookups miss without a round trip, nothing
    #: is stored). For measuring the uncached path and for debugging suspected staleness.
    cache_enabled: bool = True
    cache_ttl_seconds: int = Field(default=300, ge=1)
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    #: Longest wait for the next chunk of a request body before 408 (slow clients).
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Request bodies above this are refused with 413: from Content-Length before anything
    #: is read, or as soon as a streamed body passes it. The gateway refuses them before
    #: proxying; every service enforces it on its own port too.
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)

    # Limits on the request head, enforced by the server protocol (services/kit/http_limits.py)
    # before the app sees anything; answered in the error shape, then the connection closes.
    #: Request line + headers, in bytes; above it 431. A bearer token is ~1 KiB.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)
    #: Header fields per request; above it 431.
    max_header_count: int = Field(default=100, ge=1)
    #: Longest time from connecting (or from the first byte of a following request on a
    #: kept-alive connection) to the end of the request head; then 408 and close. Bounds
    #: slowloris clients; generous enough for a load generator that opens thousands of
    #: connections before it sends on them (`loadtest connections`).
    header_read_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Open client connections per process. A new connection beyond it gets 503 + Retry-After
    #: and is closed at once, so a flood of idle connections cannot exhaust the process.
    #: Above the 10,000 keep-alive connections the gateway is benchmarked with.
    max_connections: int = Field(default=16_384, ge=1)

    #: Peers whose X-Forwarded-For/Forwarded headers name the client: IPs or CIDRs,
    #: comma-separated ("*": any). Empty (the default): none, the TCP peer is the client,
    #: and a client cannot choose its address by sending such a header. Set it on the
    #: gateway to the addresses of what stands in front of it (the ingress controller).
    trusted_proxies: str = ""
    #: Shared by the gateway and the services behind it (``services.kit.forwarding``): a
    #: request that carries it came through the gateway, so its client-address header is
    #: believed. Empty: that header is ignored and the TCP peer is the client.
    forwarding_token: SecretStr = SecretStr("")

    #: JWT verification: tokens must carry this issuer and audience.
    jwt_issuer: str = DEV_ISSUER
    jwt_audience: str = DEV_AUDIENCE
    #: Where to fetch signing keys (auth's JWKS). Refreshed on an unknown ``kid``.
    jwks_url: str = ""
    #: Or the keys themselves, as a JWKS JSON document (tests, air-gapped installs).
    jwt_public_jwks: str = ""

    #: FastAPI's native OpenTelemetry (traces, metrics, logs to the globally configured
    #: providers). Off by default: with no provider configured it exports nothing, yet
    #: checks the providers (environment lookups) on every request, ~2 % of the CPU.
    otel_enabled: bool = False

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    #: Seconds a dependency-down response asks clients to wait (Retry-After).
    retry_after_seconds: int = Field(default=5, ge=1)
    #: Readiness flips to 503 this long before shutdown proceeds (drain window).
    shutdown_drain_seconds: float = Field(default=0.0, ge=0)

    @classmethod
    def env_prefix(cls) -> str:
        return catalog.env_prefix(cls.service_name)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # pydantic-settings reads env_prefix from model_config: derive it per service.
        cls.model_config = SettingsConfigDict(
            **{**cls.model_config, "env_prefix": catalog.env_prefix(cls.service_name)}
        )

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and not raw.startswith(SUPPORTED_DATABASE_SCHEMES):
            scheme = raw.partition("://")[0] if "://" in raw else "no scheme"
            raise ValueError(f"unsupported database URL ({scheme}): use postgresql://user:password@host:port/name, "
                             "or leave it empty for the embedded SQLite default")
        return value

    @model_validator(mode="after")
    def _production_needs_servers(self) -> Self:
        owns_database = self.service_name not in {s.name for s in catalog.SERVICES if not s.has_database}
        if self.environment == "production" and owns_database and not self.database_url.get_secret_value():
            raise ValueError(f"{self.env_prefix()}DATABASE_URL is required in production")
        return self

    @property
    def stream_redis_url(self) -> str:
        """Where the event stream lives: ``events_redis_url``, else ``redis_url`` (empty: none)."""
        return self.events_redis_url.get_secret_value() or self.redis_url.get_secret_value()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sqlalchemy_url(self) -> str:
        """The URL handed to SQLAlchemy, with the async driver filled in."""
        raw = self.database_url.get_secret_value()
        if not raw:
            return f"sqlite+aiosqlite:///{(self.data_dir / f'{self.service_name}.db').as_posix()}"
        for plain in ("postgresql://", "postgres://"):
            if raw.startswith(plain):
                return "postgresql+asyncpg://" + raw[len(plain):]
        return raw

    @property
    def uses_postgres(self) -> bool:
        return self.sqlalchemy_url.startswith("postgresql")

    @property
    def should_migrate_on_start(self) -> bool:
        return (not self.uses_postgres) if self.migrate_on_start is None else self.migrate_on_start
