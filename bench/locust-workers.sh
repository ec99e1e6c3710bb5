#!/usr/bin/env bash
# loadgen workers under a Locust master vs one loadgen, one sitting (BENCHMARKS.md §11):
#   1. one `loadgen run` holding N idle WebSocket devices (bench/locust-hold.yaml) with a tracked
#      broadcast every BEVERY s: client bytes per connection and delivery throughput;
#   2. the same scenario on 3 `loadgen worker`s under a Locust master (deploy/locust plugin),
#      each worker on its own 127.x source range: the same figures, and the master's CPU;
#   3. HTTP requests per second per worker core: one `loadgen worker` vs one Locust worker
#      running FastHttpUser (bench/locust-fasthttp.py), each pinned to CLIENT_CPU, 64 users.
# Delivery throughput is measured at the gateway, the same way for both runs: its `acks`
# counter (/stats, sampled every 10 ms) — devices that received a broadcast and answered —
# from the broadcast's first ack to 99 % of N acks (the crossing interpolated between samples),
# for the broadcasts sent once 99 % of the devices had joined.
# Usage: [PER_SHARD=K] [BEVERY=S] [BCOUNT=K] bench/locust-workers.sh [N] [RATE]
#        (defaults 30000 devices, 3000 connects/s, and loadgen's default 15000 devices per
#        shard process on both sides)
source "$(dirname "$0")/lib.sh"
N=${1:-30000}
RATE=${2:-3000}
W=3
LOCUST=${LOCUST:-$HOME/.cache/pushbench/locust-2.47.0/bin/locust}
RAMP=$(( (N + RATE - 1) / RATE ))
BEVERY=${BEVERY:-15}
# Broadcasts after the ramp (the hold covers them, plus 10 s on either side).
BCOUNT=${BCOUNT:-3}
HOLD=$(( 10 + BCOUNT * BEVERY + 10 ))
DURATION=$(( 3 + RAMP + HOLD ))
SOURCES=1
# Device (shard) processes: both sides plan them from `swarm.per_shard` (PER_SHARD), the one
# loadgen for all N devices, each worker for its share (about N / 3, as the master's plugin
# tells it), so the shard processes of both sides hold at most PER_SHARD devices each.
PER_SHARD=${PER_SHARD:-15000}
HOLDVARS=(-e PORT="$PORT" -e N="$N" -e RAMP="$RAMP" -e HOLD="$HOLD" -e DURATION="$DURATION"
  -e BEVERY="$BEVERY" -e SOURCES="$SOURCES" -e PER_SHARD="$PER_SHARD")
export PORT N RATE RAMP HOLD DURATION BEVERY SOURCES

tree_rss() {
  local pids; pids=$(pstree -p -T "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' | tr '\n' ',')
  [ -n "$pids" ] || { echo 0; return; }
  ps -o rss= -p "${pids%,}" 2>/dev/null | awk '{s+=$1} END {print s+0}'
}
# RSS (KiB) of the tree's shard processes and of the rest: "shards_kib main_kib".
tree_split() {
  local pids; pids=$(pstree -p -T "$1" 2>/dev/null | grep -o '([0-9]*)' | tr -d '()' | tr '\n' ',')
  [ -n "$pids" ] || { echo "0 0"; return; }
  ps -o rss=,args= -p "${pids%,}" 2>/dev/null |
    awk '{ if ($0 ~ /__shard/) s += $1; else m += $1 } END { print s+0, m+0 }'
}
sum_split() {   # pids… -> "shards_kib main_kib" summed
  local s=0 m=0 a b; for p in "$@"; do read -r a b < <(tree_split "$p"); s=$((s + a)); m=$((m + b)); done
  echo "$s $m"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
stat_of() { curl -fsS "http://127.0.0.1:$PORT/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

start_rooms() {
  taskset -c "$SERVER_CPU" "$TESTBED" gateway --listen "127.0.0.1:$PORT" --rooms 8 --room-processes \
    --heartbeat 300s >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill "$SERVER_PID" 2>/dev/null || true; pkill -P "$SERVER_PID" 2>/dev/null || true; stop_sampler' EXIT
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "gateway did not come up" >&2; exit 1
}
stop_sampler() { if [ -n "${SAMPLER:-}" ]; then kill "$SAMPLER" 2>/dev/null || true; SAMPLER=; fi; }
# Samples the gateway's acks every 10 ms into $1 (unix_s acks joined).
sample_acks() {
  python3 - "$1" "$PORT" <<'PY' &
import json, sys, time, urllib.request
out, port = open(sys.argv[1], "w"), sys.argv[2]
while True:
    try:
        s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2))
        out.write(f"{time.time():.3f} {s['acks']} {s['joined']}\n"); out.flush()
    except Exception:
        pass
    time.sleep(0.01)
PY
  SAMPLER=$!
}
# Per broadcast sent after 99 % of N joined: time from its first ack to 99 % of N acks (the
# crossing interpolated between samples), and 0.99 N / that time; then their median and the
# rate over all of them (acks / summed times).
throughput() {
  python3 - "$1" "$N" <<'PY'
import sys
rows = [tuple(float(x) for x in l.split()) for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2]); out = []; i = 0
# A broadcast starts with the first ack after 2 s without any (broadcasts come BEVERY s apart;
# the last 1 % of one broadcast's acks must not count as the next broadcast).
quiet_since = rows[0][0] if rows else 0.0
while i < len(rows) - 1:
    if rows[i + 1][1] > rows[i][1] and rows[i][0] - quiet_since < 2.0:
        quiet_since = rows[i + 1][0]
    elif rows[i + 1][1] > rows[i][1] and rows[i][2] >= 0.99 * n:
        base, t0 = rows[i][1], rows[i][0]
        goal = base + 0.99 * n
        j = i + 1
        while j < len(rows) and rows[j][1] < goal:
            j += 1
        if j == len(rows):
            break
        (ta, a), (tb, b) = rows[j - 1][:2], rows[j][:2]
        t99 = ta + (tb - ta) * (goal - a) / (b - a) if b > a else tb
        if rows[j][1] - base <= 1.5 * n:   # one broadcast's acks
            out.append((t99 - t0, 0.99 * n / (t99 - t0)))
        quiet_since = rows[j][0]
        i = j
    elif rows[i + 1][1] > rows[i][1]:
        quiet_since = rows[i + 1][0]
    i += 1
for k, (secs, rate) in enumerate(out):
    print(f"  broadcast {k}: 99% of N acked in {secs:.3f}s: {rate:.0f} msg/s")
if out:
    rates = sorted(r for _, r in out)
    mid = len(rates) // 2
    median = rates[mid] if len(rates) % 2 else (rates[mid - 1] + rates[mid]) / 2
    total = sum(0.99 * n for _ in out) / sum(s for s, _ in out)
    print(f"  median {median:.0f} msg/s, overall {total:.0f} msg/s over {len(out)} broadcasts")
PY
}
wait_joined() { for _ in $(seq $(( RAMP * 4 + 30 ))); do [ "$(stat_of joined)" -ge $(( N * 99 / 100 )) ] && return 0; sleep 1; done; }
wait_drained() { for _ in $(seq 120); do [ "$(stat_of connections)" -le 10 ] && return 0; sleep 1; done; }

start_rooms
echo "== N=$N devices, at most $PER_SHARD per shard process, connect rate $RATE/s, ramp ${RAMP}s, a tracked broadcast every ${BEVERY}s, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. one loadgen
d="$OUT/lw-one"; rm -rf "$d"
sample_acks "$OUT/acks-one.txt"
taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/locust-hold.yaml" "${HOLDVARS[@]}" \
  --out "$d" --quiet >"$d.log" 2>&1 &
LG=$!
sleep 1.5; base=$(tree_rss "$LG"); split0=$(tree_split "$LG")
wait_joined; sleep 1; held=$(tree_rss "$LG"); split1=$(tree_split "$LG"); conns=$(stat_of joined)
wait "$LG" || true
stop_sampler
echo "one loadgen: joined=$conns rss_base_kib=$base rss_held_kib=$held bytes_per_conn=$(( (held - base) * 1024 / (conns > 0 ? conns : 1) ))"
echo "  shard processes / the rest, KiB: base $split0, held $split1"
throughput "$OUT/acks-one.txt"
wait_drained

# 2. Locust master + 3 workers. The shape (bench/locust-shape.py) holds 0 users for 3 s, so
#    each worker starts its run (shard processes) before the base RSS sample, as the one
#    loadgen's scenario holds 0 devices for 3 s.
d="$OUT/lw-locust"; rm -rf "$d"; mkdir -p "$d"
sample_acks "$OUT/acks-locust.txt"
(cd "$d" && exec env PUSHBENCH_SCENARIO="$ROOT/bench/locust-hold.yaml" PUSHBENCH_LOADGEN="$LOADGEN" \
  PUSHBENCH_OUT="$d/records" taskset -c "$SERVER_CPU" "$LOCUST" \
  -f "$ROOT/deploy/locust/locustfile.py,$ROOT/bench/locust-shape.py" \
  --master --master-bind-host 127.0.0.1 --master-bind-port 15557 --headless --expect-workers "$W" \
  >"$d/master.log" 2>&1) &
MASTER=$!
pids=()
for i in $(seq "$W"); do
  taskset -c "$CLIENT_CPU" "$LOADGEN" worker --master 127.0.0.1:15557 "$ROOT/bench/locust-hold.yaml" \
    "${HOLDVARS[@]}" --out "$d/w$i" >"$d/w$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq "$W"); do
  for _ in $(seq 100); do grep -q "run 1 started" "$d/w$i.log" 2>/dev/null && break; sleep 0.1; done
done
sleep 1; base=0; for p in "${pids[@]}"; do base=$(( base + $(tree_rss "$p") )); done
split0=$(sum_split "${pids[@]}")
m0=$(cpu_ticks "$MASTER"); t0=$(date +%s.%N)
wait_joined; sleep 1; held=0; for p in "${pids[@]}"; do held=$(( held + $(tree_rss "$p") )); done
split1=$(sum_split "${pids[@]}")
conns=$(stat_of joined)
# The master's CPU over the ramp and the hold, sampled just before the shape ends the test.
left=$(python3 -c "print(max(0, $DURATION - 3 - ($(date +%s.%N) - $t0)))")
sleep "$left"; m1=$(cpu_ticks "$MASTER"); t1=$(date +%s.%N)
wait "$MASTER"; code=$?
for p in "${pids[@]}"; do wait "$p" || true; done
stop_sampler
echo "3 workers: joined=$conns rss_base_kib=$base rss_held_kib=$held bytes_per_conn=$(( (held - base) * 1024 / (conns > 0 ? conns : 1) )) master_exit=$code"
echo "  shard processes / the rest, KiB: base $split0, held $split1"
echo "  master CPU over the ramp and hold: $(python3 -c "print(f'{($m1 - $m0) / 100 / ($t1 - $t0) * 100:.1f}% of one core over {$t1 - $t0:.0f}s')")"
throughput "$OUT/acks-locust.txt"
python3 - "$d/records/run/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]
print(f"  merged record: connections_opened={m['connections_opened']['value']} "
      f"delivery_received={m.get('delivery_received', {}).get('value')} delivery_lost={m.get('delivery_lost', {}).get('value')} "
      f"missing shares={len(r['meta']['distributed']['missing'])}")
PY
wait_drained

# 3. HTTP requests per second per worker core, 64 users, 20 s each.
http_run() {   # $1 = label, $2 = locustfile, $3 = worker command…
  local label=$1 file=$2; shift 2
  local dd="$OUT/lw-http-$label"; rm -rf "$dd"; mkdir -p "$dd"
  (cd "$dd" && exec env PUSHBENCH_SCENARIO="$ROOT/bench/locust-http.yaml" PUSHBENCH_LOADGEN="$LOADGEN" \
    PUSHBENCH_OUT="$dd/records" taskset -c "$SERVER_CPU" "$LOCUST" -f "$file" --master \
    --master-bind-host 127.0.0.1 --master-bind-port 15557 --headless --expect-workers 1 --users 64 \
    --spawn-rate 64 --run-time 20s --host "http://127.0.0.1:$PORT" --csv "$dd/locust" >"$dd/master.log" 2>&1) &
  local master=$!
  (cd "$dd" && exec taskset -c "$CLIENT_CPU" "$@" >"$dd/worker.log" 2>&1) &
  local worker=$!
  # The worker's CPU from 3 s to 18 s of the 20 s run (its process ends with the master's quit).
  sleep 3; local c0; c0=$(cpu_ticks "$worker")
  sleep 15; local c1; c1=$(cpu_ticks "$worker")
  wait "$master" || true
  wait "$worker" || true
  python3 - "$dd/locust_stats.csv" "$label" "$c0" "$c1" <<'PY'
import csv, sys
rows = {r["Name"]: r for r in csv.DictReader(open(sys.argv[1]))}
agg = rows["Aggregated"]
cores = (int(sys.argv[4]) - int(sys.argv[3])) / 100 / 15
rps = float(agg["Requests/s"])
print(f"  {sys.argv[2]}: {rps:.0f} req/s, {agg['Request Count']} requests, {agg['Failure Count']} failed, "
      f"worker process CPU {cores * 100:.0f}% of a core: {rps / max(cores, 1e-9):.0f} req/s per worker core")
PY
}
echo "HTTP, one worker on core $CLIENT_CPU, 64 users, 20 s:"
http_run locust "$ROOT/bench/locust-fasthttp.py" "$LOCUST" -f "$ROOT/bench/locust-fasthttp.py" --worker \
  --master-host 127.0.0.1 --master-port 15557
http_run loadgen "$ROOT/deploy/locust/locustfile.py" "$LOADGEN" worker --master 127.0.0.1:15557 \
  "$ROOT/bench/locust-http.yaml" -e PORT="$PORT" --out "$OUT/lw-http-loadgen/w"
