"""Tables of the auth service: users, refresh tokens, and (embedded mode) signing keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.db import UTCDateTime, utcnow


class AuthBase(DeclarativeBase):
    pass


class User(AuthBase):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: Normalised (lower-case) on the way in, so a plain unique constraint is enough.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: argon2id encoded hash (parameters + salt + digest); never the password.
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RefreshToken(AuthBase):
    """One issued refresh token. Rotation chains tokens of one login into a family."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: SHA-256 of the token; the token itself is only ever known to the client.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: Set when the token is rotated, logged out, or its family is revoked.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The token that replaced this one on rotation (null when revoked otherwise).
    replaced_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)

    __table_args__ = (
        Index("ix_refresh_tokens_family", "family_id"),
        Index("ix_refresh_tokens_user", "user_id"),
    )


class SigningKey(AuthBase):
    """A generated signing key, for installs without ``AUTH_SIGNING_KEYS``.

    The private key sits in auth's own database so that restarts and replicas share
    it; clusters that want it in a Secret instead set ``AUTH_SIGNING_KEYS``.
    """

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_key_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Past this instant the key is neither used nor published. Set in the future on
    #: rotation, so tokens it signed stay verifiable until they expire.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
