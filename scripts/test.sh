#!/usr/bin/env bash
# The whole test suite, on a fresh machine: builds the guest examples of
# every language (guest-examples/build.sh installs their toolchains), installs
# what the tests drive (curl, openssl, a headless Chromium; kubernetes-validate
# from PyPI for the manifest check, websockets from PyPI for the WebSocket
# client) when missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# deploy/check.py's schema check, in a venv of its own (tests/deploy.rs
# runs deploy/check.py with this venv's Python).
venv=target/guest-toolchains/deploy-check
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "== installing kubernetes-validate (PyPI) into $venv"
  python3 -m venv "$venv" 2>/dev/null || {
    "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.31.0
fi

# The WebSocket clients tests/upgrade.rs and tests/websocket.rs drive
# (tests/clients): the websockets library, and h2 for raw HTTP/2 frames.
venv=target/guest-toolchains/ws-client
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import websockets, h2' 2>/dev/null; then
  echo "== installing websockets and h2 (PyPI) into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check websockets==15.0.1 h2==4.3.0
fi

guest-examples/build.sh

# cargo prints one "test result" line per test binary (many of them doc-test
# runs with nothing in them); end with the totals on one line.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
