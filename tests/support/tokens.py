"""Mint access tokens with a test-only key, the way the auth service signs them."""

from __future__ import annotations

import json
import time
import uuid
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from services.kit.settings import DEV_AUDIENCE, DEV_ISSUER

TEST_KID = "test-key-1"


@cache
def test_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_jwks(*keys: tuple[str, ec.EllipticCurvePrivateKey]) -> str:
    """JWKS JSON with the public halves of ``keys`` (default: the test key)."""
    pairs = keys or ((TEST_KID, test_private_key()),)
    out = []
    for kid, private in pairs:
        public = json.loads(ECAlgorithm.to_jwk(private.public_key()))
        out.append({**public, "kid": kid, "alg": "ES256", "use": "sig"})
    return json.dumps({"keys": out})


def mint(
    user_id: str | None = None,
    *,
    kid: str = TEST_KID,
    key: ec.EllipticCurvePrivateKey | None = None,
    ttl: int = 300,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"sub": user_id or uuid.uuid4().hex, "iss": issuer, "aud": audience, "iat": now, "exp": now + ttl,
               "typ": "access", **claims}
    return jwt.encode(payload, key or test_private_key(), algorithm="ES256", headers={"kid": kid})


def auth_header(user_id: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(user_id, **kwargs)}"}
