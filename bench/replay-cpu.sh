#!/usr/bin/env bash
# Replay's CPU cost per request next to the open-rate driver's: process user+sys CPU time ÷
# requests sent (wall-clock throughput is unreliable on a busy machine; CPU per request much
# less so). Each round: (1) `loadgen replay` of a 10 s GET /healthz recording (~200k requests,
# bench/gen-gor.py) played as fast as possible — the CPU includes the pass that reads the
# whole recording before the run; (2) the open-rate driver sending GET /healthz at 20k/s for
# 10 s. Same gateway, same pinning (gateway core 0, client core 1), 64 connections each.
# Usage: bench/replay-cpu.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
python3 "$ROOT/bench/gen-gor.py" 20000 10 "$OUT/replay-healthz.gor" healthz
start_server
URL="http://127.0.0.1:$PORT"
cpu_per_req() {
  python3 - "$1/run.json" "$1.time" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); n = r["metrics"]["http_reqs"]["value"]
user, sys_ = map(float, open(sys.argv[2]).read().split()[-2:])
print(f"{sys.argv[3]}: reqs={n} user={user:.2f}s sys={sys_:.2f}s cpu_per_req_us={(user + sys_) / n * 1e6:.2f} "
      f"req_per_s={n / r['duration_s']:.0f}")
PY
}
for round in $(seq "$ROUNDS"); do
  echo "== round $round ($(cut -d' ' -f1-3 /proc/loadavg) load)"
  d="$OUT/cpu-replay-r$round"; rm -rf "$d"
  /usr/bin/time -f "%U %S" -o "$d.time" taskset -c "$CLIENT_CPU" "$LOADGEN" replay \
    "$OUT/replay-healthz.gor" --target "$URL" --out "$d" --quiet --connections 64 \
    --speed 1000000x --queue 1000000 >"$d.log" 2>&1 || true
  cpu_per_req "$d" replay
  d="$OUT/cpu-open-r$round"; rm -rf "$d"
  /usr/bin/time -f "%U %S" -o "$d.time" taskset -c "$CLIENT_CPU" "$LOADGEN" run \
    "$OPEN_HEALTHZ" -e RATE=20000 -e DURATION=10s --out "$d" --quiet >"$d.log" 2>&1 || true
  cpu_per_req "$d" open-rate
done
