"""A real Prometheus (Debian's ``prometheus``) scraping services on 127.0.0.1.

The scrape config gives every series the labels a ServiceMonitor would in a cluster
(``job`` = the service name, ``namespace``), so the operator's generated PromQL runs
unchanged. Temp dir, free port, stopped and removed on exit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.servers import free_port, stop_process, wait_for_port

PROMETHEUS_BIN = "/usr/bin/prometheus"
PROMTOOL_BIN = "/usr/bin/promtool"


def binary(name: str, default: str) -> str:
    found = shutil.which(name) or default
    if not Path(found).exists():
        raise RuntimeError(f"{name} not found; `make test` installs it (scripts/ensure-servers.sh)")
    return found


@dataclass
class PrometheusServer:
    #: job name -> "host:port" of its /metrics
    targets: Mapping[str, str]
    rule_groups: Sequence[Mapping[str, Any]] = ()
    namespace: str = "flotilla"
    scrape_interval: str = "1s"
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flotilla-prom-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rules_path(self) -> Path:
        return self.root / "rules.yaml"

    def write_config(self) -> Path:
        self.rules_path.write_text(yaml.safe_dump({"groups": list(self.rule_groups)}, sort_keys=False))
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": [str(self.rules_path)],
            "scrape_configs": [
                {
                    "job_name": job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [address],
                                        "labels": {"namespace": self.namespace, "pod": f"{job}-0"}}],
                }
                for job, address in self.targets.items()
            ],
        }
        path = self.root / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self) -> None:
        config = self.write_config()
        log = (self.root / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [binary("prometheus", PROMETHEUS_BIN), f"--config.file={config}",
             f"--storage.tsdb.path={self.root / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--web.console.templates=/dev/null", "--web.console.libraries=/dev/null"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port)
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """The port opens before the TSDB is loaded; until then the API answers 503."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout}s; see {self.root / 'prometheus.log'}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15)
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data]
        return result

    def wait_all_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            targets = self.api("targets")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            if set(health) == set(self.targets) and all(h == "up" for h in health.values()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"targets not all up after {timeout}s: {health}")

    def wait_rules_evaluated(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            groups = self.api("rules")["groups"]
            if groups and all(r.get("lastEvaluation", "").startswith("20") and r.get("health") == "ok"
                              for g in groups for r in g["rules"]):
                return
            time.sleep(0.2)
        raise TimeoutError(f"rules not all evaluated and healthy after {timeout}s")


class PromQLError(AssertionError):
    pass


def promtool_check_rules(*paths: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` with every lint fatal: duplicate rules (same name and
    labels, which one Prometheus loading every service's rules would mix up) fail it.
    ``make test`` installs promtool; without it this raises rather than skips."""
    return subprocess.run([binary("promtool", PROMTOOL_BIN), "check", "rules", "--lint=all", "--lint-fatal",
                           *map(str, paths)], capture_output=True, text=True, check=False)


def promtool_test_rules(path: Path) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: unit tests (input series, expected alerts) of a rules file."""
    return subprocess.run([binary("promtool", PROMTOOL_BIN), "test", "rules", str(path)],
                          capture_output=True, text=True, check=False, cwd=path.parent)


@contextmanager
def running_prometheus(targets: Mapping[str, str], rule_groups: Sequence[Mapping[str, Any]] = ()
                       ) -> Iterator[PrometheusServer]:
    server = PrometheusServer(targets=targets, rule_groups=rule_groups)
    try:
        server.start()
        yield server
    finally:
        server.stop()
