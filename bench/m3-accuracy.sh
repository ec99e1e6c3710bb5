#!/usr/bin/env bash
# Measurement 3: open-rate accuracy, per_second: 10000 for 30 s, 64 connections, GET /healthz.
# Usage: bench/m3-accuracy.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
start_server
for round in $(seq "$ROUNDS"); do
  d="$OUT/m3-r$round"; rm -rf "$d"
  taskset -c "$CLIENT_CPU" "$LOADGEN" run "$OPEN_HEALTHZ" -e RATE=10000 -e DURATION=30s \
    --out "$d" --quiet >"$d.log" 2>&1 || true
  echo "round $round: $(summarise "$d")"
  python3 - "$d/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]
it = m.get("iterations", {}).get("value")
n = m["http_reqs"]["value"]
pts = r["series"]["http_reqs"]
inner = [p["value"] for p in pts][1:-1]
print(f"  iterations={it} achieved_vs_planned={n/30:.1f}/s ({n/30/10000*100:.2f}% of asked) "
      f"series_points={len(pts)} inner_min={min(inner)} inner_max={max(inner)}")
PY
done
