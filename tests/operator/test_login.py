"""How the operator logs in: kopf's own readers first, the Kubernetes client only for what
they cannot do (exec plugins), and a clear warning where it is missing (the image ships
without it: in a pod the service account suffices)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import kopf
import pytest
import yaml
from flotilla_operator.handlers import _login

EXEC_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "eks",
    "clusters": [{"name": "eks", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "eks", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                 "command": "aws", "args": ["eks", "get-token"]}}}],
    "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
}


def _kwargs() -> dict[str, object]:
    settings = kopf.OperatorSettings()
    return {"settings": settings, "logger": kopf.LocalObjectLogger(body={}, settings=settings)}


def _kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, object]) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_a_token_kubeconfig_needs_no_kubernetes_client(tmp_path, monkeypatch):
    config = {**EXEC_KUBECONFIG, "users": [{"name": "eks", "user": {"token": "dev-only-token"}}]}
    _kubeconfig(tmp_path, monkeypatch, config)
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # as in the operator image
    info = _login(**_kwargs())
    assert info is not None
    assert (info.server, info.token) == ("https://127.0.0.1:6443", "dev-only-token")


def test_an_exec_plugin_kubeconfig_without_the_client_says_what_is_missing(tmp_path, monkeypatch, caplog):
    _kubeconfig(tmp_path, monkeypatch, EXEC_KUBECONFIG)
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "kubernetes" else object())
    info = _login(**_kwargs())
    assert info is not None
    assert not info.token
    assert "need the Kubernetes client" in caplog.text


def test_an_exec_plugin_kubeconfig_logs_in_through_the_client_where_installed(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "aws"
    plugin.write_text('#!/bin/sh\necho \'{"apiVersion": "client.authentication.k8s.io/v1beta1", '
                      '"kind": "ExecCredential", "status": {"token": "from-exec-plugin"}}\'\n')
    plugin.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    _kubeconfig(tmp_path, monkeypatch, EXEC_KUBECONFIG)
    # The client reads $KUBECONFIG once, when it is imported (kopf imports it first).
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", os.environ["KUBECONFIG"])
    info = _login(**_kwargs())
    assert info is not None
    assert info.token == "from-exec-plugin"
