#!/usr/bin/env bash
# apns-relay throughput and added latency: the same HTTP/2-over-TLS client sends to the mock
# APNs directly and through the relay (release binary, TLS inbound, redb dedupe), flat-out and
# at a fixed rate, alternating in one sitting. Prints CSV rows per round and target.
# Usage: bench/apns-relay.sh [--n 20000] [--rate 5000] [--rounds 3] [--concurrency 256]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p apns-relay --bin apns-relay --example relay_bench
exec target/release/examples/relay_bench --relay-bin target/release/apns-relay "$@"
