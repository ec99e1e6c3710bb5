#!/usr/bin/env bash
# apns-relay throughput and added latency: the same HTTP/2-over-TLS client sends to the mock
# APNs directly and through the relay (release binary, TLS inbound, fjall dedupe), flat-out and
# at a fixed rate, alternating in one sitting. Prints CSV rows per round and target, with the
# CPU time and write system calls each push cost.
# Usage: bench/apns-relay.sh [--pin] [--n 20000] [--rate 5000] [--rounds 3] [--concurrency 256]
#        [--fsync true|false]
# --pin: the relay gets CPU 0 to itself and the client + mock APNs get CPU 1, in both the
#        direct and the relayed runs (a deployed relay has its own machine).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p apns-relay --bin apns-relay --example relay_bench
if [[ "${1:-}" == "--pin" ]]; then
  shift
  exec taskset -c 1 target/release/examples/relay_bench --relay-bin target/release/apns-relay \
    --relay-cpu 0 "$@"
fi
exec target/release/examples/relay_bench --relay-bin target/release/apns-relay "$@"
