#!/usr/bin/env bash
# Make sure the real servers the tests start (PostgreSQL, Redis, Prometheus/promtool),
# the load generator the loadtest tests drive (wrk) and the browser that renders the API
# docs (Chromium, driven by Playwright: tests/e2e/test_docs_browser.py) are installed.
# Installs them with apt-get when missing and running as root; otherwise says what to
# install. The tests start and stop their own instances.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)  # the load generator of the loadtest tests
# Debian's Chromium; Playwright never downloads a browser of its own (tests/support/browser.py).
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the packages' own services from starting (no systemd here anyway).
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
