#!/usr/bin/env bash
# Calibration: what loadgen reports against the truth and against peers measured in the same
# sitting. Target: nginx with the echo module (Debian nginx-light, libnginx-mod-http-echo) on
# the server CPU, answering /ok at once, /d5 after 5 ms and /d20 after 20 ms.
#
#   truth   wrk -t1 -c1 --latency: one request at a time, nothing queued in the client
#   peers   oha -q RATE --latency-correction (its open mode); oha -q RATE -c USERS without the
#           correction (a closed loop held to the rate, like loadgen's closed model with think)
#   loadgen open model (bench/calibrate-open.yaml), closed model (bench/calibrate-closed.yaml)
#
# Then a 1 s stall (the nginx worker SIGSTOPped and SIGCONTed) at 200 req/s for 10 s, where
# the open model's p95/p99 should match what rate × stall implies.
#
# Needs: nginx-light libnginx-mod-http-echo wrk (apt), oha (cargo install oha),
# cargo build --release -p loadgen. Usage: bench/calibrate.sh [RATES...] (default 100 1000 5000)
source "$(dirname "$0")/lib.sh"
RATES=${*:-100 1000 5000}
DUR=${DUR:-10}
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
NGINX=${NGINX:-/usr/sbin/nginx}
NG="$OUT/calibrate-nginx"; rm -rf "$NG"; mkdir -p "$NG/logs" "$NG/tmp"
ECHO_MOD=/usr/lib/nginx/modules/ngx_http_echo_module.so
cat >"$NG/nginx.conf" <<CONF
load_module $ECHO_MOD;
daemon off; master_process on; worker_processes 1; pid $NG/nginx.pid; error_log $NG/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $NG/tmp;
  server {
    listen 127.0.0.1:$PORT;
    keepalive_requests 1000000;
    location = /ok  { return 200 "ok\n"; }
    location = /d5  { echo_sleep 0.005; echo ok; }
    location = /d20 { echo_sleep 0.020; echo ok; }
  }
}
CONF
taskset -c "$SERVER_CPU" "$NGINX" -p "$NG" -c "$NG/nginx.conf" &
NGINX_PID=$!
trap 'kill "$NGINX_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/ok" >/dev/null 2>&1 && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT"

# wrk's --latency output → "p50 p99 rps" in ms (wrk prints no p99.9)
wrk_q() {
  python3 -c '
import re, sys
t = sys.stdin.read()
def ms(v, u): return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[u]
q = {m.group(1): ms(m.group(2), m.group(3)) for m in re.finditer(r"^\s+(50|99|99\.9)%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)}
rps = re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)
p50, p99 = (q.get(k, 0.0) for k in ("50", "99"))
print(f"{p50:.3f} {p99:.3f} {float(rps):.0f}")'
}
# oha -j → "p50 p99 p99.9 rps" in ms
oha_q() {
  python3 -c '
import json, sys
j = json.load(sys.stdin); p = j["latencyPercentiles"]
p50, p99, p999 = (p[k] * 1e3 for k in ("p50", "p99", "p99.9"))
rps = j["summary"]["requestsPerSec"]
print(f"{p50:.3f} {p99:.3f} {p999:.3f} {rps:.0f}")'
}
# loadgen run.json → "p50 p99 p99.9 rps schedule_lag_p99" in ms
lg_q() {
  python3 - "$1/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); m = r["metrics"]; h = m["http_req_duration"]
def q(key):
    for k in (key, "p99.9" if key == "p999" else key):
        if k in h: return h[k] / 1e3
    return float("nan")
lag = m.get("schedule_lag", {}).get("p99")
load = (r.get("meta") or {}).get("load_s") or r["duration_s"]
print(f"{h['p50']/1e3:.3f} {h['p99']/1e3:.3f} {q('p999'):.3f} {m['http_reqs']['value']/load:.0f} "
      f"{'-' if lag is None else f'{lag/1e3:.3f}'}")
PY
}

echo "| path | rate | truth (wrk -c1) p50/p99 rps | loadgen open (…, schedule_lag p99) | oha -q --latency-correction | loadgen closed (users, think) | oha -q -c users (closed) |"
echo "| --- | ---: | --- | --- | --- | --- | --- |"
for path in /ok /d5 /d20; do
  truth=$(taskset -c "$CLIENT_CPU" wrk -t1 -c1 -d5s --latency "$URL$path" | wrk_q)
  t50=$(echo "$truth" | cut -d' ' -f1)
  for rate in $RATES; do
    d="$OUT/cal-open-${path#/}-$rate"; rm -rf "$d"
    taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/calibrate-open.yaml" -e TARGET="$URL" \
      -e URL_PATH="$path" -e RATE="$rate" -e CONNECTIONS=200 -e DURATION="${DUR}s" --out "$d" --quiet >"$d.log" 2>&1 || true
    open=$(lg_q "$d")
    oha=$(taskset -c "$CLIENT_CPU" "$OHA" -z "${DUR}s" -q "$rate" --latency-correction -c 200 --no-tui --output-format json "$URL$path" 2>/dev/null | oha_q)
    # Closed model at about the same rate: each user thinks at least 5 ms (a think shorter than
    # the runtime's 1 ms timer tick would be stretched by it), with enough users that
    # users / (latency + think) ≈ rate.
    read -r users think_ms < <(python3 -c "
import math; r=$rate; lat=$t50/1e3
u=max(1, math.ceil(r*(lat+0.005))); t=max(0.005, u/r-lat); print(u, round(t*1e3, 3))")
    d="$OUT/cal-closed-${path#/}-$rate"; rm -rf "$d"
    taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/calibrate-closed.yaml" -e TARGET="$URL" \
      -e URL_PATH="$path" -e USERS="$users" -e THINK="${think_ms}ms" -e DURATION="${DUR}s" \
      --out "$d" --quiet >"$d.log" 2>&1 || true
    closed=$(lg_q "$d")
    ohac=$(taskset -c "$CLIENT_CPU" "$OHA" -z "${DUR}s" -q "$rate" -c "$users" --no-tui --output-format json "$URL$path" 2>/dev/null | oha_q)
    echo "| $path | $rate | $truth | $open | $oha | $closed ($users, ${think_ms}ms) | $ohac |"
  done
done

# The stall: 200 req/s for 10 s, the worker stopped for 1 s from t = 4 s. Requests due during
# the stall wait until it ends: 10 % of them, uniformly 0–1 s, so p95 ≈ 0.5 s, p99 ≈ 0.9 s.
WORKER=$(pgrep -P "$NGINX_PID" | head -1)
d="$OUT/cal-stall"; rm -rf "$d"
( sleep 4; kill -STOP "$WORKER"; sleep 1; kill -CONT "$WORKER" ) &
STALL=$!
taskset -c "$CLIENT_CPU" "$LOADGEN" run "$ROOT/bench/calibrate-open.yaml" -e TARGET="$URL" \
  -e URL_PATH=/ok -e RATE=200 -e DURATION=10s --out "$d" --quiet >"$d.log" 2>&1 || true
wait "$STALL"
python3 - "$d/run.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["metrics"]["http_req_duration"]
print(f"stall 1 s at 200/s for 10 s: loadgen open p95 {h['p95']/1e3:.1f} ms (expected ~500), p99 {h['p99']/1e3:.1f} ms (expected ~900)")
PY
