#!/usr/bin/env bash
# The benchmark: catshost against a native hyper server and `wasmtime serve`
# on the same machine, in one run. Prints a markdown table and writes it,
# with the machine, versions and commands, to bench/RESULTS.md.
#
#   bench/run.sh                     # 3 rounds, 10 s per load after 2 s of warm-up
#   ROUNDS=1 DURATION=3 bench/run.sh # shorter
#
# The servers take turns within each round, so a slow spell of this shared
# machine falls on all of them; each figure is the median round's.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every server in the default environment: RUST_BACKTRACE=1 makes wasmtime
# capture a backtrace per dropped store (catshost turns library backtraces
# off itself; `wasmtime serve` does not).
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
WASMTIME=${WASMTIME:-$(command -v wasmtime || echo /opt/wasmtime-cli/bin/wasmtime)}
OUT=bench/RESULTS.md
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null || { echo "bench/run.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need h2load nghttp2-client
need taskset util-linux
if [ ! -x "$WASMTIME" ]; then
  echo "bench/run.sh: wasmtime 48 is missing: cargo install wasmtime-cli@48.0.8 --locked (20-35 min)," >&2
  echo "or set WASMTIME=/path/to/wasmtime" >&2
  exit 1
fi

echo "building (release)..." >&2
cargo build --release -q -p catshost -p catshost-bench -p catshost-wat
target/release/wat-component tests/fixtures/hello.wat "$work/hello.wasm"
target/release/wat-component tests/fixtures/echo.wat "$work/echo.wasm"
# The C hello (clang + wasi-libc + wit-bindgen-c), as a real compiler makes it.
guest-examples/build.sh c >/dev/null
cp target/guest-examples/c-hello.wasm "$work/c-hello.wasm"

# start NAME COMMAND...: runs a server pinned to SERVER_CPU on a new port
# (written @PORT@ in COMMAND) and waits until it accepts connections.
port=18400
start() {
  local name=$1 args=() a; shift
  port=$((port + 1))
  for a in "$@"; do args+=("${a//@PORT@/$port}"); done
  taskset -c "$SERVER_CPU" "${args[@]}" >"$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "bench/run.sh: $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
hwm_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }

# load KIND URL: prints "rps p50 p99" (latencies in ms; h2load has no
# percentiles: its mean and mean + 2 sd stand in, marked with ~).
load() {
  local kind=$1 url=$2 out
  case $kind in
    wrk|wrk-tls)
      taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${WARMUP}s" "$url" >/dev/null 2>&1
      out=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" --latency "$url")
      echo "$out" | awk '
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        END { printf "%.0f %.2f %.2f\n", rps, ms(p50), ms(p99) }' ;;
    echo)
      taskset -c "$LOAD_CPU" wrk -t1 -c8 -d"${WARMUP}s" -s bench/post-1mib.lua "$url" >/dev/null 2>&1
      out=$(taskset -c "$LOAD_CPU" wrk -t1 -c8 -d"${DURATION}s" --latency -s bench/post-1mib.lua "$url")
      echo "$out" | awk '
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        END { printf "%.1f %.2f %.2f\n", rps, ms(p50), ms(p99) }' ;;
    h2|h2-tls)
      taskset -c "$LOAD_CPU" h2load -c64 -m16 -D"$WARMUP" "$url" >/dev/null 2>&1 || true
      out=$(taskset -c "$LOAD_CPU" h2load -c64 -m16 -D"$DURATION" "$url")
      echo "$out" | awk '
        /finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) rps = $i }
        /time for request:/ { mean = $6; sd = $7 }
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        END { printf "%.0f ~%.2f ~%.2f\n", rps, ms(mean), ms(mean) + 2 * ms(sd) }' ;;
  esac
}

# Each round's figures, "rps p50 p99;" per round, by NAME,LOAD.
declare -A runs result
record() { runs[$1,$2]+="$3;"; }
run_server() { # NAME TLS-FLAG (or -) LOADS COMMAND...
  local name=$1 tls=$2 loads=$3 rss; shift 3
  start "$name" "$@"
  record "$name" wrk "$(load wrk "http://127.0.0.1:$port/")"
  if [ "$loads" = wrk,h2 ]; then record "$name" h2 "$(load h2 "http://127.0.0.1:$port/")"; fi
  rss=$(hwm_mib)
  result[$name,rss]=$(awk -v a="${result[$name,rss]:-0}" -v b="$rss" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
  stop
  if [ "$tls" != - ]; then
    start "$name-tls" "$@" "$tls"
    record "$name" wrk-tls "$(load wrk-tls "https://127.0.0.1:$port/")"
    record "$name" h2-tls "$(load h2-tls "https://127.0.0.1:$port/")"
    stop
  fi
}
run_echo() { # NAME COMMAND...
  local name=$1; shift
  start "$name-echo" "$@"
  record "$name" echo "$(load echo "http://127.0.0.1:$port/")"
  stop
}

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS: catshost..." >&2
  # --no-access-log: `wasmtime serve` writes no line per request. The access
  # log costs catshost about 18% of its hello throughput on one worker
  # (docs/operations.md).
  run_server catshost --tls-self-signed wrk,h2 target/release/catshost serve "$work/hello.wasm" --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log
  echo "round $round of $ROUNDS: native hyper..." >&2
  run_server native --tls wrk,h2 target/release/native-hello --addr 127.0.0.1:@PORT@ --workers 1
  # wasmtime serve speaks HTTP/1.1 only, in cleartext.
  echo "round $round of $ROUNDS: wasmtime serve..." >&2
  run_server wasmtime - wrk "$WASMTIME" serve --addr 127.0.0.1:@PORT@ "$work/hello.wasm"
  echo "round $round of $ROUNDS: C hello: catshost, wasmtime serve..." >&2
  run_server catshost-c - wrk,h2 target/release/catshost serve "$work/c-hello.wasm" --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log
  run_server wasmtime-c - wrk "$WASMTIME" serve --addr 127.0.0.1:@PORT@ "$work/c-hello.wasm"
  echo "round $round of $ROUNDS: echo 1 MiB..." >&2
  run_echo catshost target/release/catshost serve "$work/echo.wasm" --addr 127.0.0.1:@PORT@ --workers 1 --max-body-size 2MiB --no-access-log
  run_echo native target/release/native-hello --addr 127.0.0.1:@PORT@ --workers 1
  run_echo wasmtime "$WASMTIME" serve --addr 127.0.0.1:@PORT@ "$work/echo.wasm"
done

# The median round (by requests/s) of each server and load; the lower of
# the middle two for an even count.
for key in "${!runs[@]}"; do
  result[$key]=$(echo "${runs[$key]}" | tr ';' '\n' | awk 'NF' | sort -n -k1,1 | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }')
done
rounds() { echo "${runs[$1,$2]:-}" | tr ';' '\n' | awk 'NF { printf "%s%s", (n++ ? " / " : ""), $1 }'; }

echo "instance cost..." >&2
instance_cost=()
for component in "$work/hello.wasm" "$work/c-hello.wasm"; do
  instance_cost+=("$(taskset -c "$SERVER_CPU" target/release/instance-cost --requests 20000 --component "$component" | awk -F'|' '/on demand/ { d = $3 } /pooling/ { p = $3 } END { gsub(/ /, "", d); gsub(/ /, "", p); print d, p }')")
done

echo "startup..." >&2
# The C hello with a fresh compile cache: the first start compiles, the
# other four load from the cache.
startup=()
for _ in 1 2 3 4 5; do
  start_ns=$(date +%s%N)
  target/release/catshost serve "$work/c-hello.wasm" --addr 127.0.0.1:0 --cache-dir "$work/cache" 2>&1 | { grep -m1 -q "catshost: serving"; echo $(( ($(date +%s%N) - start_ns) / 1000000 )); pkill -f "catshost serve $work/c-hello.wasm" || true; } >"$work/startup"
  startup+=("$(cat "$work/startup")")
done

field() { echo "${result[$1,$2]:-n/a n/a n/a}" | awk -v f="$3" '{ print $f }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

{
  echo "# catshost benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
  echo "- catshost $(target/release/catshost --version | awk '{ print $2 }') (wasmtime 48.0.8), $("$WASMTIME" --version), $(wrk --version 2>&1 | head -1 | awk '{ print $1, $2 }'), $(h2load --version | head -1)"
  echo "- servers pinned to CPU $SERVER_CPU (catshost and native hyper: --workers 1), the load to CPU $LOAD_CPU; ${DURATION} s per load after ${WARMUP} s of warm-up; $ROUNDS rounds, the servers taking turns in each: the figures are the median round's, every round's requests/s in the last column"
  echo "- components: tests/fixtures/hello.wat (WAT hello, 16-byte body; rows catshost, wasmtime), guest-examples/c/hello.c (C hello, 13-byte body; rows catshost-c, wasmtime-c); echo: tests/fixtures/echo.wat"
  echo "- loads: \`wrk -t1 -c64 -d${DURATION}s --latency URL\` (HTTP/1.1), \`h2load -c64 -m16 -D${DURATION} URL\` (h2c, TLS h2); echo: \`wrk -t1 -c8 -s bench/post-1mib.lua\`"
  echo
  echo "| load | server | requests/s | p50 ms | p99 ms | vs native | vs wasmtime serve | rounds (requests/s) |"
  echo "|---|---|---|---|---|---|---|---|"
  for load in wrk h2 wrk-tls h2-tls; do
    case $load in wrk) label="HTTP/1.1";; h2) label="h2c";; wrk-tls) label="HTTPS HTTP/1.1";; h2-tls) label="HTTPS h2";; esac
    for server in catshost catshost-c native wasmtime wasmtime-c; do
      [ -n "${result[$server,$load]:-}" ] || continue
      rps=$(field $server $load 1)
      # Each catshost row against wasmtime serve on the same component.
      case $server in catshost-c) peer=wasmtime-c;; *) peer=wasmtime;; esac
      echo "| $label | $server | $rps | $(field $server $load 2) | $(field $server $load 3) | $(ratio "$rps" "$(field native $load 1)") | $(ratio "$rps" "$(field $peer $load 1)") | $(rounds $server $load) |"
    done
  done
  echo
  echo "| echo 1 MiB POST (HTTP/1.1, 8 connections) | requests/s | MiB/s echoed | p50 ms | p99 ms | vs native | vs wasmtime serve | rounds (requests/s) |"
  echo "|---|---|---|---|---|---|---|---|"
  for server in catshost native wasmtime; do
    rps=$(field $server echo 1)
    echo "| $server | $rps | $rps | $(field $server echo 2) | $(field $server echo 3) | $(ratio "$rps" "$(field native echo 1)") | $(ratio "$rps" "$(field wasmtime echo 1)") | $(rounds $server echo) |"
  done
  echo
  echo "Peak RSS after the cleartext loads: catshost ${result[catshost,rss]} MiB, native ${result[native,rss]} MiB, wasmtime serve ${result[wasmtime,rss]} MiB."
  echo
  echo "Instance cost, no sockets (\`target/release/instance-cost --requests 20000 --component C\` on CPU $SERVER_CPU: a new store and instance, its \`handle\` call, its body read, the instance dropped):"
  echo
  echo "| component | on-demand allocation | instance pool (copy-on-write images, \`pagemap_scan\`) |"
  echo "|---|---|---|"
  read -r demand pooled <<<"${instance_cost[0]}"
  echo "| WAT hello | ${demand%us} us | ${pooled%us} us |"
  read -r demand pooled <<<"${instance_cost[1]}"
  echo "| C hello | ${demand%us} us | ${pooled%us} us |"
  echo
  echo "Startup to the ready line (catshost serve c-hello.wasm with a fresh --cache-dir: the first run compiles, the others load from the cache), 5 runs: ${startup[*]} ms."
} | tee "$OUT"
