#!/usr/bin/env bash
# Device swarm at scale, one sitting: N idle WebSocket connections held against the reference
# gateway (8 room processes, 300 s heartbeat), with the gateway local.
#   1. loadgen: connect rate, client user-space bytes per connection (RSS of loadgen and its
#      shard processes at the hold minus before the ramp, over connections), and tracked
#      broadcasts to all N: completion time and delivered msg/s;
#   2. the minimal hand-written client (loadgen/examples/ws_hold.rs, one process per 15k
#      connections): the same broadcasts and RSS;
#   3. Tsung (Debian package) holding the same number of WebSocket connections: RSS.
# Usage: bench/swarm-100k.sh [N] [RATE]      (defaults 100000 and 10000/s)
source "$(dirname "$0")/lib.sh"
N=${1:-100000}
RATE=${2:-10000}
RAMP=$(( (N + RATE - 1) / RATE ))
BROADCASTS=3
BSTART=$(( 3 + RAMP + 10 ))
HOLD=$(( 10 + BROADCASTS * 15 + 5 ))
DURATION=$(( 3 + RAMP + HOLD ))
SOURCES=$(( (N + 16000) / 16000 ))

# RSS (KiB) of a process and all its descendants.
tree_rss() {
  local pids; pids=$(pstree -p -T "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' | tr '\n' ' ')
  [ -n "$pids" ] || { echo 0; return; }
  ps -o rss= -p "$(echo $pids | tr ' ' ',')" 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

start_rooms() {
  taskset -c "$SERVER_CPU" "$TESTBED" gateway --listen "127.0.0.1:$PORT" --rooms 8 --room-processes \
    --heartbeat 300s >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill "$SERVER_PID" 2>/dev/null || true; pkill -P "$SERVER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "gateway did not come up" >&2; exit 1
}

connections() { curl -fsS "http://127.0.0.1:$PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])'; }

wait_for_zero() {
  for _ in $(seq 120); do [ "$(connections)" -le 10 ] && return 0; sleep 1; done
}

start_rooms
echo "== N=$N rate=$RATE/s ramp=${RAMP}s sources=$SOURCES"

# 1. loadgen
cycles=""
for _ in $(seq "$BROADCASTS"); do cycles="$cycles, { to: 1, over: 0s }, { hold: 1s }, { to: 0, over: 0s }, { hold: 14s }"; done
f="$OUT/swarm-hold.yaml"
sed -e "s/__PORT__/$PORT/" -e "s/__N__/$N/" -e "s/__RAMP__/$RAMP/" -e "s/__HOLD__/$HOLD/" \
  -e "s/__DURATION__/$DURATION/" -e "s/__BSTART__/$BSTART/" -e "s/__BCYCLES__/$cycles/" \
  "$ROOT/bench/swarm-hold.yaml.in" >"$f"
sed -i "s/swarm: { per_shard: 15000 }/swarm: { per_shard: 15000, source_addresses: $SOURCES }/" "$f"
d="$OUT/swarm-loadgen"; rm -rf "$d"
taskset -c "$CLIENT_CPU" "$LOADGEN" run "$f" --out "$d" --quiet >"$d.log" 2>&1 &
LG=$!
sleep 2; base=$(tree_rss "$LG")
sleep $(( 1 + RAMP + 8 )); held=$(tree_rss "$LG"); conns=$(connections)
wait "$LG" || true
python3 - "$d/run.json" "$base" "$held" "$conns" "$N" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]; s = r["series"]
base, held, conns, n = (int(x) for x in sys.argv[2:6])
opened = s.get("connections_opened", [])
peak_rate = max((p["value"] for p in opened), default=0)
secs = [p["t"] for p in opened if p["value"] > 0]
avg_rate = m["connections_opened"]["value"] / max(1, (max(secs) - min(secs) + 1)) if secs else 0
bc = m.get("broadcast_completion", {})
recv = m.get("delivery_received{journey=broadcast}", m.get("delivery_received", {})).get("value", 0)
print(f"loadgen: held={conns} (gateway count) rss_base_kib={base} rss_held_kib={held} "
      f"bytes_per_conn={(held - base) * 1024 / max(1, conns):.0f} connect_rate_peak_1s={peak_rate} "
      f"connect_rate_avg={avg_rate:.0f} ws_connecting_p50_us={m.get('ws_connecting', {}).get('p50')} "
      f"failed={m.get('connections_failed', {}).get('value', 0)}")
print(f"loadgen broadcasts: n={bc.get('count')} completion_ms min={bc.get('min', 0)/1e3:.0f} "
      f"p50={bc.get('p50', 0)/1e3:.0f} max={bc.get('max', 0)/1e3:.0f} received={recv} "
      f"lost={m.get('delivery_lost', {}).get('value')} msg_per_s_p50={n / max(1e-9, bc.get('p50', 1)/1e6):.0f}")
PY
wait_for_zero

# 2. the hand-written client: one process per 15k connections, broadcasts posted here.
EX=$ROOT/target/release/examples/ws_hold
procs=$(( (N + 14999) / 15000 )); pids=()
HOLDX=$(( RAMP + 10 + BROADCASTS * 15 + 5 ))
for i in $(seq 0 $(( procs - 1 ))); do
  n=$(( N / procs )); [ "$i" -eq $(( procs - 1 )) ] && n=$(( N - n * (procs - 1) ))
  taskset -c "$CLIENT_CPU" "$EX" "http://127.0.0.1:$PORT" "$n" $(( i * (N / procs) )) "$HOLDX" "$SOURCES" \
    >"$OUT/ws_hold-$i.out" 2>"$OUT/ws_hold-$i.err" &
  pids+=($!)
done
sleep 2; base=0; for p in "${pids[@]}"; do base=$(( base + $(tree_rss "$p") )); done
sleep $(( RAMP + 8 )); held=0; for p in "${pids[@]}"; do held=$(( held + $(tree_rss "$p") )); done
conns=$(connections)
for b in $(seq "$BROADCASTS"); do
  curl -fsS -XPOST "http://127.0.0.1:$PORT/broadcast" -H 'content-type: application/json' \
    -d "{\"id\":\"hand-$b\",\"sent_at_ns\":$(date +%s%N),\"body\":\"x\"}" >/dev/null
  sleep 15
done
for p in "${pids[@]}"; do wait "$p" || true; done
cat "$OUT"/ws_hold-*.out | python3 -c '
import sys, collections
agg = collections.defaultdict(lambda: [0, 0])
for line in sys.stdin:
    i, n, us = line.split(); agg[i][0] += int(n); agg[i][1] = max(agg[i][1], int(us))
for i, (n, us) in sorted(agg.items()):
    print(f"hand-written broadcast {i}: received={n} completion_ms={us/1e3:.0f} msg_per_s={n/max(1e-9, us/1e6):.0f}")
'
echo "hand-written: held=$conns rss_base_kib=$base rss_held_kib=$held bytes_per_conn=$(( (held - base) * 1024 / (conns > 0 ? conns : 1) ))"
wait_for_zero

# 3. Tsung: the same number of idle WebSocket connections.
if command -v tsung >/dev/null; then
  x="$OUT/tsung.xml"; TN=$(( N < 18000 ? N : 18000 ))   # one Erlang VM: the 20k open-file limit
  python3 - "$x" "$PORT" "$TN" "$RATE" "$SOURCES" <<'PY'
import sys, urllib.request, json
path, port, n, rate, sources = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ws = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/dispatch?user=tsung"))["ws"]
host, rport = ws.split("//")[1].split("/")[0].split(":")
ips = "\n".join(f'      <ip value="127.0.0.{i + 1}"/>' for i in range(max(1, sources)))
open(path, "w").write(f'''<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd">
<tsung loglevel="error" dumptraffic="false">
  <clients><client host="localhost" use_controller_vm="true" maxusers="{n + 1000}">
{ips}
  </client></clients>
  <servers><server host="{host}" port="{rport}" type="tcp"/></servers>
  <load><arrivalphase phase="1" duration="{max(1, n // min(rate, 5000))}" unit="second">
    <users maxnumber="{n}" arrivalrate="{min(rate, 5000)}" unit="second"/></arrivalphase></load>
  <options><option name="ports_range" min="1025" max="65535"/></options>
  <sessions><session name="ws" probability="100" type="ts_websocket">
    <request><websocket type="connect" path="/ws"/></request>
    <request subst="true"><websocket type="message">{{"type":"hello","user":"tsung-%%ts_user_server:get_unique_id%%"}}</websocket></request>
    <thinktime value="600"/>
  </session></sessions>
</tsung>
''')
PY
  (cd "$OUT" && ulimit -n 200000 2>/dev/null || true; tsung -f "$x" -l "$OUT/tsung-log" start >"$OUT/tsung.out" 2>&1 &)
  sleep 3; TP=$(pgrep -f 'beam.*tsung' | head -1); base=$(tree_rss "$TP")
  for _ in $(seq 120); do [ "$(connections)" -ge $(( TN * 98 / 100 )) ] && break; sleep 1; done
  sleep 5; held=$(tree_rss "$TP"); conns=$(connections)
  echo "tsung: held=$conns of $TN rss_base_kib=$base rss_held_kib=$held bytes_per_conn=$(( (held - base) * 1024 / (conns > 0 ? conns : 1) ))"
  tsung stop >/dev/null 2>&1 || kill "$TP" 2>/dev/null || true
fi
