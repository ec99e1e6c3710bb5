#!/usr/bin/env bash
# The baseline gate on real runs (BENCHMARKS.md §9): `loadgen ab` runs scenarios/ci-gate.yaml
# ROUNDS rounds with both arms unchanged (A/A), then ROUNDS rounds with arm B's embedded
# gateway 1 ms slower (GATEWAY_LATENCY=3ms), in A B, B A, … order. Then every design of the
# README's CI recipe judges the runs through the CLI, and the script counts the verdicts:
#   - each A/A run against a history of the other ROUNDS-1 (the recipe's PR gate),
#   - each +1 ms run against a history of the ROUNDS A runs of its own job,
#   - every ordered pair of single A/A runs with an A/A noise profile of the other runs,
#   - the paired A/B verdict of each `ab` job,
#   - the A/A noise report (what a team reads to pick its minimum effect).
#   bench/gate.sh [ROUNDS]
# SKIP_RUNS=1 judges the runs already in $OUT/gate again; LOADGEN=PATH uses that binary
# without building (a copy, so a build elsewhere cannot replace it mid-run); GATE_FLAGS adds
# flags to every `report compare` and `report noise` (e.g. GATE_FLAGS='--alpha 1%').
LOADGEN_GIVEN=${LOADGEN:-}
source "$(dirname "$0")/lib.sh"
ROUNDS=${1:-10}
DIR=$OUT/gate
cd "$ROOT"
if [ -z "${SKIP_RUNS:-}" ]; then
  if [ -z "$LOADGEN_GIVEN" ]; then
    cargo build --release -p loadgen
    LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"
  cp "$LOADGEN" "$DIR/loadgen"
fi
LOADGEN=$DIR/loadgen
if [ -z "${SKIP_RUNS:-}" ]; then
  for job in aa ab; do
    extra=()
    [ "$job" = ab ] && extra=(--b GATEWAY_LATENCY=3ms)
    echo "$job: load average before $(cut -d' ' -f1-3 /proc/loadavg)"
    code=0
    "$LOADGEN" ab scenarios/ci-gate.yaml "${extra[@]}" --rounds "$ROUNDS" --out "$DIR/$job" \
      >"$DIR/$job.txt" 2>"$DIR/$job.log" || code=$?
    echo "$job: loadgen ab exit $code ($(tail -n 1 "$DIR/$job.log")); load average after $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$code" != 0 ] && [ "$code" != 99 ]; then cat "$DIR/$job.log" >&2; exit 1; fi
  done
fi

# judge ARGS…: runs `loadgen report compare ARGS…` and counts exit 99 (with SHOW=1, prints
# what regressed: a false alarm's lines); anything but 0 or 99 stops the script.
flagged=0 total=0 SHOW=0
judge() {
  local code=0
  # shellcheck disable=SC2086 # GATE_FLAGS is split into flags on purpose
  "$LOADGEN" report compare "$@" ${GATE_FLAGS:-} >"$DIR/last.txt" 2>&1 || code=$?
  case $code in
    0) ;;
    99)
      flagged=$((flagged + 1))
      if [ "$SHOW" = 1 ]; then grep -E '^  Regressed' "$DIR/last.txt" >&2; fi
      ;;
    *) cat "$DIR/last.txt" >&2; exit 1 ;;
  esac
  total=$((total + 1))
}
runs() { ls "$DIR/$1"/*/run.json; }

mapfile -t A < <(runs aa/a)
flagged=0 total=0 SHOW=1
for i in "${!A[@]}"; do
  history=()
  for j in "${!A[@]}"; do [ "$i" != "$j" ] && history+=("${A[$j]}"); done
  judge "${history[@]}" "${A[$i]}"
done
echo "A/A, each run against a history of the other $((${#A[@]} - 1)): $flagged of $total flagged a regression"

mapfile -t AB_A < <(runs ab/a)
mapfile -t AB_B < <(runs ab/b)
flagged=0 total=0 SHOW=0
for b in "${AB_B[@]}"; do judge "$DIR/ab/a" "$b"; done
echo "+1 ms, each B run against a history of the ${#AB_A[@]} A runs of its job: $flagged of $total flagged"

flagged=0 total=0 SHOW=1
for i in "${!A[@]}"; do
  for j in "${!A[@]}"; do
    [ "$i" = "$j" ] && continue
    others=()
    for k in "${!A[@]}"; do [ "$k" != "$i" ] && [ "$k" != "$j" ] && others+=("${A[$k]}"); done
    "$LOADGEN" report noise "${others[@]}" ${GATE_FLAGS:-} --design single -o "$DIR/profile.json"
    judge "${A[$i]}" "${A[$j]}" --noise-profile "$DIR/profile.json"
  done
done
echo "A/A, one run against one with a noise profile of the other $((${#A[@]} - 2)): $flagged of $total flagged"

flagged=0 total=0 SHOW=0
"$LOADGEN" report noise "${A[@]}" ${GATE_FLAGS:-} --design single -o "$DIR/profile.json"
for a in "${AB_A[@]}"; do
  for b in "${AB_B[@]}"; do judge "$a" "$b" --noise-profile "$DIR/profile.json"; done
done
echo "+1 ms, one B run against one A run with the A/A job's noise profile: $flagged of $total flagged"

for job in aa ab; do
  code=0
  # shellcheck disable=SC2086
  "$LOADGEN" report compare --paired "$DIR/$job/a" "$DIR/$job/b" ${GATE_FLAGS:-} \
    >"$DIR/last.txt" 2>&1 || code=$?
  echo "$job, B against A in $ROUNDS paired rounds (exit $code): $(grep -E '^baseline' "$DIR/last.txt")"
  grep -E '^  (Regressed|Improved)' "$DIR/last.txt" || true
done
# shellcheck disable=SC2086
"$LOADGEN" report noise "$DIR/aa/a" ${GATE_FLAGS:-}
# shellcheck disable=SC2086
"$LOADGEN" report noise "$DIR/aa/a" ${GATE_FLAGS:-} --design "ab:$ROUNDS"
