#!/usr/bin/env bash
# Reports: every format for a run of 10M samples across 50 metrics (one-second series over
# 600 s). Prints the in-process time of each renderer, then times `loadgen report` writing all
# five formats end to end against `jq . run.json` (reading and re-printing the same 17 MB
# record) as a yardstick, alternating, ROUNDS times; min/median/max at the end.
#   bench/reports.sh [ROUNDS]
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-5}
cd "$ROOT"
cargo build --release -p loadgen
cargo build --release -p reports --example render_bench
DIR=$OUT/reports
"$ROOT/target/release/examples/render_bench" "$DIR"

timed() { # timed CMD... -> nanoseconds on stdout
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null
  t1=$(date +%s%N)
  echo $((t1 - t0))
}
loadgen_times=() jq_times=()
for _ in $(seq "$ROUNDS"); do
  loadgen_times+=("$(timed taskset -c "$CLIENT_CPU" "$LOADGEN" report "$DIR/big.json" \
    --report "html=$DIR/r.html" --report "md=$DIR/r.md" --report "junit=$DIR/r.xml" \
    --report "hlog=$DIR/r.hlog" --report "json=$DIR/r.json")")
  jq_times+=("$(timed taskset -c "$CLIENT_CPU" jq . "$DIR/big.json")")
done
python3 - "${loadgen_times[*]}" "${jq_times[*]}" <<'PY'
import statistics, sys
a = [int(x) / 1e9 for x in sys.argv[1].split()]
b = [int(x) / 1e9 for x in sys.argv[2].split()]
for name, xs in (("loadgen report (5 formats)", a), ("jq . run.json", b)):
    print(f"{name}: min {min(xs):.3f} s, median {statistics.median(xs):.3f} s, max {max(xs):.3f} s")
r = [x / y for x, y in zip(a, b)]
print(f"ratio loadgen/jq per round: min {min(r):.2f}, median {statistics.median(r):.2f}, max {max(r):.2f}")
PY
