#!/usr/bin/env bash
# MQTT devices, one sitting, against a local mosquitto (Debian's; core 0). Needs mosquitto,
# mosquitto-clients (mosquitto_sub reads the broker's client count) and bc.
#   1. loadgen (core 1): N MQTT 3.1.1 devices (CONNECT clean, keep-alive 300 s, SUBSCRIBE
#      dev/idle-G at QoS 1) held, in one `loadgen __shard` process, so the device side's memory
#      and CPU read apart from the senders'; user-space bytes per connection = (RSS while holding − RSS
#      at 1 s, before the first connect at 2 s) / devices mosquitto counts (its
#      `$SYS/broker/clients/connected` less the mosquitto_sub asking); then QoS 1 unicast
#      publishes at RATE/s for SECS s from loadgen's senders, tracked: delivered msg/s,
#      delivery latency.
#   2. the hand-written client (loadgen/examples/mqtt_hold.rs, core 1): the same N devices and
#      RSS; the same publishes from a loadgen sender without devices (core 1): delivered msg/s
#      and latency from each message's sent_at_ns.
# Usage: bench/mqtt.sh [N] [RATE] [SECS]        (defaults 10000, 5000, 20)
# LOADGEN and EX name the release binaries (default target/release/{loadgen,examples/mqtt_hold}).
source "$(dirname "$0")/lib.sh"
N=${1:-10000}
RATE=${2:-5000}
SECS=${3:-20}
MQ_PORT=${MQ_PORT:-18830}
EX=${EX:-$ROOT/target/release/examples/mqtt_hold}
RAMP=$(( (N + 1999) / 2000 ))
WAIT=2                     # seconds before the first connect (RSS base read at 1 s)
PSTART=$(( WAIT + RAMP + 8 ))
HOLD=$(( 8 + SECS + 12 ))
DURATION=$(( WAIT + RAMP + HOLD ))

# RSS (KiB) of a process and all its descendants (loadgen's shard processes).
tree_rss() {
  ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
    { parent[$1] = $2; rss[$1] = $3 }
    END { for (p in rss) { q = p; while (q != "" && q != 0 && q != root) q = parent[q];
                           if (q == root) s += rss[p] } print s + 0 }'
}

# mosquitto with its counters published every second ($SYS), no persistence, no log.
cat >"$OUT/mosquitto.conf" <<CONF
listener $MQ_PORT 127.0.0.1
allow_anonymous true
sys_interval 1
max_queued_messages 100000
log_dest none
CONF
(ulimit -n 20000 2>/dev/null || true; exec taskset -c "$SERVER_CPU" mosquitto -c "$OUT/mosquitto.conf") &
MQ=$!
trap 'kill "$MQ" 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$MQ_PORT) 2>/dev/null && break; sleep 0.1; done
# CPU seconds each of the process trees PIDS used between Unix times START and END, one line
# "PID SECONDS" per tree: sampled every 0.2 s, so a process that exits before END counts up to
# its last sample.
cpu_window() {
  python3 - "$@" <<'PY'
import os, sys, time
start, end, roots = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
def ticks():
    parent, own = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        parent[pid], own[pid] = f[1], int(f[11]) + int(f[12])
    out = {}
    for pid, t in own.items():
        q = pid
        while q in parent and q not in roots:
            q = parent[q]
        if q in roots:
            out[q] = out.get(q, 0) + t
    return out
time.sleep(max(0, start - time.time()))
first = ticks()
last = dict(first)
while time.time() < end:
    time.sleep(0.2)
    last.update(ticks())
for r in roots:
    print(r, (last.get(r, 0) - first.get(r, 0)) / os.sysconf("SC_CLK_TCK"))
PY
}
# Connected clients, less the mosquitto_sub that asks.
clients() {
  local n
  n=$(mosquitto_sub -p "$MQ_PORT" -h 127.0.0.1 -t '$SYS/broker/clients/connected' -C 1 -W 5 2>/dev/null || echo 1)
  echo $(( n - 1 ))
}
wait_clients() { # at least $1 clients (at most ~$2 s)
  for _ in $(seq "$2"); do [ "$(clients)" -ge "$1" ] && return 0; sleep 1; done
}
echo "== N=$N publish QoS 1 at $RATE/s for ${SECS}s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. loadgen
d="$OUT/mqtt-loadgen"; rm -rf "$d"
vars=(-e MQ_PORT="$MQ_PORT" -e N="$N" -e WAIT="$WAIT" -e RAMP="$RAMP" -e HOLD="$HOLD" -e DURATION="$DURATION"
  -e PSTART="$PSTART" -e RATE="$RATE" -e SECS="$SECS")
taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/mqtt-hold.yaml" "${vars[@]}" --out "$d" --quiet >"$d.log" 2>&1 &
LG=$!; T0=$(date +%s.%N)
sleep 1; base=$(tree_rss "$LG")
SH=$(pgrep -P "$LG" | tr '\n' ' ')   # the device shard process (swarm.shards: 1)
base_sh=$(tree_rss $SH)
wait_clients $(( N * 99 / 100 )) $(( WAIT + RAMP + 6 ))
sleep 1; held=$(tree_rss "$LG"); conns=$(clients); held_sh=$(tree_rss $SH)
# CPU from just before the publishes to 2 s after them: the client (senders and devices), its
# device shard alone, and the broker.
cpu=$(cpu_window "$(echo "$T0 + $PSTART - 1" | bc)" "$(echo "$T0 + $PSTART + $SECS + 2" | bc)" "$LG" $SH "$MQ")
wait "$LG" || true
python3 - "$d/run.json" "$base" "$held" "$conns" "$SECS" "$base_sh" "$held_sh" "$cpu" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]
base, held, conns, secs, base_sh, held_sh = (int(x) for x in sys.argv[2:8])
cpus = [float(l.split()[1]) for l in sys.argv[8].splitlines()]
# loadgen's main process (senders, tracking), its device shard, mosquitto
scpu, mcpu = sum(cpus[1:-1]) * 100, cpus[-1] * 100
cpu = cpus[0] * 100 + scpu
lat = m.get("delivery_latency", {})
recv = m.get("delivery_received", {}).get("value", 0)
print(f"loadgen: held={conns} (mosquitto's count) "
      f"rss_base_kib={base} rss_held_kib={held} bytes_per_conn={(held - base) * 1024 / max(1, conns):.0f} "
      f"failed={m.get('connections_failed', {}).get('value', 0)} tcp_connecting_p50_us={m.get('tcp_connecting', {}).get('p50')}")
print(f"loadgen QoS 1: published={m.get('http_reqs', {}).get('value')} publish_failed={m.get('http_req_failed', {}).get('value')} "
      f"received={recv} expected={m.get('delivery_expected', {}).get('value')} lost={m.get('delivery_lost', {}).get('value')} "
      f"dup={m.get('delivery_duplicates', {}).get('value')} msg_per_s={recv / secs:.0f} "
      f"latency_us p50={lat.get('p50')} p99={lat.get('p99')} max={lat.get('max')} "
      f"dropped_iterations={m.get('dropped_iterations', {}).get('value')}")
print(f"loadgen device shard: rss_base_kib={base_sh} rss_held_kib={held_sh} "
      f"bytes_per_conn={(held_sh - base_sh) * 1024 / max(1, conns):.0f}")
print(f"loadgen CPU over the publishes (+2 s): client {cpu / 100:.2f} s = {cpu * 1e4 / max(1, recv):.1f} µs/msg "
      f"(senders and devices), device shard {scpu / 100:.2f} s = {scpu * 1e4 / max(1, recv):.1f} µs/msg, "
      f"mosquitto {mcpu / 100:.2f} s")
PY
for _ in $(seq 30); do [ "$(clients)" -le 0 ] && break; sleep 1; done

# 2. the hand-written client, and loadgen publishing to it
taskset -c "$CLIENT_CPU" "$EX" "127.0.0.1:$MQ_PORT" "$N" 0 $(( DURATION - WAIT + 2 )) "$WAIT" >"$OUT/mqtt_hold.out" 2>"$OUT/mqtt_hold.err" &
HC=$!
sleep 1; base=$(tree_rss "$HC")
d="$OUT/mqtt-publish"; rm -rf "$d"
taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/mqtt-publish.yaml" -e MQ_PORT="$MQ_PORT" -e DURATION="$DURATION" \
  -e PSTART="$PSTART" -e RATE="$RATE" -e SECS="$SECS" -e NMAX=$(( N - 1 )) --out "$d" --quiet >"$d.log" 2>&1 &
PB=$!; T0=$(date +%s.%N)
wait_clients $(( N * 99 / 100 )) $(( WAIT + RAMP + 6 ))
sleep 1; held=$(tree_rss "$HC"); conns=$(clients)
cpu=$(cpu_window "$(echo "$T0 + $PSTART - 1" | bc)" "$(echo "$T0 + $PSTART + $SECS + 2" | bc)" "$HC" "$PB" "$MQ")
wait "$PB" || true
wait "$HC" || true
python3 - "$OUT/mqtt_hold.out" "$d/run.json" "$base" "$held" "$conns" "$SECS" "$cpu" <<'PY'
import json, sys
line = open(sys.argv[1]).read().split()
v = dict(zip(line[0::2], line[1::2]))
r = json.load(open(sys.argv[2])); m = r["metrics"]
base, held, conns, secs = (int(x) for x in sys.argv[3:7])
hc, pb, mq = (float(l.split()[1]) * 100 for l in sys.argv[7].splitlines())
cpu, scpu, mcpu = hc + pb, hc, mq
recv = int(v["received"])
print(f"hand-written: held={conns} rss_base_kib={base} rss_held_kib={held} "
      f"bytes_per_conn={(held - base) * 1024 / max(1, conns):.0f}")
print(f"hand-written QoS 1: published={m.get('http_reqs', {}).get('value')} publish_failed={m.get('http_req_failed', {}).get('value')} "
      f"received={recv} msg_per_s={recv / secs:.0f} latency_us p50={v['p50_us']} p99={v['p99_us']} max={v['max_us']}")
print(f"hand-written CPU over the publishes (+2 s): client {cpu / 100:.2f} s = {cpu * 1e4 / max(1, recv):.1f} µs/msg "
      f"(loadgen sender + hand-written devices), devices {scpu / 100:.2f} s = {scpu * 1e4 / max(1, recv):.1f} µs/msg, "
      f"mosquitto {mcpu / 100:.2f} s")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
