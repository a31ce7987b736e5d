"""Access tokens (JWTs signed by the key ring) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

from services.auth.key_material import LoadedKey
from services.auth.models import User
from services.auth.settings import AuthSettings
from services.kit.security import CREATED_AT_CLAIM


def access_token(*, user: User, key: LoadedKey, settings: AuthSettings) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "email": user.email,
        # The account's registration time, so users can date a profile it creates on first
        # use by the registration rather than by that first use (ISO 8601, exact to the
        # microsecond, unlike a NumericDate).
        CREATED_AT_CLAIM: user.created_at.isoformat(),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    return key.sign(claims)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    # A plain SHA-256 is enough here (unlike passwords): the token carries 256 bits of
    # randomness, so there is nothing to brute-force, and a fast hash lets every
    # refresh look the row up by an indexed equality match.
    return hashlib.sha256(token.encode()).hexdigest()
