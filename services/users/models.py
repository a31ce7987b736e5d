"""Tables of the users service: one profile per user id (the token's ``sub``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.kit.db import UTCDateTime, utcnow


class UsersBase(DeclarativeBase):
    pass


class Profile(UsersBase):
    __tablename__ = "profiles"

    #: The user id auth issued (the access token's ``sub``); auth owns the account.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Copied from the token that created the profile, for display; auth's is authoritative.
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    bio: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
