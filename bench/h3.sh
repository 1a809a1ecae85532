#!/usr/bin/env bash
# HTTP/3 against HTTP/2 over TLS, on the same catshost server (--http3, one
# worker, pinned to SERVER_CPU; the load on LOAD_CPU) through the same load
# client (bench/src/bin/h3-load.rs: quinn + h3, or hyper + tokio-rustls):
#   - requests/s and p50/p99 latency of the C hello (GET /), CONNS
#     connections with STREAMS requests in flight each, and of the 1 MiB echo
#     (the Rust WASI 0.3 echo, POST /echo), ECHO_STREAMS in flight on one
#     connection; ROUNDS rounds of DURATION s, the protocols taking turns,
#     the median round;
#   - the server's CPU time per request (user + system over the round):
#     what a request costs the server, whether or not the client (on one
#     core, doing QUIC's work too) keeps it busy;
#   - the server's resident memory per idle connection: IDLE connections
#     opened, one request on each, the RSS before and after, over IDLE.
#
#   bench/h3.sh
#   ROUNDS=3 DURATION=5 IDLE=500 bench/h3.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
CONNS=${CONNS:-2}
STREAMS=${STREAMS:-16}
ECHO_STREAMS=${ECHO_STREAMS:-4}
IDLE=${IDLE:-500}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

cargo build --release -q -p catshost -p catshost-bench --bin catshost --bin h3-load
[ -f target/guest-examples/c-hello.wasm ] || guest-examples/build.sh c >/dev/null
[ -f target/guest-examples/rust-echo-p3.wasm ] || guest-examples/build.sh rust >/dev/null
load=target/release/h3-load

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cp target/guest-examples/c-hello.wasm target/guest-examples/rust-echo-p3.wasm "$work/"
cat >"$work/catshost.toml" <<EOF
[server]
addr = "127.0.0.1:0"
http3 = true
tls = { cert = "cert.pem", key = "key.pem" }
max_connections = 4096
max_connections_per_client = 4096

[defaults]
max_body_size = "2MiB"

[[tenant]]
name = "echo"
component = "rust-echo-p3.wasm"
routes = ["/echo"]

[[tenant]]
name = "hello"
component = "c-hello.wasm"
routes = ["/"]
EOF

# start: a fresh server ($server, $url).
start() {
  rm -f "$work/ready"
  taskset -c "$SERVER_CPU" target/release/catshost serve --config "$work/catshost.toml" \
    --workers 1 --no-access-log --ready-file "$work/ready" >/dev/null 2>"$work/server.log" &
  server=$!
  for _ in $(seq 600); do [ -s "$work/ready" ] && break; sleep 0.1; done
  [ -s "$work/ready" ] || { cat "$work/server.log" >&2; exit 1; }
  url="https://localhost:$(head -1 "$work/ready" | sed 's/.*://')"
}

stop() { kill "$server"; wait "$server" 2>/dev/null || true; }

ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }

# run PROTO PATH FLAGS...: one round's line of h3-load, and the server's
# CPU time per request in µs (user + system, 100 ticks a second).
run() {
  local proto=$1 path=$2 before line
  shift 2
  before=$(ticks)
  line=$(taskset -c "$LOAD_CPU" "$load" --proto "$proto" --url "$url$path" --ca "$work/cert.pem" \
    --seconds "$DURATION" "$@")
  echo "$line $(awk -v t=$(( $(ticks) - before )) -v rps="$(echo "$line" | awk '{ print $2 }')" \
    -v d="$DURATION" 'BEGIN { printf "%.0f", t * 10000 / (rps * d) }')"
}

# median FIELD: the median of a column of the rounds' lines on stdin.
median() { awk -v f="$1" '{ print $f }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

row() { # NAME PATH FLAGS...
  local name=$1 path=$2
  shift 2
  : >"$work/h3.txt"
  : >"$work/h2.txt"
  for _ in $(seq "$ROUNDS"); do
    run h2 "$path" "$@" >>"$work/h2.txt"
    run h3 "$path" "$@" >>"$work/h3.txt"
  done
  local h2rps h3rps h2p50 h3p50 h2p99 h3p99
  h2rps=$(median 2 <"$work/h2.txt"); h3rps=$(median 2 <"$work/h3.txt")
  h2p50=$(median 5 <"$work/h2.txt"); h3p50=$(median 5 <"$work/h3.txt")
  h2p99=$(median 8 <"$work/h2.txt"); h3p99=$(median 8 <"$work/h3.txt")
  local errors h2cpu h3cpu
  errors=$(cat "$work/h2.txt" "$work/h3.txt" | awk '{ s += $11 } END { print s }')
  h2cpu=$(median 12 <"$work/h2.txt"); h3cpu=$(median 12 <"$work/h3.txt")
  printf '| %s | %s | %s | %.2fx | %s / %s | %s / %s | %.2fx | %s / %s | %s |\n' "$name" "$h2rps" "$h3rps" \
    "$(awk -v a="$h3rps" -v b="$h2rps" 'BEGIN { print a / b }')" "$h2p50" "$h3p50" "$h2p99" "$h3p99" \
    "$(awk -v a="$h3p50" -v b="$h2p50" 'BEGIN { print a / b }')" "$h2cpu" "$h3cpu" "$errors"
}

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }

idle() { # PROTO: $idle_kib, KiB of server RSS per idle connection, on a fresh server
  local before after
  stop
  start
  # Its first requests' allocations are not the connections'.
  "$load" --proto "$1" --url "$url/" --ca "$work/cert.pem" --seconds 1 >/dev/null
  sleep 1
  before=$(rss_kib)
  coproc HOLD { taskset -c "$LOAD_CPU" "$load" --proto "$1" --url "$url/" --ca "$work/cert.pem" --idle "$IDLE"; }
  read -r line <&"${HOLD[0]}"
  [ "$line" = ready ] || { echo "bench/h3.sh: the idle client failed" >&2; exit 1; }
  sleep 1
  after=$(rss_kib)
  exec {HOLD[1]}>&-
  wait "$HOLD_PID" 2>/dev/null || true
  idle_kib=$(awk -v a="$after" -v b="$before" -v n="$IDLE" 'BEGIN { printf "%.1f", (a - b) / n }')
}

start
echo "HTTP/2 over TLS and HTTP/3, one catshost (1 worker, CPU $SERVER_CPU), load on CPU $LOAD_CPU, median of $ROUNDS rounds of ${DURATION} s"
echo
echo "| row | h2 req/s | h3 req/s | h3 / h2 | p50 ms h2 / h3 | p99 ms h2 / h3 | p50 h3 / h2 | server CPU µs/req h2 / h3 | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
row "C hello, $CONNS conns x $STREAMS streams" / --connections "$CONNS" --streams "$STREAMS"
row "1 MiB echo (Rust p3), 1 conn x $ECHO_STREAMS streams" /echo --post 1048576 --connections 1 --streams "$ECHO_STREAMS"
echo
idle h2
h2_idle=$idle_kib
idle h3
h3_idle=$idle_kib
stop
echo "| idle connections ($IDLE) | server RSS per connection |"
echo "|---|---|"
echo "| TLS (HTTP/2) | $h2_idle KiB |"
echo "| QUIC (HTTP/3) | $h3_idle KiB |"
