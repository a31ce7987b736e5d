"""kopf handlers: one per concern, each idempotent, registered into a given registry.

``register(registry, context)`` wires everything; ``python -m flotilla_operator`` builds a
fresh registry per run (so tests can run operators with other settings side by side) and
``kopf run -m flotilla_operator.kopfrun`` uses kopf's default one.

Per part (flotilla_operator.parts: database, redis, dashboards; each declares its
condition, delete behaviour and rotation) there is one reconcile function, run on create,
on resume (operator start), on any spec change and by the drift timer; it makes the
part match the spec — provisioned if enabled, removed if disabled — and records the
part's condition. Delete handlers (hence kopf's finalizer) release what lives outside
Kubernetes; the Secrets and ConfigMaps go with the ServiceSpec via owner references.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import kopf
import structlog

from flotilla_operator import crd, status
from flotilla_operator.errors import DependencyUnavailable, OwnershipConflict, ProvisioningError
from flotilla_operator.kube import KubeForbidden
from flotilla_operator.parts import PARTS, Part
from flotilla_operator.parts.base import (
    ROTATE_ANNOTATION,
    ROTATED_FOR_ANNOTATION,
    Context,
    Outcome,
)
from flotilla_operator.postgres import PostgresAdmin
from flotilla_operator.redis_acl import RedisAdmin
from flotilla_operator.settings import OperatorSettings
from flotilla_operator.spec import InvalidSpec, parse

FINALIZER: Final = "flotilla.dev/finalizer"
log = structlog.get_logger("flotilla_operator")
#: Condition type -> label of every part, in the parts' order (for status.py).
PART_CONDITIONS: Final = {part.condition: part.label for part in PARTS}


# --- Status ------------------------------------------------------------------------------

def record(body: kopf.Body, patch: kopf.Patch, part: Part, *, ready: bool | None, reason: str, message: str,
           fields: dict[str, Any] | bool | None = False) -> None:
    """Write ``part``'s condition (and its status fields) into the patch, then Ready/phase.

    Handlers of one kopf cycle share ``patch``, so conditions already in it win over the
    (older) ones in ``body``. ``fields=None`` removes the part's status block.
    """
    generation = body.metadata.get("generation")
    conditions = patch.status.get("conditions") or body.status.get("conditions") or []
    state: status.ConditionStatus = "Unknown" if ready is None else "True" if ready else "False"
    conditions = status.set_condition(conditions, type_=part.condition, status=state, reason=reason,
                                      message=message, generation=generation, order=list(PART_CONDITIONS))
    conditions, phase = status.summarize(conditions, generation, PART_CONDITIONS)
    patch.status["conditions"] = conditions
    patch.status["phase"] = phase
    observed = status.observed_generation(conditions, PART_CONDITIONS)
    if observed is not None:
        patch.status["observedGeneration"] = observed
    if fields is not False:
        patch.status[part.name] = fields


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
            fail(ctx, body, patch, part, "InvalidSpec", str(exc), trigger)
            raise kopf.PermanentError(f"{part.name}: {exc}") from exc
        except (OwnershipConflict, KubeForbidden) as exc:
            fail(ctx, body, patch, part, exc.reason, str(exc), trigger)
            raise kopf.PermanentError(f"{part.name}: {exc}") from exc
        except ProvisioningError as exc:
            fail(ctx, body, patch, part, exc.reason, str(exc), trigger)
            delay = ctx.settings.backoff(retry)
            raise kopf.TemporaryError(f"{part.name}: {exc}; retrying in {delay:g}s", delay=delay) from exc
    record(body, patch, part, ready=outcome.ready, reason=outcome.reason, message=outcome.message,
           fields=outcome.fields)
    if outcome.actions:
        kopf.info(body, reason=f"{part.name.capitalize()}Reconciled", message="; ".join(outcome.actions))
        log.info("reconciled", object=f"{body.metadata.namespace}/{body.metadata.name}", part=part.name,
                 trigger=trigger, actions=outcome.actions)


def fail(ctx: Context, body: kopf.Body, patch: kopf.Patch, part: Part, reason: str, message: str,
         trigger: str) -> None:
    ctx.metrics.failed(part.name, reason)
    previous: Mapping[str, Any] = next((c for c in body.status.get("conditions") or []
                                        if c.get("type") == part.condition), {})
    record(body, patch, part, ready=False, reason=reason, message=message)
    # One Event per change of reason, not one per retry: retries are in the logs.
    if previous.get("reason") != reason or previous.get("status") != "False":
        kopf.warn(body, reason=reason, message=f"{part.name}: {message}")
    log.warning("reconcile failed", object=f"{body.metadata.namespace}/{body.metadata.name}", part=part.name,
                trigger=trigger, reason=reason, error=message)


async def release(ctx: Context, part: Part, *, body: kopf.Body, retry: int) -> None:
    """On ServiceSpec deletion: release what lives outside Kubernetes, per deletionPolicy."""
    lock = ctx.locks.setdefault(str(body.metadata.uid or body.metadata.name), asyncio.Lock())
    async with lock:
        await _release(ctx, part, body=body, retry=retry)
    if part is [p for p in PARTS if p.releases_on_delete][-1]:  # the last delete handler: forget the lock
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
        if part.releases_on_delete:
            kopf.on.delete(*resource, id=part.name, registry=registry)(_on_delete(ctx, part))

    @kopf.on.update(*resource, id="rotate-password", field=("metadata", "annotations", ROTATE_ANNOTATION),
                    registry=registry)
    async def rotate(body: kopf.Body, patch: kopf.Patch, retry: int, logger: kopf.Logger, **_: Any) -> None:
        for part in PARTS:
            if part.rotates and body.spec.get(part.name, {}).get("enabled", True):
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
        if importlib.util.find_spec("kubernetes") is None:
            # The image ships without the client: in a pod the service account suffices. Say
            # so rather than let every request answer 401 (a local API may need no secret).
            kwargs["logger"].warning("the kubeconfig gives no token or certificate; exec plugins and auth "
                                     "providers (EKS, GKE, AKS) need the Kubernetes client: pip install kubernetes")
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


__all__ = [
    "PARTS", "ROTATED_FOR_ANNOTATION", "ROTATE_ANNOTATION", "Context", "DependencyUnavailable", "Outcome",
    "build_context", "register",
]
