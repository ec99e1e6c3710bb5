#!/usr/bin/env bash
# Measurement 2: closed model, 64 users, 10 s, GET /healthz: loadgen YAML journey on goose
# vs the hand-written goose test loadgen/examples/goose_baseline.rs. Alternates A B A B.
# Needs: cargo build --release -p loadgen --example goose_baseline
# Usage: bench/m2-closed.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}
GOOSE=$ROOT/target/release/examples/goose_baseline
start_server
for round in $(seq "$ROUNDS"); do
  d="$OUT/m2-r$round"; rm -rf "$d"
  taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/closed-healthz.yaml" --out "$d" --quiet >"$d.log" 2>&1 || true
  echo "round $round loadgen: $(summarise "$d")"
  echo "round $round $(taskset -c "$CLIENT_CPU" "$GOOSE" "http://127.0.0.1:$PORT" 64 10 2>/dev/null | tail -1)"
done
