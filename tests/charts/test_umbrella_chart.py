"""charts/flotilla: the five services wired together, the Ingress and the dev servers."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import helm_python
import pytest
import yaml

from services.kit import catalog
from tests.charts.conftest import (
    SERVICE_NAMES,
    UMBRELLA_CHART,
    app_container,
    dev_values,
    render,
    selector_matches,
    umbrella_values,
    validate,
)
from tests.support import helm

INGRESS = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "host": "api.example.com",
        "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
        "tls": [{"secretName": "flotilla-tls", "hosts": ["api.example.com"]}],
    }
}

HTTP_ROUTE = {
    "httpRoute": {
        "enabled": True,
        "parentRefs": [{"name": "public", "namespace": "gateway-system", "sectionName": "https"}],
        "hostnames": ["api.example.com"],
    }
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "dev": dev_values(),
    "ingress": INGRESS,
    "http-route": HTTP_ROUTE,
    "registry-and-scaling": {
        "global": {"imageRegistry": "registry.example.com/flotilla"},
        "tasks": {"autoscaling": {"maxReplicas": 30}},
        "gateway": {"autoscaling": {"minReplicas": 3}},
    },
}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_strict_is_clean(values):
    assert helm.lint(UMBRELLA_CHART, values) == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_is_valid_kubernetes(values, kube_version):
    objects = render(UMBRELLA_CHART, values, kube_version=kube_version)
    validate(objects, kube_version)


def test_installs_one_copy_of_the_service_chart_per_catalog_service():
    chart = yaml.safe_load((UMBRELLA_CHART / "Chart.yaml").read_text())
    deps = chart["dependencies"]
    assert [d["alias"] for d in deps] == list(SERVICE_NAMES)
    assert {(d["name"], d["repository"]) for d in deps} == {("service", "file://../service")}
    values = umbrella_values()
    objects = render(UMBRELLA_CHART)
    for service in catalog.SERVICES:
        assert values[service.name]["serviceName"] == service.name
        deployment = helm.find(objects, "Deployment", f"flotilla-{service.name}")
        assert app_container(objects, deployment["metadata"]["name"])["args"][:2] == ["serve", service.name]
        assert values[service.name].get("database", {}).get("enabled", True) is service.has_database


def test_subchart_values_are_checked_by_the_service_schema():
    with pytest.raises(helm_python.HelmValuesError, match="replicaCount"):
        helm.validate_values(UMBRELLA_CHART, {"tasks": {"replicaCount": "many"}})
    with pytest.raises(helm_python.HelmValuesError):
        helm.validate_values(UMBRELLA_CHART, {"ingres": {"enabled": True}})
    with pytest.raises(helm_python.HelmValuesError):
        helm.validate_values(UMBRELLA_CHART, {"devServers": {"enabled": "yes"}})


@pytest.mark.parametrize("values", [{}, dev_values()], ids=["defaults", "dev"])
def test_gateway_upstreams_and_jwks_point_at_real_services(values):
    objects = render(UMBRELLA_CHART, values)
    services = {s["metadata"]["name"]: s for s in helm.find_all(objects, "Service")}

    def resolves(url: str) -> None:
        parts = urlsplit(url)
        service = services[parts.hostname or ""]
        assert parts.port in {p["port"] for p in service["spec"]["ports"]}

    gateway_config = helm.find(objects, "ConfigMap", "flotilla-gateway")["data"]
    for backend in catalog.BACKENDS:
        url = gateway_config[f"GATEWAY_{backend.name.upper()}_URL"]
        resolves(url)
        assert urlsplit(url).hostname == f"flotilla-{backend.name}"
    assert "/.well-known/jwks.json" in catalog.AUTH.routes
    for service in catalog.SERVICES:
        jwks = helm.find(objects, "ConfigMap", f"flotilla-{service.name}")["data"][
            f"{catalog.env_prefix(service.name)}JWKS_URL"
        ]
        resolves(jwks)
        assert urlsplit(jwks).hostname == "flotilla-auth"
        assert urlsplit(jwks).path == "/.well-known/jwks.json"


def test_every_service_may_fetch_the_jwks_and_the_gateway_may_call_every_backend():
    objects = render(UMBRELLA_CHART)
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in helm.find_all(objects, "Deployment")
    }

    def admitted(target: str, source: str) -> bool:
        policy = helm.find(objects, "NetworkPolicy", target)
        for rule in policy["spec"]["ingress"]:
            if "from" not in rule:
                return True
            if any(
                selector_matches(peer["podSelector"], pods[source])
                for peer in rule["from"]
                if "podSelector" in peer and "namespaceSelector" not in peer
            ):
                return True
        return False

    for service in catalog.SERVICES:
        assert admitted("flotilla-auth", f"flotilla-{service.name}")
        assert admitted(f"flotilla-{service.name}", "flotilla-gateway")
    assert not admitted("flotilla-tasks", "flotilla-data")


def test_ingress_sends_everything_to_the_gateway_service():
    objects = render(UMBRELLA_CHART, INGRESS)
    ingress = helm.find(objects, "Ingress")
    gateway_service = helm.find(objects, "Service", "flotilla-gateway")
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "api.example.com"
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    assert backend["name"] == gateway_service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in gateway_service["spec"]["ports"]}
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert helm.find_all(render(UMBRELLA_CHART), "Ingress") == []


@pytest.mark.parametrize("port", [80, 8080])
def test_http_route_sends_everything_to_the_gateway_service(port):
    objects = render(UMBRELLA_CHART, {**HTTP_ROUTE, "gateway": {"service": {"port": port}}})
    route = helm.find(objects, "HTTPRoute")
    gateway_service = helm.find(objects, "Service", "flotilla-gateway")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == HTTP_ROUTE["httpRoute"]["parentRefs"]
    assert route["spec"]["hostnames"] == ["api.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    [backend] = rule["backendRefs"]
    assert backend["name"] == gateway_service["metadata"]["name"]
    assert backend["port"] in {p["port"] for p in gateway_service["spec"]["ports"]}
    assert helm.find_all(render(UMBRELLA_CHART), "HTTPRoute") == []
    with pytest.raises(helm_python.HelmError, match="parentRefs"):
        render(UMBRELLA_CHART, {"httpRoute": {"enabled": True}})


def test_production_defaults_ask_the_operator_and_run_no_dev_servers():
    objects = render(UMBRELLA_CHART)
    assert helm.find_all(objects, "StatefulSet") == []
    assert sorted(s["metadata"]["name"] for s in helm.find_all(objects, "ServiceSpec")) == sorted(SERVICE_NAMES)
    # No credentials in the chart (the operator writes them); the one Secret is a token
    # generated at install, which no value sets.
    [forwarding] = helm.find_all(objects, "Secret")
    assert forwarding["metadata"]["name"] == "flotilla-forwarding"
    assert len(base64.b64decode(forwarding["data"]["FORWARDING_TOKEN"])) == 48
    assert len(helm.find_all(objects, "HorizontalPodAutoscaler")) == len(SERVICE_NAMES)


def test_every_service_shares_the_generated_forwarding_token_and_the_gateway_trusts_no_proxy_by_default():
    objects = render(UMBRELLA_CHART)
    deployments = helm.find_all(objects, "Deployment")
    assert len(deployments) == len(SERVICE_NAMES)
    for deployment in deployments:
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        refs = [e["valueFrom"]["secretKeyRef"] for e in container.get("env", [])
                if e["name"].endswith("_FORWARDING_TOKEN")]
        assert refs == [{"name": "flotilla-forwarding", "key": "FORWARDING_TOKEN", "optional": True}]
    gateway_config = helm.find(objects, "ConfigMap", "flotilla-gateway")["data"]
    assert gateway_config["GATEWAY_TRUSTED_PROXIES"] == ""
    trusting = render(UMBRELLA_CHART, {"gateway": {"trustedProxies": "10.244.0.0/16"}})
    assert helm.find(trusting, "ConfigMap", "flotilla-gateway")["data"]["GATEWAY_TRUSTED_PROXIES"] == "10.244.0.0/16"
    assert helm.find_all(render(UMBRELLA_CHART, {"forwardingToken": {"create": False}}), "Secret") == []


def test_dev_values_wire_every_service_to_the_dev_servers():
    values = dev_values()
    objects = render(UMBRELLA_CHART, values)
    services = {s["metadata"]["name"]: s for s in helm.find_all(objects, "Service")}
    postgres = helm.find(objects, "StatefulSet", "flotilla-postgresql")
    redis = helm.find(objects, "StatefulSet", "flotilla-redis")
    for server in (postgres, redis):
        assert server["spec"]["serviceName"] in services
        assert selector_matches(
            {"matchLabels": services[server["spec"]["serviceName"]]["spec"]["selector"]},
            server["spec"]["template"]["metadata"]["labels"],
        )
        assert server["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
        pod = server["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    databases = umbrella_values()["devServers"]["postgresql"]["databases"]
    assert databases == [s.name for s in catalog.SERVICES if s.has_database]
    init_sql = helm.find(objects, "ConfigMap", "flotilla-postgresql-init")["data"]["01-databases.sql"]
    assert all(f'CREATE DATABASE "{name}";' in init_sql for name in databases)
    password = umbrella_values()["devServers"]["postgresql"]["password"]
    user = umbrella_values()["devServers"]["postgresql"]["user"]
    assert helm.find_all(objects, "ServiceSpec") == []
    for service in catalog.SERVICES:
        secret = helm.find(objects, "Secret", f"flotilla-{service.name}")["stringData"]
        redis_url = urlsplit(secret["REDIS_URL"])
        assert redis_url.hostname == "flotilla-redis"
        assert redis_url.port == 6379
        if service.has_database:
            url = urlsplit(secret["DATABASE_URL"])
            assert (url.scheme, url.hostname, url.port) == ("postgresql", "flotilla-postgresql", 5432)
            assert (url.username, url.password, url.path) == (user, password, f"/{service.name}")
        else:
            assert "DATABASE_URL" not in secret
        deployment = helm.find(objects, "Deployment", f"flotilla-{service.name}")
        assert deployment["spec"]["replicas"] == 1
    assert helm.find_all(objects, "PodDisruptionBudget") == []
    assert helm.find_all(objects, "HorizontalPodAutoscaler") == []


def test_dev_urls_follow_the_release_name():
    objects = render(UMBRELLA_CHART, dev_values(), release="mine")
    secret = helm.find(objects, "Secret", "mine-tasks")["stringData"]
    assert urlsplit(secret["DATABASE_URL"]).hostname == "mine-postgresql"
    assert helm.find_all(objects, "StatefulSet", "mine-postgresql")


def test_global_registry_prefixes_every_image():
    objects = render(UMBRELLA_CHART, VALUE_SETS["registry-and-scaling"])
    for service in catalog.SERVICES:
        image = app_container(objects, f"flotilla-{service.name}")["image"]
        assert image == f"registry.example.com/flotilla/flotilla-{service.name}:0.1.0"


def test_notes_explain_how_to_reach_the_api():
    notes = helm.render_files(UMBRELLA_CHART)["flotilla/templates/NOTES.txt"]
    assert "port-forward service/flotilla-gateway 8000:80" in notes
    services = notes.partition("Services: ")[2].partition("\n")[0]
    assert services == "flotilla-gateway (gateway, the public entry), " + ", ".join(
        sorted(f"flotilla-{b.name}" for b in catalog.BACKENDS)) + "."
    dev_notes = helm.render_files(UMBRELLA_CHART, dev_values())["flotilla/templates/NOTES.txt"]
    assert "DEV SERVERS ARE ON" in dev_notes
