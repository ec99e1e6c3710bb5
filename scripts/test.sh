#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need when it is missing, so it
# passes on a fresh machine: cargo-nextest (each test in its own process: goose allows one
# load test per process).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
need_apt+=(redis-server)   # apns-relay: shared dedupe store tests
# (later issues add Debian packages their tests need here: redis-server, chromium, tsung …)
need_apt+=(curl nghttp2-client python3-jwt python3-cryptography) # mock APNs: outside HTTP/2 clients, PyJWT
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

exec cargo nextest run --workspace --no-fail-fast "$@"
