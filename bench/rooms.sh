#!/usr/bin/env bash
# Rooms: memory per idle server-side WebSocket connection and broadcast fan-out rate.
# The reference gateway with 2 room processes holds CONNS idle WebSocket devices (half per
# room, one client process per room); RSS of the room processes before/after gives bytes per
# connection. Then ROUNDS broadcasts to all: time from the sender's stamp to the last device's
# arrival gives the fan-out rate. The peer: a tokio-tungstenite server holding the same number
# of idle connections per process, with its default config and with small buffers.
# Usage: bench/rooms.sh [CONNS] [ROUNDS]       (needs: cargo build --release -p testbed --bin testbed --example rooms_load)
source "$(dirname "$0")/lib.sh"
CONNS=${1:-20000}; ROUNDS=${2:-5}
HALF=$((CONNS / 2))
LOAD=$ROOT/target/release/examples/rooms_load
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done; echo "$t"; }
wait_line() { # FILE PATTERN COUNT
  for _ in $(seq 1200); do [ "$(grep -c "$2" "$1" 2>/dev/null || true)" -ge "$3" ] && return 0; sleep 0.1; done
  echo "timeout waiting for '$2' in $1" >&2; exit 1
}

taskset -c "$SERVER_CPU" "$TESTBED" gateway --listen "127.0.0.1:$PORT" --rooms 2 --room-processes \
  --heartbeat 600s >"$OUT/rooms-server.log" 2>&1 &
PIDS+=($!); GW=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
mapfile -t ROOM_PIDS < <(pgrep -P "$GW")
mapfile -t WS < <(python3 - "$PORT" <<'PY'
import json, sys, urllib.request
seen = {}
for i in range(200):
    d = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/dispatch?user=probe{i}"))
    seen[d["room"]] = d["ws"].removeprefix("ws://").removesuffix("/ws")
for room in sorted(seen): print(seen[room])
PY
)
before=$(rss_kb "${ROOM_PIDS[@]}")
for i in 0 1; do
  taskset -c "$CLIENT_CPU" "$LOAD" devices "${WS[$i]}" "$HALF" "r$i-" >"$OUT/rooms-client-$i.log" 2>&1 &
  PIDS+=($!)
done
start=$(date +%s.%N)
for i in 0 1; do wait_line "$OUT/rooms-client-$i.log" '^ready' 1; done
took=$(echo "$(date +%s.%N) - $start" | bc)
sleep 2
after=$(rss_kb "${ROOM_PIDS[@]}")
echo "gateway rooms: $CONNS idle WS connections in ${took}s; room RSS ${before} KB -> ${after} KB; $(( (after - before) * 1024 / CONNS )) B per connection"

for r in $(seq "$ROUNDS"); do
  curl -fsS -H 'content-type: application/json' "http://127.0.0.1:$PORT/broadcast" \
    -d "{\"id\":\"b$r\",\"topic\":\"all\",\"sent_at_ns\":$(date +%s%N),\"body\":{\"n\":$r}}" >/dev/null
  for i in 0 1; do wait_line "$OUT/rooms-client-$i.log" "^push b$r " 1; done
  last=$(grep -h "^push b$r " "$OUT"/rooms-client-[01].log | sed 's/.*last_ms=//' | sort -n | tail -1)
  echo "broadcast b$r to $CONNS: last arrival ${last} ms after the stamp; $(echo "$CONNS / $last * 1000" | bc) deliveries/s"
done
curl -fsS "http://127.0.0.1:$PORT/stats"; echo
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; PIDS=(); sleep 1

for mode in small default; do
  taskset -c "$SERVER_CPU" "$LOAD" peer-server "127.0.0.1:$((PORT + 1))" "$mode" >"$OUT/peer-$mode.log" 2>&1 &
  PEER=$!; PIDS+=($PEER); sleep 0.5
  before=$(rss_kb "$PEER")
  taskset -c "$CLIENT_CPU" "$LOAD" devices "127.0.0.1:$((PORT + 1))" "$HALF" p- >"$OUT/peer-client-$mode.log" 2>&1 &
  PIDS+=($!)
  wait_line "$OUT/peer-client-$mode.log" '^ready' 1; sleep 2
  after=$(rss_kb "$PEER")
  echo "peer tokio-tungstenite ($mode config): $HALF idle WS connections; RSS ${before} KB -> ${after} KB; $(( (after - before) * 1024 / HALF )) B per connection"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; PIDS=(); sleep 1
done
