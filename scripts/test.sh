#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need when it is missing, so it
# passes on a fresh machine: cargo-nextest (each test in its own process: goose allows one
# load test per process).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need (one per line, with the tests that use it).
need_apt=(
  redis-server                 # apns-relay: shared dedupe store tests
  curl nghttp2-client          # mock APNs: outside HTTP/2 clients
  python3-jwt python3-cryptography  # mock APNs: provider tokens checked against PyJWT
  chromium chromium-driver     # reports: the HTML report opened in headless Chromium
)
# --- discovery (service discovery on ZooKeeper) -------------------------------------------
# A real standalone ZooKeeper (testkit::servers::ZooKeeper), and Apache Curator's own
# ServiceDiscovery on the Java side (discovery/tests/curator.rs runs
# tests/support/CuratorCheck.java with the JDK's source launcher; Debian's curator-x-discovery
# manifest leaves out the recipes jar its ServiceProvider needs, hence the second package).
need_apt+=(
  zookeeper
  default-jdk-headless
  libcurator-discovery-java libcurator-recipes-java
)
# ------------------------------------------------------------------------------------------
# Link emulator (testbed/tests/link.rs, apns-relay/tests/overseas.rs, testkit::netns): `ip` for
# network namespaces and veth pairs. Those tests need root and skip, saying so, without it.
need_apt+=(iproute2)
# --- device protocols (issue 20): loadgen/tests/mqtt.rs, loadgen/tests/nchan.rs ----------
# A real MQTT broker (testkit::servers::Mosquitto, mosquitto_passwd for the refused-CONNECT
# test) and nginx with nchan (testkit::servers::Nginx) for SSE, long-poll and WebSocket
# subscribers with several channels per connection.
need_apt+=(mosquitto nginx-light libnginx-mod-nchan)
# ------------------------------------------------------------------------------------------
# reports: .hlog files are read back with HdrHistogram's Python reader (PyPI hdrhistogram).
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
missing=()
for pkg in "${need_apt[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! python3 -c "import hdrh.log" >/dev/null 2>&1; then
  python3 -m pip install --quiet hdrhistogram \
    || python3 -m pip install --quiet --break-system-packages hdrhistogram
fi

# discovery: kazoo (PyPI), a second ZooKeeper client that reads the registrations back.
if ! python3 -c "import kazoo.client" >/dev/null 2>&1; then
  python3 -m pip install --quiet kazoo==2.11.0 \
    || python3 -m pip install --quiet --break-system-packages kazoo==2.11.0
fi

# --- apns-relay: stock APNs clients (apns-relay/tests/stock_clients.rs) -------------------
# @parse/node-apn 8.1.0 (npm) and aioapns 4.0 (PyPI), pinned by apns-relay/tests/stock/
# package-lock.json and requirements.txt, installed into target/stock-clients/ (node_modules
# and a pip --target folder) when missing or when the pins changed. The tests find them through
# PUSHBENCH_STOCK_CLIENTS (default: target/stock-clients).
command -v npm >/dev/null 2>&1 || need_stock_apt=(nodejs npm)
if [ -n "${need_stock_apt[*]:-}" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_stock_apt[@]}"
fi
stock_src=apns-relay/tests/stock
export PUSHBENCH_STOCK_CLIENTS="$PWD/target/stock-clients"
if ! cmp -s "$stock_src/package-lock.json" "$PUSHBENCH_STOCK_CLIENTS/node/package-lock.json"; then
  echo "installing @parse/node-apn (npm) for the apns-relay stock-client tests" >&2
  rm -rf "$PUSHBENCH_STOCK_CLIENTS/node" && mkdir -p "$PUSHBENCH_STOCK_CLIENTS/node"
  cp "$stock_src/package.json" "$stock_src/package-lock.json" "$PUSHBENCH_STOCK_CLIENTS/node/"
  (cd "$PUSHBENCH_STOCK_CLIENTS/node" && npm ci --no-audit --no-fund --loglevel=error)
fi
if ! cmp -s "$stock_src/requirements.txt" "$PUSHBENCH_STOCK_CLIENTS/py/requirements.txt"; then
  echo "installing aioapns (PyPI) for the apns-relay stock-client tests" >&2
  rm -rf "$PUSHBENCH_STOCK_CLIENTS/py"
  python3 -m pip install --quiet --disable-pip-version-check --target "$PUSHBENCH_STOCK_CLIENTS/py" \
    -r "$stock_src/requirements.txt"
  cp "$stock_src/requirements.txt" "$PUSHBENCH_STOCK_CLIENTS/py/"
fi
# --- end apns-relay stock clients ---------------------------------------------------------
# --- loadgen worker (Locust's master/worker protocol) ---------------------------------------
# loadgen/tests/locust.rs runs real Locust masters from PyPI (pinned): 2.47.0, and 2.20.0, the
# oldest 2.x `loadgen worker` supports, each in a virtualenv of its own under
# ~/.cache/pushbench (PUSHBENCH_LOCUST_DIR overrides), with deploy/locust/locustfile.py as
# their locustfile.
locust_dir=${PUSHBENCH_LOCUST_DIR:-$HOME/.cache/pushbench}
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need_venv=1
if [ -n "${need_venv:-}" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
fi
for v in 2.47.0 2.20.0; do
  if ! "$locust_dir/locust-$v/bin/locust" --version 2>/dev/null | grep -q "$v"; then
    echo "installing locust $v into $locust_dir/locust-$v" >&2
    rm -rf "$locust_dir/locust-$v"
    python3 -m venv "$locust_dir/locust-$v"
    "$locust_dir/locust-$v/bin/pip" install --quiet "locust==$v"
  fi
done
# ------------------------------------------------------------------------------------------

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

exec cargo nextest run --workspace --no-fail-fast "$@"
