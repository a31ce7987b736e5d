"""Settings of the gateway (env prefix ``GATEWAY_``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from limits import parse_many
from pydantic import Field, create_model, field_validator, model_validator

from services.kit import catalog
from services.kit.settings import ServiceSettings


def _local_url(service: catalog.ServiceInfo) -> str:
    return f"http://127.0.0.1:{service.local_port}"


# Base URL of each backend (``GATEWAY_<NAME>_URL``, the ``<name>_url`` field): one field
# per catalog backend, made from the catalog, so a new service needs no edit here.
# Defaults are the `flotilla up` ports.
if TYPE_CHECKING:
    _UpstreamSettings = ServiceSettings
else:
    _UpstreamSettings = create_model(
        "_UpstreamSettings",
        __base__=ServiceSettings,
        **{f"{backend.name}_url": (str, _local_url(backend)) for backend in catalog.BACKENDS},
    )


class GatewaySettings(_UpstreamSettings):
    service_name: ClassVar[str] = "gateway"

    #: Whole-request timeout per upstream call, and its connect part (seconds).
    upstream_timeout_seconds: float = Field(default=5.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    #: Per-upstream override of the whole-request timeout, e.g. ``{"data": 2.0}`` (JSON in env).
    upstream_timeouts: dict[str, float] = Field(default_factory=dict)
    #: Pooled keep-alive connections per upstream. The upstream client (aiohttp) has no
    #: separate cap on idle connections: they count against ``upstream_max_connections``
    #: and expire after the expiry below; ``upstream_max_keepalive=0`` turns keep-alive off.
    upstream_max_connections: int = Field(default=200, ge=1)
    upstream_max_keepalive: int = Field(default=100, ge=0)
    #: Below uvicorn's keep-alive timeout (30 s in `flotilla serve`), so the gateway drops
    #: an idle connection before the upstream does and never writes into a closing socket.
    upstream_keepalive_expiry_seconds: float = Field(default=5.0, ge=0)

    #: Rate limits in `limits` notation; several separated by ";" ("20/second;600/minute").
    #: Per user (token subject) and per client IP. Empty disables that limit.
    rate_limit_per_user: str = "100/second"
    rate_limit_per_ip: str = "500/second"
    #: After Redis fails, rate limiting stays in process this long before Redis is tried again.
    rate_limit_redis_retry_seconds: float = Field(default=5.0, gt=0)

    #: Extra attempts for idempotent requests (GET/HEAD) after a connect error or 502/503/504.
    retry_attempts: int = Field(default=2, ge=0)
    #: Full-jitter exponential backoff between attempts: random in [0, min(max, base * 2^n)].
    retry_backoff_seconds: float = Field(default=0.05, ge=0)
    retry_backoff_max_seconds: float = Field(default=0.5, ge=0)

    #: Circuit breaker per upstream: consecutive failures to open it. An open breaker
    #: half-opens (lets a trial through) after breaker_first_recovery_seconds, a wait
    #: that doubles after each failed trial up to breaker_recovery_seconds and starts
    #: over once a trial succeeds.
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_first_recovery_seconds: float = Field(default=0.5, gt=0)
    breaker_recovery_seconds: float = Field(default=30.0, gt=0)

    #: After a merged OpenAPI document missed a service, fetch again at most this often.
    openapi_retry_seconds: float = Field(default=10.0, ge=0)

    @field_validator("rate_limit_per_user", "rate_limit_per_ip")
    @classmethod
    def _parseable_limit(cls, value: str) -> str:
        if value.strip():
            parse_many(value)  # raises ValueError on a typo, at start-up rather than per request
        return value

    @model_validator(mode="before")
    @classmethod
    def _jwks_from_auth(cls, data: Any) -> Any:
        # The gateway knows where auth lives, so it can find the signing keys by itself.
        if isinstance(data, dict) and not data.get("jwks_url") and not data.get("jwt_public_jwks"):
            auth_url = str(data.get("auth_url") or _local_url(catalog.AUTH)).rstrip("/")
            data = {**data, "jwks_url": f"{auth_url}/.well-known/jwks.json"}
        return data

    def upstream_url(self, name: str) -> str:
        value = getattr(self, f"{name}_url", None)
        if not isinstance(value, str):
            raise KeyError(f"GatewaySettings has no {name}_url field for backend {name!r}")
        return value.rstrip("/")

    def upstream_timeout(self, name: str) -> float:
        return self.upstream_timeouts.get(name, self.upstream_timeout_seconds)
