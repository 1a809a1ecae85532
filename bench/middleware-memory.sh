#!/usr/bin/env bash
# What N tenants sharing one middleware chain cost in memory
# (docs/middleware.md): N tenants of the Rust WASI 0.3 hello (rust-echo-p3),
# preloaded, each answering one request (so each has a live instance), with
# no middleware and with the same two middleware (rust-cors, rust-auth) in
# front of each. Prints the server's RSS and PSS after start and after the
# requests. Every chain shares each middleware's compiled code (run-time
# linking: one compile, one mapping); composing the files into one
# component per chain would have compiled and mapped it N times.
#
#   bench/middleware-memory.sh            # N=100
#   N=500 bench/middleware-memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
CATSHOST=${CATSHOST:-target/release/catshost}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
[ "$CATSHOST" != target/release/catshost ] || cargo build -q --release -p catshost
guests=$PWD/target/guest-examples
for name in echo-p3 cors auth; do
  [ -f "$guests/rust-$name.wasm" ] || guest-examples/build.sh rust
done

kib() { awk -v k="$1" '$1 == k ":" { s += $2 } END { print s + 0 }' "/proc/$2/smaps_rollup"; }

port=19500
run() { # LABEL MIDDLEWARE
  port=$((port + 1))
  {
    printf '[server]\naddr = "127.0.0.1:%s"\n\n[defaults]\npreload = true\n\n' "$port"
    for i in $(seq "$N"); do
      printf '[[tenant]]\nname = "t%s"\ncomponent = "%s/rust-echo-p3.wasm"\nroutes = ["t%s.test"]\nenv = { AUTH_TOKEN = "t" }\nmiddleware = [%s]\n\n' \
        "$i" "$guests" "$i" "$2"
    done
  } >"$work/$1.toml"
  "$CATSHOST" serve --workers 1 --no-access-log --no-cache --config "$work/$1.toml" >"$work/$1.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1200); do
    grep -q "catshost: serving" "$work/$1.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/$1.log" >&2; exit 1; }
    sleep 0.05
  done
  local rss0 pss0
  rss0=$(kib Rss "$pid"); pss0=$(kib Pss "$pid")
  for i in $(seq "$N"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: t$i.test" -H 'authorization: Bearer t' "http://127.0.0.1:$port/")
    [ "$code" = 200 ] || { echo "t$i answered $code" >&2; exit 1; }
  done
  echo "| $1 | $((rss0 / 1024)) | $((pss0 / 1024)) | $(($(kib Rss "$pid") / 1024)) | $(($(kib Pss "$pid") / 1024)) |"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
}

echo "$N tenants of rust-echo-p3, each answering one request ($(date -u +%F))"
echo
echo "| chain | RSS at start MiB | PSS at start MiB | RSS after MiB | PSS after MiB |"
echo "|---|---|---|---|---|"
run none ""
run "cors+auth" "\"$guests/rust-cors.wasm\", \"$guests/rust-auth.wasm\""
cors=$(stat -c %s "$guests/rust-cors.wasm"); auth=$(stat -c %s "$guests/rust-auth.wasm")
echo
echo "the two middleware files: $(( (cors + auth) / 1024 )) KiB of wasm"
