"""The Redis part: an ACL user limited to the key prefix (and, Dedicated, on the events Redis)."""

from __future__ import annotations

from dataclasses import dataclass

import kopf

from flotilla_operator import naming, status, workloads
from flotilla_operator import spec as spec_model
from flotilla_operator.errors import ProvisioningError
from flotilla_operator.parts.base import (
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
from flotilla_operator.spec import ServiceSpec


class RedisPart:
    name = "redis"
    label = "Redis"
    condition = "RedisReady"
    order = 20
    releases_on_delete = True
    rotates = True

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome:
        part = spec.redis
        secret_name = naming.redis_secret_name(spec.name)
        existing = await read_secret(ctx, spec.namespace, secret_name)
        data, annotations = existing or ({}, {})
        switched_at = annotations.get(SWITCHED_AT_ANNOTATION, "")
        grace = in_grace(ctx, switched_at)
        pending: list[str] = []
        if existing and switched_at and (grace or (body.status.get("redis") or {}).get("previousPasswordAccepted")):
            # As for the database: the previous password stays until the readers rolled.
            pending = (await workloads.roll(ctx.kube, spec.namespace, secret_name, workloads.version(data))).pending
            grace = grace or bool(pending)
        outcome = await ctx.redis.ensure(part, password=data.get("password"), grace=grace)
        password, actions = outcome.password, outcome.actions
        switched = outcome.kept_previous
        if outcome.kept_previous:
            switched_at, grace = status.now(), True

        wanted_token = body.metadata.annotations.get(ROTATE_ANNOTATION, "")
        applied_token = annotations.get(ROTATED_FOR_ANNOTATION, "") if existing else wanted_token
        if wanted_token != applied_token and data.get("password"):
            # Same scheme as the database, with one user: ACL users may have several
            # passwords, so the new one is added, the Secret switched, and the old one
            # removed by the first reconcile after the grace period.
            password, switched_at, grace, switched = naming.generate_password(), status.now(), True, True
            await ctx.redis.rotate(part, current=outcome.password, new_password=password)
            actions.append(f"added a new password to Redis ACL user {part.username} "
                           f"({ROTATE_ANNOTATION}={wanted_token}); the previous one keeps working for "
                           f"{ctx.settings.credential_grace_seconds:g}s")

        secret_annotations = {SWITCHED_AT_ANNOTATION: switched_at} if switched_at else {}
        if wanted_token:
            secret_annotations[ROTATED_FOR_ANNOTATION] = wanted_token
        new_data = {
            "REDIS_URL": ctx.redis.redis_url(part, password),
            "host": ctx.redis.public.host, "port": str(ctx.redis.public.port),
            "username": part.username, "password": password, "keyPrefix": part.key_prefix,
        }
        events_redis = await _events_redis(ctx, part, current=outcome.password, password=password, grace=grace)
        actions += events_redis.actions
        if events_redis.url is not None:
            new_data["EVENTS_REDIS_URL"] = events_redis.url
        written = await write_secret(ctx, body, spec, secret_name, new_data, secret_annotations,
                                     existed=existing is not None)
        if switched:
            rollout = await workloads.roll(ctx.kube, spec.namespace, secret_name, workloads.version(new_data))
            pending = rollout.pending
            actions += [f"restarted Deployment {name} for the new credentials" for name in rollout.restarted]
        fields = {"username": part.username, "keyPrefix": part.key_prefix, "secretName": secret_name,
                  "events": part.events, "switchedAt": switched_at or None, "previousPasswordAccepted": grace}
        return Outcome(
            reason="Provisioned",
            message=f"ACL user {part.username} limited to keys {part.key_prefix}*; credentials in Secret "
                    f"{secret_name}" + (" (the previous password is still accepted)" if grace else "")
                    + (f"; waiting for the rollout of Deployment {', '.join(pending)}" if pending else ""),
            actions=[*actions, *([written] if written else [])],
            fields=fields,
        )

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]:
        # The ACL user holds no data (keys stay where they are, whatever deletionPolicy
        # says), and without its Secret it is a credential nobody manages: always removed.
        if not deleting and not body.status.get("redis"):
            return []
        actions = await ctx.redis.delete(spec.redis.username)
        if ctx.events_redis is not None:
            actions += await ctx.events_redis.delete(spec.redis.username)
        if not deleting:
            actions += await delete_secret(ctx, spec, naming.redis_secret_name(spec.name))
        return actions


class EventsRedisMissing(ProvisioningError):
    reason = "EventsRedisNotConfigured"


@dataclass
class EventsRedis:
    url: str | None  # None: no EVENTS_REDIS_URL, the stream shares REDIS_URL
    actions: list[str]


async def _events_redis(ctx: Context, part: spec_model.RedisPart, *, current: str, password: str,
                        grace: bool) -> EventsRedis:
    """The same ACL user on the events Redis (Dedicated), or none there (Shared).

    Same name, rules and passwords as on the cache Redis, so one Secret and one rotation
    serve both: ``current`` is what the user had before this reconcile, ``password`` what
    the Secret names now (different right after a rotation).
    """
    events = ctx.events_redis
    if part.events == "Shared":
        # Switched back from Dedicated: the user there would be a credential nobody uses.
        removed = await events.delete(part.username) if events is not None else []
        return EventsRedis(None, [f"{a} on the events Redis" for a in removed])
    if events is None:
        raise EventsRedisMissing("spec.redis.events is Dedicated, but the operator has no events Redis "
                                 "(FLOTILLA_OPERATOR_EVENTS_REDIS_ADMIN_URL)")
    outcome = await events.ensure(part, password=current, grace=grace)
    if password != current:
        await events.rotate(part, current=current, new_password=password)
    return EventsRedis(events.redis_url(part, password), [f"{a} on the events Redis" for a in outcome.actions])


PART = RedisPart()
