"""charts/service: rendered with Helm's engine, validated, and checked against the code.

"The code" is what the objects must agree with: the service catalog (names, port), the
settings classes (env names), the health routes, the operator (Secret names, the
ServiceMonitor's selector) and the CRD.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import helm_python
import pytest

from services.kit import catalog
from services.kit.settings import ServiceSettings
from tests.charts.conftest import (
    SERVICE_CHART,
    SERVICE_NAMES,
    app_container,
    pod_spec,
    render,
    selector_matches,
    service_values,
    validate,
)
from tests.support import helm

#: An extra container as the restricted Pod Security profile wants it.
_RESTRICTED_CONTAINER: dict[str, Any] = {
    "image": "registry.example.com/tools/shipper:1.0",
    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]}},
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
}

#: Value sets a platform team plausibly uses; every one must lint and validate.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    **{f"umbrella-{name}": service_values(name) for name in SERVICE_NAMES},
    "fixed-replicas": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "single-replica": {"autoscaling": {"enabled": False}, "replicaCount": 1},
    "plain-urls": {
        "serviceSpec": {"create": False},
        "database": {"url": "postgresql://u:p@{{ .Release.Name }}-postgresql:5432/tasks"},
        "redis": {"url": "redis://{{ .Release.Name }}-redis:6379/0"},
    },
    "own-secrets": {
        "serviceSpec": {"create": False},
        "database": {"secretName": "vault-tasks-db", "secretKey": "url"},
        "redis": {"secretName": "vault-tasks-redis", "secretKey": "url"},
    },
    "no-redis-no-migrate": {"redis": {"enabled": False}, "database": {"migrate": False}},
    "hardened-extras": {
        "image": {"registry": "registry.example.com", "repository": "platform/tasks", "digest": "sha256:" + "a" * 64},
        "imagePullSecrets": [{"name": "regcred"}],
        "podDisruptionBudget": {"minAvailable": "50%"},
        "networkPolicy": {"monitoringNamespaceSelector": None, "extraFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        "serviceMonitor": {"enabled": True, "force": True, "labels": {"release": "prometheus"}},
        "settings": {"CACHE_TTL_SECONDS": 60, "DB_POOL_SIZE": 10},
        "extraEnv": [
            {"name": "TASKS_JWT_PUBLIC_JWKS", "valueFrom": {"secretKeyRef": {"name": "jwks", "key": "jwks.json"}}}
        ],
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "api", "effect": "NoSchedule"}],
        "priorityClassName": "high",
        "spreadAcrossNodes": False,
        "service": {"type": "NodePort", "port": 8080},
        "serviceAccount": {"create": False, "name": "shared"},
        "tests": {"enabled": False},
    },
    "extension-hooks": {
        "envFrom": [{"secretRef": {"name": "tasks-extra"}}, {"configMapRef": {"name": "shared"}, "prefix": "TASKS_"}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "postgres-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/postgres-ca", "readOnly": True}],
        "initContainers": [_RESTRICTED_CONTAINER | {"name": "wait-for-ca", "command": ["test", "-s", "/etc/ca/ca.crt"],
                                                    "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"},
                                                                     {"name": "tmp", "mountPath": "/tmp"}]}],
        "sidecars": [_RESTRICTED_CONTAINER | {"name": "log-shipper", "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}],
    },
    "egress-restricted": {
        "networkPolicy": {"egress": {
            "enabled": True,
            "postgresql": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]},
            "redis": {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "redis"}}}],
                      "port": 6380},
            "extraRules": [{"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"port": 4317}]}],
        }},
    },
    "shutdown-tuned": {
        "terminationGracePeriodSeconds": 60,
        "shutdown": {"preStopSleepSeconds": 10, "drainSeconds": 5, "gracefulTimeoutSeconds": 40},
    },
}


def _env_names(objects: list[dict[str, Any]]) -> set[str]:
    names = set(helm.find(objects, "ConfigMap")["data"])
    names |= {e["name"] for e in app_container(objects).get("env", [])}
    return names


def _settings_class(name: str) -> type[ServiceSettings]:
    """The service's settings class, from the catalog."""
    module, _, attr = catalog.by_name(name).settings.partition(":")
    cls: type[ServiceSettings] = getattr(importlib.import_module(module), attr)
    return cls


# --- lint, schema validation of objects ---------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_strict_is_clean(values):
    assert helm.lint(SERVICE_CHART, values) == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_is_valid_kubernetes(values, kube_version):
    objects = render(SERVICE_CHART, values, kube_version=kube_version, api_versions=("monitoring.coreos.com/v1",))
    assert objects
    validate(objects, kube_version)


def test_servicespec_matches_the_operators_crd():
    from tests.charts.conftest import crd_schemas

    spec = helm.find(render(SERVICE_CHART), "ServiceSpec")
    assert ("flotilla.dev/v1alpha1", "ServiceSpec") in crd_schemas()
    validate([spec], "1.30")


# --- values.schema.json --------------------------------------------------------------------

BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown service": {"serviceName": "billing"},
    "replicas as text": {"replicaCount": "two"},
    "typo at top level": {"replicas": 2},
    "typo in autoscaling": {"autoscaling": {"maxReplica": 5}},
    "bool as text": {"autoscaling": {"enabled": "yes"}},
    "negative min replicas": {"autoscaling": {"minReplicas": 0}},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad digest": {"image": {"digest": "latest"}},
    "port out of range": {"service": {"port": 70000}},
    "bad service type": {"service": {"type": "ExternalName"}},
    "bad environment": {"environment": "staging"},
    "bad log level": {"logLevel": "TRACE"},
    "lowercase setting": {"settings": {"cache_ttl_seconds": 1}},
    "nested setting": {"settings": {"CACHE": {"TTL": 1}}},
    "bad deletion policy": {"serviceSpec": {"database": {"deletionPolicy": "Archive"}}},
    "bad servicespec name": {"serviceSpec": {"name": "Tasks_1"}},
    "bad key prefix": {"serviceSpec": {"redis": {"keyPrefix": "tasks"}}},
    "slo out of range": {"serviceSpec": {"dashboards": {"slo": {"availability": 100}}}},
    "writable root fs": {"securityContext": {"readOnlyRootFilesystem": False}},
    "privilege escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "probe typo": {"probes": {"readiness": {"periodSecond": 5}}},
    "bad quantity": {"resources": {"requests": {"memory": "lots"}}},
    "bad jwks url": {"jwksUrl": "auth:80"},
    "unknown upstream": {"upstreams": {"billing": "http://billing"}},
    "pdb string": {"podDisruptionBudget": {"maxUnavailable": "one"}},
    "grace period as text": {"terminationGracePeriodSeconds": "30s"},
}


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_schema_rejects_bad_values(values):
    with pytest.raises(helm_python.HelmValuesError):
        helm.validate_values(SERVICE_CHART, values)


def test_schema_service_names_are_the_catalog():
    with helm_python.Chart.load(SERVICE_CHART) as chart:
        schema = chart.schema
    assert schema is not None
    assert schema["properties"]["serviceName"]["enum"] == list(SERVICE_NAMES)
    assert sorted(schema["properties"]["upstreams"]["properties"]) == sorted(s.name for s in catalog.BACKENDS)


def test_template_guards_refuse_inconsistent_values():
    too_slow = {
        "terminationGracePeriodSeconds": 20,
        "shutdown": {"preStopSleepSeconds": 5, "drainSeconds": 5, "gracefulTimeoutSeconds": 10},
    }
    with pytest.raises(helm_python.HelmRenderError, match="terminationGracePeriodSeconds"):
        helm.render(SERVICE_CHART, too_slow)
    with pytest.raises(helm_python.HelmRenderError, match="maxReplicas"):
        helm.render(SERVICE_CHART, {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}})
    with pytest.raises(helm_python.HelmRenderError, match="requests"):
        helm.render(SERVICE_CHART, {"resources": {"requests": None}})  # null deletes a default


# --- the pod: command, probes, ports, rollout ------------------------------------------------


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_container_runs_the_service_on_the_container_port(name):
    objects = render(SERVICE_CHART, service_values(name))
    container = app_container(objects)
    assert "command" not in container, "the image's entrypoint (dumb-init -- flotilla) must stay"
    assert container["args"] == ["serve", name, "--host", "0.0.0.0", "--port", str(catalog.CONTAINER_PORT),
                                 "--metrics-port", str(catalog.CONTAINER_METRICS_PORT)]
    assert container["ports"] == [{"name": "http", "containerPort": catalog.CONTAINER_PORT, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": catalog.CONTAINER_METRICS_PORT,
                                   "protocol": "TCP"}]
    assert container["image"].endswith(f"flotilla-{name}:0.1.0")


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_probes_hit_the_health_routes_on_the_serving_port(name):
    container = app_container(render(SERVICE_CHART, service_values(name)))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    expected = {"startupProbe": "/health/live", "livenessProbe": "/health/live", "readinessProbe": "/health/ready"}
    for probe, path in expected.items():
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert ports[http_get["port"]] == catalog.CONTAINER_PORT
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 30


def test_health_routes_exist_in_the_service_kit():
    health = importlib.import_module("services.kit.health")
    source = importlib.util.find_spec(health.__name__)
    assert source is not None
    assert source.origin is not None
    text = Path(source.origin).read_text()
    for path in ("/health/live", "/health/ready", "/health"):
        assert f'"{path}"' in text, f"{path} is not served by services/kit/health.py"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_migrations_run_before_the_app_only_with_a_database(name):
    info = catalog.by_name(name)
    spec = pod_spec(render(SERVICE_CHART, service_values(name)))
    init = spec.get("initContainers", [])
    if info.has_database:
        # args only: a command would bypass the image's init (dumb-init), as the app's args do not.
        assert [c.get("command") for c in init] == [None]
        assert [c["args"] for c in init] == [["migrate", name]]
        assert init[0]["envFrom"] == app_container(render(SERVICE_CHART, service_values(name)))["envFrom"]
    else:
        assert init == []


def test_rolling_update_never_removes_a_serving_pod_first():
    strategy = helm.find(render(SERVICE_CHART), "Deployment")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_shutdown_fits_in_the_grace_period(values):
    objects = render(SERVICE_CHART, values)
    spec = pod_spec(objects)
    container = app_container(objects)
    config = helm.find(objects, "ConfigMap")["data"]
    sleep_cmd = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep_cmd[0] == "sleep"
    pre_stop = int(sleep_cmd[1])
    drain = float(next(v for k, v in config.items() if k.endswith("_SHUTDOWN_DRAIN_SECONDS")))
    graceful = int(config["FLOTILLA_GRACEFUL_TIMEOUT"])
    assert pre_stop > 0
    assert pre_stop + drain + graceful < spec["terminationGracePeriodSeconds"]


def test_graceful_timeout_variable_is_the_one_flotilla_serve_reads():
    serve = importlib.import_module("services.serve")
    assert serve.GRACEFUL_TIMEOUT_ENV == "FLOTILLA_GRACEFUL_TIMEOUT"
    assert "FLOTILLA_GRACEFUL_TIMEOUT" in helm.find(render(SERVICE_CHART), "ConfigMap")["data"]


def test_replicas_are_left_to_the_hpa_when_autoscaling():
    autoscaled = helm.find(render(SERVICE_CHART), "Deployment")["spec"]
    assert "replicas" not in autoscaled
    fixed = helm.find(render(SERVICE_CHART, VALUE_SETS["fixed-replicas"]), "Deployment")["spec"]
    assert fixed["replicas"] == 3
    assert helm.find_all(render(SERVICE_CHART, VALUE_SETS["fixed-replicas"]), "HorizontalPodAutoscaler") == []


def test_hpa_scales_the_deployment_on_cpu_and_memory():
    objects = render(SERVICE_CHART)
    deployment = helm.find(objects, "Deployment")
    hpa = helm.find(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    requests = app_container(objects)["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests), "utilisation targets are percentages of requests"


# --- selectors -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_selectors_find_exactly_the_service_pods(values):
    objects = render(SERVICE_CHART, values, api_versions=("monitoring.coreos.com/v1",))
    deployment = helm.find(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]
    assert selector_matches(selector, pod_labels)
    assert set(selector["matchLabels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    service = helm.find(objects, "Service")
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
    for pdb in helm.find_all(objects, "PodDisruptionBudget"):
        assert pdb["spec"]["selector"] == selector
    for policy in helm.find_all(objects, "NetworkPolicy"):
        assert policy["spec"]["podSelector"] == selector
    for monitor in helm.find_all(objects, "ServiceMonitor"):
        assert selector_matches(monitor["spec"]["selector"], service["metadata"]["labels"])
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"  # never the API port
    for test_pod in helm.find_all(objects, "Pod"):
        assert not selector_matches({"matchLabels": service["spec"]["selector"]}, test_pod["metadata"]["labels"]), (
            "the Service would route traffic to the helm test pod"
        )


def test_service_targets_the_named_container_port():
    objects = render(SERVICE_CHART)
    port = helm.find(objects, "Service")["spec"]["ports"][0]
    assert port["targetPort"] == "http"
    assert "http" in {p["name"] for p in app_container(objects)["ports"]}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, True),  # HPA with minReplicas 2
        ({"autoscaling": {"minReplicas": 1}}, False),
        (VALUE_SETS["fixed-replicas"], True),
        (VALUE_SETS["single-replica"], False),
        ({"podDisruptionBudget": {"enabled": False}}, False),
    ],
)
def test_pdb_only_when_more_than_one_pod(values, expected):
    assert bool(helm.find_all(render(SERVICE_CHART, values), "PodDisruptionBudget")) is expected


def test_network_policy_admits_gateway_monitoring_and_the_test_pod_only():
    backend = render(SERVICE_CHART, service_values("tasks"))
    gateway = render(SERVICE_CHART, service_values("gateway"))
    policy = helm.find(backend, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule, metrics_rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    pod_peers = [peer["podSelector"] for peer in rule["from"] if "podSelector" in peer]
    gateway_pod_labels = helm.find(gateway, "Deployment")["spec"]["template"]["metadata"]["labels"]
    test_pod_labels = helm.find(backend, "Pod")["metadata"]["labels"]
    other_backend_labels = helm.find(render(SERVICE_CHART, service_values("users")), "Deployment")["spec"]["template"][
        "metadata"
    ]["labels"]
    assert any(selector_matches(peer, gateway_pod_labels) for peer in pod_peers)
    assert any(selector_matches(peer, test_pod_labels) for peer in pod_peers)
    assert not any(selector_matches(peer, other_backend_labels) for peer in pod_peers)
    assert not any("namespaceSelector" in peer for peer in rule["from"])  # monitoring: the metrics port only
    assert metrics_rule == {"ports": [{"port": "metrics", "protocol": "TCP"}],
                            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                                            "monitoring"}}}]}
    # The gateway is the public entry (its API port); auth serves the JWKS to every service.
    gateway_rule, gateway_metrics_rule = helm.find(gateway, "NetworkPolicy")["spec"]["ingress"]
    assert "from" not in gateway_rule
    assert gateway_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert gateway_metrics_rule == metrics_rule  # the public may reach the API, not the metrics
    auth_rule = helm.find(render(SERVICE_CHART, service_values("auth")), "NetworkPolicy")["spec"]["ingress"][0]
    auth_peers = [peer["podSelector"] for peer in auth_rule["from"] if "podSelector" in peer]
    assert any(selector_matches(peer, other_backend_labels) for peer in auth_peers)


# --- hardening ---------------------------------------------------------------------------------


def test_egress_is_open_by_default_and_restricted_on_request():
    default = helm.find(render(SERVICE_CHART), "NetworkPolicy")
    assert default["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in default["spec"]
    policy = helm.find(render(SERVICE_CHART, VALUE_SETS["egress-restricted"]), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    rules = policy["spec"]["egress"]
    ports = [{(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]} for rule in rules]
    assert ports[0] == {(53, "UDP"), (53, "TCP")}
    assert rules[0]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert (rules[1]["to"], ports[1]) == ([{"ipBlock": {"cidr": "10.20.0.0/16"}}], {(5432, "TCP")})
    assert ports[2] == {(6380, "TCP")}
    assert rules[3]["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "flotilla"}}}]
    assert ports[3] == {(8000, "TCP")}  # the container port every Flotilla pod serves on
    assert rules[4]["ports"] == [{"port": 4317}]
    gateway = helm.find(render(SERVICE_CHART, {**service_values("gateway"), "networkPolicy": {"egress": {
        "enabled": True, "redis": {"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}]}}}}), "NetworkPolicy")
    assert [r["ports"][0]["port"] for r in gateway["spec"]["egress"]] == [53, 6379, 8000], "no database rule"


def test_egress_without_the_servers_whereabouts_is_refused():
    with pytest.raises(helm_python.HelmError, match="postgresql.to"):
        render(SERVICE_CHART, {"networkPolicy": {"egress": {"enabled": True}}})
    with pytest.raises(helm_python.HelmError, match="redis.to"):
        render(SERVICE_CHART, {"networkPolicy": {"egress": {
            "enabled": True, "postgresql": {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}}}})


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_pods_run_non_root_read_only_without_capabilities(values):
    objects = render(SERVICE_CHART, values)
    for pod in [pod_spec(objects), *(p["spec"] for p in helm.find_all(objects, "Pod"))]:
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod.get("initContainers", []) + pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["runAsNonRoot"] is True
            assert "limits" in container["resources"]
            assert "requests" in container["resources"]
    deployment_pod = pod_spec(objects)
    tmp_volumes = {v["name"] for v in deployment_pod["volumes"] if "emptyDir" in v}
    for container in deployment_pod.get("initContainers", []) + deployment_pod["containers"]:
        assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/tmp"] in tmp_volumes
    for account in helm.find_all(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_extension_hooks_land_where_users_expect():
    values = VALUE_SETS["extension-hooks"]
    pod = pod_spec(render(SERVICE_CHART, values))
    app, shipper = pod["containers"]
    assert shipper["name"] == "log-shipper"
    assert [c["name"] for c in pod["initContainers"]] == ["wait-for-ca", "migrate"], "user init containers first"
    migrate = pod["initContainers"][1]
    for container in (app, migrate):
        assert container["envFrom"][1:] == values["envFrom"], "after the chart's ConfigMap, so they win"
        assert {"name": "ca", "mountPath": "/etc/postgres-ca", "readOnly": True} in container["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "postgres-ca"}} in pod["volumes"]
    plain = pod_spec(render(SERVICE_CHART, {"database": {"migrate": False}}))
    assert "initContainers" not in plain
    assert [c["name"] for c in pod_spec(render(SERVICE_CHART, {"database": {"migrate": False},
                                                               "initContainers": values["initContainers"]}))[
        "initContainers"]] == ["wait-for-ca"]


@pytest.mark.parametrize("hook", ["initContainers", "sidecars"])
def test_schema_wants_named_extra_containers(hook):
    with pytest.raises(helm_python.HelmValuesError):
        helm.validate_values(SERVICE_CHART, {hook: [{"image": "busybox"}]})


def test_image_user_matches_the_chart():
    from tests.charts.conftest import DOCKERFILE

    text = DOCKERFILE.read_text()
    assert "USER 10001:10001" in text
    assert pod_spec(render(SERVICE_CHART))["securityContext"]["runAsUser"] == 10001


# --- configuration: env names, Secrets, the ServiceSpec ---------------------------------------------


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_env_names_are_settings_the_service_reads(name, monkeypatch):
    objects = render(SERVICE_CHART, {**service_values(name), "settings": {"CACHE_TTL_SECONDS": 60, "DB_POOL_SIZE": 10}})
    prefix = catalog.env_prefix(name)
    settings_class = _settings_class(name)
    fields = set(settings_class.model_fields)
    names = _env_names(objects) - {"FLOTILLA_GRACEFUL_TIMEOUT"}
    assert all(n.startswith(prefix) for n in names), names
    unknown = {n for n in names if n.removeprefix(prefix).lower() not in fields}
    assert not unknown, f"{name}: env the service would ignore: {sorted(unknown)}"
    # The service really starts with exactly this environment (production validation).
    for key, value in helm.find(objects, "ConfigMap")["data"].items():
        monkeypatch.setenv(key, value)
    for entry in app_container(objects).get("env", []):
        monkeypatch.setenv(
            entry["name"],
            entry.get("value")
            or (
                "postgresql://u:p@db:5432/x"
                if entry["name"].endswith("DATABASE_URL")
                else "redis://cache:6379/0"
                if entry["name"].endswith("REDIS_URL")
                else "{}"
            ),
        )
    settings = settings_class()
    assert settings.environment == "production"
    assert settings.log_json is True


def test_gateway_gets_an_upstream_url_per_backend():
    config = helm.find(render(SERVICE_CHART, service_values("gateway")), "ConfigMap")["data"]
    upstreams = {k: v for k, v in config.items() if k.endswith("_URL") and k != "GATEWAY_JWKS_URL"}
    assert upstreams == {f"GATEWAY_{b.name.upper()}_URL": f"http://flotilla-{b.name}:80" for b in catalog.BACKENDS}
    gateway_settings = _settings_class("gateway")
    for key in upstreams:
        assert key.removeprefix("GATEWAY_").lower() in gateway_settings.model_fields


@pytest.mark.parametrize("name", [s.name for s in catalog.SERVICES])
def test_secret_names_are_the_ones_the_operator_writes(name):
    info = catalog.by_name(name)
    objects = render(SERVICE_CHART, service_values(name))
    env = {e["name"]: e for e in app_container(objects).get("env", [])}
    prefix = catalog.env_prefix(name)
    spec = helm.find(objects, "ServiceSpec")
    spec_name = spec["metadata"]["name"]
    assert spec_name == name
    assert spec["spec"]["database"]["enabled"] is info.has_database
    expected = {"DATABASE_URL": (f"{spec_name}-database", info.has_database), "REDIS_URL": (f"{spec_name}-redis", True)}
    if importlib.util.find_spec("flotilla_operator") is not None:
        naming = importlib.import_module("flotilla_operator.naming")
        assert naming.database_secret_name(spec_name) == f"{spec_name}-database"
        assert naming.redis_secret_name(spec_name) == f"{spec_name}-redis"
    for key, (secret, wanted) in expected.items():
        if not wanted:
            assert prefix + key not in env
            continue
        assert env[prefix + key]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    # Issue 19.3: the event stream's own Redis, when the ServiceSpec asks the operator for it.
    assert spec["spec"]["redis"]["events"] == "Shared"
    assert env[prefix + "EVENTS_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{spec_name}-redis", "key": "EVENTS_REDIS_URL", "optional": True}
    values = service_values(name)
    values.setdefault("serviceSpec", {}).setdefault("redis", {})["events"] = "Dedicated"
    dedicated = render(SERVICE_CHART, values)
    assert helm.find(dedicated, "ServiceSpec")["spec"]["redis"]["events"] == "Dedicated"


def test_operators_service_monitor_finds_the_service():
    dashboards = importlib.import_module("flotilla_operator.dashboards")
    objects = render(SERVICE_CHART)
    service = helm.find(objects, "Service")
    spec_name = helm.find(objects, "ServiceSpec")["metadata"]["name"]
    assert service["metadata"]["labels"][dashboards.SERVICE_LABEL] == spec_name
    assert dashboards.METRICS_PORT_NAME in {p["name"] for p in service["spec"]["ports"]}


def test_plain_urls_land_in_a_release_secret_and_roll_the_pods():
    objects = render(SERVICE_CHART, VALUE_SETS["plain-urls"])
    secret = helm.find(objects, "Secret")
    assert secret["stringData"] == {
        "DATABASE_URL": "postgresql://u:p@flotilla-postgresql:5432/tasks",
        "REDIS_URL": "redis://flotilla-redis:6379/0",
    }
    env = {e["name"]: e for e in app_container(objects)["env"]}
    assert env["TASKS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "flotilla-tasks", "key": "DATABASE_URL"}
    annotations = helm.find(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" in annotations
    assert helm.find_all(objects, "ServiceSpec") == []


def test_existing_secrets_are_referenced_as_given():
    env = {e["name"]: e for e in app_container(render(SERVICE_CHART, VALUE_SETS["own-secrets"]))["env"]}
    assert env["TASKS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "vault-tasks-db", "key": "url"}
    assert env["TASKS_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "vault-tasks-redis", "key": "url"}


def test_config_change_rolls_the_pods():
    def checksum(values: dict[str, Any]) -> str:
        deployment = helm.find(render(SERVICE_CHART, values), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"logLevel": "DEBUG"})
    assert checksum({}) != checksum({"settings": {"CACHE_TTL_SECONDS": 5}})


def test_servicespec_carries_the_values():
    spec = helm.find(
        render(
            SERVICE_CHART,
            {
                "serviceSpec": {
                    "name": "tasks-eu",
                    "database": {"name": "tasks_eu", "deletionPolicy": "Delete"},
                    "redis": {"keyPrefix": "tasks-eu:"},
                    "dashboards": {"slo": {"availability": 99.5, "latencyP95Ms": 250}},
                },
            },
        ),
        "ServiceSpec",
    )
    assert spec["metadata"]["name"] == "tasks-eu"
    assert spec["spec"] == {
        "database": {"enabled": True, "name": "tasks_eu", "deletionPolicy": "Delete"},
        "redis": {"enabled": True, "keyPrefix": "tasks-eu:", "events": "Shared"},
        "dashboards": {"enabled": True, "slo": {"availability": 99.5, "latencyP95Ms": 250}},
    }


def test_servicespec_passes_monitoring_labels_and_folder_to_the_operator(kube_version):
    objects = render(SERVICE_CHART, {"serviceSpec": {"dashboards": {
        "monitoringLabels": {"release": "team-prometheus"}, "folder": "Team A"}}})
    validate(objects, kube_version)
    spec = helm.find(objects, "ServiceSpec")["spec"]["dashboards"]
    assert spec["monitoringLabels"] == {"release": "team-prometheus"}
    assert spec["folder"] == "Team A"
    assert "monitoringLabels" not in helm.find(render(SERVICE_CHART), "ServiceSpec")["spec"]["dashboards"]


# --- optional objects ---------------------------------------------------------------------------


def test_service_monitor_only_with_the_prometheus_operator_api_or_forced():
    enabled = {"serviceMonitor": {"enabled": True}}
    assert helm.find_all(render(SERVICE_CHART, enabled), "ServiceMonitor") == []
    assert helm.find_all(render(SERVICE_CHART, enabled, api_versions=("monitoring.coreos.com/v1",)), "ServiceMonitor")
    assert helm.find_all(render(SERVICE_CHART, {"serviceMonitor": {"enabled": True, "force": True}}), "ServiceMonitor")
    assert helm.find_all(render(SERVICE_CHART, api_versions=("monitoring.coreos.com/v1",)), "ServiceMonitor") == [], (
        "off by default: the operator makes one from the ServiceSpec"
    )


def test_service_monitor_is_selected_by_a_default_kube_prometheus_stack():
    monitor = helm.find(render(SERVICE_CHART, {"serviceMonitor": {"enabled": True, "force": True}}), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_helm_test_pod_calls_readiness_through_the_service():
    objects = render(SERVICE_CHART)
    pod = helm.find(objects, "Pod")
    service = helm.find(objects, "Service")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/health/ready"
    assert url in script
    assert pod["spec"]["restartPolicy"] == "Never"


def test_labels_follow_the_kubernetes_recommendations():
    for obj in render(SERVICE_CHART):
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert labels.get(key), f"{obj['kind']} lacks {key}"


def test_notes_tell_how_to_reach_and_test_the_service():
    notes = helm.render_files(SERVICE_CHART)["service/templates/NOTES.txt"]
    assert "rollout status deployment/flotilla-tasks" in notes
    assert "helm test flotilla" in notes
