"""The database part: a PostgreSQL database, its owner role and two login roles."""

from __future__ import annotations

import kopf

from flotilla_operator import naming, status, workloads
from flotilla_operator.parts.base import (
    PREVIOUS_USER_ANNOTATION,
    ROTATE_ANNOTATION,
    ROTATED_FOR_ANNOTATION,
    SWITCHED_AT_ANNOTATION,
    Context,
    Outcome,
    delete_secret,
    in_grace,
    read_secret,
    write_secret,
)
from flotilla_operator.spec import InvalidSpec, ServiceSpec


class DatabasePart:
    name = "database"
    label = "database"
    condition = "DatabaseReady"
    order = 10
    releases_on_delete = True
    rotates = True

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome:
        part = spec.database
        provisioned = body.status.get("database") or {}
        if provisioned.get("name") and provisioned["name"] != part.name:
            raise InvalidSpec(f"database.name is immutable: provisioned as {provisioned['name']}, "
                              f"spec says {part.name}")
        secret_name = naming.database_secret_name(spec.name)
        existing = await read_secret(ctx, spec.namespace, secret_name)
        data, annotations = existing or ({}, {})
        logins = naming.login_roles(part.role)
        user, password = data.get("user", ""), data.get("password", "")
        # The Secret records each switch next to the credentials it hands out, so what
        # pods may still use is known even if a status update got lost.
        switched_at = annotations.get(SWITCHED_AT_ANNOTATION, "")
        previous: str | None = annotations.get(PREVIOUS_USER_ANNOTATION) or None
        wanted_token = body.metadata.annotations.get(ROTATE_ANNOTATION, "")
        applied_token = annotations.get(ROTATED_FOR_ANNOTATION, "") if existing else wanted_token

        switch_from: str | None = None
        why = ""
        if user in logins and password:
            if wanted_token != applied_token:
                switch_from, why = user, f"rotation ({ROTATE_ANNOTATION}={wanted_token})"
        elif user == part.role and password:
            # An install from before the two login roles: its role becomes the owner
            # role and keeps logging in with the Secret's password for the grace period.
            switch_from, why = user, "moved to two login roles"
        else:
            # No usable Secret (first reconcile, deleted by hand, re-adopted after a
            # Retain): pods that are still running may use the role status names.
            active = provisioned.get("activeUser")
            switch_from, why = (active if active in logins else None), "no credentials in the Secret"
        fresh = bool(switch_from) or not (user in logins and password)
        if fresh:
            user = logins[1] if switch_from == logins[0] else logins[0]
            password = naming.generate_password()
            previous, switched_at = switch_from, status.now()
        # The previous role keeps logging in for the grace period and, beyond it, until
        # every Deployment reading the Secret has rolled (checked while it is still kept).
        pending: list[str] = []
        still_kept = bool(previous) and (in_grace(ctx, switched_at) or provisioned.get("previousUser") == previous)
        if still_kept and not fresh:
            pending = (await workloads.roll(ctx.kube, spec.namespace, secret_name, workloads.version(data))).pending
        keep = previous if previous and (fresh or in_grace(ctx, switched_at) or pending) else None

        # Rotation: the fresh password goes on the idle login role, then the Secret
        # names that role. The previous role keeps its password for
        # credential_grace_seconds, so pods that have not restarted yet still log in;
        # once the grace period is over a reconcile (the drift timer) disables it.
        outcome = await ctx.postgres.ensure(part, owner=spec.owner, active=user, password=password, fresh=fresh,
                                            keep=keep)
        actions = outcome.actions
        if switch_from:
            actions.append(f"switched the Secret from role {switch_from} to {user} ({why}); {switch_from} keeps "
                           f"working for {ctx.settings.credential_grace_seconds:g}s")

        secret_annotations = {SWITCHED_AT_ANNOTATION: switched_at} if switched_at else {}
        if previous:
            secret_annotations[PREVIOUS_USER_ANNOTATION] = previous
        if wanted_token:
            secret_annotations[ROTATED_FOR_ANNOTATION] = wanted_token
        host, port = ctx.postgres.public.host, ctx.postgres.public.port
        new_data = {
            "DATABASE_URL": ctx.postgres.database_url(part, password, user=user),
            "host": host, "port": str(port), "user": user, "password": password, "dbname": part.name,
        }
        written = await write_secret(ctx, body, spec, secret_name, new_data, secret_annotations,
                                     existed=existing is not None)
        if written:
            actions.append(written)
        if fresh and keep:
            rollout = await workloads.roll(ctx.kube, spec.namespace, secret_name, workloads.version(new_data))
            pending = rollout.pending
            actions += [f"restarted Deployment {name} for the new credentials" for name in rollout.restarted]
        # None, not absent: the status is merge-patched, so only null removes the key.
        fields = {"name": part.name, "secretName": secret_name, "activeUser": user,
                  "switchedAt": switched_at or None, "previousUser": keep}
        return Outcome(
            reason="Provisioned",
            message=f"database {part.name} owned by role {part.role}; logins as {user} with the credentials "
                    f"in Secret {secret_name}" + (f" ({keep} still accepted after the switch)" if keep else "")
                    + (f"; waiting for the rollout of Deployment {', '.join(pending)}" if pending else ""),
            actions=actions,
            fields=fields,
        )

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]:
        provisioned = body.status.get("database") or {}
        if not provisioned and not deleting:
            return []
        part = spec.database
        if provisioned.get("name") and provisioned["name"] != part.name:
            part = type(part)(enabled=False, name=provisioned["name"], deletion_policy=part.deletion_policy)
        if part.deletion_policy == "Delete":
            actions = await ctx.postgres.drop(part, owner=spec.owner)
        else:
            actions = await ctx.postgres.retire(part, owner=spec.owner)
        if not deleting:
            actions += await delete_secret(ctx, spec, naming.database_secret_name(spec.name))
        return actions


PART = DatabasePart()
