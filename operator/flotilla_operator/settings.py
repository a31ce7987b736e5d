"""Operator settings from the environment (prefix ``FLOTILLA_OPERATOR_``), validated at start.

The admin credentials come from the operator's own Secret through ``envFrom`` in the
Deployment; nothing here has a usable production default for them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flotilla_operator import dashboards, naming


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOTILLA_OPERATOR_", extra="ignore", frozen=True)

    #: Superuser-ish DSN (needs CREATEROLE and CREATEDB) of the shared PostgreSQL server.
    postgres_admin_dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    #: Host/port services use to reach PostgreSQL, when it differs from the admin DSN's
    #: (e.g. the operator goes through a different Service than the workloads).
    postgres_service_host: str | None = None
    postgres_service_port: int | None = None

    #: Redis URL of a user allowed to run ACL SETUSER/DELUSER/GETUSER.
    redis_admin_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_service_host: str | None = None
    redis_service_port: int | None = None
    #: A second Redis for task event streams (ServiceSpecs with redis.events=Dedicated),
    #: e.g. with AOF and noeviction while the cache Redis evicts. Empty: none offered.
    events_redis_admin_url: SecretStr = SecretStr("")
    events_redis_service_host: str | None = None
    events_redis_service_port: int | None = None

    #: How often the drift timer re-checks every ServiceSpec, in seconds.
    drift_interval_seconds: float = Field(default=60.0, gt=0)
    #: Seconds since the last change before the drift timer starts checking an object.
    drift_idle_seconds: float = Field(default=10.0, ge=0)
    #: After a credential rotation, how long the previous credentials keep working, in
    #: seconds: long enough for a rolling restart of every pod that reads the Secret.
    credential_grace_seconds: float = Field(default=3600.0, ge=0)
    #: Retry backoff for a dependency that is down: base * 2**retry, capped.
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    #: Timeout for one connection/command against PostgreSQL or Redis, in seconds.
    dependency_timeout_seconds: float = Field(default=5.0, gt=0)

    #: Labels on every ServiceMonitor and PrometheusRule the operator writes, so that the
    #: cluster's Prometheus selects them (JSON object in the environment).
    monitor_labels: dict[str, str] = Field(default_factory=lambda: dict(dashboards.DEFAULT_MONITOR_LABELS))
    #: Labels on every dashboard ConfigMap, so that the Grafana sidecar loads it.
    dashboard_labels: dict[str, str] = Field(default_factory=lambda: dict(dashboards.DEFAULT_DASHBOARD_LABELS))
    #: Annotation the Grafana sidecar reads the dashboard's folder from (empty: none).
    dashboard_folder_annotation: str = dashboards.DEFAULT_FOLDER_ANNOTATION
    #: Folder of dashboards whose ServiceSpec names none.
    dashboard_folder: str = dashboards.DEFAULT_FOLDER

    #: Port of the operator's own Prometheus metrics (0 disables the endpoint).
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = True

    @computed_field  # type: ignore[prop-decorator]
    @property
    def postgres_public_host(self) -> str:
        return self.postgres_service_host or urlsplit(self.postgres_admin_dsn.get_secret_value()).hostname or ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def postgres_public_port(self) -> int:
        return self.postgres_service_port or urlsplit(self.postgres_admin_dsn.get_secret_value()).port or 5432

    @computed_field  # type: ignore[prop-decorator]
    @property
    def redis_public_host(self) -> str:
        return self.redis_service_host or urlsplit(self.redis_admin_url.get_secret_value()).hostname or ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def redis_public_port(self) -> int:
        return self.redis_service_port or urlsplit(self.redis_admin_url.get_secret_value()).port or 6379

    @computed_field  # type: ignore[prop-decorator]
    @property
    def events_redis_public_host(self) -> str:
        return self.events_redis_service_host or urlsplit(self.events_redis_admin_url.get_secret_value()).hostname or ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def events_redis_public_port(self) -> int:
        return self.events_redis_service_port or urlsplit(self.events_redis_admin_url.get_secret_value()).port or 6379

    @model_validator(mode="after")
    def _events_redis_is_another_server(self) -> OperatorSettings:
        events, cache = (urlsplit(url.get_secret_value()) for url in (self.events_redis_admin_url,
                                                                      self.redis_admin_url))
        if events.hostname and (events.hostname, events.port, events.path) == (cache.hostname, cache.port, cache.path):
            raise ValueError("events_redis_admin_url names the cache Redis: leave it empty instead")
        return self

    @field_validator("monitor_labels", "dashboard_labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return naming.check_labels(labels)

    def monitoring(self) -> dashboards.Monitoring:
        return dashboards.Monitoring(
            monitor_labels=self.monitor_labels,
            dashboard_labels=self.dashboard_labels,
            folder_annotation=self.dashboard_folder_annotation,
            folder=self.dashboard_folder,
        )

    def backoff(self, retry: int) -> float:
        """Delay before the next attempt after ``retry`` failed ones (exponential, capped)."""
        return float(min(self.retry_max_seconds, self.retry_base_seconds * 2 ** min(retry, 16)))
