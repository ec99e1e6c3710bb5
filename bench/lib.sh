# Shared helpers for the bench scripts (sourced). Server on core 0, every client on core 1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PORT=${PORT:-18080}   # also the scenarios' ${PORT}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
TESTBED=${TESTBED:-$ROOT/target/release/testbed}
OUT=${OUT:-/tmp/pushbench-bench}
mkdir -p "$OUT"

start_server() {
  taskset -c "$SERVER_CPU" "$TESTBED" gateway --listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "gateway did not come up" >&2; exit 1
}

# The open-rate scenario of measurements 1 and 3; run it with -e RATE=… -e DURATION=….
OPEN_HEALTHZ=$ROOT/bench/open-healthz.yaml

# summarise RUN_DIR -> one line from run.json
summarise() {
  python3 - "$1/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]
d = r["duration_s"]; n = m["http_reqs"]["value"]
dr = m.get("dropped_iterations", {})
h = m["http_req_duration"]
f = m.get("http_req_failed", {})
print(f"reqs={n} duration_s={d:.3f} req_per_s={n/d:.0f} dropped={dr.get('value')}/{dr.get('total')} "
      f"failed={f.get('value')} p50_us={h.get('p50')} p99_us={h.get('p99')}")
PY
}
