# Every Flotilla image from one recipe: the target picks the kind, SERVICE the service.
#
#   podman build --target service --build-arg SERVICE=tasks -t flotilla-tasks .
#   podman build --target operator -t flotilla-operator .
#   (docker build works the same; `make images` builds and smoke-tests all six)
#
# The build context is the repository root (see .dockerignore). One builder stage makes
# both virtualenvs from the locks (requirements/service.txt, requirements/operator.txt:
# subsets of requirements/dev.txt, pinned with hashes by `make lock`), so every image
# shares its layers; each target copies only its own venv onto the clean base.
#
# PID 1 is dumb-init (from the locks), which forwards SIGTERM from the kubelet: uvicorn
# stops accepting connections and finishes in-flight requests within
# FLOTILLA_GRACEFUL_TIMEOUT seconds (the chart keeps that below the pod's
# terminationGracePeriodSeconds minus its preStop sleep); kopf lets running handlers finish.

# Pin by digest where a registry is used: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: both venvs, the project wheel, then slimmed ----------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# strip(1), for the extension modules below; the builder only, never shipped. Debian's
# package of the base's own release (pin the base by digest to pin it).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# /opt/build holds pip and the build backend and stays here; the shipped venvs get no pip
# at all (`venv --without-pip`, filled by /opt/build's pip through --python). Each venv
# lives at the path it runs from: its scripts' shebangs name it.
RUN python -m venv /opt/build \
    && python -m venv --without-pip /opt/venv/service \
    && python -m venv --without-pip /opt/venv/operator

# Dependencies first, from the lock files alone: rebuilt only when a lock changes, not on
# every source edit. No .pyc yet (--no-compile): they are made once, below, after slimming.
COPY requirements ./requirements
RUN /opt/build/bin/pip install --no-deps --require-hashes --requirement requirements/build.txt \
    && /opt/build/bin/pip --python /opt/venv/service/bin/python install --no-compile --no-deps \
        --require-hashes --requirement requirements/service.txt \
    && /opt/build/bin/pip --python /opt/venv/operator/bin/python install --no-compile --no-deps \
        --require-hashes --requirement requirements/operator.txt

# Then the project itself, as one wheel (no editable paths, no sources left behind) for both.
COPY pyproject.toml README.md ./
COPY services ./services
COPY operator ./operator
RUN /opt/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/wheels . \
    && for venv in /opt/venv/service /opt/venv/operator; do \
        /opt/build/bin/pip --python "$venv/bin/python" install --no-compile --no-deps /tmp/wheels/flotilla-*.whl \
        || exit 1; \
    done

# Slimming, each measured on the service venv (README, "Images"):
# * debug symbols out of the extension modules (--strip-unneeded, as Debian's dh_strip does
#   for shared libraries): 70 -> 24 MB of .so, the biggest single saving;
# * third-party test suites (never imported; our own services/kit/templates/tests is a
#   scaffold template and stays): 1.6 MB;
# * .pyc compiled once here, as unchecked hashes: the root filesystem is read-only, so
#   without them every start would compile every module again, and
#   hashes instead of mtimes keep them valid however the files were copied.
RUN find /opt/venv -name '*.so*' -type f -exec strip --strip-unneeded {} + \
    && find /opt/venv -path '*/site-packages/services' -prune -o -type d -name tests -prune -exec rm -rf {} + \
    && /opt/venv/service/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/service \
    && /opt/venv/operator/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/operator

# --- runtime: the common part of every image: a clean base, non-root, no pip ---------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed numeric UID/GID so Kubernetes' runAsNonRoot can verify it (runAsUser 10001).
# pip goes too: python:*-slim ships one in /usr/local, Debian's python3-venv a wheel of it.
RUN groupadd --system --gid 10001 flotilla \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin flotilla \
    && rm -rf /usr/local/lib/python3*/site-packages/pip /usr/local/lib/python3*/site-packages/pip-* \
        /usr/local/bin/pip* /usr/share/python-wheels

WORKDIR /tmp

# --- operator: `python -m flotilla_operator` (kopf); no FastAPI, SQLAlchemy or uvicorn ------
FROM runtime AS operator

ENV VIRTUAL_ENV=/opt/venv/operator \
    PATH=/opt/venv/operator/bin:$PATH

COPY --from=builder /opt/venv/operator /opt/venv/operator

# Fail the build, not the rollout, if the operator cannot import or its CRD is missing.
RUN python -c "import flotilla_operator.__main__, flotilla_operator.crd as c; c.manifest()"

USER 10001:10001
# 8080: kopf liveness (/healthz); 9090: Prometheus metrics.
EXPOSE 8080 9090

# OCI labels last, so a new revision rebuilds only this layer.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="flotilla-operator" \
      org.opencontainers.image.description="Flotilla operator (kopf)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENTRYPOINT ["dumb-init", "--", "python", "-m", "flotilla_operator"]
CMD ["--standalone", "--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz"]

# --- service: `flotilla serve` of the service SERVICE names (the default target) -----------
FROM runtime AS service

ENV VIRTUAL_ENV=/opt/venv/service \
    PATH=/opt/venv/service/bin:$PATH \
    FLOTILLA_GRACEFUL_TIMEOUT=20

COPY --from=builder /opt/venv/service /opt/venv/service

# Fail the build, not the rollout, on an unknown SERVICE or a service that cannot import.
ARG SERVICE
ENV FLOTILLA_SERVICE=${SERVICE}
RUN python -c "import importlib, os; from services.kit.catalog import by_name; \
importlib.import_module(by_name(os.environ['FLOTILLA_SERVICE']).factory.split(':')[0])"

USER 10001:10001
EXPOSE 8000 9000

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2)"]

# OCI labels last, so a new revision rebuilds only this layer.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="flotilla-${SERVICE}" \
      org.opencontainers.image.description="Flotilla ${SERVICE} service" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# `flotilla` under the init, so every subcommand gets it: the chart passes
# `serve <service> ...` to the app and `migrate <service>` to its init container as args.
ENTRYPOINT ["dumb-init", "--", "flotilla"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--metrics-port", "9000"]
