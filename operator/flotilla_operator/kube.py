"""A small async Kubernetes API client for the objects the operator owns.

kopf talks to the API for the ServiceSpecs themselves (watching, patching status,
events); this client does the rest — Secrets, ConfigMaps, ServiceMonitors,
PrometheusRules — with the very credentials kopf logged in with (see handlers.login),
so in a cluster, from a kubeconfig and against the test emulator it behaves the same.
It is the operator's one seam for Kubernetes I/O.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import aiohttp
import kopf

from flotilla_operator.errors import DependencyUnavailable, ProvisioningError

Applied = Literal["created", "updated", "unchanged"]
#: Fields compared to decide whether an existing object needs a patch.
_COMPARED: Final = ("data", "spec", "type")
_COMPARED_META: Final = ("labels", "annotations", "ownerReferences")


class KubeForbidden(ProvisioningError):
    reason = "Forbidden"


def object_path(api_version: str, plural: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


class Vanished(ProvisioningError):
    """The object a write was based on was deleted in the meantime: reconcile again."""

    reason = "ChangedMeanwhile"


class Kube:
    def __init__(self, *, timeout: float = 15.0) -> None:
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._relogin: Callable[[], kopf.ConnectionInfo | None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def use(self, info: kopf.ConnectionInfo, relogin: Callable[[], kopf.ConnectionInfo | None]) -> None:
        """Adopt the credentials of kopf's login; ``relogin`` refreshes them after a 401."""
        self._info, self._relogin = info, relogin
        old, self._session = self._session, None
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise DependencyUnavailable("the operator is shutting down")
        if self._info is None:
            raise DependencyUnavailable("not logged in to the Kubernetes API yet")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._info.as_ssl_context(), limit=32),
                headers={**self._info.as_http_headers(), "User-Agent": "flotilla-operator"},
                timeout=self._timeout,
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json") -> tuple[int, Any]:
        for attempt in (1, 2):
            try:
                session = self._http()
                assert self._info is not None  # _http() raised otherwise
                async with session.request(
                    method, self._info.server.rstrip("/") + path, data=None if body is None else json.dumps(body),
                    headers={"Content-Type": content_type} if body is not None else None,
                ) as response:
                    status = response.status
                    text = await response.text()
                try:
                    payload = json.loads(text) if text else None
                except ValueError:
                    payload = text
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                raise DependencyUnavailable(f"Kubernetes API: {exc!r}") from exc
            if status == 401 and attempt == 1 and self._relogin is not None:
                refreshed = self._relogin()
                if refreshed is not None:
                    self.use(refreshed, self._relogin)
                    continue
            break
        if status == 403:
            raise KubeForbidden(f"{method} {path} forbidden: {_message(payload)}")
        if status >= 500 or status == 429:
            raise DependencyUnavailable(f"Kubernetes API {status} on {method} {path}: {_message(payload)}")
        return status, payload

    async def get(self, path: str) -> dict[str, Any] | None:
        status, payload = await self.request("GET", path)
        if status == 404:
            return None
        _raise_for(status, "GET", path, payload)
        return dict(payload)

    async def list_items(self, path: str) -> list[dict[str, Any]]:
        """The items of a collection (one page: the operator lists one namespace)."""
        status, payload = await self.request("GET", path)
        _raise_for(status, "GET", path, payload)
        return [dict(item) for item in (payload or {}).get("items") or []]

    async def patch(self, path: str, patch: Mapping[str, Any]) -> bool:
        """Merge-patch an object; False if it does not exist (any more)."""
        status, payload = await self.request("PATCH", path, dict(patch), content_type="application/merge-patch+json")
        if status == 404:
            return False
        _raise_for(status, "PATCH", path, payload)
        return True

    async def delete(self, path: str) -> bool:
        status, payload = await self.request("DELETE", path, {"propagationPolicy": "Background"})
        if status == 404:
            return False
        _raise_for(status, "DELETE", path, payload)
        return True

    async def serves(self, api_version: str, plurals: set[str]) -> bool:
        """Whether the API serves all these resources (e.g. the Prometheus Operator's CRDs)."""
        status, payload = await self.request("GET", f"/apis/{api_version}")
        if status == 404:
            return False
        _raise_for(status, "GET", f"/apis/{api_version}", payload)
        names = {resource.get("name") for resource in (payload or {}).get("resources", [])}
        return plurals <= names

    async def apply(self, obj: Mapping[str, Any], plural: str, *, must_exist: bool = False) -> Applied:
        """Create ``obj``, or patch it when its compared fields differ; never a blind write.

        ``must_exist``: the caller built ``obj`` from the object as it read it; if that is
        gone by now (deleted meanwhile), raise ``Vanished`` instead of re-creating it
        from what may be stale data (a deleted credential Secret must come back with a
        new password, not the old one).
        """
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], plural, meta["namespace"], meta["name"])
        current = await self.get(path)
        if current is None and must_exist:
            raise Vanished(f"{path} was deleted while it was being updated; reconciling again")
        if current is None:
            status, payload = await self.request(
                "POST", object_path(obj["apiVersion"], plural, meta["namespace"]), dict(obj)
            )
            if status == 409:  # created meanwhile (e.g. by a replica that lost its lease)
                return await self.apply(obj, plural)
            _raise_for(status, "POST", path, payload)
            return "created"
        patch: dict[str, Any] = {key: obj[key] for key in _COMPARED if key in obj and current.get(key) != obj[key]}
        if "data" in patch:  # a merge patch keeps keys it does not name: null removes them
            patch["data"] = {key: None for key in current.get("data") or {}} | dict(patch["data"])
        meta_patch = {
            key: meta[key] for key in _COMPARED_META
            if key in meta and _subset_differs(meta[key], current.get("metadata", {}).get(key))
        }
        if meta_patch:
            patch["metadata"] = meta_patch
        if not patch:
            return "unchanged"
        status, payload = await self.request("PATCH", path, patch, content_type="application/merge-patch+json")
        _raise_for(status, "PATCH", path, payload)
        return "updated"


def _subset_differs(wanted: Any, current: Any) -> bool:
    """Labels/annotations others add (kubectl, Helm) are theirs; only ours must match."""
    if isinstance(wanted, dict) and isinstance(current, dict):
        return any(current.get(key) != value for key, value in wanted.items())
    return bool(wanted != current)


def _message(payload: Any) -> str:
    return str(payload.get("message", payload)) if isinstance(payload, dict) else str(payload)


def _raise_for(status: int, method: str, path: str, payload: Any) -> None:
    if status >= 400:
        raise ProvisioningError(f"Kubernetes API {status} on {method} {path}: {_message(payload)}")
