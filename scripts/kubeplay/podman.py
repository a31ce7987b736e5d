"""Driving podman for a :class:`scripts.kubeplay.plan.Plan`: images, network, secrets, pods, probes.

podman runs with scripts/images.sh's private configuration (its `--env`), so what
`make images` built is what plays here, and the machine's own podman setup is untouched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scripts.kubeplay.plan import Plan, Workload

ROOT = Path(__file__).resolve().parents[2]
IMAGES_SCRIPT = ROOT / "scripts" / "images.sh"
STANDIN_DIR = Path(__file__).resolve().parent / "standin"
STANDIN_TARGETS = ("postgresql", "redis", "service-proxy")


class PodmanError(Exception):
    pass


def podman_env() -> dict[str, str]:
    """scripts/images.sh's podman configuration, base image and tag (it writes the config)."""
    out = subprocess.run(["bash", str(IMAGES_SCRIPT), "--env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


class Podman:
    def __init__(self, env: dict[str, str], state_dir: Path) -> None:
        self.settings = env
        self.env = {**os.environ, "CONTAINERS_CONF": env["CONTAINERS_CONF"],
                    "CONTAINERS_STORAGE_CONF": env["CONTAINERS_STORAGE_CONF"]}
        self.state_dir = state_dir

    def __call__(self, *args: str, check: bool = True, timeout: float = 600, stdin: bytes | None = None
                 ) -> subprocess.CompletedProcess[bytes]:
        try:
            result = subprocess.run(["podman", *args], env=self.env, capture_output=True, timeout=timeout,
                                    input=stdin, check=False)
        except FileNotFoundError:
            raise PodmanError("podman is not installed; `make images` installs it (as root)") from None
        if check and result.returncode != 0:
            raise PodmanError(f"podman {shlex.join(args)[:300]} failed ({result.returncode}): "
                              f"{result.stderr.decode(errors='replace').strip()[-2000:]}")
        return result

    # --- images ------------------------------------------------------------------------
    def build_flotilla_images(self, services: Sequence[str]) -> None:
        """scripts/images.sh builds them (cached layers make a rebuild quick); no smoke test."""
        result = subprocess.run(["bash", str(IMAGES_SCRIPT), *services], capture_output=True, text=True,
                                env={**os.environ, "FLOTILLA_IMAGES_SMOKE": "0"}, check=False)
        if result.returncode != 0:
            raise PodmanError(f"scripts/images.sh {' '.join(services)} failed:\n{result.stderr[-3000:]}")

    def standin_image(self, target: str) -> str:
        """Build (when missing) a stand-in image; its tag is the hash of its recipe and base."""
        recipe = hashlib.sha256(self.settings["FLOTILLA_BASE_IMAGE"].encode())
        for path in sorted(STANDIN_DIR.iterdir()):
            recipe.update(path.read_bytes())
        image = f"localhost/flotilla-standin-{target}:{recipe.hexdigest()[:12]}"
        if self("image", "exists", image, check=False).returncode != 0:
            self("build", "--pull=never", "--quiet", "--layers", *self.settings["FLOTILLA_BUILD_ULIMITS"].split(),
                 "--file", str(STANDIN_DIR / "Containerfile"), "--target", target,
                 "--build-arg", f"BASE={self.settings['FLOTILLA_BASE_IMAGE']}", "--tag", image, str(STANDIN_DIR),
                 timeout=900)
            # Stand-ins of older recipes would pile up (the postgresql one is 500 MB).
            repository = image.rsplit(":", 1)[0]
            listed = self("images", "--format", "{{.Repository}}:{{.Tag}}", repository).stdout.decode().split()
            for stale in set(listed) - {image}:
                self("rmi", stale, check=False)
        return image

    # --- network, secrets, pods --------------------------------------------------------
    def create_network(self, name: str) -> str:
        """A private bridge network (podman picks a free subnet); returns the subnet."""
        self("network", "rm", "--force", name, check=False)
        self("network", "create", name)
        info = json.loads(self("network", "inspect", name).stdout)[0]
        return str(info["subnets"][0]["subnet"])

    def create_secrets(self, plan: Plan) -> None:
        # kube play's secretKeyRef reads a podman secret holding {key: base64} as JSON.
        for name, data in plan.secrets.items():
            self("secret", "rm", name, check=False)
            payload = json.dumps({key: base64.b64encode(value).decode() for key, value in data.items()})
            self("secret", "create", name, "-", stdin=payload.encode())

    def play(self, workload: Workload, network: str) -> None:
        path = self.state_dir / f"{workload.pod_name}.yaml"
        path.write_text(yaml.safe_dump_all(workload.documents, sort_keys=False))
        self("kube", "play", "--network", network, "--ip", workload.ip, "--build=false", str(path), timeout=900)

    def logs(self, container: str, lines: int = 40) -> str:
        result = self("logs", "--tail", str(lines), container, check=False)
        return (result.stdout + result.stderr).decode(errors="replace")

    # --- probes ------------------------------------------------------------------------
    def probe(self, container: str, probe: dict[str, Any]) -> bool:
        """One probe attempt as the kubelet would make it, run inside the container's network."""
        timeout = float(probe.get("timeoutSeconds", 1))
        if "exec" in probe:
            command = probe["exec"]["command"]
        else:
            action = probe.get("httpGet") or probe["tcpSocket"]
            port = int(action["port"])  # plan.py resolved named ports
            if "httpGet" in probe:
                url = f"http://127.0.0.1:{port}{action.get('path', '/')}"
                code = (f"import urllib.request,sys; r=urllib.request.urlopen({url!r}, timeout={timeout}); "
                        "sys.exit(0 if 200 <= r.status < 400 else 1)")
            else:
                code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout={timeout}).close()"
            command = ["python3", "-c", code]
        try:
            return self("exec", container, *command, check=False, timeout=timeout + 10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def wait_ready(self, workload: Workload, deadline_seconds: float) -> None:
        """Every container's probes pass, in a kubelet's order (a container without any: running)."""
        deadline = time.monotonic() + deadline_seconds
        for spec in workload.spec["containers"]:
            container = workload.container(spec["name"])
            probes: list[dict[str, Any] | None] = [*workload.probes.get(spec["name"], [])] or [None]
            for probe in probes:
                while True:
                    if probe is None:
                        state = self("inspect", "--format", "{{.State.Running}}", container, check=False)
                        ok = state.stdout.strip() == b"true"
                    else:
                        ok = self.probe(container, probe)
                    if ok:
                        break
                    if time.monotonic() > deadline:
                        raise PodmanError(f"{container}: not ready after {deadline_seconds:.0f} s; its log:\n"
                                          f"{self.logs(container)}")
                    time.sleep(float((probe or {}).get("periodSeconds", 1)) / 2)

    def run_to_completion(self, workload: Workload, network: str, timeout: float) -> tuple[int, str]:
        """Play a run-once pod (a `helm test` hook) and return its exit code and log."""
        self.play(workload, network)
        container = workload.container(workload.spec["containers"][0]["name"])
        result = self("wait", container, timeout=timeout)
        return int(result.stdout.decode().strip() or 1), self.logs(container, 20)

    # --- teardown ------------------------------------------------------------------------
    def remove(self, state: dict[str, Any]) -> None:
        """Everything `up` recorded in its state file: pods, volumes, secrets, the network."""
        if state["pods"]:
            # Killed first: everything goes, volumes included, so there is nothing to drain,
            # and `pod rm` of running pods stops their containers one by one (30-45 s here).
            self("pod", "kill", *state["pods"], check=False)
            self("pod", "rm", "--force", *state["pods"], check=False)
        for volume in state["volumes"]:
            self("volume", "rm", "--force", volume, check=False)
        for secret in state["secrets"]:
            self("secret", "rm", secret, check=False)
        self("network", "rm", "--force", state["network"], check=False)
