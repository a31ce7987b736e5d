"""Bearer-JWT verification: issuer, audience, expiry, and the signing key by ``kid``.

Keys come from auth's JWKS (fetched lazily, refreshed when a token names a ``kid`` we
have not seen, at most once per ``refresh_interval``, and at least every
``max_age`` seconds) or from a configured JWKS document. A fetched JWKS *replaces* the
fetched set, so a key auth retires stops being trusted within ``max_age`` (plus the
verified-token cache's minute), not at the next restart; auth keeps a rotated-out key
in its JWKS for the grace period its tokens need.

Only asymmetric algorithms are accepted, and the algorithm must be the one the key was
published for, which rules out ``alg=none`` and HS256-with-public-key.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import structlog
from cachetools import TTLCache

from services.kit.errors import DependencyUnavailable, Unauthorized

log = structlog.get_logger("flotilla.security")

ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA", "PS256"})
LEEWAY_SECONDS = 10
#: Verified tokens are remembered this long (bounded by their own expiry): a client
#: sends the same token on every request, and an ES256 check is the largest CPU cost
#: of a cached read. The price: a key withdrawn from the JWKS stops working up to
#: this much later.
VERIFIED_CACHE_SECONDS = 60
VERIFIED_CACHE_SIZE = 20_000


#: Access-token claim: when the account was registered (ISO 8601 with its UTC offset).
CREATED_AT_CLAIM = "created_at"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    claims: dict[str, Any]

    def account_created_at(self) -> datetime | None:
        """The account's registration time from the token, if it carries a sound one
        (tokens issued before the claim existed do not)."""
        value = self.claims.get(CREATED_AT_CLAIM)
        if not isinstance(value, str) or len(value) > 64:
            return None
        try:
            created = datetime.fromisoformat(value)
        except ValueError:
            return None
        if created.tzinfo is None or created > datetime.now(UTC) + timedelta(seconds=LEEWAY_SECONDS):
            return None
        return created.astimezone(UTC)


class TokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_json: str = "",
        jwks_url: str = "",
        http: httpx.AsyncClient | None = None,
        refresh_interval: float = 10.0,
        max_age: float = 300.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.http = http
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        #: Configured keys (JWT_PUBLIC_JWKS) stay; fetched ones are replaced on each fetch.
        self._static_keys: dict[str, jwt.PyJWK] = {}
        self._fetched_keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self._verified: TTLCache[str, Principal] = TTLCache(maxsize=VERIFIED_CACHE_SIZE, ttl=VERIFIED_CACHE_SECONDS)
        if jwks_json:
            self._static_keys = self._parse(json.loads(jwks_json))

    @staticmethod
    def _parse(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
        keys: dict[str, jwt.PyJWK] = {}
        for raw in jwks.get("keys", []):
            try:
                key = jwt.PyJWK.from_dict(raw)
            except jwt.PyJWTError:
                log.warning("jwks_key_skipped", kid=raw.get("kid"))
                continue
            if key.key_id and key.algorithm_name in ALLOWED_ALGORITHMS:
                keys[key.key_id] = key
        return keys

    def _known(self, kid: str) -> jwt.PyJWK | None:
        return self._fetched_keys.get(kid) or self._static_keys.get(kid)

    async def _refresh(self) -> None:
        if not self.jwks_url or self.http is None:
            return
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.refresh_interval:
                return
            self._fetched_at = time.monotonic()
            try:
                response = await self.http.get(self.jwks_url, timeout=3.0)
                response.raise_for_status()
                fetched = self._parse(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                # Keep trusting what was fetched last: auth being briefly unreachable must
                # not turn every request with a known key into a 503.
                log.warning("jwks_fetch_failed", error_type=type(exc).__name__)
                if not (self._fetched_keys or self._static_keys):
                    raise DependencyUnavailable("auth", message="signing keys are unavailable; retry later") from exc
                return
            removed = set(self._fetched_keys) - set(fetched)
            if removed:
                log.info("jwks_keys_retired", kids=sorted(removed))
            self._fetched_keys = fetched

    async def _key_for(self, kid: str) -> jwt.PyJWK:
        key = self._known(kid)
        if key is None or time.monotonic() - self._fetched_at > self.max_age:
            await self._refresh()
            key = self._known(kid)
        if key is None:
            raise Unauthorized("token signed with an unknown key")
        return key

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None and known.claims["exp"] + LEEWAY_SECONDS > time.time():
            return known
        principal = await self._verify(token)
        self._verified[token] = principal
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGORITHMS or not isinstance(kid, str):
            raise Unauthorized("token algorithm or key id not accepted")
        key = await self._key_for(kid)
        if key.algorithm_name != alg:
            raise Unauthorized("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        if claims.get("typ", "access") != "access":
            raise Unauthorized("not an access token")
        return Principal(user_id=str(claims["sub"]), claims=claims)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'")
    return token.strip()
