#!/usr/bin/env bash
# The HTTP/3 attacks of tests/http3.rs at full size, against one catshost
# (--http3, the C hello, default limits but the header read timeout,
# HEADER_TIMEOUT) while a good client (bench/src/bin/h3-load.rs) keeps
# asking: its requests/s and p99 before and during each attack, and the
# server's RSS, open connections and Retry count after it.
#   - flood: GARBAGE random datagrams, then INITIALS QUIC Initials from
#     sockets that never answer (tests/clients/h3.py flood);
#   - no-headers: CLIENTS connections each opening the stream limit (100)
#     with a HEADERS frame that never ends (h3.py no-headers).
#
#   bench/h3-attack.sh
#   GARBAGE=1000000 INITIALS=20000 CLIENTS=50 bench/h3-attack.sh
set -euo pipefail
cd "$(dirname "$0")/.."

GARBAGE=${GARBAGE:-200000}
INITIALS=${INITIALS:-10000}
CLIENTS=${CLIENTS:-20}
HEADER_TIMEOUT=${HEADER_TIMEOUT:-10}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

cargo build --release -q -p catshost -p catshost-bench --bin catshost --bin h3-load
[ -f target/guest-examples/c-hello.wasm ] || guest-examples/build.sh c >/dev/null
python=target/guest-toolchains/ws-client/bin/python
[ -x "$python" ] && "$python" -c 'import aioquic' 2>/dev/null || scripts/test.sh --install-only >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

target/release/catshost serve target/guest-examples/c-hello.wasm --http3 --addr 127.0.0.1:0 \
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --admin-addr 127.0.0.1:0 \
  --header-read-timeout "${HEADER_TIMEOUT}s" --no-access-log --ready-file "$work/ready" \
  >/dev/null 2>"$work/server.log" &
server=$!
for _ in $(seq 600); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { cat "$work/server.log" >&2; exit 1; }
port=$(head -1 "$work/ready" | sed 's/.*://')
admin=$(sed -n 's/.*admin endpoints on http:\/\///p' "$work/server.log")

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }
metric() { curl -s "http://$admin/metrics" | awk -v s="$1" '$1 == s { print $2 }'; }
good() { # SECONDS: the good client's line
  target/release/h3-load --proto h3 --url "https://localhost:$port/" --ca "$work/cert.pem" \
    --connections 1 --streams 4 --seconds "$1"
}

echo "| phase | good client | server RSS KiB | connections open | Retries sent |"
echo "|---|---|---|---|---|"
row() { echo "| $1 | $2 | $(rss) | $(metric catshost_connections_open) | $(metric 'catshost_connections_closed_total{reason="quic_retry"}') |"; }
row "before" "$(good 3)"

"$python" tests/clients/h3.py flood "$port" "$GARBAGE" "$INITIALS" >/dev/null &
flood=$!
row "during the flood ($GARBAGE datagrams, $INITIALS Initials)" "$(good 3)"
wait "$flood"
row "after the flood" "$(good 3)"

attackers=()
for _ in $(seq "$CLIENTS"); do
  "$python" tests/clients/h3.py no-headers "$port" 100 "$((HEADER_TIMEOUT + 20))" >>"$work/no-headers.txt" &
  attackers+=($!)
done
sleep 2
row "during $CLIENTS x 100 streams without a head" "$(good 3)"
wait "${attackers[@]}"
ended=$(awk -F'"ended": ' '{ split($2, a, ","); s += a[1] } END { print s }' "$work/no-headers.txt")
row "after them ($ended of $((CLIENTS * 100)) streams ended by the server)" "$(good 3)"
echo
echo "server RSS peak: $(awk '/^VmHWM/ { print $2 }' "/proc/$server/status") KiB"
