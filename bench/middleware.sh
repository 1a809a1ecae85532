#!/usr/bin/env bash
# What a middleware hop and a tenant-to-tenant call cost (docs/middleware.md):
#   - the Rust WASI 0.3 hello (rust-echo-p3, GET /) behind 0, 1 and 3
#     pass-through middleware (rust-pass), one chain instance reused;
#   - a front tenant (rust-front, GET /total?1,2) calling the sum tenant
#     (rust-sum, POST /sum) by its internal name, against the same call
#     over loopback HTTP to the same server, and against a front request
#     that calls nothing (GET /nope: its 404), which is subtracted to get
#     the call's own cost.
# Each row: wrk -t1 -c64 on LOAD_CPU for DURATION s, the server (catshost
# --workers 1 --no-access-log) pinned to SERVER_CPU; ROUNDS rounds, the
# servers taking turns; the median round's 2xx/s and the server's CPU time
# per request (user + system from /proc/PID/stat over the round).
#
#   bench/middleware.sh
#   ROUNDS=3 DURATION=5 bench/middleware.sh
#   SUM_REUSE=1000 ROWS="nocall internal loopback" bench/middleware.sh
#       # the callee's instances reused (max_instance_reuse_count), not fresh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CATSHOST=${CATSHOST:-target/release/catshost}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { echo "bench/middleware.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ "$CATSHOST" != target/release/catshost ] || cargo build -q --release -p catshost
guests=target/guest-examples
for name in echo-p3 pass front sum; do
  [ -f "$guests/rust-$name.wasm" ] || guest-examples/build.sh rust
done

port=19400
# The tenants of the call rows; BACK of the loopback front is this server.
calls_config() {
  cat >"$work/calls.toml" <<EOF
[server]
addr = "127.0.0.1:$1"

[defaults]
preload = true
max_concurrent_requests = 256

[[tenant]]
name = "internal"
component = "$PWD/$guests/rust-front.wasm"
routes = ["internal.test"]
outbound = ["http://sum.tenant.internal"]

[[tenant]]
name = "loopback"
component = "$PWD/$guests/rust-front.wasm"
routes = ["loopback.test"]
env = { BACK = "http://127.0.0.1:$1" }
outbound = ["http://127.0.0.1:$1"]

[[tenant]]
name = "sum"
component = "$PWD/$guests/rust-sum.wasm"
routes = ["/sum"]
${SUM_REUSE:+max_instance_reuse_count = $SUM_REUSE}
EOF
}

# ROW: the server's arguments, the Host header and the path.
row() {
  local pass=$guests/rust-pass.wasm p3=$guests/rust-echo-p3.wasm
  case $1 in
    hops0) echo "serve $p3 --addr 127.0.0.1:@PORT@|-|/" ;;
    hops1) echo "serve $p3 --middleware $pass --addr 127.0.0.1:@PORT@|-|/" ;;
    hops3) echo "serve $p3 --middleware $pass --middleware $pass --middleware $pass --addr 127.0.0.1:@PORT@|-|/" ;;
    nocall) echo "serve --config $work/calls.toml|internal.test|/nope" ;;
    internal) echo "serve --config $work/calls.toml|internal.test|/total?1,2" ;;
    loopback) echo "serve --config $work/calls.toml|loopback.test|/total?1,2" ;;
  esac
}
ROWS=${ROWS:-hops0 hops1 hops3 nocall internal loopback}

declare -A rps cpu
for round in $(seq "$ROUNDS"); do
  for name in $ROWS; do
    port=$((port + 1))
    IFS='|' read -r args host path <<<"$(row "$name")"
    args=${args//@PORT@/$port}
    calls_config "$port"
    # shellcheck disable=SC2086
    taskset -c "$SERVER_CPU" "$CATSHOST" serve --workers 1 --no-access-log ${args#serve } \
      >"$work/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do
      grep -q "catshost: serving" "$work/$name.log" && break
      kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
      sleep 0.05
    done
    headers=()
    [ "$host" = - ] || headers=(-H "Host: $host")
    url=http://127.0.0.1:$port$path
    taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${WARMUP}s" "${headers[@]}" "$url" >/dev/null
    t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" "${headers[@]}" "$url")
    t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    n=$(awk '/requests in/ { print $1 }' <<<"$out")
    bad=$(awk '/Non-2xx/ { print $5 }' <<<"$out")
    # The no-call row's answers are its guest's 404s: counted all the same.
    [ "$name" = nocall ] && bad=0
    ok=$((n - ${bad:-0}))
    rate=$(awk -v n="$ok" -v d="$DURATION" 'BEGIN { printf "%d", n / d }')
    us=$(awk -v t=$((t1 - t0)) -v n="$n" 'BEGIN { printf "%.1f", t * 10000 / n }')
    rps[$name]+="$rate "
    cpu[$name]+="$us "
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    echo "round $round $name: $rate 2xx/s, $us us/req" >&2
  done
done

median() { tr ' ' '\n' <<<"$1" | awk 'NF' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
echo "| row | 2xx/s (median of $ROUNDS) | server CPU us/request |"
echo "|---|---|---|"
for name in $ROWS; do
  echo "| $name | $(median "${rps[$name]}") | $(median "${cpu[$name]}") |"
done
m() { median "${cpu[$1]:-}"; }
if [[ " $ROWS " == *" hops0 "* && " $ROWS " == *" hops3 "* ]]; then
  awk -v a="$(m hops0)" -v c="$(m hops3)" -v b="$(m hops1)" 'BEGIN {
    printf "\none pass-through hop: %.1f us (behind 1: +%.1f%%, each of 3: +%.1f%% of the hello)\n",
      (c - a) / 3, (b - a) * 100 / a, (c - a) * 100 / 3 / a }'
fi
if [[ " $ROWS " == *" nocall "* && " $ROWS " == *" internal "* && " $ROWS " == *" loopback "* ]]; then
  awk -v z="$(m nocall)" -v i="$(m internal)" -v l="$(m loopback)" 'BEGIN {
    printf "a call: internal %.1f us, loopback %.1f us: internal is %.2fx faster\n",
      i - z, l - z, (l - z) / (i - z) }'
fi
