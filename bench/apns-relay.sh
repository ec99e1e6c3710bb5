#!/usr/bin/env bash
# apns-relay throughput and added latency: the same HTTP/2-over-TLS client sends to the mock
# APNs directly and through the relay (release binary, TLS inbound, fjall dedupe), flat-out and
# at a fixed rate, alternating in one sitting. Prints CSV rows per round and target, with the
# CPU time and write system calls each push cost.
# Usage: bench/apns-relay.sh [--pin] [--n 20000] [--rate 5000] [--rounds 3] [--concurrency 256]
#        [--fsync true|false] [--store DIR] [--cache-mib 256] [--soak SECS [--soak-direct SECS]]
#        bench/apns-relay.sh --day-store DIR [KEYS]   (fills DIR with KEYS done pushes, default
#                                   43,200,000: a day at 500/s; then pass --store DIR)
#        bench/apns-relay.sh --sync-probe   (the disk's own fdatasync/syncfs latency)
# --pin: the relay gets CPU 0 to itself and the client + mock APNs get CPU 1, in both the
#        direct and the relayed runs (a deployed relay has its own machine).
# --store DIR: the relay runs on that dedupe store (a copy is not made: it grows).
# --soak SECS: SECS at --rate straight to the mock, then SECS through the relay, a row per 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p apns-relay --bin apns-relay --example relay_bench --example store_bench
case "${1:-}" in
  --day-store)
    keys="${3:-43200000}"
    exec taskset -c 0 "$T/release/examples/store_bench" --pushes "$keys" \
      --slice $((keys / 10)) --fsync false --keep "$2" ;;
  --sync-probe)
    exec taskset -c 0 "$T/release/examples/store_bench" --sync-probe 2000 ;;
  --pin)
    shift
    exec taskset -c 1 "$T/release/examples/relay_bench" --relay-bin "$T/release/apns-relay" \
      --relay-cpu 0 "$@" ;;
esac
exec "$T/release/examples/relay_bench" --relay-bin "$T/release/apns-relay" "$@"
