#!/usr/bin/env bash
# The guest examples side by side: for each language's hello component, its
# size, the time from exec to the ready line with an empty compile cache
# (cold) and with a warm one (cached), and hello requests/s (wrk, HTTP/1.1,
# 64 connections, 10 s after a 2 s warm-up; server and wrk pinned to
# separate cores). Prints a markdown table and writes it to
# bench/GUESTS.md.
#
#   guest-examples/build.sh && bench/guests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=bench/GUESTS.md
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { echo "bench/guests.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
echo "building (release)..." >&2
cargo build --release -q -p catshost

# start COMPONENT CACHE: starts a server on a free port and waits for its
# ready line; sets $ready_ms (from exec to that line), $server_pid and $url.
start() {
  local log=$work/server.log start_ns
  start_ns=$(date +%s%N)
  taskset -c "$SERVER_CPU" target/release/catshost serve "$1" --addr 127.0.0.1:0 \
    --workers 1 --no-access-log --cache-dir "$2" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 6000); do
    if grep -q "catshost: serving" "$log"; then
      ready_ms=$((($(date +%s%N) - start_ns) / 1000000))
      url=$(sed -n 's/^catshost: serving //p' "$log")/
      return 0
    fi
    sleep 0.01
  done
  echo "bench/guests.sh: $1 did not start:" >&2; cat "$log" >&2; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }

declare -A toolchain=(
  [wat]="wat + wit-component 0.262 (catshost-wat)"
  [c]="Debian clang 14, wasi-libc, wit-bindgen-c 0.63"
  [rust]="Debian rustc-web 1.96, -Zbuild-std, wit-bindgen 0.63"
  [python]="componentize-py 0.25.1"
  [js]="componentize-js 0.23.0"
)
rows=()
for language in wat c rust python js; do
  component=target/guest-examples/$language-hello.wasm
  [ -f "$component" ] || { echo "bench/guests.sh: $component is missing: run guest-examples/build.sh" >&2; exit 1; }
  echo "$language..." >&2
  cache=$work/cache-$language
  start "$component" "$cache"; cold=$ready_ms; stop
  start "$component" "$cache"; cached=$ready_ms
  taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${WARMUP}s" "$url" >/dev/null
  rps=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" "$url" |
    awk '/Requests\/sec/ { printf "%.0f", $2 }')
  stop
  size=$(stat -c %s "$component")
  rows+=("| $language | ${toolchain[$language]} | $(numfmt --to=iec --suffix=B "$size") | $cold ms | $cached ms | $rps |")
done

{
  echo "| language | toolchain | component | cold start | cached start | hello req/s |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Start: exec to the \`catshost: serving\` line, release build, \`--workers 1 --no-access-log\`;"
  echo "cold with an empty \`--cache-dir\`, cached with the entry the cold start wrote."
  echo "req/s: \`wrk -t1 -c64 -d${DURATION}s\` after a ${WARMUP} s warm-up, server on CPU $SERVER_CPU, wrk on CPU $LOAD_CPU."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(date -u +%Y-%m-%d); $(target/release/catshost --version)."
} | tee "$OUT.partial"
mv "$OUT.partial" "$OUT"
