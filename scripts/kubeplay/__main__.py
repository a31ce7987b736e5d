"""`python -m scripts.kubeplay up|down`: the umbrella chart with its dev values, rendered by Helm's
own engine and run as real containers with `podman kube play` (no cluster needed).

    make kube-play            # build the images, play the chart, print the gateway's URL
    make kube-play-down       # remove every pod, volume, secret and the network

What a cluster would do that podman cannot is emulated or listed: `python -m scripts.kubeplay gaps`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from scripts.kubeplay import plan as planning
from scripts.kubeplay.podman import STANDIN_TARGETS, Podman, PodmanError, podman_env
from services.kit import catalog
from services.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "flotilla"
DEV_VALUES = CHART / "values-dev.yaml"

app = typer.Typer(help="Run the Helm chart's pods as containers with podman kube play.", no_args_is_help=True,
                  add_completion=False, rich_markup_mode=None, context_settings={"max_content_width": 120})

Release = Annotated[str, typer.Option(help="Helm release name (prefixes every pod, Secret and volume)")]


def _say(message: str) -> None:
    print(f"[kubeplay] {message}", file=sys.stderr, flush=True)


def render(release: str, namespace: str, tag: str, standins: dict[str, str]) -> list[dict[str, Any]]:
    """`helm template -f values-dev.yaml` with the locally built images (nothing is pulled)."""
    from tests.support import helm  # the chart tests' renderer: Helm's engine via helm-python-sdk

    overrides: dict[str, Any] = {
        "global": {"imageRegistry": "localhost"},
        "devServers": {"postgresql": {"image": standins["postgresql"]}, "redis": {"image": standins["redis"]}},
        **{service.name: {"image": {"tag": tag, "pullPolicy": "Never"}} for service in catalog.SERVICES},
    }
    values = helm.merge_values(yaml.safe_load(DEV_VALUES.read_text()), overrides)
    return helm.render(CHART, values, release=release, namespace=namespace)


def _gateway_service(objects: list[dict[str, Any]]) -> str:
    for obj in objects:
        if obj["kind"] == "Service" and obj["spec"].get("selector", {}).get(
                "app.kubernetes.io/name") == catalog.GATEWAY.name:
            return str(obj["metadata"]["name"])
    raise typer.BadParameter(f"the render has no Service for {catalog.GATEWAY.name}")


def _state_file(podman: Podman) -> Path:
    return podman.state_dir / "state.json"


def _podman(release: str) -> Podman:
    env = podman_env()
    state_dir = Path(env["CONTAINERS_CONF"]).parent / "kube-play" / release
    state_dir.mkdir(parents=True, exist_ok=True)
    return Podman(env, state_dir)


@app.command("up", short_help="Build the images, play the chart, wait until ready, run its helm tests.")
def up(
    release: Release = "flotilla",
    namespace: Annotated[str, typer.Option(help="the namespace the chart is rendered for")] = "flotilla",
    port: Annotated[int, typer.Option(help="127.0.0.1 port for the gateway's Service; 0: a free one")] = 0,
    build: Annotated[bool, typer.Option(help="(re)build Flotilla's images first (cached layers: quick)")] = True,
    ready_timeout: Annotated[float, typer.Option(help="seconds each pod may take to pass its probes")] = 300,
) -> None:
    podman = _podman(release)
    if _state_file(podman).exists():
        _say(f"release {release!r} is already playing; removing it first")
        _down(podman, release)
    services = [service.name for service in catalog.SERVICES]
    if build:
        _say(f"building {', '.join(services)} (scripts/images.sh) ...")
        podman.build_flotilla_images(services)
    standins = {target: podman.standin_image(target) for target in STANDIN_TARGETS}
    objects = render(release, namespace, podman.settings["FLOTILLA_IMAGE_TAG"], standins)

    network = f"kubeplay-{release}"
    subnet = podman.create_network(network)
    port = port or free_port()
    plan = planning.build(objects, subnet=subnet, proxy_image=standins["service-proxy"],
                          publish=(_gateway_service(objects), "http", port))
    state = {"network": network, "url": f"http://127.0.0.1:{port}",
             "pods": [w.pod_name for w in (*plan.workloads, *plan.proxies, *plan.tests)],
             "volumes": plan.volumes, "secrets": sorted(plan.secrets)}
    _state_file(podman).write_text(json.dumps(state, indent=2))
    try:
        podman.create_secrets(plan)
        # Pods whose init containers need others (migrations need PostgreSQL) go second:
        # podman runs an init container once instead of retrying it as a kubelet does.
        first = [w for w in plan.workloads if not w.has_init_containers] + plan.proxies
        second = [w for w in plan.workloads if w.has_init_containers]
        for stage in (first, second):
            for workload in stage:
                _say(f"playing {workload.pod_name} at {workload.ip}")
                podman.play(workload, network)
            for workload in stage:
                podman.wait_ready(workload, ready_timeout)
                _say(f"ready: {workload.pod_name}")
        for test in plan.tests:  # `helm test`
            code, log = podman.run_to_completion(test, network, ready_timeout)
            if code != 0:
                raise PodmanError(f"helm test pod {test.pod_name} exited {code}:\n{log}")
            _say(f"helm test passed: {test.pod_name}")
    except PodmanError:
        _say("failed; the pods stay up for a look (`podman pod ps`); `make kube-play-down` removes them")
        raise
    for line in plan.dropped:
        _say(f"not played: {line}")
    _say(f"the chart is up: gateway at {state['url']} (python -m scripts.kubeplay gaps: what podman does not emulate)")
    print(state["url"])


def _down(podman: Podman, release: str) -> None:
    state_file = _state_file(podman)
    if not state_file.exists():
        _say(f"nothing recorded for release {release!r}")
        return
    state = json.loads(state_file.read_text())
    podman.remove(state)
    state_file.unlink()
    _say(f"removed release {release!r}: {len(state['pods'])} pods, {len(state['volumes'])} volumes, "
         f"{len(state['secrets'])} secrets, network {state['network']}")


@app.command("down", short_help="Remove everything `up` made for the release.")
def down(release: Release = "flotilla") -> None:
    _down(_podman(release), release)


@app.command("gaps", short_help="What a cluster does that this emulation does not.")
def gaps() -> None:
    for topic, what in planning.GAPS.items():
        print(f"- {topic}: {what}")
    for kind, why in planning.DROPPED_KINDS.items():
        print(f"- {kind}: {why}")


if __name__ == "__main__":
    try:
        app()
    except PodmanError as error:
        _say(f"error: {error}")
        sys.exit(1)
