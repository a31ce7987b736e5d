"""PostgreSQL per ServiceSpec: a NOLOGIN owner role, the database it owns, two login roles.

The login roles (<role>_a, <role>_b) are members of the owner role and start every
session as it, so the Secret can move from one to the other on rotation while pods that
still hold the previous password keep logging in until the grace period ends.

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

_PRIVILEGES = "NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS INHERIT"
_ROLE_ATTRIBUTES = f"LOGIN {_PRIVILEGES}"
_NOLOGIN_ATTRIBUTES = f"NOLOGIN {_PRIVILEGES}"


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

    def database_url(self, part: DatabasePart, password: str, *, user: str | None = None) -> str:
        return (
            f"postgresql://{quote(user or part.role, safe='')}:{quote(password, safe='')}"
            f"@{self.public.host}:{self.public.port}/{quote(part.name, safe='')}"
        )

    async def ensure(self, part: DatabasePart, *, owner: str, active: str, password: str, fresh: bool,
                     keep: str | None = None) -> DatabaseOutcome:
        """Make owner role, both login roles and the database exist as specified.

        ``active`` is the login role the Secret names and ``password`` its password
        (``fresh`` when it was just generated, so it is set without checking first).
        ``keep`` is a role still inside its grace period after a switch: it keeps its
        LOGIN and password untouched. Every other login role gets NOLOGIN and no password.
        """
        role, db = naming.check_database_name(part.role), naming.check_database_name(part.name)
        logins = naming.login_roles(role)
        if active not in logins:
            raise ValueError(f"{active} is not a login role of {role}")
        comment = naming.quote_literal(naming.owner_comment(*owner.split("/", 1)))
        outcome = DatabaseOutcome(password=password)
        async with self._admin() as conn:
            # The owner role owns the database and everything in it and never logs in,
            # unless it is a pre-rotation install's login role still in its grace period.
            await self._ensure_role(conn, role, owner, comment, login=keep == role, member_of=None,
                                    outcome=outcome)
            for login in logins:
                await self._ensure_role(conn, login, owner, comment, login=login in (active, keep),
                                        member_of=role, outcome=outcome)

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

            if fresh:
                await self._set_password(conn, active, password)
                outcome.actions.append(f"issued a new password for role {active}")
            elif not await self.can_login(part, password, user=active):
                # Someone changed the password by hand (or dropped the role): the Secret
                # is what running pods use, so the role follows the Secret.
                await self._set_password(conn, active, password)
                outcome.actions.append(f"restored the Secret's password on role {active}")
        return outcome

    async def _ensure_role(self, conn: asyncpg.Connection, role: str, owner: str, comment: str, *, login: bool,
                           member_of: str | None, outcome: DatabaseOutcome) -> None:
        existing = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolinherit,"
            " rolconfig, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles WHERE rolname = $1",
            role,
        )
        if existing is None:
            await self._create_role(conn, role, comment)
            outcome.actions.append(f"created role {role}")
            can_login, config = False, None
        else:
            can_login, config = existing["rolcanlogin"], existing["rolconfig"]
            self._check_owner("role", role, existing["comment"], owner)
            attributes = ("rolsuper", "rolcreaterole", "rolcreatedb", "rolreplication", "rolbypassrls")
            if any(existing[k] for k in attributes) or not existing["rolinherit"]:
                await conn.execute(f"ALTER ROLE {naming.quote_ident(role)} {_PRIVILEGES}")
                outcome.actions.append(f"reset attributes of role {role}")
        if can_login and not login:
            # Sessions already open stay (PostgreSQL checks only at login); new logins end.
            await conn.execute(f"ALTER ROLE {naming.quote_ident(role)} NOLOGIN PASSWORD NULL")
            outcome.actions.append(f"disabled logins of role {role}")
        if member_of is None:
            return
        if not await conn.fetchval("SELECT pg_has_role($1, $2, 'USAGE')", role, member_of):
            await conn.execute(f"GRANT {naming.quote_ident(member_of)} TO {naming.quote_ident(role)}")
            outcome.actions.append(f"made role {role} a member of {member_of}")
        if f"role={member_of}" not in (config or []):
            # Each session starts as the owner role, so whatever either login role
            # creates belongs to the owner and stays usable after the next switch.
            await conn.execute(
                f"ALTER ROLE {naming.quote_ident(role)} SET role TO {naming.quote_literal(member_of)}"
            )
            outcome.actions.append(f"role {role} now acts as {member_of}")

    async def can_login(self, part: DatabasePart, password: str, *, user: str | None = None) -> bool:
        try:
            conn = await asyncpg.connect(
                host=self._server.host, port=self._server.port, user=user or part.role, password=password,
                database=part.name, timeout=self._timeout,
            )
        except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError):
            return False
        except _UNREACHABLE as exc:
            raise DependencyUnavailable(f"PostgreSQL at {self._server.host}:{self._server.port}: {exc}") from exc
        await conn.close(timeout=self._timeout)
        return True

    async def retire(self, part: DatabasePart, *, owner: str) -> list[str]:
        """Retain: keep the roles, database and data, but nobody can log in any more.

        The Secret goes with the ServiceSpec, so the passwords would be credentials
        nobody manages. Existing sessions are left alone; re-creating the ServiceSpec
        adopts the database again with a fresh password.
        """
        role = naming.check_database_name(part.role)
        actions = []
        async with self._admin() as conn:
            for name in (role, *naming.login_roles(role)):
                row = await conn.fetchrow(
                    "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') AS comment FROM pg_roles"
                    " WHERE rolname = $1", name,
                )
                if row is None or not self._is_ours(row["comment"], owner) or not row["rolcanlogin"]:
                    continue
                await conn.execute(f"ALTER ROLE {naming.quote_ident(name)} NOLOGIN PASSWORD NULL")
                actions.append(f"role {name} can no longer log in")
        return [f"retained database {part.name}", *actions] if actions else []

    async def drop(self, part: DatabasePart, *, owner: str) -> list[str]:
        """Delete: drop the database (terminating its sessions) and the roles, if ours."""
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
            for name in (*naming.login_roles(role), role):
                role_comment = await conn.fetchval(
                    "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", name
                )
                if role_comment is not None and self._is_ours(role_comment, owner):
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name
                    )
                    await conn.execute(f"DROP ROLE IF EXISTS {naming.quote_ident(name)}")
                    actions.append(f"dropped role {name}")
        return actions

    async def _create_role(self, conn: asyncpg.Connection, role: str, comment: str) -> None:
        # Created unable to log in: the one login role that needs a password gets it
        # (and LOGIN) from _set_password.
        try:
            await conn.execute(f"CREATE ROLE {naming.quote_ident(role)} {_NOLOGIN_ATTRIBUTES}")
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

