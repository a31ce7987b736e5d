"""A running operator against kmock (the Kubernetes API emulator) and the real servers.

The operator is the real thing (``flotilla_operator.__main__.run``: kopf, login from a
kubeconfig, HTTP to the API); kmock stands in for the API server. kmock stores objects
but does not default, validate, bump generations or garbage-collect, so ``Cluster``
does the first three like an API server would (from the CRD's schema) when the tests
"kubectl apply", and the tests assert owner references instead of garbage collection.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import kmock
import yaml
from flotilla_operator import crd, spec
from flotilla_operator.__main__ import run
from flotilla_operator.handlers import Context, build_context
from flotilla_operator.settings import OperatorSettings

from tests.support.polling import DEADLINE_SECONDS, eventually

SERVICESPECS = f"{crd.GROUP}/{crd.VERSION}/{crd.PLURAL}"
_names = itertools.count(1)


def unique_name(prefix: str = "svc") -> str:
    return f"{prefix}{next(_names)}-{uuid.uuid4().hex[:6]}"


class EmulatedAPIServer(kmock.KubernetesEmulator):
    """kmock's emulator plus the metadata bookkeeping of a real API server.

    Every write gets a new resourceVersion (kopf tells fresh events from stale ones
    by it), spec changes bump metadata.generation, and creation fills uid,
    generation and creationTimestamp.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1000)

    async def _handle(self, request: kmock.Request) -> Any:
        if (request.resource is not None and request.name and isinstance(request.data, dict)
                and request.headers.get("Content-Type", "").startswith("application/apply-patch")):
            self._server_side_apply(request)
        if request.resource is not None and isinstance(request.data, dict | list):
            version = self._next_version()
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                meta = request.data.setdefault("metadata", {})
                meta["resourceVersion"] = version
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            elif request.action == kmock.action.UPDATE:
                self._stamp_update(request, version)
        elif request.resource is not None and request.action == kmock.action.DELETE and request.name:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                self.objects[key].patch({"metadata": {"resourceVersion": self._next_version()}})
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchTestFailed as exc:
            # What the API server answers when a JSON patch's "test" op fails; kopf then
            # retries on the next cycle with a fresh body.
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc

    def _server_side_apply(self, request: kmock.Request) -> None:
        """``kubectl apply --server-side``, roughly: the applied object is the whole truth.

        A real server tracks field managers and drops only the fields this manager set
        before; with one manager (kubectl) that is the spec as applied, which is what
        the UPDATE that follows then merges into an emptied spec (or creates).
        """
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            self.objects[key] = {"metadata": {"resourceVersion": self._next_version(), "uid": str(uuid.uuid4()),
                                              "generation": 1}}
        else:
            self.objects[key].patch({"spec": None})

    def _next_version(self) -> str:
        self._last_version = next(self._versions)
        return str(self._last_version)

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        payload["metadata"]["resourceVersion"] = str(getattr(self, "_last_version", 0))
        return payload

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        # kmock replays every object on each watch; a real server sends only what
        # changed after the list's resourceVersion. Without this, kopf sees stale
        # states after its own patches and works on them again.
        since = request.params.get("resourceVersion", "")
        async for event in super()._serve_watch(request):
            obj = event.get("object") if isinstance(event, dict) else None
            version = str((obj or {}).get("metadata", {}).get("resourceVersion", ""))
            if since.isdigit() and version.isdigit() and int(version) <= int(since):
                continue
            yield event

    def _stamp_update(self, request: kmock.Request, version: str) -> None:
        key = (request.resource, request.namespace, request.name)
        current = self.objects[key] if key in self.objects and not self.objects[key].deleted else None
        touches_spec = request.subresource is None and (
            "spec" in request.data if isinstance(request.data, dict)
            else any(op.get("path", "").startswith("/spec") for op in request.data)
        )
        generation = (current.get("metadata", {}).get("generation", 1) if current is not None else 1)
        generation += 1 if touches_spec else 0
        if isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            meta["resourceVersion"] = version
            meta["generation"] = generation
        else:
            request.data.extend([
                {"op": "add", "path": "/metadata/resourceVersion", "value": version},
                {"op": "add", "path": "/metadata/generation", "value": generation},
            ])


def declare_resources(server: kmock.KubernetesEmulator, *, monitoring: bool) -> None:
    manifest = crd.manifest()
    server.resources[SERVICESPECS] = kmock.ResourceInfo(
        kind=crd.KIND, singular=manifest["spec"]["names"]["singular"], namespaced=True,
        shortnames=set(manifest["spec"]["names"]["shortNames"]), subresources={"status"},
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    )
    # kopf waits for these two to exist before it starts watching anything.
    server.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False,
                                                           verbs={"get", "list", "watch"})
    server.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "watch"},
    )
    for plural in ("secrets", "configmaps", "events"):
        server.resources[f"v1/{plural}"] = kmock.ResourceInfo(kind=plural.capitalize()[:-1], namespaced=True,
                                                              verbs={"get", "list", "create", "patch", "delete"})
    # The Deployments a credential rotation rolls (workloads.roll).
    server.resources["apps/v1/deployments"] = kmock.ResourceInfo(
        kind="Deployment", namespaced=True, verbs={"get", "list", "create", "patch", "delete"},
    )
    if monitoring:
        for plural, kind in (("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")):
            server.resources[f"monitoring.coreos.com/v1/{plural}"] = kmock.ResourceInfo(
                kind=kind, namespaced=True, verbs={"get", "list", "create", "patch", "delete"},
            )


def write_kubeconfig(path: Path, server_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": server_url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
    }))
    return path


class Cluster:
    """kubectl for tests: talks HTTP to kmock like a client to an API server."""

    def __init__(self, server: kmock.KubernetesEmulator) -> None:
        self.server = server
        self.base = str(server.url).rstrip("/")
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.http.close()

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        async with self.http.request(method, self.base + path, json=body,
                                     headers={"Content-Type": content_type}) as response:
            payload = await response.json(content_type=None)
            if response.status == 404:
                return None
            assert response.status < 400, (method, path, response.status, payload)
            return payload

    @staticmethod
    def path(namespace: str, name: str | None = None, *, api: str = SERVICESPECS) -> str:
        group_version, plural = api.rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")

    async def apply(self, namespace: str, name: str, spec_: dict[str, Any] | None = None,
                    annotations: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a ServiceSpec as the API server would: schema-checked, defaulted."""
        obj = {
            "apiVersion": f"{crd.GROUP}/{crd.VERSION}", "kind": crd.KIND,
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
            "spec": copy.deepcopy(spec_ or {}),
        }
        errors = spec.schema_errors(obj)
        if errors:
            raise ValueError(f"the API server would reject this ServiceSpec: {errors}")
        spec.apply_defaults(crd.openapi_schema(), obj)
        return await self.create_raw(obj)

    async def create_raw(self, obj: dict[str, Any]) -> dict[str, Any]:
        """POST as is: what a broken admission chain or an older CRD would let through."""
        meta = obj["metadata"]
        result: dict[str, Any] = await self._call("POST", self.path(meta["namespace"]), obj)
        return result

    async def patch_spec(self, namespace: str, name: str, spec_patch: dict[str, Any]) -> None:
        current = await self.get(namespace, name)
        assert current is not None
        merged = _merge(copy.deepcopy(current["spec"]), spec_patch)
        spec.apply_defaults(crd.openapi_schema()["properties"]["spec"], merged)
        await self._call("PATCH", self.path(namespace, name), {"spec": merged}, "application/merge-patch+json")

    async def annotate(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        await self._call("PATCH", self.path(namespace, name), {"metadata": {"annotations": annotations}},
                         "application/merge-patch+json")

    async def delete(self, namespace: str, name: str, *, api: str = SERVICESPECS) -> None:
        await self._call("DELETE", self.path(namespace, name, api=api))

    async def get(self, namespace: str, name: str, *, api: str = SERVICESPECS) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._call("GET", self.path(namespace, name, api=api))
        return result

    async def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        obj = await self.get(namespace, name, api="v1/secrets")
        if obj is None:
            return None
        return {key: base64.b64decode(value).decode() for key, value in obj.get("data", {}).items()}

    async def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
        obj = await self.get(namespace, name)
        for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return None

    async def wait_phase(self, namespace: str, name: str, phase: str,
                         within: float = DEADLINE_SECONDS) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.get(namespace, name)
            status = (obj or {}).get("status") or {}
            if status.get("phase") == phase and status.get("observedGeneration") == obj["metadata"]["generation"]:
                return obj
            return None
        return await eventually(check, within=within, message=f"{namespace}/{name} phase {phase}")

    async def wait_gone(self, namespace: str, name: str, within: float = DEADLINE_SECONDS) -> None:
        async def check() -> bool:
            return await self.get(namespace, name) is None
        await eventually(check, within=within, message=f"{namespace}/{name} deleted")

    async def collect_garbage(self, owner_uid: str) -> list[str]:
        """Delete what the garbage collector would once the owner is gone (kmock has none)."""
        deleted = []
        for (resource, namespace, name), obj in list(self.server.objects.items()):
            if obj.deleted:
                continue
            refs = obj.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                api = f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/")
                await self.delete(namespace, name, api=api)
                deleted.append(f"{resource.plural}/{name}")
        return deleted

    async def create_deployment(self, namespace: str, name: str, secret: str, *, replicas: int = 2) -> None:
        """A Deployment whose pods read ``secret`` (envFrom), fully rolled out."""
        obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                            {"name": "app", "image": "app:1", "envFrom": [{"secretRef": {"name": secret}}]}]}}}}
        await self._call("POST", self.path(namespace, api="apps/v1/deployments"), obj)
        await self.finish_rollout(namespace, name)

    async def finish_rollout(self, namespace: str, name: str) -> None:
        """What the Deployment controller reports once every pod runs the latest template."""
        obj = await self.get(namespace, name, api="apps/v1/deployments")
        assert obj is not None
        replicas = obj["spec"]["replicas"]
        await self._call("PATCH", self.path(namespace, name, api="apps/v1/deployments"), {"status": {
            "observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
            "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
        }}, "application/merge-patch+json")

    def writes(self, plural: str) -> list[kmock.Request]:
        """Mutating requests the emulator received for ``plural``."""
        return [r for r in self.server if r.resource is not None and r.resource.plural == plural
                and r.method.value in {"POST", "PATCH", "PUT", "DELETE"}]


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@asynccontextmanager
async def running_operator(settings: OperatorSettings, ctx: Context | None = None, *,
                           namespaces: tuple[str, ...] = (), peering: str | None = None,
                           priority: int = 0) -> AsyncIterator[Context]:
    """Run the operator (kopf and all) in its own thread and event loop, like a process.

    Its own loop matters: at exit kopf cancels every task that appeared in its loop
    while it ran, which would include the test's own teardown. ``namespaces``: watch
    only these, as the chart's default (namespaced) install does; empty: cluster-wide.
    """
    ctx = ctx or build_context(settings)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run(ctx, namespaces=namespaces, clusterwide=not namespaces, stop_flag=stop,
                            ready_flag=ready, liveness=None, peering=peering, priority=priority))
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="operator", daemon=True)
    thread.start()
    try:
        if not await asyncio.to_thread(ready.wait, DEADLINE_SECONDS) or errors:
            raise AssertionError(f"the operator did not start: {errors!r}")
        yield ctx
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, DEADLINE_SECONDS)
        assert not thread.is_alive(), f"the operator did not stop within {DEADLINE_SECONDS}s"
        if errors:
            raise errors[0]
