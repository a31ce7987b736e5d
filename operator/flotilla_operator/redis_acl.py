"""Redis: one ACL user per ServiceSpec, confined to its key prefix.

What the services run against Redis, and so what the user may do: cache-aside
(GET/SET/DEL/EXPIRE, SCAN MATCH under the prefix), task events on a stream
(XADD/XREADGROUP/XACK/XAUTOCLAIM/XGROUP CREATE), the rate-limit library's Lua scripts
(EVAL/EVALSHA/SCRIPT LOAD), MULTI/EXEC pipelines and pub/sub on prefixed channels.
Everything administrative or global (KEYS, FLUSHALL/FLUSHDB, CONFIG, DEBUG, SHUTDOWN,
ACL, CLIENT KILL, SELECT/MOVE to escape into another logical DB, FUNCTION) is denied.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions

from flotilla_operator import naming
from flotilla_operator.errors import DependencyUnavailable
from flotilla_operator.postgres import Endpoint
from flotilla_operator.spec import RedisPart
from services.kit.events import EVENT_STREAM_PREFIX

#: Command rules, applied left to right after the user's keys and channels. Categories
#: first, then the denials (later rules win), then the few scripting commands by name
#: rather than +@scripting, which would include FUNCTION FLUSH and SCRIPT FLUSH.
COMMAND_RULES: Final = (
    "-@all",
    "+@read", "+@write", "+@stream", "+@keyspace", "+@connection", "+@transaction", "+@pubsub",
    "-@admin", "-@dangerous",
    "-select", "-move", "-copy",
    "+eval", "+evalsha", "+eval_ro", "+evalsha_ro", "+script|load", "+script|exists",
)


@dataclass
class RedisOutcome:
    password: str
    actions: list[str] = field(default_factory=list)
    #: A new password was issued and the user's previous one kept next to it.
    kept_previous: bool = False


class RedisAdmin:
    def __init__(self, admin_url: str, *, timeout: float, public: Endpoint) -> None:
        self._url = admin_url
        self._timeout = timeout
        parts = urlsplit(admin_url)
        self._server = Endpoint(parts.hostname or "127.0.0.1", parts.port or 6379)
        self.public = public
        self._client: aioredis.Redis | None = None
        #: The command rules as this server normalises them (see _canonical_commands).
        self._canonical: str | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                retry_on_timeout=False,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, *args: Any) -> Any:
        try:
            return await self._redis().execute_command(*args)  # type: ignore[no-untyped-call]
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise DependencyUnavailable(f"Redis at {self._server.host}:{self._server.port}: {exc}") from exc

    def redis_url(self, part: RedisPart, password: str) -> str:
        return (
            f"redis://{quote(part.username, safe='')}:{quote(password, safe='')}"
            f"@{self.public.host}:{self.public.port}/0"
        )

    @staticmethod
    def _key_patterns(part: RedisPart) -> list[str]:
        # Its own prefix, plus the shared event streams: tasks produces into them and
        # data consumes from them, so both need them beyond their own prefix.
        return [f"~{naming.check_key_prefix(part.key_prefix)}*", f"~{EVENT_STREAM_PREFIX}*"]

    @classmethod
    def _rules(cls, part: RedisPart, password: str, *, also: Sequence[str] = ()) -> list[str]:
        """Every rule of the user; ``also`` are password hashes kept next to ``password``."""
        prefix = naming.check_key_prefix(part.key_prefix)
        return ["reset", "on", f">{password}", *(f"#{h}" for h in also), *cls._key_patterns(part),
                "resetchannels", f"&{prefix}*", *COMMAND_RULES]

    async def _canonical_commands(self) -> str:
        """COMMAND_RULES as GETUSER reports them on this server, learnt once per process.

        Redis rewrites the rules into its own normal form, which differs across
        versions; applying them to a throwaway, disabled user tells us that form, so
        drift detection compares like with like.
        """
        if self._canonical is None:
            probe = f"flotilla-probe-{secrets.token_hex(6)}"
            try:
                await self._call("ACL", "SETUSER", probe, "reset", "off", *COMMAND_RULES)
                self._canonical = _text(_as_dict(await self._call("ACL", "GETUSER", probe))["commands"])
            finally:
                await self._call("ACL", "DELUSER", probe)
        return self._canonical

    async def _matches(self, part: RedisPart, password: str, *, grace: bool) -> tuple[bool, list[str]]:
        """Whether the user is exactly as specified, and the other password hashes it has.

        During a rotation's grace period one other password (the previous Secret's) is
        expected next to the current one; outside it, only the current one is.
        """
        current = await self._call("ACL", "GETUSER", part.username)
        if current is None:
            return False, []
        info = _as_dict(current)
        flags = {_text(flag) for flag in info.get("flags", [])}
        wanted = naming.redis_password_hash(password)
        hashes = [_text(p) for p in info.get("passwords", [])]
        others = [h for h in hashes if h != wanted][:1] if grace else []
        matches = (
            "on" in flags
            and sorted(hashes) == sorted([wanted, *others])
            and _text(info.get("keys", "")) == " ".join(self._key_patterns(part))
            and _text(info.get("channels", "")) == f"&{part.key_prefix}*"
            and _text(info.get("commands", "")) == await self._canonical_commands()
            and not info.get("selectors")
        )
        return matches, others

    async def ensure(self, part: RedisPart, *, password: str | None, grace: bool = False) -> RedisOutcome:
        """Make the ACL user exist with exactly our rules and the Secret's password.

        ``grace``: a rotation's grace period is running, so one previous password stays.
        """
        naming.check_key_prefix(part.key_prefix)
        others: list[str] = []
        if password is not None:
            matches, others = await self._matches(part, password, grace=grace)
            if matches:
                return RedisOutcome(password=password)
        info = await self._call("ACL", "GETUSER", part.username)
        outcome = RedisOutcome(password=password or naming.generate_password())
        if password is None and info is not None:
            # The Secret is gone but pods started from it may still run: their password
            # stays for a grace period next to the new one, as after a rotation.
            others = [_text(p) for p in _as_dict(info).get("passwords", [])][:1]
            outcome.kept_previous = bool(others)
        # One SETUSER starting with "reset" replaces everything atomically, so a user
        # changed by hand ends up exactly as specified, never as a merge of both.
        await self._call("ACL", "SETUSER", part.username, *self._rules(part, outcome.password, also=others))
        if info is None:
            outcome.actions.append(f"created Redis ACL user {part.username}")
        elif password is not None and not grace and len(_as_dict(info).get("passwords", [])) > 1:
            outcome.actions.append(f"removed the previous password of Redis ACL user {part.username}")
        else:
            outcome.actions.append(f"repaired Redis ACL user {part.username}")
        return outcome

    async def rotate(self, part: RedisPart, *, current: str, new_password: str) -> None:
        """Add ``new_password`` next to ``current``; any older one goes now.

        resetpass and both passwords in one SETUSER, so there is no moment in which
        neither the old nor the new Secret can log in.
        """
        await self._call("ACL", "SETUSER", part.username, "resetpass",
                         f"#{naming.redis_password_hash(current)}", f">{new_password}")

    async def delete(self, username: str) -> list[str]:
        # DELUSER also disconnects the user's clients: access ends now, not at reconnect.
        removed = await self._call("ACL", "DELUSER", username)
        return [f"deleted Redis ACL user {username}"] if removed else []

    async def user_exists(self, username: str) -> bool:
        return await self._call("ACL", "GETUSER", username) is not None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


def _as_dict(reply: Any) -> dict[str, Any]:
    """GETUSER is a map under RESP3 and a flat list under RESP2."""
    if isinstance(reply, dict):
        return {_text(k): v for k, v in reply.items()}
    return {_text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}
