#!/usr/bin/env bash
# Build every Flotilla image with podman and smoke-test each one, on this machine, with no
# Docker engine and no registry (issue 16 item 1).
#
#   bash scripts/images.sh                  # tools, base, every image, every smoke test
#   bash scripts/images.sh tasks operator   # only these images (build + smoke)
#   FLOTILLA_IMAGES_SMOKE=0 bash scripts/images.sh   # build only
#   FLOTILLA_IMAGES_BUILD=0 bash scripts/images.sh tasks   # smoke-test the built image only
#   bash scripts/images.sh --check          # exit 0 when podman can run here, else say why
#   bash scripts/images.sh --env            # KEY=VALUE: the podman config, base and tag in use
#
# What it does:
#   * installs podman, buildah, runc, uidmap, slirp4netns, fuse-overlayfs, mmdebstrap, catatonit via
#     apt-get when missing (as root, like scripts/ensure-servers.sh);
#   * configures podman privately: containers.conf and storage.conf under
#     $FLOTILLA_IMAGES_HOME (default ~/.cache/flotilla-images), passed through
#     CONTAINERS_CONF / CONTAINERS_STORAGE_CONF; the machine's global config is untouched;
#   * builds the stand-in base image localhost/flotilla-base:bookworm-rN from Debian packages
#     (mmdebstrap --variant=minbase, no docs/man pages/locales/perl, | podman import) when it
#     is missing; PYTHON_IMAGE picks
#     another base (e.g. python:3.11-slim-bookworm where a registry is reachable);
#   * builds flotilla-<service>:dev for the five services (--target service) and
#     flotilla-operator:dev (--target operator) from the root Dockerfile with --pull=never;
#   * smoke-tests each image the way the charts run it: UID 10001, read-only root with only
#     a tmpfs /tmp (the chart's emptyDir), every capability dropped, no privilege
#     escalation, PID 1 dumb-init, no pip; services run `migrate` through the entrypoint
#     (as the chart's init container) and answer /health/live and /health/ready with 200 on embedded
#     defaults (SQLite under /tmp/.flotilla), the operator's /healthz answers; SIGTERM
#     ends each within the chart's grace period (30 s services, 60 s operator);
#   * prints build times and image sizes (and writes them to $FLOTILLA_IMAGES_HOME/report.tsv).
#
# Machine quirks handled here, not in the Dockerfiles: crun refuses the hybrid cgroup
# layout (runc + cgroupfs), no journald/systemd (file events logger), podman's default
# nofile/nproc ulimits exceed what root may set (default_ulimits from `ulimit -H`), and a
# TLS-intercepting proxy: the host's CA bundle is mounted into the build (never baked in).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOME_DIR="${FLOTILLA_IMAGES_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla-images}"
# The stand-in base's tag names its recipe: bump -rN when ensure_base changes what goes in.
STANDIN_BASE=localhost/flotilla-base:bookworm-r3
BASE_IMAGE="${PYTHON_IMAGE:-$STANDIN_BASE}"
TAG="${FLOTILLA_IMAGE_TAG:-dev}"
SMOKE="${FLOTILLA_IMAGES_SMOKE:-1}"
BUILD="${FLOTILLA_IMAGES_BUILD:-1}"
# Every service in services/kit/catalog.py (the one service list; loaded alone, it needs
# nothing but the standard library).
read -r -a SERVICES <<<"$(python3 -c "
import importlib.util as u, sys
spec = u.spec_from_file_location('catalog', '$ROOT/services/kit/catalog.py')
module = u.module_from_spec(spec); sys.modules['catalog'] = module; spec.loader.exec_module(module)
print(' '.join(service.name for service in module.SERVICES))")"
[ ${#SERVICES[@]} -gt 0 ] || { echo "[images] error: no service in services/kit/catalog.py" >&2; exit 1; }
CA_BUNDLE="${FLOTILLA_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
SERVICE_GRACE=30   # charts/service/values.yaml terminationGracePeriodSeconds
OPERATOR_GRACE=60  # charts/flotilla-operator/templates/deployment.yaml
OPERATOR_RUN_FLAGS=()
OPERATOR_ARGS=()

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------------------------
ensure_tools() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v buildah >/dev/null 2>&1 || missing+=(buildah)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
  command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
  command -v fuse-overlayfs >/dev/null 2>&1 || missing+=(fuse-overlayfs)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  # The pause process of a pod's infra container (`podman kube play`: scripts/kubeplay/).
  command -v catatonit >/dev/null 2>&1 || missing+=(catatonit)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
  fi
  log "installing ${missing[*]} with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- private podman configuration ----------------------------------------------------------
configure() {
  mkdir -p "$HOME_DIR"
  # nofile: the hard limit root has here. nproc: runc may not set the hard limit that
  # `ulimit -Hu` shows (EPERM at container init, seen from 65536 up), so a fixed 4096.
  local nofile nproc=4096
  nofile="$(ulimit -Hn)"
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nofile" -gt 1048576 ] && nofile=1048576
  cat >"$HOME_DIR/containers.conf" <<EOF
# Written by scripts/images.sh for this machine; used through CONTAINERS_CONF only.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${HOME_DIR}/events.log"
EOF
  cat >"$HOME_DIR/storage.conf" <<EOF
# Written by scripts/images.sh; used through CONTAINERS_STORAGE_CONF only.
[storage]
driver = "overlay"
graphroot = "${HOME_DIR}/storage"
runroot = "${HOME_DIR}/run"
EOF
  # podman build does not apply default_ulimits to RUN steps: the same limits, as flags.
  ULIMITS=(--ulimit "nofile=${nofile}:${nofile}" --ulimit "nproc=${nproc}:${nproc}")
  export CONTAINERS_CONF="$HOME_DIR/containers.conf"
  export CONTAINERS_STORAGE_CONF="$HOME_DIR/storage.conf"
}

# Can podman start a container here at all? (Used by the pytest smoke test to skip.)
check() {
  command -v podman >/dev/null 2>&1 || { echo "podman is not installed (make images installs it as root)"; return 1; }
  configure
  podman info >/dev/null 2>"$HOME_DIR/check.err" || { echo "podman info fails: $(tail -3 "$HOME_DIR/check.err")"; return 1; }
  echo "podman $(podman version --format '{{.Client.Version}}') can run here"
}

# --- the stand-in base image ---------------------------------------------------------------
ensure_base() {
  if podman image exists "$BASE_IMAGE"; then
    return 0
  fi
  [ "$BASE_IMAGE" = "$STANDIN_BASE" ] || die "base image $BASE_IMAGE is not in local storage (nothing is pulled)"
  log "building the stand-in base $BASE_IMAGE from Debian packages (mmdebstrap, ~2 min) ..."
  local start=$SECONDS tarball="$HOME_DIR/base.tar" mirror=()
  # The merged-usr hook installs usr-is-merged right after the Essential set; otherwise
  # init-system-helpers' "usrmerge | usr-is-merged" pulls usrmerge and with it perl
  # (47 MB the images never run; python:3.11-slim has only perl-base).
  # mmdebstrap's default mirror unless FLOTILLA_DEBIAN_MIRROR names another; validity
  # checks off for snapshot mirrors. The tarball goes to a file first: an import from a
  # failed pipe would store an empty image.
  [ -n "${FLOTILLA_DEBIAN_MIRROR:-}" ] && mirror=("$FLOTILLA_DEBIAN_MIRROR")
  rm -f "$tarball"
  mmdebstrap --quiet --variant=minbase --format=tar \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tarball" "${mirror[@]}"
  podman import \
    --change 'CMD ["python3"]' \
    --change 'ENV LANG=C.UTF-8' \
    --message "Debian bookworm minbase + python3, built by scripts/images.sh" \
    "$tarball" "$BASE_IMAGE" >/dev/null
  rm -f "$tarball"
  record base build "$((SECONDS - start))"
}

VERSION="$(python3 -c "import tomllib; print(tomllib.load(open('$ROOT/pyproject.toml', 'rb'))['project']['version'])")"
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
SOURCE="$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)"

REPORT=""
record() {  # record IMAGE WHAT VALUE
  REPORT+="$1	$2	$3"$'\n'
}

# --- build ---------------------------------------------------------------------------------
build_one() {
  local name=$1 args=() start=$SECONDS
  if [ "$name" = operator ]; then
    args+=(--target operator)
  else
    args+=(--target service --build-arg "SERVICE=$name")
  fi
  log "building flotilla-$name:$TAG ..."
  podman build --pull=never --quiet --layers --format docker "${ULIMITS[@]}" \
    --file "$ROOT/Dockerfile" \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "SOURCE=$SOURCE" \
    "${args[@]}" \
    --volume "$CA_BUNDLE:/etc/ssl/certs/ca-certificates.crt:ro" \
    --tag "localhost/flotilla-$name:$TAG" \
    "$ROOT" >/dev/null
  record "flotilla-$name" build "$((SECONDS - start))"
  record "flotilla-$name" size "$(podman image inspect --format '{{.Size}}' "localhost/flotilla-$name:$TAG")"
}

# Each rebuild leaves the image it replaced behind, untagged, and a new base recipe the
# old base: storage would grow by hundreds of MB per edit. Dangling images go (the build
# cache of every tagged image stays: its layers are the tagged image's parents), and so do
# stand-in bases of older recipes.
prune_stale() {
  podman image prune --force >/dev/null
  local image
  for image in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/flotilla-base); do
    [ "$image" = "$STANDIN_BASE" ] || podman rmi "$image" >/dev/null 2>&1 || true
  done
}

# --- smoke test ----------------------------------------------------------------------------
# The chart's pod, as podman flags: UID 10001, read-only root, /tmp the only writable path.
RUN_FLAGS=(--user 10001:10001 --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,size=64m,mode=1777
           --cap-drop=ALL --security-opt no-new-privileges --pull=never --no-healthcheck)

wait_http() {  # wait_http CONTAINER URL SECONDS: 200 from inside the container
  local container=$1 url=$2 limit=$3 i
  for ((i = 0; i < limit * 2; i++)); do
    if podman exec "$container" python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('$url', timeout=2).status != 200)" >/dev/null 2>&1; then
      return 0
    fi
    [ "$(podman inspect --format '{{.State.Running}}' "$container" 2>/dev/null)" = true ] || return 1
    sleep 0.5
  done
  return 1
}

fail_smoke() {
  local container=$1 why=$2
  log "SMOKE FAIL $container: $why; its log:"
  podman logs "$container" 2>&1 | tail -30 >&2 || true
  podman rm -f "$container" >/dev/null 2>&1 || true
  return 1
}

smoke_one() {
  local name=$1 container="flotilla-smoke-$1" grace urls start
  podman rm -f "$container" >/dev/null 2>&1 || true
  if [ "$name" = operator ]; then
    grace=$OPERATOR_GRACE
    urls=(http://127.0.0.1:8080/healthz)
    # A pod's service-account mount, as the kubelet gives it: kopf logs in with it (the
    # image has no Kubernetes client library) and retries, as no API server answers here.
    mkdir -p "$HOME_DIR/serviceaccount"
    printf smoke-test-token >"$HOME_DIR/serviceaccount/token"
    printf flotilla >"$HOME_DIR/serviceaccount/namespace"
    OPERATOR_RUN_FLAGS=(--volume "$HOME_DIR/serviceaccount:/var/run/secrets/kubernetes.io/serviceaccount:ro")
    podman run -d --name "$container" "${RUN_FLAGS[@]}" "${OPERATOR_RUN_FLAGS[@]}" \
      "localhost/flotilla-operator:$TAG" "${OPERATOR_ARGS[@]}" >/dev/null
  else
    grace=$SERVICE_GRACE
    urls=(http://127.0.0.1:8000/health/live http://127.0.0.1:8000/health/ready)
    # The chart's init container first: `migrate` through the entrypoint (dumb-init).
    if ! podman run --rm "${RUN_FLAGS[@]}" "localhost/flotilla-$name:$TAG" migrate "$name" --embedded >"$HOME_DIR/migrate.log" 2>&1; then
      log "SMOKE FAIL flotilla-$name: migrate $name failed:"; tail -20 "$HOME_DIR/migrate.log" >&2; return 1
    fi
    podman run -d --name "$container" "${RUN_FLAGS[@]}" "localhost/flotilla-$name:$TAG" >/dev/null
  fi
  [ "$(podman exec "$container" id -u)" = 10001 ] || { fail_smoke "$container" "not UID 10001"; return 1; }
  # shellcheck disable=SC2016  # $VIRTUAL_ENV is the container's
  if ! podman exec "$container" sh -c 'test -d "$VIRTUAL_ENV"' || \
      podman exec "$container" sh -c 'touch "$VIRTUAL_ENV/write-test"' 2>/dev/null; then
    fail_smoke "$container" "the root filesystem is writable (or VIRTUAL_ENV is missing)"; return 1
  fi
  if podman exec "$container" python -m pip --version >/dev/null 2>&1; then
    fail_smoke "$container" "pip is in the image"; return 1
  fi
  podman exec "$container" sh -c 'grep -qx dumb-init /proc/1/comm' \
    || { fail_smoke "$container" "PID 1 is not dumb-init"; return 1; }
  [ "$(podman exec "$container" sh -c 'grep ^CapEff /proc/1/status | cut -f2')" = 0000000000000000 ] \
    || { fail_smoke "$container" "capabilities left"; return 1; }
  for url in "${urls[@]}"; do
    wait_http "$container" "$url" 60 || { fail_smoke "$container" "$url did not answer 200"; return 1; }
  done
  start=$SECONDS
  podman stop --time "$grace" "$container" >/dev/null
  local took=$((SECONDS - start)) code
  code="$(podman inspect --format '{{.State.ExitCode}}' "$container")"
  # Exit 0, or 143 (128+SIGTERM) from a process that re-raises it, both within the grace
  # period; 137 would be SIGKILL at its end.
  if [ "$code" != 0 ] && [ "$code" != 143 ]; then
    fail_smoke "$container" "exit code $code after SIGTERM (${took}s)"; return 1
  fi
  # 143: uvicorn re-raises SIGTERM after its graceful shutdown; under dumb-init (not PID 1)
  # that ends the process by the signal, once the shutdown below has completed.
  # (the log read whole first: `grep -q` closing a pipe early would fail it under pipefail)
  local logged
  logged="$(podman logs "$container" 2>&1)"
  if [ "$name" != operator ] && [[ "$logged" != *"Application shutdown complete"* ]]; then
    fail_smoke "$container" "no graceful shutdown in the log after SIGTERM"; return 1
  fi
  record "flotilla-$name" sigterm "${took}s,exit=$code"
  podman rm -f "$container" >/dev/null
  log "smoke ok: flotilla-$name (uid 10001, read-only root, no capabilities, health 200, SIGTERM exit $code in ${took}s)"
}

main() {
  if [ "${1:-}" = --check ]; then
    check
    return
  fi
  if [ "${1:-}" = --env ]; then
    # For other scripts driving podman (python -m scripts.kubeplay): the same private config.
    configure
    printf '%s\n' "CONTAINERS_CONF=$CONTAINERS_CONF" "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF" \
      "FLOTILLA_BASE_IMAGE=$BASE_IMAGE" "FLOTILLA_IMAGE_TAG=$TAG" "FLOTILLA_BUILD_ULIMITS=${ULIMITS[*]}"
    return
  fi
  local names=("$@")
  [ ${#names[@]} -eq 0 ] && names=("${SERVICES[@]}" operator)
  log "images: ${names[*]}"
  ensure_tools
  configure
  local name
  if [ "$BUILD" = 1 ]; then
    ensure_base
    for name in "${names[@]}"; do
      build_one "$name"
    done
    prune_stale
  fi
  if [ "$SMOKE" = 1 ]; then
    for name in "${names[@]}"; do
      smoke_one "$name"
    done
  fi
  printf '%s' "$REPORT" | tee "$HOME_DIR/report.tsv"
}

# One line, read whole before it runs: editing this file while it runs cannot change its end.
main "$@"; exit $?
