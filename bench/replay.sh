#!/usr/bin/env bash
# Replay: (1) a synthetic 60 s recording at 5,000 req/s replayed at recorded speed against the
# reference gateway: p99 of |actual − scheduled| send time (schedule_lag) and the achieved
# rate vs the recording's; (2) max replay throughput (a GET /healthz recording played as fast
# as possible) vs wrk against the same gateway, same sitting, 64 connections each.
# Usage: bench/replay.sh [ROUNDS] [all|max]   (max: only the throughput comparison)
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
WHAT=${2:-all}
python3 "$ROOT/bench/gen-gor.py" 5000 60 "$OUT/replay-5k.gor" mix
python3 "$ROOT/bench/gen-gor.py" 20000 10 "$OUT/replay-healthz.gor" healthz
start_server
URL="http://127.0.0.1:$PORT"
for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  if [ "$WHAT" = all ]; then
  d="$OUT/replay-5k-r$round"; rm -rf "$d"
  taskset -c "$CLIENT_CPU" "$LOADGEN" replay "$OUT/replay-5k.gor" --target "$URL" --out "$d" --quiet \
    --connections 64 >"$d.log" 2>&1 || true
  python3 - "$d/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]; meta = r["meta"]["replay"]
lag = m["schedule_lag"]; n = m["http_reqs"]["value"]; planned = meta["planned_requests"]
pts = [p["value"] for p in r["series"]["http_reqs"]][1:-1]
span = meta["planned_length_s"]
print(f"replay 5k/s: sent={n}/{planned} dropped={m['dropped_iterations']['value']} failed={m['http_req_failed']['value']} "
      f"send_lag_us p50={lag['p50']} p99={lag['p99']} p999={lag.get('p99.9', '-')} max={lag['max']} "
      f"recording_rate={planned/span:.1f}/s achieved_inner_mean={sum(pts)/len(pts):.1f}/s "
      f"({(sum(pts)/len(pts))/(planned/span)*100:.2f}%) latency_p99_us={m['http_req_duration']['p99']}")
PY
  fi
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d10s "$URL/healthz")
  echo "wrk: $(echo "$out" | grep -E 'Requests/sec|requests in' | tr '\n' ' ')"
  d="$OUT/replay-max-r$round"; rm -rf "$d"
  taskset -c "$CLIENT_CPU" "$LOADGEN" replay "$OUT/replay-healthz.gor" --target "$URL" --out "$d" --quiet \
    --connections 64 --speed 1000000x --queue 1000000 >"$d.log" 2>&1 || true
  echo "replay max: $(summarise "$d")"
done
