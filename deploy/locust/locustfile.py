"""pushbench's Locust plugin: the master's locustfile for `loadgen worker`s.

Run a Locust master with this file and a pushbench scenario; start `loadgen worker` processes
(no Python on the workers) that connect to it:

    PUSHBENCH_SCENARIO=scenario.yaml locust -f deploy/locust/locustfile.py --master \
        --headless --expect-workers 2 --users 120 --spawn-rate 50 --run-time 1m
    loadgen worker --master 127.0.0.1:5557 scenario.yaml       # on each worker machine

What it does:
- defines one Locust user class per journey of the scenario, as `loadgen worker --classes`
  prints them: sender journeys weighted by their `weight`, device journeys with a
  `fixed_count` of their planned devices. Locust's dispatcher, web UI, CSV and charts work
  on them as on any user class; the workers report Locust's own stats.
- tells each worker its share before a test's first spawn (`pushbench_share`: its place
  among the N workers), so a worker sizes its shard processes and device indices for about
  1/N of each device journey; a worker the master later asks for more devices than its
  share (after another worker is lost) holds its share and records the rest as
  `devices_unplaced`.
- relays each worker's tracked broadcasts (`pushbench_track`) to the other workers, whose
  devices receive them too: every worker judges its devices on every tracked broadcast.
- collects each worker's exact samples (the `pushbench_record` messages: HdrHistograms and
  counters, not Locust's rounded buckets) into PUSHBENCH_OUT/run[-N]/workers/<worker>.jsonl,
  and when the test stops runs `loadgen report merge` over them: PUSHBENCH_OUT/run/run.json
  is the same record one loadgen would write for the same load, with the scenario's
  thresholds evaluated on the merged numbers. `meta.distributed` lists the workers and any
  whose share is missing (it stopped reporting before its end).
- sets the master's exit code as `loadgen run` does: 0 pass, 99 a threshold failed, 1 a
  worker's share is missing (or the merge failed), 2 the scenario is bad input.

Settings (environment): PUSHBENCH_SCENARIO (the scenario file, required), PUSHBENCH_LOADGEN
(the loadgen binary, default `loadgen` on PATH), PUSHBENCH_OUT (default `pushbench-out`),
PUSHBENCH_WAIT (seconds to wait for the workers' last records after a stop, default 120).
The scenario's ${NAME} variables come from the environment, as for loadgen itself.
"""

import json
import logging
import os
import subprocess
import sys
import time

import gevent
from locust import User, constant, events
from locust.runners import MasterRunner

log = logging.getLogger("pushbench")

SCENARIO = os.environ.get("PUSHBENCH_SCENARIO", "")
LOADGEN = os.environ.get("PUSHBENCH_LOADGEN", "loadgen")
OUT = os.environ.get("PUSHBENCH_OUT", "pushbench-out")
WAIT = float(os.environ.get("PUSHBENCH_WAIT", "120"))

EXIT_OK, EXIT_HARNESS, EXIT_BAD_INPUT, EXIT_THRESHOLD = 0, 1, 2, 99


def _classes():
    if not SCENARIO:
        sys.stderr.write("error: PUSHBENCH_SCENARIO: set it to the scenario file\n")
        sys.exit(EXIT_BAD_INPUT)
    try:
        out = subprocess.run(
            [LOADGEN, "worker", "--classes", SCENARIO], capture_output=True, text=True, check=False
        )
    except OSError as e:
        sys.stderr.write(f"error: PUSHBENCH_LOADGEN `{LOADGEN}`: {e}\n")
        sys.exit(EXIT_HARNESS)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        sys.exit(out.returncode)
    return json.loads(out.stdout)


def _noop(user):
    """The master never runs users; the class needs a task to be a valid Locust user."""


for _c in _classes():
    _attrs = {"weight": _c["weight"], "wait_time": constant(1), "tasks": [_noop], "__module__": __name__}
    if _c["fixed_count"] is not None:
        _attrs["fixed_count"] = _c["fixed_count"]
    globals()[_c["name"]] = type(_c["name"], (User,), _attrs)


class Collector:
    """The workers' record logs of one run at a time, and the merged record at its end."""

    def __init__(self, environment):
        self.env = environment
        self.runs = 0
        self.reset()

    def reset(self):
        self.dir = None
        self.files = {}
        self.ended = set()
        self.last_seen = {}

    def on_record(self, environment, msg, **_):
        data, worker = msg.data, msg.node_id
        if data.get("record") == "begin":
            if self.dir is None:
                self.runs += 1
                name = "run" if self.runs == 1 else f"run-{self.runs}"
                self.dir = os.path.join(OUT, name)
                os.makedirs(os.path.join(self.dir, "workers"), exist_ok=True)
            self.files[worker] = os.path.join(self.dir, "workers", f"{worker}.jsonl")
        path = self.files.get(worker)
        if path is None:
            log.warning("pushbench: a record from worker %s without its begin: dropped", worker)
            return
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(data) + "\n")
        self.last_seen[worker] = time.time()
        if data.get("record") == "end":
            self.ended.add(worker)

    def on_test_start(self, environment, **_):
        """Fired on the master before its first spawn of a test: tells each worker its place
        among the workers the dispatcher spreads users over, so it plans its shard processes,
        open files and device indices for its share of each device journey, not the whole."""
        runner = environment.runner
        active = runner.clients.ready + runner.clients.running + runner.clients.spawning
        # Places in the order Locust's UsersDispatcher cycles through the workers (its
        # _sort_workers: by index among the workers of one host, then id), so the workers it
        # gives one device more of a journey are the first places, and the workers together
        # run the device indices 0 … P-1 one loadgen would when a journey is dispatched in one go.
        per_host, key = {}, {}
        for client in sorted(w.id for w in active):
            host = client.split("_")[0]
            key[client] = (per_host.get(host, 0), client)
            per_host[host] = per_host.get(host, 0) + 1
        ids = sorted(key, key=key.get)
        for place, client in enumerate(ids):
            runner.send_message("pushbench_share", {"segment": place, "segments": len(ids)}, client)

    def on_track(self, environment, msg, **_):
        """A worker's tracked broadcast: the other workers' devices receive it too, so they
        judge them on it."""
        for client in list(environment.runner.clients.keys()):
            if client != msg.node_id:
                environment.runner.send_message("pushbench_track", msg.data, client)

    def gone(self, worker):
        client = self.env.runner.clients.get(worker)
        return client is None or client.state == "missing"

    def on_test_stopping(self, environment, **_):
        """Runs inside the master's stop (or quit, at the end of --run-time) before it tells
        the workers to quit: the workers drain and send their end while it waits here."""
        if not self.files:
            return
        # The master's state says stopping from here on (Locust sets it just after this
        # event): a worker that finished its run and reports ready again is not given a new
        # one meanwhile.
        environment.runner.update_state("stopping")
        environment.runner.send_message("stop")
        deadline = time.monotonic() + WAIT
        # Every worker that began sends its end after draining; a worker that is gone
        # (killed, lost) will not.
        while time.monotonic() < deadline:
            waiting = [w for w in self.files if w not in self.ended and not self.gone(w)]
            if not waiting:
                break
            gevent.sleep(0.2)
        files, ended, last_seen, out_dir = dict(self.files), set(self.ended), dict(self.last_seen), self.dir
        self.reset()
        environment.process_exit_code = merge(files, ended, last_seen, out_dir, environment)


def merge(files, ended, last_seen, out_dir, env):
    """`loadgen report merge` over the workers' logs; returns the exit code."""
    target = os.path.join(out_dir, "run.json")
    r = subprocess.run(
        [LOADGEN, "report", "merge", *sorted(files.values()), "-o", target],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        log.error("pushbench: merging the workers' records failed: %s", r.stderr.strip())
        return r.returncode if r.returncode in (EXIT_BAD_INPUT, EXIT_HARNESS) else EXIT_HARNESS
    with open(target, encoding="utf-8") as f:
        run = json.load(f)
    indexes = getattr(env.runner, "worker_indexes", {})
    workers = [
        {
            "worker": w,
            "index": indexes.get(w),
            "complete": w in ended,
            "last_record_unix_s": last_seen.get(w),
        }
        for w in sorted(files)
    ]
    missing = [w for w in workers if not w["complete"]]
    meta = run.setdefault("meta", {}) or {}
    meta.pop("worker_record", None)
    meta["distributed"] = {
        "master": "locust",
        "workers": workers,
        "missing": [
            f"worker {w['worker']} (index {w['index']}) stopped reporting before the end of its run: "
            "its numbers until its last report are included, the rest of its share is missing"
            for w in missing
        ],
    }
    run["meta"] = meta
    with open(target, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=2)
        f.write("\n")
    table = subprocess.run([LOADGEN, "report", target], capture_output=True, text=True, check=False)
    print(table.stdout, flush=True)
    failed = [t for t in run.get("thresholds", []) if not t.get("ok")]
    log.info("pushbench: run record %s (%d workers, %d missing)", target, len(workers), len(missing))
    for m in meta["distributed"]["missing"]:
        log.error("pushbench: %s", m)
    if failed:
        log.error("pushbench: thresholds failed: %s", ", ".join(f"{t['metric']}: {t['expr']}" for t in failed))
        return EXIT_THRESHOLD
    return EXIT_HARNESS if missing else EXIT_OK


@events.init.add_listener
def _on_init(environment, **_):
    if not isinstance(environment.runner, MasterRunner):
        return
    collector = Collector(environment)
    environment.runner.register_message("pushbench_record", collector.on_record)
    environment.runner.register_message("pushbench_track", collector.on_track)
    environment.events.test_start.add_listener(collector.on_test_start)
    environment.events.test_stopping.add_listener(collector.on_test_stopping)
