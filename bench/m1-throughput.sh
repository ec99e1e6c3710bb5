#!/usr/bin/env bash
# Measurement 1: max throughput, 64 HTTP/1.1 connections, 10 s, GET /healthz.
# loadgen's open-rate driver at increasing rates vs wrk and oha, same server, same sitting.
# Usage: bench/m1-throughput.sh [ROUNDS] [RATES...]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-3}; shift || true
RATES=${*:-"20000 40000 60000 80000 120000"}
URL="http://127.0.0.1:$PORT/healthz"
start_server
for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d10s "$URL")
  echo "wrk: $(echo "$out" | grep -E 'Requests/sec|requests in|Socket errors|Non-2xx' | tr '\n' ' ')"
  if command -v oha >/dev/null; then
    out=$(taskset -c "$CLIENT_CPU" oha -z 10s -c 64 --no-tui --output-format json "$URL")
    echo "oha: $(echo "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); s=j["summary"]; print("req_per_s=%.0f success=%s p50_ms=%.3f p99_ms=%.3f" % (s["requestsPerSec"], s["successRate"], j["latencyPercentiles"]["p50"]*1e3, j["latencyPercentiles"]["p99"]*1e3))')"
  fi
  for rate in $RATES; do
    d="$OUT/m1-$rate-r$round"; rm -rf "$d"
    taskset -c "$CLIENT_CPU" "$LOADGEN" run "$OPEN_HEALTHZ" -e RATE="$rate" -e DURATION=10s \
      --out "$d" --quiet >"$d.log" 2>&1 || true
    echo "loadgen rate=$rate: $(summarise "$d")"
  done
done
