"""Signing key material: generate, identify (kid), serialise, parse, sign."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SUPPORTED_ALGORITHMS = frozenset({"ES256", "RS256"})


@dataclass(frozen=True, slots=True)
class LoadedKey:
    kid: str
    algorithm: str
    private_key: PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        fields = (ECAlgorithm.to_jwk(public, as_dict=True) if isinstance(public, ec.EllipticCurvePublicKey)
                  else RSAAlgorithm.to_jwk(public, as_dict=True))
        return {**fields, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid})


def generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported signing algorithm {algorithm!r}")


def thumbprint(private_key: PrivateKey) -> str:
    """RFC 7638 JWK thumbprint: a kid derived from the key itself, stable everywhere.

    Hand-rolled (PyJWT has no helper): the RFC's whole recipe is "hash the sorted
    required members as compact JSON", which is shorter than another dependency.
    """
    public = LoadedKey("", "", private_key).public_jwk()
    required = ("crv", "kty", "x", "y") if public["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({name: public[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


def to_pem(private_key: PrivateKey) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def from_pem(kid: str, algorithm: str, pem: str) -> LoadedKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"signing key {kid} is neither EC nor RSA")
    return LoadedKey(kid, algorithm, key)


def keys_from_private_jwks(document: str) -> list[LoadedKey]:
    """Parse ``AUTH_SIGNING_KEYS``; fail start-up loudly on anything unusable."""
    raw_keys = json.loads(document).get("keys") or []
    if not raw_keys:
        raise ValueError("AUTH_SIGNING_KEYS has no keys")
    keys = []
    for raw in raw_keys:
        kid = raw.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("every key in AUTH_SIGNING_KEYS needs a kid")
        parsed = jwt.PyJWK.from_dict(raw)
        if parsed.algorithm_name not in SUPPORTED_ALGORITHMS:
            raise ValueError(f"key {kid}: algorithm {parsed.algorithm_name} not supported")
        if not isinstance(parsed.key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"key {kid} is not a private key (missing 'd')")
        keys.append(LoadedKey(kid, parsed.algorithm_name, parsed.key))
    return keys


def private_jwks(*keys: LoadedKey) -> str:
    """A private JWKS document, the format of ``AUTH_SIGNING_KEYS``."""
    out = []
    for key in keys:
        private = key.private_key
        fields = (ECAlgorithm.to_jwk(private, as_dict=True) if isinstance(private, ec.EllipticCurvePrivateKey)
                  else RSAAlgorithm.to_jwk(private, as_dict=True))
        out.append({**fields, "kid": key.kid, "alg": key.algorithm})
    return json.dumps({"keys": out})


def new_key(algorithm: str) -> LoadedKey:
    private_key = generate_private_key(algorithm)
    return LoadedKey(thumbprint(private_key), algorithm, private_key)
