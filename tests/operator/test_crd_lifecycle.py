"""Issue 15.6: the CRD upgrade path docs/operator.md gives works, run as written.

Helm never upgrades crds/, so the documented path is `kubectl apply --server-side` on the
chart's CRD files. A real kubectl runs that command against the API emulator, which
holds an older ServiceSpec CRD (one without a field the current one has); afterwards the
stored CRDs are exactly the files. kmock serves no OpenAPI documents, so kubectl's
client-side validation is off (--validate=false); the API server validates CRDs itself.
"""

from __future__ import annotations

import asyncio
import copy
import re
import shlex
import shutil
from pathlib import Path

import kmock
import pytest
import yaml
from flotilla_operator import crd

from tests.operator.harness import EmulatedAPIServer, write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operator.md"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")


def documented_command() -> list[str]:
    commands = re.findall(r"^kubectl apply --server-side .*$", DOC.read_text(), flags=re.MULTILINE)
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def test_the_documented_files_are_the_charts_crds() -> None:
    args = documented_command()
    files = Path(ROOT / args[args.index("-f") + 1])
    names = {doc["metadata"]["name"] for path in sorted(files.glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc}
    assert crd.manifest()["metadata"]["name"] in names


async def test_server_side_apply_upgrades_an_older_crd(tmp_path: Path) -> None:
    async with EmulatedAPIServer() as server, kmock.Server(server):
        server.resources[CRDS] = kmock.ResourceInfo(kind="CustomResourceDefinition", namespaced=False,
                                                    verbs={"get", "list", "watch", "create", "patch"})
        older = copy.deepcopy(crd.manifest())
        spec_schema = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        del spec_schema["properties"]["redis"]["properties"]["events"]
        resource = next(r for r in server.resources if r.plural == "customresourcedefinitions")
        server.objects[resource, None, older["metadata"]["name"]] = older
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(server.url))
        args = documented_command()
        for _ in range(2):  # idempotent: the second run changes nothing and succeeds
            process = await asyncio.create_subprocess_exec(
                *args[:1], f"--kubeconfig={kubeconfig}", "--validate=false", *args[1:], cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await process.communicate()
            assert process.returncode == 0, output.decode()
        stored = server.objects[resource, None, older["metadata"]["name"]].raw
        assert stored["spec"] == crd.manifest()["spec"], "the ServiceSpec CRD was not upgraded"
        assert "serverside-applied" in output.decode()
