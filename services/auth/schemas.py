"""Request and response models of the auth service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from services.kit.validators import reject_nul

MIN_PASSWORD_LENGTH = 12
#: Bounds the work a single request can ask of argon2 (it hashes every byte once).
MAX_PASSWORD_LENGTH = 1024


def _normalise_email(value: str) -> str:
    # email-validator gives the canonical form (IDNA domain, NFC); lower-casing the
    # whole address makes "Alice@X" and "alice@x" one account, as users expect.
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(_normalise_email)]
NewPassword = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH), AfterValidator(reject_nul)
]
#: Login accepts any stored password length, so raising the policy never locks anyone out.
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH), AfterValidator(reject_nul)]
OpaqueToken = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Registration(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "alice@example.com", "password": "correct horse battery staple"}]},
    )

    email: Email
    password: NewPassword


class Credentials(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "alice@example.com", "password": "correct horse battery staple"}]},
    )

    email: Email
    password: Password


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"refresh_token": "q3J8vXk2c0F1mZ9yRt4LwA7sH5dN6bPe"}]}
    )

    refresh_token: OpaqueToken


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [
        {"id": "0b6e3a52-8c1f-4d7e-9a3b-2f5c6d7e8f90", "email": "alice@example.com",
         "created_at": "2026-01-15T09:30:00Z"}]})

    id: uuid.UUID
    email: str
    created_at: datetime


class TokenPair(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "access_token": "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIwYjZlIn0.c2lnbmF0dXJl",
        "refresh_token": "q3J8vXk2c0F1mZ9yRt4LwA7sH5dN6bPe", "token_type": "bearer", "expires_in": 900,
    }]})

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth 2 token type)
    #: Seconds until the access token expires.
    expires_in: int
