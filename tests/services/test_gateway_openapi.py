"""The merged OpenAPI document at /openapi.json and Swagger UI at /docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.auth.app import create_app as create_auth_app
from services.gateway.app import create_app
from services.gateway.openapi import BEARER, merge
from services.gateway.state import PUBLIC_ROUTES
from services.kit import catalog
from services.serve import build_app, load_settings
from services.tasks.app import create_app as create_tasks_app
from services.tasks.settings import TasksSettings
from tests.services.conftest import running, service_env
from tests.services.gateway_support import gateway, gateway_settings, live_tasks
from tests.support.auth import auth_settings
from tests.support.live import Recorder, serve_app
from tests.support.servers import free_port


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": paths,
            "components": {"schemas": schemas}}


def test_merge_prefixes_colliding_components_and_rewrites_their_refs() -> None:
    shared = {"type": "object", "properties": {"detail": {"type": "string"}}}
    tasks = _doc({"/api/v1/tasks": {"get": {"responses": {"200": {"content": {"application/json": {
                     "schema": _schema_ref("Page")}}}}}},
                  "/internal/debug": {"get": {}}},
                 {"Item": {"type": "object", "properties": {"title": {"type": "string"}}},
                  "Page": {"type": "object", "properties": {"data": {"items": _schema_ref("Item")}}},
                  "HTTPValidationError": shared})
    data = _doc({"/api/v1/stats/me": {"get": {"responses": {"200": {"content": {"application/json": {
                    "schema": _schema_ref("Page")}}}}}}},
                {"Item": {"type": "object", "properties": {"count": {"type": "integer"}}},
                 # identical text, but its Item is data's Item: must not merge with tasks' Page
                 "Page": {"type": "object", "properties": {"data": {"items": _schema_ref("Item")}}},
                 "HTTPValidationError": shared})
    merged = merge({"tasks": tasks, "data": data},
                   routes={"tasks": ["/api/v1/tasks"], "data": ["/api/v1/stats"]}, public=[], version="9")

    schemas = merged["components"]["schemas"]
    assert set(schemas) == {"tasks_Item", "data_Item", "tasks_Page", "data_Page", "HTTPValidationError"}
    assert schemas["tasks_Page"]["properties"]["data"]["items"] == _schema_ref("tasks_Item")
    assert schemas["data_Page"]["properties"]["data"]["items"] == _schema_ref("data_Item")
    ok = merged["paths"]["/api/v1/stats/me"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"] == _schema_ref("data_Page")
    assert "/internal/debug" not in merged["paths"]  # not routed by the gateway
    assert merged["info"]["title"] == "Flotilla API"
    assert merged["x-flotilla-missing-services"] == []


async def test_merged_document_of_the_running_services(tmp_path: Path) -> None:
    auth_port = free_port()
    auth = Recorder(create_auth_app(auth_settings(data_dir=tmp_path / "auth")))
    async with live_tasks(tmp_path / "tasks") as (tasks_url, tasks), \
            gateway(tasks_url=tasks_url, auth_url=f"http://127.0.0.1:{auth_port}", openapi_retry_seconds=0) as client:
        first = await client.get("/openapi.json")
        assert first.status_code == 200
        document = first.json()
        assert document["info"]["title"] == "Flotilla API"
        assert {"/api/v1/tasks", "/api/v1/tasks/{task_id}"} <= set(document["paths"])
        assert document["x-flotilla-missing-services"] == ["auth", "data", "users"]
        assert "auth" in document["info"]["description"]
        assert document["components"]["securitySchemes"][BEARER]["scheme"] == "bearer"
        assert document["security"] == [{BEARER: []}]
        assert "TaskPublic" in document["components"]["schemas"]

        # auth comes up: the next request rebuilds the document with it
        async with serve_app(auth, port=auth_port):
            completed = (await client.get("/openapi.json")).json()
            assert completed["x-flotilla-missing-services"] == ["data", "users"]
            for method, path in PUBLIC_ROUTES:
                if method != "HEAD":
                    assert completed["paths"][path][method.lower()]["security"] == []
            assert "security" not in completed["paths"]["/api/v1/tasks"]["post"]  # the global bearer applies

        fetches = tasks.count(prefix="/openapi.json")
        await client.get("/openapi.json")
        assert tasks.count(prefix="/openapi.json") == fetches + 1  # still incomplete, so fetched again

        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        assert "/openapi.json" in docs.text


async def test_document_is_cached_between_rebuilds(tmp_path: Path) -> None:
    async with live_tasks(tmp_path) as (url, tasks), gateway(tasks_url=url, openapi_retry_seconds=3600) as client:
        for _ in range(3):
            assert (await client.get("/openapi.json")).status_code == 200
        assert tasks.count(prefix="/openapi.json") == 1


@pytest.mark.parametrize("app_factory", ["gateway", "tasks"])
async def test_docs_and_redoc_load_every_asset_from_the_service_itself(tmp_path: Path, app_factory: str) -> None:
    """No CDN: a browser without internet renders /docs and /redoc from what the service serves."""
    app = (create_app(gateway_settings()) if app_factory == "gateway"
           else create_tasks_app(TasksSettings(**service_env("TASKS_", data_dir=tmp_path))))
    async with running(app) as client:
        for page in ("/docs", "/redoc"):
            html = (await client.get(page)).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets, html
            for asset in assets:
                assert asset.startswith("/docs-assets/"), f"{page} loads {asset} from elsewhere"
                fetched = await client.get(asset)
                assert fetched.status_code == 200, asset
                assert len(fetched.content) > 1000, asset
            assert "/openapi.json" in html


def test_operation_ids_are_stable_names_unique_across_services(tmp_path: Path) -> None:
    """What a client generator turns into method names: "<service>-<endpoint>", never a path."""
    seen: dict[str, str] = {}
    for service in catalog.SERVICES:
        settings = load_settings(service, data_dir=tmp_path / service.name)
        document = build_app(service, settings).openapi()
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                operation_id = operation["operationId"]
                assert re.fullmatch(rf"{service.name}(-[a-z0-9]+)+", operation_id), (method, path, operation_id)
                assert operation_id not in seen, (operation_id, seen.get(operation_id), path)
                seen[operation_id] = path
    assert "tasks-list-tasks" in seen


def _merged_document(tmp_path: Path) -> dict[str, Any]:
    """The document the gateway serves, merged from every backend's own (built, not fetched)."""
    documents = {service.name: build_app(service, load_settings(service, data_dir=tmp_path / service.name)).openapi()
                 for service in catalog.BACKENDS}
    return merge(documents, routes={service.name: service.routes for service in catalog.BACKENDS},
                 public=PUBLIC_ROUTES, version="1")


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): operation
            for path, operations in document["paths"].items() for method, operation in operations.items()}


def test_every_schema_has_an_example(tmp_path: Path) -> None:
    """ReDoc and Swagger UI show these instead of "string"/"string"."""
    schemas = _merged_document(tmp_path)["components"]["schemas"]
    missing = [name for name, schema in schemas.items() if "properties" in schema and not schema.get("examples")]
    assert not missing, f"schemas without examples: {missing}"
    assert schemas["Credentials"]["examples"][0]["email"] == "alice@example.com"


def test_every_error_status_a_route_answers_is_documented_with_the_error_shape(tmp_path: Path) -> None:
    operations = _operations(_merged_document(tmp_path))
    expected = {
        ("POST", "/api/v1/auth/register"): {409, 413, 422, 429, 503},
        ("POST", "/api/v1/auth/login"): {401, 413, 422, 429, 503},
        ("POST", "/api/v1/auth/refresh"): {401, 413, 422, 429, 503},
        ("GET", "/api/v1/tasks"): {401, 422, 429, 503},
        ("POST", "/api/v1/tasks"): {401, 413, 422, 429, 503},
        ("GET", "/api/v1/tasks/{task_id}"): {401, 404, 422, 429, 503},
        ("PATCH", "/api/v1/tasks/{task_id}"): {401, 404, 413, 422, 429, 503},
        ("DELETE", "/api/v1/tasks/{task_id}"): {401, 404, 422, 429, 503},
        ("GET", "/api/v1/users/me"): {401, 429, 503},
        ("PATCH", "/api/v1/users/me"): {401, 413, 422, 429, 503},
        ("GET", "/api/v1/stats/me"): {401, 429, 503},
        ("GET", "/api/v1/recommendations/{user_id}"): {401, 403, 422, 429, 503},
    }
    for key, statuses in expected.items():
        responses = operations[key]["responses"]
        documented = {int(code) for code in responses if code[0] in "45"}
        assert documented == statuses, (key, documented)
    for key, operation in operations.items():
        for code, response in operation["responses"].items():
            if code[0] in "45" or code == "default":
                schema = response["content"]["application/json"]["schema"]
                assert schema == _schema_ref("Error"), (key, code)
                assert response["description"], (key, code)
