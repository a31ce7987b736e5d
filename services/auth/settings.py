"""Settings of the auth service (env prefix ``AUTH_``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from limits import parse_many
from pydantic import Field, SecretStr, field_validator

from services.kit.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    service_name: ClassVar[str] = "auth"

    #: Lifetime of an access JWT. Short, because an access token cannot be revoked.
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    #: Lifetime of a refresh token (each use rotates it, so this is the idle limit).
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=60)

    #: Private JWKS (``{"keys": [...]}``, EC P-256 or RSA, each with ``kid`` and ``d``),
    #: as a Kubernetes Secret supplies it. The first key signs; the others stay
    #: published so tokens they signed keep verifying during a rotation.
    #: Empty: keys are generated on first start and kept in auth's own database.
    #: Make one with ``python -c "from services.auth.key_material import new_key, private_jwks;
    #: print(private_jwks(new_key('ES256')))"``.
    signing_keys: SecretStr = SecretStr("")
    #: Algorithm of generated keys (ES256 signs and verifies faster than RS256).
    signing_algorithm: Literal["ES256", "RS256"] = "ES256"
    #: How often a replica re-reads the key table, to follow a rotation done elsewhere.
    signing_keys_refresh_seconds: float = Field(default=30.0, ge=0)
    #: Cache-Control max-age of /.well-known/jwks.json. Verifiers refetch on an unknown
    #: ``kid`` anyway, so this only bounds how long a retired key lingers in caches.
    jwks_max_age_seconds: int = Field(default=300, ge=0)

    # argon2id cost. Defaults: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane),
    # measured here at ~34 ms of CPU per hash. argon2-cffi's own default, RFC 9106's
    # "low memory" profile (64 MiB, 3 passes, 4 lanes), costs ~220 ms of CPU: a burst of
    # logins then queues for seconds and trips the gateway's upstream timeout. Raise
    # these where auth has cores to spare; old hashes are upgraded on the next login.
    password_hash_time_cost: int = Field(default=2, ge=1)
    password_hash_memory_kib: int = Field(default=19 * 1024, ge=8 * 1024)
    password_hash_parallelism: int = Field(default=1, ge=1)
    #: Hashes computed at once; each holds ``password_hash_memory_kib`` of RAM, so this
    #: caps memory as well as CPU under a burst of logins.
    password_hash_concurrency: int = Field(default=4, ge=1)
    #: Hashes that may wait for a slot; beyond that, 503 + Retry-After at once. Keep
    #: (concurrency + queue) x hash time below the gateway's upstream timeout.
    password_hash_queue: int = Field(default=32, ge=0)

    #: Login and registration budgets, in ``limits`` notation; several windows of one
    #: budget are separated by ";" ("5/minute;20/hour"). Failed logins are counted per
    #: account *and* client address (the tight budget: an attacker elsewhere never spends
    #: the owner's), and per account across all addresses (the slow budget against guessing
    #: from many addresses). A successful login clears both for that account. Keep the
    #: per-account budget above what one address may spend in its window, so one address
    #: meets its own limit first; once many addresses have spent it, the owner waits too
    #: (the trade-off OWASP accepts for throttling). Per client address: every login and
    #: registration attempt (each costs a password hash).
    login_limit_per_account_and_ip: str = "5/minute;20/hour"
    login_limit_per_account: str = "60/hour"
    login_limit_per_ip: str = "20/minute"

    @field_validator("login_limit_per_account_and_ip", "login_limit_per_account", "login_limit_per_ip")
    @classmethod
    def _parseable_limit(cls, value: str) -> str:
        parse_many(value)  # raises ValueError on anything but "<count>/<period>[;...]"
        return value
