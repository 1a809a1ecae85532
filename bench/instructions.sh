#!/usr/bin/env bash
# Instructions per request of two catshost binaries, counted by callgrind:
# deterministic where requests per second on this shared machine vary by
# +-30% from run to run. Each server runs on one worker; the count is the
# server's instructions for N2 requests less those for N1, over N2 - N1
# (start-up and stop cancel out), for HTTP/1.1 and h2c, in three modes:
#   fresh   the C hello, a fresh instance per request (WASI 0.2's default)
#   reuse   the C hello, instances reused (--max-instance-reuse-count 1000)
#   p3      the Rust WASI 0.3 echo, instances shared (WASI 0.3's default)
#   ws      the Rust chat's WebSocket echo: N 64-byte messages, one after the
#           other on one socket (bench/ws-messages.py): per message
#   tls     reuse, over TLS (HTTP/1.1 and h2 by ALPN), a self-signed
#           certificate
#
#   bench/instructions.sh OLD_CATSHOST [NEW_CATSHOST]   # NEW: target/release/catshost
#   N1=500 N2=2500 MODES="fresh p3" bench/instructions.sh /tmp/old/catshost
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/instructions.sh OLD_CATSHOST [NEW_CATSHOST]}
new=${2:-target/release/catshost}
N1=${N1:-500}
N2=${N2:-2500}
MODES=${MODES:-fresh reuse p3}
command -v valgrind >/dev/null || { echo "bench/instructions.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
command -v h2load >/dev/null || { echo "bench/instructions.sh: h2load is missing (apt-get install nghttp2-client)" >&2; exit 1; }
[ -f target/guest-examples/c-hello.wasm ] || guest-examples/build.sh c >/dev/null
[ -f target/guest-examples/rust-echo-p3.wasm ] || guest-examples/build.sh rust >/dev/null
ws_python=target/guest-toolchains/ws-client/bin/python
case " $MODES " in *" ws "*) [ -x "$ws_python" ] || scripts/test.sh --install-only >/dev/null ;; esac
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
case " $MODES " in *" tls "*)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null ;;
esac
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# mode MODE: the component and flags of a mode.
mode() {
  case $1 in
    fresh) echo "target/guest-examples/c-hello.wasm" ;;
    reuse) echo "target/guest-examples/c-hello.wasm --max-instance-reuse-count 1000" ;;
    p3) echo "target/guest-examples/rust-echo-p3.wasm" ;;
    ws) echo "target/guest-examples/rust-chat.wasm" ;;
    tls) echo "target/guest-examples/c-hello.wasm --max-instance-reuse-count 1000 --tls-cert $work/cert.pem --tls-key $work/key.pem" ;;
    *) echo "bench/instructions.sh: unknown mode '$1' (fresh, reuse, p3, ws, tls)" >&2; exit 2 ;;
  esac
}

# total BIN MODE N LOAD...: the server's instructions for N requests of
# h2load LOAD in MODE.
total() {
  local bin=$1 m=$2 serve n=$3 port=$((19600 + RANDOM % 300)) pid cache
  read -r -a serve <<<"$(mode "$m")"
  shift 3
  cache="$work/cache-$(basename "$bin")-$(cksum < "$bin" | cut -d' ' -f1)"
  mkdir -p "$cache" && chmod 700 "$cache"
  # The component compiled into the cache first, under valgrind too: the
  # CPU features valgrind reports give another engine hash, so a cache
  # filled outside it would miss and the count would hold a compile.
  if [ ! -e "$cache/.warm-$m" ]; then
    valgrind --tool=none "$bin" serve "${serve[@]}" --addr "127.0.0.1:$port" --workers 1 --no-access-log --cache-dir "$cache" 2>/dev/null & pid=$!
    wait_port "$port"; kill "$pid"; wait "$pid" 2>/dev/null || true
    touch "$cache/.warm-$m"
  fi
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin" serve "${serve[@]}" --addr "127.0.0.1:$port" --workers 1 --no-access-log --cache-dir "$cache" 2>/dev/null & pid=$!
  wait_port "$port"
  if [ "$m" = ws ]; then
    "$ws_python" bench/ws-messages.py "$port" "$n" || { echo "bench/instructions.sh: the WebSocket echo failed" >&2; exit 1; }
  else
    local scheme=http
    [ "$m" != tls ] || scheme=https
    h2load "$@" -n "$n" -c 4 "$scheme://127.0.0.1:$port/" | grep -q "status codes: $n 2xx" || { echo "bench/instructions.sh: not every request answered 2xx" >&2; exit 1; }
  fi
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  awk '/^totals:/ { print $2 }' "$work/cg.out"
}

per_request() { # BIN MODE LOAD...
  local a b
  a=$(total "$1" "$2" "$N1" "${@:3}")
  b=$(total "$1" "$2" "$N2" "${@:3}")
  [ -z "${VERBOSE:-}" ] || echo "$1 $2 ${*:3}: $a for $N1, $b for $N2" >&2
  echo $(( (b - a) / (N2 - N1) ))
}

echo "| mode | load | $old | $new | new / old |"
echo "|---|---|---|---|---|"
for m in $MODES; do
  loads=("HTTP/1.1:--h1" "h2c:-m 8")
  [ "$m" != ws ] || loads=("HTTP/1.1:")
  [ "$m" != tls ] || loads=("HTTP/1.1 over TLS:--h1" "h2 over TLS:-m 8")
  for load in "${loads[@]}"; do
    label=${load%%:*}
    # shellcheck disable=SC2086 # the load's flags are words
    o=$(per_request "$old" "$m" ${load#*:})
    # shellcheck disable=SC2086
    n=$(per_request "$new" "$m" ${load#*:})
    echo "| $m | $label | $o | $n | $(awk -v a="$n" -v b="$o" 'BEGIN { printf "%.3f", a / b }') |"
  done
done
