#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need when it is missing, so it
# passes on a fresh machine: cargo-nextest (each test in its own process: goose allows one
# load test per process).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# reports: the HTML report is opened in headless Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# reports: .hlog files are read back with HdrHistogram's Python reader (PyPI hdrhistogram).
python3 -c "import hdrh.log" >/dev/null 2>&1 || python3 -m pip --version >/dev/null 2>&1 \
  || need_apt+=(python3-pip)
# (later issues add Debian packages their tests need here: redis-server, chromium, tsung …)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! python3 -c "import hdrh.log" >/dev/null 2>&1; then
  python3 -m pip install --quiet hdrhistogram \
    || python3 -m pip install --quiet --break-system-packages hdrhistogram
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

exec cargo nextest run --workspace --no-fail-fast "$@"
