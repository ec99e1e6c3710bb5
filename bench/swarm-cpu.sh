#!/usr/bin/env bash
# Broadcast delivery cost: client CPU time (user + sys of the whole client process tree) per
# delivered push, loadgen's swarm vs the minimal hand-written client (loadgen/examples/ws_hold.rs),
# in one sitting against the same gateway (8 room processes). CPU per message is robust on a
# busy machine where wall-clock throughput is not.
#   N idle WebSocket devices (dispatch, upgrade, hello, ack every push); after the ramp, a 5 s
#   idle window (the idle CPU rate), then B broadcasts 4 s apart; CPU over the broadcast window
#   minus the idle rate × its length, over the push frames the gateway wrote in it.
# Usage: bench/swarm-cpu.sh [N] [B] [ROUNDS]      (defaults 20000, 5, 3)
source "$(dirname "$0")/lib.sh"
N=${1:-20000}
B=${2:-5}
ROUNDS=${3:-3}
RATE=5000
RAMP=$(( (N + RATE - 1) / RATE ))
SOURCES=$(( (N + 16000) / 16000 ))
BSTART=$(( 3 + RAMP + 12 ))          # seconds after start: ramp done, settled, idle window taken
HOLD=$(( 12 + B * 4 + 8 ))
DURATION=$(( 3 + RAMP + HOLD ))
HZ=$(getconf CLK_TCK)

tree_pids() { pstree -p -T "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' | tr '\n' ' '; }
# CPU ticks (user + sys) of the given processes and their descendants.
cpu_ticks() {
  local all=""; for p in "$@"; do all="$all $(tree_pids "$p")"; done
  local t=0; for p in $all; do
    [ -r "/proc/$p/stat" ] || continue
    t=$(( t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat") ))
  done
  echo "$t"
}
stat_field() { curl -fsS "http://127.0.0.1:$PORT/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

taskset -c "$SERVER_CPU" "$TESTBED" gateway --listen "127.0.0.1:$PORT" --rooms 8 --room-processes \
  --heartbeat 300s >"$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; pkill -P "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# measure LABEL PID... : idle window, broadcast window (posted by POST_BROADCASTS=1 or by the
# scenario itself at BSTART), then one result line.
measure() {
  local label=$1; shift
  local t0=$SECONDS
  sleep $(( BSTART - 6 )); local i0 i1 d0 d1 c0 c1
  i0=$(cpu_ticks "$@"); sleep 5; i1=$(cpu_ticks "$@")
  d0=$(stat_field pushes_delivered); local a0; a0=$(stat_field acks); c0=$(cpu_ticks "$@"); local w0=$SECONDS
  if [ "${POST_BROADCASTS:-0}" = 1 ]; then
    for b in $(seq "$B"); do
      curl -fsS -XPOST "http://127.0.0.1:$PORT/broadcast" -H 'content-type: application/json' \
        -d "{\"id\":\"hand-$b-$RANDOM\",\"sent_at_ns\":$(date +%s%N),\"body\":\"$(head -c 48 /dev/zero | tr '\0' x)\"}" >/dev/null
      sleep 4
    done
  else
    sleep $(( B * 4 ))
  fi
  sleep 4
  c1=$(cpu_ticks "$@"); d1=$(stat_field pushes_delivered); local a1; a1=$(stat_field acks); local w=$(( SECONDS - w0 ))
  python3 - "$label" "$HZ" "$i0" "$i1" "$c0" "$c1" "$w" "$d0" "$d1" "$a0" "$a1" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import sys
label, hz, i0, i1, c0, c1, w, d0, d1, a0, a1, load = sys.argv[1], *map(int, sys.argv[2:12]), sys.argv[12]
idle_rate = (i1 - i0) / 5
cpu = (c1 - c0 - idle_rate * w) / hz
msgs = d1 - d0
print(f"{label}: delivered={msgs} acks={a1 - a0} cpu_s={cpu:.2f} (idle {idle_rate / hz:.3f} cpu-s/s subtracted over {w}s) "
      f"cpu_us_per_msg={cpu * 1e6 / max(1, msgs):.2f} load={load}")
PY
}

for round in $(seq "$ROUNDS"); do
  # loadgen: broadcasts from the scenario, 4 s apart from BSTART.
  cycles=""
  for _ in $(seq "$B"); do cycles="$cycles, { to: 1, over: 0s }, { hold: 1s }, { to: 0, over: 0s }, { hold: 3s }"; done
  f="$ROOT/bench/swarm-hold.yaml"
  vars=(-e PORT="$PORT" -e N="$N" -e RAMP="$RAMP" -e HOLD="$HOLD" -e DURATION="$DURATION"
    -e BSTART="$BSTART" -e BCYCLES="$cycles" -e SOURCES="$SOURCES")
  d="$OUT/swarm-cpu-loadgen"; rm -rf "$d"
  taskset -c "$CLIENT_CPU" "$LOADGEN" run "$f" "${vars[@]}" --out "$d" --quiet >"$d.log" 2>&1 &
  LG=$!
  POST_BROADCASTS=0 measure "round $round loadgen" "$LG"
  wait "$LG" || true
  python3 -c "import json,sys; m=json.load(open('$d/run.json'))['metrics']; print('  loadgen run: received', m.get('delivery_received{journey=broadcast}',{}).get('value'), 'lost', m.get('delivery_lost',{}).get('value'), 'duplicates', m.get('delivery_duplicates',{}).get('value'))"
  for _ in $(seq 60); do [ "$(stat_field connections)" -le 10 ] && break; sleep 1; done

  # the hand-written client, the same broadcasts posted here.
  procs=$(( (N + 14999) / 15000 )); pids=()
  for i in $(seq 0 $(( procs - 1 ))); do
    n=$(( N / procs )); [ "$i" -eq $(( procs - 1 )) ] && n=$(( N - n * (procs - 1) ))
    taskset -c "$CLIENT_CPU" "$ROOT/target/release/examples/ws_hold" "http://127.0.0.1:$PORT" "$n" \
      $(( i * (N / procs) )) "$DURATION" "$SOURCES" >"$OUT/ws_hold-cpu-$i.out" 2>&1 &
    pids+=($!)
  done
  POST_BROADCASTS=1 measure "round $round hand-written" "${pids[@]}"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for _ in $(seq 60); do [ "$(stat_field connections)" -le 10 ] && break; sleep 1; done
done
