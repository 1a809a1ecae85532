#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests drive
# (curl, openssl, a headless Chromium; kubernetes-validate from PyPI for the
# manifest check, websockets and h2 from PyPI for the WebSocket clients,
# aioquic for the HTTP/3 one) and
# the guest toolchains when missing, builds the guest examples of every
# language and the Rust tests, then runs every test of the workspace.
# Prints how long each phase took.
#
#   scripts/test.sh                  # everything
#   scripts/test.sh --test serve     # cargo test's arguments pass through
#   scripts/test.sh --install-only   # only install (what .ci/run starts
#                                    # beside clippy)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi

# Everything the tests and the guest builds need from the network: Debian
# packages, PyPI, npm. Idempotent and quick once done.
install_tools() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi

  # deploy/check.py's schema check, in a venv of its own (tests/deploy.rs
  # runs deploy/check.py with this venv's Python).
  local venv=target/guest-toolchains/deploy-check
  if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "== installing kubernetes-validate (PyPI) into $venv"
    python3 -m venv "$venv" 2>/dev/null || {
      "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.31.0
  fi

  # The clients tests/upgrade.rs, tests/websocket.rs and tests/http3.rs
  # drive (tests/clients): the websockets library, h2 for raw HTTP/2
  # frames, aioquic for HTTP/3.
  venv=target/guest-toolchains/ws-client
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import websockets, h2, aioquic' 2>/dev/null; then
    echo "== installing websockets, h2 and aioquic (PyPI) into $venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check websockets==15.0.1 h2==4.3.0 \
      aioquic==1.7.2
  fi

  guest-examples/build.sh --toolchains
}

if [ "${1:-}" = --install-only ]; then
  install_tools
  exit 0
fi

# phase NAME COMMAND...: runs COMMAND and records how long it took.
phases=()
phase() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  phases+=("$(printf '%-34s %5d s' "$name" $((SECONDS - start)))")
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

phase "install tools" install_tools

# One after the other: built beside the test build, the guest examples made
# the two together 40 s slower (617 s against 577 s) on 2 cores.
phase "guest examples" guest-examples/build.sh
phase "test build" cargo test --workspace --no-run "$@"

# cargo prints one "test result" line per test binary (many of them doc-test
# runs with nothing in them); end with the totals on one line.
status=0
start=$SECONDS
echo "== run tests"
cargo test --workspace "$@" 2>&1 | tee "$log" || status=$?
phases+=("$(printf '%-34s %5d s' "run tests" $((SECONDS - start)))")

echo
echo "scripts/test.sh phases:"
printf '  %s\n' "${phases[@]}"
echo "  test binaries (cargo's own times):"
awk '/^ *Running / { name = ($2 == "unittests") ? $3 : $2 } /^ *Doc-tests / { name = "doc-tests " $2 }
     /^test result:/ { for (i = 1; i <= NF; i++) if ($i == "in") t = $(i+1);
                       if (t + 0 >= 1) printf "    %-32s %s\n", name, t }' "$log"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
