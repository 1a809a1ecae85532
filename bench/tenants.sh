#!/usr/bin/env bash
# Many tenants on one catshost: isolation and density. Prints markdown
# tables and writes them, with the machine and the commands, to
# bench/TENANTS.md.
#
# Isolation: a quiet tenant's latency at a steady 200 requests/s, alone and
# while a noisy tenant's 16 clients keep all 8 of its permits busy with
# guests that compute forever (each stopped by its 2 s request timeout),
# with the per-tenant CPU share on (tenant_workers = cores - 1, the default)
# and off (tenant_workers = cores).
#
# Density: exec to the ready line, and resident memory, for 10, 100 and 200
# tenants: one component under N names, and N different components (cold
# compile cache, then warm).
#
#   bench/tenants.sh              # 10 s per isolation run
#   DURATION=5 bench/tenants.sh
set -euo pipefail
cd "$(dirname "$0")/.."
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

DURATION=${DURATION:-10}
OUT=bench/TENANTS.md
CORES=$(nproc)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "building (release)..." >&2
cargo build --release -q -p catshost -p catshost-bench -p catshost-wat
target/release/wat-component tests/fixtures/hello.wat "$work/hello.wasm"
target/release/wat-component tests/fixtures/faults.wat "$work/faults.wasm"

# serve CONFIG: starts catshost on CONFIG and waits for its ready line;
# sets server_pid and addr.
serve() {
  local log=$work/server.log
  target/release/catshost serve --no-access-log --cache-dir "$work/cache" --config "$1" >"$log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1200); do
    addr=$(sed -n 's|^catshost: serving http://||p' "$log")
    [ -n "$addr" ] && return 0
    sleep 0.01
  done
  echo "bench/tenants.sh: catshost did not start:" >&2; cat "$log" >&2; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
rss_mib() { awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$server_pid/status"; }

isolation_config() {
  cat >"$work/isolation.toml" <<TOML
[server]
addr = "127.0.0.1:0"
tenant_workers = $1

[[tenant]]
name = "noisy"
component = "faults.wasm"
routes = ["noisy.test"]
max_concurrent_requests = 8
request_timeout = "2s"

[[tenant]]
name = "quiet"
component = "hello.wasm"
routes = ["quiet.test"]
TOML
}

# The faults an attacking tenant's clients go through in turn: guests that
# compute forever, grow memory, overflow their stack, trap, stream until
# their deadline, hold unsent bodies, and add headers until refused.
ATTACK=/loop,/memory-bomb,/recursion,/trap,/flood,/slow-body,/hoard,/huge-headers

# measure LABEL TENANT_WORKERS [noisy|attack]: one isolation run, one table
# row.
declare -A p99
measure() {
  local label=$1 workers=$2 noisy=()
  [ "${3:-}" = noisy ] && noisy=(--noisy-host noisy.test)
  [ "${3:-}" = attack ] && noisy=(--noisy-host noisy.test --noisy-path "$ATTACK")
  isolation_config "$workers"
  serve "$work/isolation.toml"
  local result
  result=$(target/release/tenant-load --addr "$addr" --quiet-host quiet.test "${noisy[@]}" \
    --rate 200 --seconds "$DURATION")
  stop
  read -r p50 p99_ms max ok failed refused other <<<"$result"
  p99[$label]=$p99_ms
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$workers" "$p50" "$p99_ms" "$max" \
    "$ok" "$failed" "${noisy:+$refused 503, $other ended}"
}

{
  echo "## Isolation: quiet tenant latency (ms) at 200 req/s, ${DURATION} s per run"
  echo
  echo "| run | tenant_workers | p50 | p99 | max | quiet OK | quiet failed | noisy tenant |"
  echo "|---|---|---|---|---|---|---|---|"
  measure "quiet alone" $((CORES > 1 ? CORES - 1 : 1))
  measure "noisy saturated, CPU share on" $((CORES > 1 ? CORES - 1 : 1)) noisy
  measure "noisy saturated, CPU share off" "$CORES" noisy
  measure "noisy attacking (every fault in turn), CPU share on" $((CORES > 1 ? CORES - 1 : 1)) attack
  echo
  on=$(awk -v a="${p99[noisy saturated, CPU share on]}" -v b="${p99[quiet alone]}" 'BEGIN { printf "%.2f", a / b }')
  off=$(awk -v a="${p99[noisy saturated, CPU share off]}" -v b="${p99[quiet alone]}" 'BEGIN { printf "%.2f", a / b }')
  attack=$(awk -v a="${p99[noisy attacking (every fault in turn), CPU share on]}" -v b="${p99[quiet alone]}" 'BEGIN { printf "%.2f", a / b }')
  echo "Quiet p99 under load / unloaded: **${on}x** with the CPU share, ${off}x without; under attack **${attack}x** (target: < 2x)."
} | tee "$work/isolation.md"

# tenants_config N MODE: N tenants (routes t$i.test); MODE same: copies of
# one component; distinct: N different components.
tenants_config() {
  local n=$1 mode=$2 dir=$work/density-$1-$2 i
  mkdir -p "$dir"
  echo '[server]' >"$dir/catshost.toml"
  echo 'addr = "127.0.0.1:0"' >>"$dir/catshost.toml"
  for i in $(seq -f %03g "$n"); do
    if [ "$mode" = same ]; then
      cp "$work/hello.wasm" "$dir/t$i.wasm"
    else
      sed "s/hello from wasm/tenant $i wasm!/" tests/fixtures/hello.wat >"$dir/t$i.wat"
      target/release/wat-component "$dir/t$i.wat" "$dir/t$i.wasm"
    fi
    printf '\n[[tenant]]\nname = "t%s"\ncomponent = "t%s.wasm"\nroutes = ["t%s.test"]\n' "$i" "$i" "$i" \
      >>"$dir/catshost.toml"
  done
  echo "$dir/catshost.toml"
}

# start_ms CONFIG: sets ms to the time from exec to the ready line; leaves
# the server running.
start_ms() {
  local t0 t1
  t0=$(date +%s%N)
  serve "$1"
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
}

{
  echo
  echo "## Density: start-up (exec to ready line) and resident memory"
  echo
  echo "| tenants | components | compile cache | start-up ms | RSS at ready MiB | RSS after 1 request each MiB |"
  echo "|---|---|---|---|---|---|"
  for n in 10 100 200; do
    for mode in same distinct; do
      tenants_config "$n" "$mode" >/dev/null
      config=$work/density-$n-$mode/catshost.toml
      rm -rf "$work/cache"
      for cache in cold warm; do
        start_ms "$config"
        ready=$(rss_mib)
        for i in $(seq -f %03g "$n"); do
          curl -sf -o /dev/null -H "Host: t$i.test" "http://$addr/"
        done
        after=$(rss_mib)
        stop
        [ "$mode" = same ] && components=1 || components=$n
        echo "| $n | $components | $cache | $ms | $ready | $after |"
        # One component: its warm start says nothing more.
        if [ "$mode" = same ]; then continue 2; fi
      done
    done
  done
} | tee "$work/density.md"

{
  echo "# Tenants: isolation and density"
  echo
  echo "Measured by \`bench/tenants.sh\` (DURATION=$DURATION) on $(date -u +%Y-%m-%d): $CORES cores,"
  echo "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -r)."
  echo "catshost release build, \`--no-access-log\`, default workers (one per core); the load generator"
  echo "(\`target/release/tenant-load\`, one thread) shares the machine. The noisy tenant runs tests/fixtures/faults.wat"
  echo "(\`/loop\` computes forever; the attack goes through $ATTACK in turn), the quiet one"
  echo "tests/fixtures/hello.wat."
  echo
  cat "$work/isolation.md" "$work/density.md"
} >"$OUT"
echo "wrote $OUT" >&2
