#!/usr/bin/env bash
# Many tenants loaded on demand: N tenants, each its own component (the C
# hello with a custom section of its own appended, so no two share bytes, a
# cache entry or compiled code), in one config file. For each N:
#   - exec to the ready line, and memory at ready (RSS, RssAnon, PSS);
#   - first requests: COLD_SAMPLE tenants never compiled (each compiles),
#     then, after `catshost compile --config` filled the cache for the
#     first WARM_TENANTS tenants, their first requests (each loads from the
#     cache): p50 / p99 of each;
#   - memory after touching those WARM_TENANTS tenants once, and after they
#     idled past idle_unload (2 s here);
#   - a warm tenant's p99 at a steady RATE requests/s over WINDOW s, alone,
#     and during a storm of cold tenants (the ones neither cached nor
#     sampled above) hit STORM at a time, wave after wave, for the whole
#     window (max_concurrent_loads = 2). The server runs on SERVER_CPU, the
#     clients on LOAD_CPU (the storm's at nice 10, so that it does not
#     delay the warm client's requests on their way).
#
#   - Python-sized: PY_TENANTS tenants of the Python hello (each its own
#     bytes), compiled into the cache by `catshost compile --config`, then
#     PY_ROUNDS rounds of a first request to each after the last round's
#     idle unload: p50 / p99 of those cached cold starts.
#
#   bench/density.sh                        # N = 1000 and 10000
#   N_LIST="1000" WARM_TENANTS=200 PY_TENANTS=0 bench/density.sh
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

N_LIST=${N_LIST-1000 10000}
COLD_SAMPLE=${COLD_SAMPLE:-50}
WARM_TENANTS=${WARM_TENANTS:-500}
WINDOW=${WINDOW:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
STORM=${STORM:-200}
RATE=${RATE:-200}
DURATION=${DURATION:-10}
PY_TENANTS=${PY_TENANTS:-10}
PY_ROUNDS=${PY_ROUNDS:-3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null || { echo "bench/density.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need h2load nghttp2-client
need python3 python3

echo "building (release)..." >&2
cargo build --release -q -p catshost
component=target/guest-examples/c-hello.wasm
[ -f "$component" ] || { echo "bench/density.sh: $component is missing: run guest-examples/build.sh" >&2; exit 1; }

# tenants N DIR [COMPONENT]: DIR/tNNNNN.wasm and DIR/catshost.toml for N
# tenants of COMPONENT (the C hello by default).
tenants() {
  python3 - "$1" "$2" "${3:-$component}" <<'PY'
import os, sys
n, d, src = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = open(src, 'rb').read()
def leb(v):
    out = bytearray()
    while True:
        b = v & 0x7f; v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v: return bytes(out)
os.makedirs(d, exist_ok=True)
with open(os.path.join(d, 'catshost.toml'), 'w') as toml:
    toml.write('[server]\naddr = "127.0.0.1:0"\nidle_unload = "2s"\nmax_concurrent_loads = 2\nload_timeout = "60s"\n\n')
    for i in range(n):
        name = b'catshost-bench-tenant'
        payload = leb(len(name)) + name + str(i).encode()
        custom = b'\x00' + leb(len(payload)) + payload
        with open(os.path.join(d, 't%05d.wasm' % i), 'wb') as f:
            f.write(base + custom)
        toml.write('[[tenant]]\nname = "t%05d"\ncomponent = "t%05d.wasm"\nroutes = ["t%05d.test"]\n' % (i, i, i))
PY
}

server_pid=
addr=
# serve DIR: catshost on DIR/catshost.toml; sets server_pid, addr and
# ready_ms (exec to the ready line).
serve() {
  local log=$work/server.log start
  start=$(date +%s%N)
  taskset -c "$SERVER_CPU" target/release/catshost serve --no-access-log --admin-addr 127.0.0.1:0 --cache-dir "$1/cache" --config "$1/catshost.toml" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 6000); do
    addr=$(sed -n 's|^catshost: serving http://||p' "$log")
    admin=$(sed -n 's|^catshost: admin endpoints on http://||p' "$log")
    if [ -n "$addr" ]; then ready_ms=$((($(date +%s%N) - start) / 1000000)); return 0; fi
    sleep 0.005
  done
  echo "bench/density.sh: catshost did not start:" >&2; cat "$log" >&2; exit 1
}
# scrape: "ms / KiB" of one GET /metrics
scrape() {
  local took
  took=$(curl -s -o "$work/metrics.txt" -w '%{time_total}' "http://$admin/metrics")
  awk -v t="$took" -v b="$(stat -c %s "$work/metrics.txt")" 'BEGIN { printf "%.0f / %.0f", t * 1000, b / 1024 }'
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
# memory: "RSS / RssAnon / PSS" in MiB
memory() {
  local rss anon pss
  rss=$(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/status")
  anon=$(awk '/^RssAnon/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/status")
  pss=$(awk '/^Pss:/ { printf "%.0f", $2 / 1024 }' "/proc/$server_pid/smaps_rollup")
  echo "$rss / $anon / $pss"
}
# first_requests FROM COUNT [PATH]: "p50 / p99" ms of one GET to each of
# tenants FROM..FROM+COUNT-1, one after another
first_requests() {
  taskset -c "$LOAD_CPU" python3 - "$addr" "$1" "$2" "${3:-/}" <<'PY'
import http.client, sys, time
addr, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
PATH = sys.argv[4] if len(sys.argv) > 4 else '/'
host, port = addr.rsplit(':', 1)
times = []
for i in range(first, first + count):
    c = http.client.HTTPConnection(host, int(port), timeout=120)
    t = time.perf_counter()
    c.request('GET', PATH, headers={'Host': 't%05d.test' % i})
    r = c.getresponse(); r.read()
    times.append((time.perf_counter() - t) * 1000)
    assert r.status == 200, (i, r.status)
    c.close()
times.sort()
print('%.1f / %.1f' % (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]))
PY
}
# warm_p99 TENANT: p99 ms of TENANT at RATE requests/s for WINDOW s
warm_p99() {
  local rps=$((RATE / 4))
  taskset -c "$LOAD_CPU" h2load --h1 -t1 -c4 --rps="$rps" -D "$WINDOW" -H "host: $1.test" --log-file="$work/warm.log" "http://$addr/" >/dev/null 2>&1
  awk '{ print $3 }' "$work/warm.log" | sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", a[int(NR * 0.99)] / 1000 }'
}
# storm FROM TO: one GET to each of tenants FROM..TO-1, STORM at a time,
# wave after wave, until WINDOW + 1 s have passed or none is left
storm() {
  taskset -c "$LOAD_CPU" nice -n 10 python3 - "$addr" "$1" "$2" "$STORM" "$WINDOW" <<'PY'
import http.client, sys, threading, time
addr, first, last, wave, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
host, port = addr.rsplit(':', 1)
ok = []
def hit(i):
    c = http.client.HTTPConnection(host, int(port), timeout=300)
    c.request('GET', '/', headers={'Host': 't%05d.test' % i})
    r = c.getresponse(); r.read(); c.close()
    ok.append(r.status == 200)
start = time.perf_counter()
i = first
while i < last and time.perf_counter() - start < window + 1:
    threads = [threading.Thread(target=hit, args=(j,)) for j in range(i, min(i + wave, last))]
    for t in threads: t.start()
    for t in threads: t.join()
    i += len(threads)
print('%d of %d cold loads answered 200 in %.1f s' % (sum(ok), len(ok), time.perf_counter() - start))
PY
}

echo
echo "# On-demand tenants: density"
echo
echo "- $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores; $(target/release/catshost --version); component: $component ($(stat -c %s "$component") bytes) with a custom section per tenant"
echo "- memory is RSS / RssAnon / PSS in MiB; first requests one after another (p50 / p99 ms); idle_unload 2s, max_concurrent_loads 2; server on CPU $SERVER_CPU, clients on CPU $LOAD_CPU"
echo "- warm p99: one cached tenant at $RATE requests/s over ${WINDOW}s (h2load --h1 -c4 --rps), alone and beside the storm"
echo
echo "| tenants | ready ms (cold cache) | memory at ready | $COLD_SAMPLE uncached first requests | cached tenants | compile --config of them, s | ready ms (warm) | their first requests | memory after them | /metrics ms / KiB | memory after idle unload | warm p99 ms alone | warm p99 ms in a storm ($STORM cold at a time) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for n in $N_LIST; do
  dir=$work/n$n
  echo "generating $n tenants..." >&2
  tenants "$n" "$dir"
  # Tenants 0.. are cached, the ones after them cold for the storm (at
  # least STORM), the last COLD_SAMPLE cold for the uncached first
  # requests.
  warm=$WARM_TENANTS; [ "$warm" -le $((n - COLD_SAMPLE - STORM)) ] || warm=$((n - COLD_SAMPLE - STORM))
  [ "$warm" -gt 0 ] || { echo "bench/density.sh: $n tenants are too few for COLD_SAMPLE and STORM" >&2; exit 1; }
  # Cold cache: ready, memory, uncached first requests.
  serve "$dir"; ready_cold=$ready_ms
  mem_ready=$(memory)
  echo "uncached first requests ($n)..." >&2
  uncached=$(first_requests $((n - COLD_SAMPLE)) "$COLD_SAMPLE")
  stop
  # Fill the cache for the first WARM_TENANTS tenants.
  head -n $((6 + warm * 4)) "$dir/catshost.toml" >"$dir/warm.toml"
  echo "compile --config ($warm)..." >&2
  t0=$(date +%s%N)
  target/release/catshost compile --config "$dir/warm.toml" --cache-dir "$dir/cache" 2>/dev/null
  compile_s=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
  serve "$dir"; ready_warm=$ready_ms
  echo "cached first requests ($n)..." >&2
  cached=$(first_requests 0 "$warm")
  mem_touched=$(memory)
  metrics=$(scrape)
  sleep 4
  mem_idle=$(memory)
  # A warm tenant alone, then beside a storm of cold ones.
  first_requests 0 1 >/dev/null
  alone=$(warm_p99 t00000)
  storm "$warm" $((n - COLD_SAMPLE)) >"$work/storm.txt" & storm_pid=$!
  sleep 0.3
  during=$(warm_p99 t00000)
  wait "$storm_pid"
  during="$during ($(cat "$work/storm.txt"))"
  stop
  echo "| $n | $ready_cold | $mem_ready | $uncached | $warm | $compile_s | $ready_warm | $cached | $mem_touched | $metrics | $mem_idle | $alone | $during |"
  rm -rf "$dir"
done

[ "$PY_TENANTS" -gt 0 ] || exit 0
py=target/guest-examples/python-hello.wasm
[ -f "$py" ] || { echo "bench/density.sh: $py is missing: run guest-examples/build.sh" >&2; exit 1; }
dir=$work/py
echo "generating $PY_TENANTS Python tenants..." >&2
tenants "$PY_TENANTS" "$dir" "$py"
echo "compile --config ($PY_TENANTS Python components)..." >&2
t0=$(date +%s%N)
target/release/catshost compile --config "$dir/catshost.toml" --cache-dir "$dir/cache" 2>/dev/null
compile_s=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.1f", ns / 1e9 }')
serve "$dir"
times=()
for round in $(seq "$PY_ROUNDS"); do
  times+=("$(first_requests 0 "$PY_TENANTS")")
  mem=$(memory)
  sleep 4 # past idle_unload: the next round loads them again
done
mem_idle=$(memory)
stop
echo
echo "| Python tenants ($(stat -c %s "$py") bytes each) | compile --config, s | cached first requests, p50 / p99 ms, each round | memory after a round | after idle unload |"
echo "|---|---|---|---|---|"
echo "| $PY_TENANTS | $compile_s | $(IFS=';'; echo "${times[*]}" | sed 's/;/; /g') | $mem | $mem_idle |"
