"""kopf handlers: one per concern, each idempotent, registered into a given registry.

``register(registry, context)`` wires everything; ``python -m flotilla_operator`` builds a
fresh registry per run (so tests can run operators with other settings side by side) and
``kopf run -m flotilla_operator.kopfrun`` uses kopf's default one.

Per part (database, redis, dashboards) there is one reconcile function, run on create,
on resume (operator start), on any spec change and by the drift timer; it makes the
part match the spec — provisioned if enabled, removed if disabled — and records the
part's condition. Delete handlers (hence kopf's finalizer) release what lives outside
Kubernetes; the Secrets and ConfigMaps go with the ServiceSpec via owner references.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import kopf
import structlog

from flotilla_operator import crd, dashboards, naming, status, workloads
from flotilla_operator import spec as spec_model
from flotilla_operator.errors import DependencyUnavailable, OwnershipConflict, ProvisioningError
from flotilla_operator.kube import Kube, KubeForbidden, object_path
from flotilla_operator.metrics import OperatorMetrics
from flotilla_operator.postgres import PostgresAdmin
from flotilla_operator.redis_acl import RedisAdmin
from flotilla_operator.settings import OperatorSettings
from flotilla_operator.spec import InvalidSpec, ServiceSpec, parse

#: Set this annotation to a new value (any token, e.g. a date) to rotate the database and
#: Redis passwords.
ROTATE_ANNOTATION: Final = "flotilla.dev/rotate-password"
#: On the Secrets: the rotation token their password was issued for.
ROTATED_FOR_ANNOTATION: Final = "flotilla.dev/rotated-for"
#: On the Secrets: when the credentials in them were issued; the previous ones work
#: until credential_grace_seconds later.
SWITCHED_AT_ANNOTATION: Final = "flotilla.dev/switched-at"
#: On the database Secret: the login role it named before the last switch.
PREVIOUS_USER_ANNOTATION: Final = "flotilla.dev/previous-user"
FINALIZER: Final = "flotilla.dev/finalizer"
MONITORING_API: Final = "monitoring.coreos.com/v1"

log = structlog.get_logger("flotilla_operator")


@dataclass
class Context:
    """Everything the handlers share; built once per operator run."""

    settings: OperatorSettings
    postgres: PostgresAdmin
    redis: RedisAdmin
    kube: Kube = field(default_factory=Kube)
    #: The separate Redis for event streams (redis.events=Dedicated); None: not offered.
    events_redis: RedisAdmin | None = None
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a part's reconcile did: for the condition, the Events and status fields."""

    reason: str
    message: str
    actions: list[str] = field(default_factory=list)
    fields: dict[str, Any] | None = None
    ready: bool = True


class Part(Protocol):
    name: str

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome: ...

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]: ...


# --- Secrets -------------------------------------------------------------------------

async def read_secret(ctx: Context, namespace: str, name: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(decoded data, annotations) of a Secret, or None if it does not exist."""
    secret = await ctx.kube.get(object_path("v1", "secrets", namespace, name))
    if secret is None:
        return None
    data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    return data, dict(secret.get("metadata", {}).get("annotations") or {})


async def write_secret(ctx: Context, body: kopf.Body, spec: ServiceSpec, name: str, data: Mapping[str, str],
                       annotations: Mapping[str, str] | None = None, *, existed: bool) -> str:
    """Write the Secret; ``existed``: ``data`` was derived from the Secret as read, which
    must then still be there (else the next reconcile starts over from its absence)."""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": dashboards.common_labels(spec),
            "annotations": dict(annotations or {}),
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }
    kopf.adopt(obj, owner=body)
    applied = await ctx.kube.apply(obj, "secrets", must_exist=existed)  # Vanished: the next run starts over
    return "" if applied == "unchanged" else f"{applied} Secret {name}"


# --- Parts -----------------------------------------------------------------------------

def in_grace(ctx: Context, switched_at: str | None) -> bool:
    """Whether credentials replaced at ``switched_at`` must still work."""
    if not switched_at:
        return False
    try:
        elapsed = status.seconds_since(switched_at)
    except ValueError:
        return False  # hand-edited annotation: no grace rather than an endless one
    return elapsed < ctx.settings.credential_grace_seconds


class DatabasePart:
    name = "database"

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
            actions += await _delete_secret(ctx, spec, naming.database_secret_name(spec.name))
        return actions


async def _delete_secret(ctx: Context, spec: ServiceSpec, name: str) -> list[str]:
    """Remove a part's Secret when the part is disabled (on deletion, owner references do it)."""
    if await ctx.kube.delete(object_path("v1", "secrets", spec.namespace, name)):
        return [f"deleted Secret {name}"]
    return []


class RedisPart:
    name = "redis"

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
            actions += await _delete_secret(ctx, spec, naming.redis_secret_name(spec.name))
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


class DashboardsPart:
    name = "dashboards"

    async def ensure(self, ctx: Context, spec: ServiceSpec, body: kopf.Body) -> Outcome:
        monitoring = ctx.settings.monitoring()
        configmap = dashboards.dashboard_configmap(spec, monitoring)
        kopf.adopt(configmap, owner=body)
        actions = []
        if (applied := await ctx.kube.apply(configmap, "configmaps")) != "unchanged":
            actions.append(f"{applied} dashboard ConfigMap {configmap['metadata']['name']}")
        fields: dict[str, Any] = {"configMapName": configmap["metadata"]["name"]}
        if not await ctx.kube.serves(MONITORING_API, {"servicemonitors", "prometheusrules"}):
            return Outcome(
                reason="MonitoringCRDsMissing",
                message=(f"dashboard ConfigMap {fields['configMapName']} is in place, but the API does not serve "
                         f"{MONITORING_API} servicemonitors/prometheusrules (install the Prometheus Operator "
                         "CRDs, or set spec.dashboards.enabled=false); re-checked by the drift timer"),
                actions=actions, fields=fields, ready=False,
            )
        for obj, plural in ((dashboards.service_monitor(spec, monitoring), "servicemonitors"),
                            (dashboards.prometheus_rule(spec, monitoring), "prometheusrules")):
            kopf.adopt(obj, owner=body)
            if (applied := await ctx.kube.apply(obj, plural)) != "unchanged":
                actions.append(f"{applied} {obj['kind']} {obj['metadata']['name']}")
        fields |= {"serviceMonitorName": spec.name, "prometheusRuleName": naming.prometheus_rule_name(spec.name)}
        return Outcome(
            reason="Provisioned",
            message=f"dashboard, ServiceMonitor and SLO rules ({spec.dashboards.availability:g}% available, "
                    f"P95 < {spec.dashboards.latency_p95_ms}ms)",
            actions=actions, fields=fields,
        )

    async def remove(self, ctx: Context, spec: ServiceSpec, body: kopf.Body, *, deleting: bool) -> list[str]:
        if deleting or not body.status.get("dashboards"):
            return []  # owner references take the children with the ServiceSpec
        actions = []
        targets = [("v1", "configmaps", naming.dashboard_configmap_name(spec.name))]
        if await ctx.kube.serves(MONITORING_API, {"servicemonitors", "prometheusrules"}):
            targets += [(MONITORING_API, "servicemonitors", spec.name),
                        (MONITORING_API, "prometheusrules", naming.prometheus_rule_name(spec.name))]
        for api_version, plural, name in targets:
            if await ctx.kube.delete(object_path(api_version, plural, spec.namespace, name)):
                actions.append(f"deleted {plural} {name}")
        return actions


PARTS: Final[tuple[Part, ...]] = (DatabasePart(), RedisPart(), DashboardsPart())


# --- Status ------------------------------------------------------------------------------

def record(body: kopf.Body, patch: kopf.Patch, part: str, *, ready: bool | None, reason: str, message: str,
           fields: dict[str, Any] | bool | None = False) -> None:
    """Write ``part``'s condition (and its status fields) into the patch, then Ready/phase.

    Handlers of one kopf cycle share ``patch``, so conditions already in it win over the
    (older) ones in ``body``. ``fields=None`` removes the part's status block.
    """
    generation = body.metadata.get("generation")
    conditions = patch.status.get("conditions") or body.status.get("conditions") or []
    state: status.ConditionStatus = "Unknown" if ready is None else "True" if ready else "False"
    conditions = status.set_condition(conditions, type_=status.PART_CONDITIONS[part], status=state,
                                      reason=reason, message=message, generation=generation)
    conditions, phase = status.summarize(conditions, generation)
    patch.status["conditions"] = conditions
    patch.status["phase"] = phase
    observed = status.observed_generation(conditions)
    if observed is not None:
        patch.status["observedGeneration"] = observed
    if fields is not False:
        patch.status[part] = fields


async def reconcile(ctx: Context, part: Part, *, trigger: str, body: kopf.Body, patch: kopf.Patch,
                    retry: int, logger: kopf.Logger | logging.Logger) -> None:
    """Make one part match the spec; record its condition; raise kopf's retry errors."""
    # The drift timer and the change handlers may fire together for one object; one
    # reconcile per object at a time keeps them from racing each other's CREATEs.
    lock = ctx.locks.setdefault(str(body.metadata.uid or body.metadata.name), asyncio.Lock())
    async with lock:
        await _reconcile(ctx, part, trigger=trigger, body=body, patch=patch, retry=retry)


async def _reconcile(ctx: Context, part: Part, *, trigger: str, body: kopf.Body, patch: kopf.Patch,
                     retry: int) -> None:
    with ctx.metrics.reconcile(part.name, trigger):
        try:
            spec = parse(body)
            enabled = getattr(spec, part.name).enabled
            if enabled:
                outcome = await part.ensure(ctx, spec, body)
            else:
                actions = await part.remove(ctx, spec, body, deleting=False)
                outcome = Outcome("Disabled", f"spec.{part.name}.enabled is false", actions, fields=None)
        except InvalidSpec as exc:
            fail(ctx, body, patch, part.name, "InvalidSpec", str(exc), trigger)
            raise kopf.PermanentError(f"{part.name}: {exc}") from exc
        except (OwnershipConflict, KubeForbidden) as exc:
            fail(ctx, body, patch, part.name, exc.reason, str(exc), trigger)
            raise kopf.PermanentError(f"{part.name}: {exc}") from exc
        except ProvisioningError as exc:
            fail(ctx, body, patch, part.name, exc.reason, str(exc), trigger)
            delay = ctx.settings.backoff(retry)
            raise kopf.TemporaryError(f"{part.name}: {exc}; retrying in {delay:g}s", delay=delay) from exc
    record(body, patch, part.name, ready=outcome.ready, reason=outcome.reason, message=outcome.message,
           fields=outcome.fields)
    if outcome.actions:
        kopf.info(body, reason=f"{part.name.capitalize()}Reconciled", message="; ".join(outcome.actions))
        log.info("reconciled", object=f"{body.metadata.namespace}/{body.metadata.name}", part=part.name,
                 trigger=trigger, actions=outcome.actions)


def fail(ctx: Context, body: kopf.Body, patch: kopf.Patch, part: str, reason: str, message: str,
         trigger: str) -> None:
    ctx.metrics.failed(part, reason)
    previous: Mapping[str, Any] = next((c for c in body.status.get("conditions") or []
                     if c.get("type") == status.PART_CONDITIONS[part]), {})
    record(body, patch, part, ready=False, reason=reason, message=message)
    # One Event per change of reason, not one per retry: retries are in the logs.
    if previous.get("reason") != reason or previous.get("status") != "False":
        kopf.warn(body, reason=reason, message=f"{part}: {message}")
    log.warning("reconcile failed", object=f"{body.metadata.namespace}/{body.metadata.name}", part=part,
                trigger=trigger, reason=reason, error=message)


async def release(ctx: Context, part: Part, *, body: kopf.Body, retry: int) -> None:
    """On ServiceSpec deletion: release what lives outside Kubernetes, per deletionPolicy."""
    lock = ctx.locks.setdefault(str(body.metadata.uid or body.metadata.name), asyncio.Lock())
    async with lock:
        await _release(ctx, part, body=body, retry=retry)
    if part.name == PARTS[1].name:  # the last delete handler: forget the object's lock
        ctx.locks.pop(str(body.metadata.uid or body.metadata.name), None)


async def _release(ctx: Context, part: Part, *, body: kopf.Body, retry: int) -> None:
    with ctx.metrics.reconcile(part.name, "delete"):
        try:
            spec = parse(body)
        except InvalidSpec:
            return  # never provisioned anything: names were rejected before any SQL/ACL
        if not getattr(spec, part.name).enabled:
            return
        try:
            actions = await part.remove(ctx, spec, body, deleting=True)
        except ProvisioningError as exc:
            ctx.metrics.failed(part.name, exc.reason)
            delay = ctx.settings.backoff(retry)
            kopf.warn(body, reason=exc.reason, message=f"{part.name} cleanup: {exc}")
            # The finalizer keeps the ServiceSpec until the cleanup succeeds.
            raise kopf.TemporaryError(f"{part.name} cleanup: {exc}", delay=delay) from exc
    if actions:
        kopf.info(body, reason=f"{part.name.capitalize()}Released", message="; ".join(actions))


# --- Registration --------------------------------------------------------------------------

def register(registry: kopf.OperatorRegistry, ctx: Context, *, clusterwide: bool = True) -> None:
    """Wire the handlers. ``clusterwide=False``: the operator watches listed namespaces and
    holds only Roles there, so kopf must not list/watch namespaces or CRDs cluster-wide."""
    resource = (crd.GROUP, crd.VERSION, crd.PLURAL)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Restricted mode, declared: the namespaces given are taken as existing, and the
        # Prometheus Operator's CRDs are re-discovered by the drift timer (Kube.serves).
        settings.scanning.disabled = not clusterwide
        settings.persistence.finalizer = FINALIZER
        # Progress and the last-handled spec live in annotations, so the status stays
        # exactly what the CRD's schema describes.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="flotilla.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="flotilla.dev", key="last-handled-configuration",
        )
        # kopf turns log lines into Events at this level; ours are explicit (kopf.info/warn).
        settings.posting.level = logging.WARNING
        settings.networking.request_timeout = 30
        settings.watching.server_timeout = 300

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info = _login(**kwargs)
        if info is not None:
            ctx.kube.use(info, relogin=lambda: _login(**kwargs))
        return info

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await ctx.redis.close()
        if ctx.events_redis is not None:
            await ctx.events_redis.close()
        await ctx.kube.close()

    for part in PARTS:
        on_change = _on_change(ctx, part)
        kopf.on.create(*resource, id=part.name, registry=registry)(on_change)
        kopf.on.resume(*resource, id=part.name, registry=registry)(on_change)
        kopf.on.update(*resource, id=part.name, field="spec", registry=registry)(on_change)
        if part.name != "dashboards":  # dashboards live in Kubernetes: owner refs suffice
            kopf.on.delete(*resource, id=part.name, registry=registry)(_on_delete(ctx, part))

    database, redis = PARTS[0], PARTS[1]

    @kopf.on.update(*resource, id="rotate-password", field=("metadata", "annotations", ROTATE_ANNOTATION),
                    registry=registry)
    async def rotate(body: kopf.Body, patch: kopf.Patch, retry: int, logger: kopf.Logger, **_: Any) -> None:
        for part in (database, redis):
            if body.spec.get(part.name, {}).get("enabled", True):
                await reconcile(ctx, part, trigger="rotate", body=body, patch=patch, retry=retry, logger=logger)

    @kopf.timer(*resource, id="drift", interval=ctx.settings.drift_interval_seconds,
                idle=ctx.settings.drift_idle_seconds, registry=registry)
    async def drift(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        # Re-runs every part's reconcile: each checks before it acts, so only drift
        # (a role dropped or altered, an ACL user changed, a Secret deleted) causes
        # writes. Failures are recorded in the status and retried at the next tick.
        if body.metadata.get("deletionTimestamp") or body.status.get("observedGeneration") is None:
            return  # being deleted, or the change handlers have not had their first go yet
        for part in PARTS:
            try:
                await reconcile(ctx, part, trigger="timer", body=body, patch=patch, retry=0, logger=logger)
            except (kopf.TemporaryError, kopf.PermanentError):
                continue


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else $KUBECONFIG / ~/.kube/config, read at call time.

    kopf's plain readers come first because the client library fixes the kubeconfig
    path when it is imported; it is still the fallback for what they cannot do
    (exec plugins, auth providers), recognised by credentials without any secret.
    """
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is None or not (info.token or info.certificate_path or info.certificate_data or info.username):
        info = kopf.login_via_client(**kwargs) or info
    return info


def _on_change(ctx: Context, part: Part) -> Callable[..., Awaitable[None]]:
    async def on_change(body: kopf.Body, patch: kopf.Patch, retry: int, reason: str, logger: kopf.Logger,
                        **_: Any) -> None:
        await reconcile(ctx, part, trigger=str(reason), body=body, patch=patch, retry=retry, logger=logger)

    on_change.__name__ = f"reconcile_{part.name}"
    return on_change


def _on_delete(ctx: Context, part: Part) -> Callable[..., Awaitable[None]]:
    async def on_delete(body: kopf.Body, retry: int, **_: Any) -> None:
        await release(ctx, part, body=body, retry=retry)

    on_delete.__name__ = f"release_{part.name}"
    return on_delete


def build_context(settings: OperatorSettings) -> Context:
    from flotilla_operator.postgres import Endpoint

    return Context(
        settings=settings,
        postgres=PostgresAdmin(
            settings.postgres_admin_dsn.get_secret_value(), timeout=settings.dependency_timeout_seconds,
            public=Endpoint(settings.postgres_public_host, settings.postgres_public_port),
        ),
        redis=RedisAdmin(
            settings.redis_admin_url.get_secret_value(), timeout=settings.dependency_timeout_seconds,
            public=Endpoint(settings.redis_public_host, settings.redis_public_port),
        ),
        events_redis=RedisAdmin(
            settings.events_redis_admin_url.get_secret_value(), timeout=settings.dependency_timeout_seconds,
            public=Endpoint(settings.events_redis_public_host, settings.events_redis_public_port),
        ) if settings.events_redis_admin_url.get_secret_value() else None,
    )


__all__ = ["PARTS", "ROTATE_ANNOTATION", "Context", "DependencyUnavailable", "build_context", "register"]
