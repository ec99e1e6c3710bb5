#!/usr/bin/env bash
# The overseas hop, emulated (BENCHMARKS.md section 9): a sender in a "China" network namespace
# sends N pushes to the mock APNs in a "US" one across the user-space link emulator
# (testbed::link, 180 ms RTT, ±10 ms jitter, 20 Mbit/s), directly, through the relay and
# through its CONNECT proxy, at 1 % and at 3 % loss, in one sitting. Prints one CSV row per
# loss level and path. Needs root (namespaces, TUN devices).
# Usage: bench/overseas.sh [--n 20000] [--concurrency 256] [--loss 1%,3%]
#        [--link "rtt=180ms jitter=10ms rate=20mbit"] [--request-timeout 10s] [--warmup 500]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p apns-relay --bin apns-relay --example overseas_bench
release="${CARGO_TARGET_DIR:-target}/release"
exec "$release/examples/overseas_bench" --relay-bin "$release/apns-relay" "$@"
