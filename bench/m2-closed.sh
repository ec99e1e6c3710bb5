#!/usr/bin/env bash
# Measurement 2: closed model, 64 users, 10 s, GET /healthz: loadgen YAML journey on goose
# vs the hand-written goose test loadgen/examples/goose_baseline.rs. Alternates A B A B.
# Each line also gives the client's CPU time (user + system, from /usr/bin/time) per request,
# which a machine shared with other work disturbs much less than requests per second.
# Needs: cargo build --release -p loadgen --example goose_baseline
# Usage: bench/m2-closed.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
GOOSE=$ROOT/target/release/examples/goose_baseline
start_server
# cpu_per_req TIME_FILE REQUESTS -> "cpu_us_per_req=X"
cpu_per_req() {
  python3 -c "u, s = map(float, open('$1').read().split()[-2:]); print(f'cpu_s={u + s:.2f} cpu_us_per_req={(u + s) * 1e6 / $2:.2f}')"
}
for round in $(seq "$ROUNDS"); do
  d="$OUT/m2-r$round"; rm -rf "$d"
  /usr/bin/time -f "%U %S" -o "$OUT/m2-time-lg" taskset -c "$CLIENT_CPU" \
    "$LOADGEN" run "$ROOT/bench/closed-healthz.yaml" --out "$d" --quiet >"$d.log" 2>&1 || true
  reqs=$(python3 -c "import json; print(json.load(open('$d/run.json'))['metrics']['http_reqs']['value'])")
  echo "round $round loadgen: $(summarise "$d") $(cpu_per_req "$OUT/m2-time-lg" "$reqs")"
  line=$(/usr/bin/time -f "%U %S" -o "$OUT/m2-time-goose" taskset -c "$CLIENT_CPU" \
    "$GOOSE" "http://127.0.0.1:$PORT" 64 10 2>/dev/null | tail -1)
  greqs=$(echo "$line" | sed -n 's/.* requests=\([0-9]*\).*/\1/p')
  echo "round $round $line $(cpu_per_req "$OUT/m2-time-goose" "$greqs")"
done
