#!/usr/bin/env bash
# Measurement 4: the mock APNs' capacity, so relay benchmarks know it is not their bottleneck.
# h2load (nghttp2) sends the same valid push (ES256 provider token, apns-topic, 30-byte JSON)
# over TLS+h2 to `testbed mock-apns` (validation, token check, recording) and to nghttpd
# (nghttp2's own server answering an empty 200 from a file), alternately, same sitting.
# Usage: bench/m4-mock-apns.sh [ROUNDS] [REQUESTS]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
REQUESTS=${2:-100000}
PORT=${PORT:-18443}
PEER_PORT=${PEER_PORT:-18444}
DIR="$OUT/mock-apns"
rm -rf "$DIR" && mkdir -p "$DIR/htdocs/3/device"
: >"$DIR/htdocs/3/device/0a0b"
printf '{"aps":{"alert":"benchmark"}}' >"$DIR/payload.json"

taskset -c "$SERVER_CPU" "$TESTBED" mock-apns --listen "127.0.0.1:$PORT" --tls-dir "$DIR/tls" \
  --topic com.example.app >"$DIR/mock.log" 2>&1 &
MOCK_PID=$!
trap 'kill "$MOCK_PID" "${PEER_PID:-}" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$DIR/mock.log" && break; sleep 0.1; done
taskset -c "$SERVER_CPU" nghttpd -d "$DIR/htdocs" "$PEER_PORT" \
  "$DIR/tls/server-key.pem" "$DIR/tls/server.pem" >"$DIR/nghttpd.log" 2>&1 &
PEER_PID=$!
sleep 0.5
JWT=$("$TESTBED" apns-token --tls-dir "$DIR/tls")

# load PORT -> one line: req/s, 2xx count, mean/max request time
load() {
  taskset -c "$CLIENT_CPU" h2load -n "$REQUESTS" -c 4 -m 32 \
    -H "authorization: bearer $JWT" -H "apns-topic: com.example.app" -H "apns-push-type: alert" \
    -d "$DIR/payload.json" "https://127.0.0.1:$1/3/device/0a0b" |
    grep -E "^finished in|^status codes|^time for request" | tr -s ' ' | tr '\n' ' '
  echo
}
for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  echo "mock-apns: $(load "$PORT")"
  echo "nghttpd:   $(load "$PEER_PORT")"
done
