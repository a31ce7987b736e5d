"""PostgreSQL: a login role and a database it owns, per ServiceSpec.

Every step reads before it writes, so running it twice changes nothing. Names reach SQL
only through naming.quote_ident / quote_literal (utility statements take no $n
parameters); values in queries go through asyncpg parameters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import asyncpg

from flotilla_operator import naming
from flotilla_operator.errors import DependencyUnavailable, OwnershipConflict, ProvisioningError
from flotilla_operator.spec import DatabasePart

#: What "the server is not there" looks like through asyncpg.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)

_ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS"


@dataclass
class DatabaseOutcome:
    password: str
    #: Human-readable actions taken, for Events; empty when nothing had to change.
    actions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


class PostgresAdmin:
    """Admin operations against the shared server, one short connection per call."""

    def __init__(self, admin_dsn: str, *, timeout: float, public: Endpoint) -> None:
        self._dsn = admin_dsn
        self._timeout = timeout
        parts = urlsplit(admin_dsn)
        self._server = Endpoint(parts.hostname or "127.0.0.1", parts.port or 5432)
        self.public = public

    @asynccontextmanager
    async def _admin(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._timeout, command_timeout=self._timeout * 6)
        except _UNREACHABLE as exc:
            raise DependencyUnavailable(f"PostgreSQL at {self._server.host}:{self._server.port}: {exc}") from exc
        try:
            yield conn
        except _UNREACHABLE as exc:
            raise DependencyUnavailable(f"PostgreSQL connection lost: {exc}") from exc
        except (asyncpg.UniqueViolationError, asyncpg.DuplicateDatabaseError, asyncpg.DuplicateObjectError,
                asyncpg.ObjectInUseError) as exc:
            # Someone else (another replica, a human) changed the same object meanwhile:
            # the next attempt reads the new state first.
            raise ProvisioningError(f"concurrent change in PostgreSQL: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise ProvisioningError(f"PostgreSQL refused: {exc}") from exc
        finally:
            await conn.close(timeout=self._timeout)

    def database_url(self, part: DatabasePart, password: str) -> str:
        return (
            f"postgresql://{quote(part.role, safe='')}:{quote(password, safe='')}"
            f"@{self.public.host}:{self.public.port}/{quote(part.name, safe='')}"
        )

    async def ensure(self, part: DatabasePart, *, owner: str, password: str | None) -> DatabaseOutcome:
        """Make role and database exist as specified; ``password`` is the one in the Secret.

        Returns the password the role now has (a new one when the Secret had none).
        """
        role, db = naming.check_database_name(part.role), naming.check_database_name(part.name)
        comment = naming.quote_literal(naming.owner_comment(*owner.split("/", 1)))
        outcome = DatabaseOutcome(password=password or naming.generate_password())
        async with self._admin() as conn:
            existing = await conn.fetchrow(
                "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,"
                " shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = $1",
                role,
            )
            if existing is None:
                await self._create_role(conn, role, outcome.password, comment)
                outcome.actions.append(f"created role {role}")
            else:
                self._check_owner("role", role, existing["comment"], owner)
                wanted = (False, False, False, True, False, False)
                if tuple(existing[k] for k in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolcanlogin",
                                               "rolreplication", "rolbypassrls")) != wanted:
                    await conn.execute(f"ALTER ROLE {naming.quote_ident(role)} {_ROLE_ATTRIBUTES}")
                    outcome.actions.append(f"reset attributes of role {role}")
                if password is None:
                    # The Secret is gone (deleted by hand, or the ServiceSpec was recreated
                    # after a Retain): the old password is unknowable, so issue a new one.
                    await self._set_password(conn, role, outcome.password)
                    outcome.actions.append(f"issued a new password for role {role}")

            database = await conn.fetchrow(
                "SELECT pg_get_userbyid(datdba) AS owner, shobj_description(oid, 'pg_database') AS comment,"
                " has_database_privilege('public', oid, 'CONNECT') AS public_connect"
                " FROM pg_database WHERE datname = $1",
                db,
            )
            if database is None:
                # CREATE DATABASE cannot run inside a transaction block; asyncpg's execute
                # without an explicit transaction is autocommit.
                await conn.execute(f"CREATE DATABASE {naming.quote_ident(db)} OWNER {naming.quote_ident(role)}")
                await conn.execute(f"COMMENT ON DATABASE {naming.quote_ident(db)} IS {comment}")
                await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {naming.quote_ident(db)} FROM PUBLIC")
                outcome.actions.append(f"created database {db}")
            else:
                self._check_owner("database", db, database["comment"], owner)
                if database["owner"] != role:
                    await conn.execute(f"ALTER DATABASE {naming.quote_ident(db)} OWNER TO {naming.quote_ident(role)}")
                    outcome.actions.append(f"gave database {db} back to role {role}")
                if database["public_connect"]:
                    await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {naming.quote_ident(db)} FROM PUBLIC")
                    outcome.actions.append(f"revoked CONNECT on {db} from PUBLIC")

            if existing is not None and password is not None and not await self.can_login(part, password):
                # Someone changed the password by hand: the Secret is what running pods
                # use, so the role follows the Secret, not the other way round.
                await self._set_password(conn, role, password)
                outcome.actions.append(f"restored the Secret's password on role {role}")
        return outcome

    async def can_login(self, part: DatabasePart, password: str) -> bool:
        try:
            conn = await asyncpg.connect(
                host=self._server.host, port=self._server.port, user=part.role, password=password,
                database=part.name, timeout=self._timeout,
            )
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
            return False
        except _UNREACHABLE as exc:
            raise DependencyUnavailable(f"PostgreSQL at {self._server.host}:{self._server.port}: {exc}") from exc
        await conn.close(timeout=self._timeout)
        return True

    async def rotate(self, part: DatabasePart, *, owner: str, new_password: str) -> None:
        role = naming.check_database_name(part.role)
        async with self._admin() as conn:
            comment = await conn.fetchval(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", role
            )
            self._check_owner("role", role, comment, owner)
            await self._set_password(conn, role, new_password)

    async def retire(self, part: DatabasePart, *, owner: str) -> list[str]:
        """Retain: keep role, database and data, but nobody can log in any more.

        The Secret goes with the ServiceSpec, so the password would be a credential
        nobody manages. Existing sessions are left alone; re-creating the ServiceSpec
        adopts the database again with a fresh password.
        """
        role = naming.check_database_name(part.role)
        async with self._admin() as conn:
            row = await conn.fetchrow(
                "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles"
                " WHERE rolname = $1", role,
            )
            if row is None or not self._is_ours(row["comment"], owner) or not row["rolcanlogin"]:
                return []
            await conn.execute(f"ALTER ROLE {naming.quote_ident(role)} NOLOGIN PASSWORD NULL")
            return [f"retained database {part.name}; role {role} can no longer log in"]

    async def drop(self, part: DatabasePart, *, owner: str) -> list[str]:
        """Delete: drop the database (terminating its sessions) and the role, if ours."""
        role, db = naming.check_database_name(part.role), naming.check_database_name(part.name)
        actions = []
        async with self._admin() as conn:
            db_comment = await conn.fetchval(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", db
            )
            if db_comment is not None and self._is_ours(db_comment, owner):
                # WITH (FORCE) terminates the sessions still connected (PostgreSQL 13+).
                await conn.execute(f"DROP DATABASE IF EXISTS {naming.quote_ident(db)} WITH (FORCE)")
                actions.append(f"dropped database {db}")
            role_comment = await conn.fetchval(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", role
            )
            if role_comment is not None and self._is_ours(role_comment, owner):
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
                )
                await conn.execute(f"DROP ROLE IF EXISTS {naming.quote_ident(role)}")
                actions.append(f"dropped role {role}")
        return actions

    async def _create_role(self, conn: asyncpg.Connection, role: str, password: str, comment: str) -> None:
        verifier = naming.quote_literal(naming.scram_sha256_verifier(password))
        try:
            await conn.execute(f"CREATE ROLE {naming.quote_ident(role)} {_ROLE_ATTRIBUTES} PASSWORD {verifier}")
        except asyncpg.DuplicateObjectError as exc:
            # Another reconcile (another ServiceSpec wanting the same name) won the race;
            # the next attempt sees the role and its owner comment.
            raise DependencyUnavailable(f"role {role} appeared concurrently; retrying") from exc
        await conn.execute(f"COMMENT ON ROLE {naming.quote_ident(role)} IS {comment}")

    @staticmethod
    async def _set_password(conn: asyncpg.Connection, role: str, password: str) -> None:
        verifier = naming.quote_literal(naming.scram_sha256_verifier(password))
        await conn.execute(f"ALTER ROLE {naming.quote_ident(role)} {_ROLE_ATTRIBUTES} PASSWORD {verifier}")

    @staticmethod
    def _is_ours(comment: str | None, owner: str) -> bool:
        return comment == naming.owner_comment(*owner.split("/", 1))

    def _check_owner(self, kind: str, name: str, comment: str | None, owner: str) -> None:
        if not self._is_ours(comment, owner):
            holder = (comment or "").removeprefix(naming.OWNER_COMMENT_PREFIX) or "nobody (not made by this operator)"
            raise OwnershipConflict(f"{kind} {name} already exists and belongs to {holder}")

