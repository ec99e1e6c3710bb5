//! `loadgen worker`: a worker of a real Locust master (Locust 2.20 to 2.47). The scenario's
//! journeys are the master's user classes ([`classes`]); the master sets how many users of
//! each run, up and down while they run, and the worker reports Locust's stats every 3 s
//! ([`stats`]), so Locust's web UI, CSV and charts show HTTP steps, device connects and
//! delivery latency live. Besides, every report carries the worker's exact samples in a
//! custom `pushbench_record` message ([`log`]), from which the plugin shipped in
//! `deploy/locust/locustfile.py` writes the run's exact record with `loadgen report merge`.
//!
//! The conversation, as Locust's own `WorkerRunner` holds it (`locust/runners.py`):
//! `client_ready` (version `-1`: no version check) until the master's `ack` (which carries
//! this worker's index), a `heartbeat` every second (the master answers each; silence for
//! `--heartbeat-timeout`, 60 s as in Locust, ends the worker), `spawn` (absolute per-class
//! counts, older timestamps ignored) answered by `spawning` and `spawning_complete`, `stats`
//! every 3 s, `stop` (the run drains as `loadgen run` drains, then `client_stopped` and
//! `client_ready` again), `quit`, `reconnect`, and `exception` for what goes wrong here.
//!
//! Crates: `zeromq` 0.7, a pure-Rust ZeroMQ (ZMTP 3) whose DEALER socket talks to pyzmq's
//! ROUTER (NOTES.md; the tests run against Locust itself), so no C libzmq is needed to build
//! or deploy; `rmp-serde` for msgpack, with `to_vec_named` because Locust's messages are
//! dicts (plain `to_vec` writes structs as arrays).
//!
//! A worker's devices are its share ([`crate::plan::Share`]): the master's plugin tells each
//! worker its place among the workers (`pushbench_share`, sent at the test's start, before
//! the first spawn), and the worker plans its shard processes, open files and device indices
//! from that share rather than from the whole file; its limits are checked then. Several
//! workers never run the same device. Unicast pushes are
//! tracked by the worker whose sender picked a device of its own. A tracked broadcast (or
//! topic push) reaches every worker's devices: the sending worker announces it
//! (`pushbench_track`), the plugin relays it to the other workers, and each judges its own
//! devices on it (expected, received, lost); its `broadcast_completion` is the sending
//! worker's devices' last receipt.

pub mod classes;
pub mod host;
pub mod log;
pub mod protocol;
pub mod session;
pub mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::plan::{Plan, Share};
use crate::run::RunError;
use crate::stop::Stop;
use classes::UserClass;
use log::Line;
use protocol::{Incoming, Link, LinkError};
use session::{Finished, Session};

/// How the worker reaches its master.
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT`.
    pub master: String,
    /// This worker's Locust client id (`hostname_uuid`, as Locust's workers make it).
    pub client_id: String,
    /// Quit after this long without the master's heartbeat.
    pub heartbeat_timeout: Duration,
    /// Give up when no master acknowledges within this long.
    pub connect_timeout: Duration,
    /// Run a share beyond this machine's limits (`--ignore-limits`).
    pub ignore_limits: bool,
    /// Where the worker's own records go.
    pub out: PathBuf,
}

/// How the worker ended.
#[derive(Debug)]
pub enum Ended {
    /// The master said quit, or the worker was interrupted; `passed` is the last run's
    /// threshold verdict (None: no run).
    Quit {
        /// Every threshold of the last run passed.
        passed: Option<bool>,
    },
    /// Bad input (exit 2): a master that is not Locust, a protocol this worker does not
    /// speak, a class the scenario does not have, an unreachable target.
    BadInput(String),
    /// The harness failed or the master went silent (exit 1).
    Harness(String),
}

/// What the worker tells its operator (the command line prints it).
pub trait Notices {
    /// One line.
    fn notice(&mut self, line: &str);
}

impl<F: FnMut(&str)> Notices for F {
    fn notice(&mut self, line: &str) {
        self(line)
    }
}

/// Seconds between Locust stats reports (`WORKER_REPORT_INTERVAL`).
const REPORT_EVERY: Duration = Duration::from_secs(3);
/// Seconds between heartbeats (`HEARTBEAT_INTERVAL`).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long one `client_ready` waits for its `ack` (`CONNECT_TIMEOUT`).
const ACK_WAIT: Duration = Duration::from_secs(5);

/// A Locust client id: `hostname_` and 32 hex digits.
pub fn client_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "loadgen".into());
    format!("{host}_{}", uuid::Uuid::new_v4().simple())
}

/// The state of the worker's run.
enum State {
    Idle,
    /// The session is starting (shard processes, target); the counts of the latest spawn
    /// wait for it.
    Starting(
        tokio::task::JoinHandle<Result<Session, RunError>>,
        BTreeMap<String, u64>,
    ),
    Running(Box<Session>),
    /// The run drains; `then_quit` when the master (or a signal) asked to quit.
    Finishing(tokio::task::JoinHandle<Finished>, bool),
}

impl State {
    fn locust_state(&self) -> &'static str {
        match self {
            State::Idle => "ready",
            State::Starting(..) => "spawning",
            State::Running(_) => "running",
            State::Finishing(..) => "stopping",
        }
    }
}

/// The worker: connects, serves runs until the master says quit, a signal arrives, or the
/// master goes silent.
pub struct Worker<'a> {
    cfg: Config,
    /// The scenario's plan, with this worker's block share (the master's index).
    plan: std::sync::Arc<Plan>,
    /// The share the master's plugin gave for the next run (`pushbench_share`).
    given: Option<Share>,
    /// The plan of the current (or last) run: `plan` with its share.
    run_plan: std::sync::Arc<Plan>,
    classes: Vec<UserClass>,
    link: Link,
    notices: &'a mut dyn Notices,
    state: State,
    last_spawn: f64,
    last_master: Instant,
    runs: u32,
    passed: Option<bool>,
    /// The worker ends once its run is finished.
    quitting: bool,
    /// A fatal problem found while handling a message: the run is finished first.
    fatal: Option<Ended>,
}

impl std::fmt::Debug for Worker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("client_id", &self.cfg.client_id)
            .field("runs", &self.runs)
            .finish_non_exhaustive()
    }
}

/// Connects to the master and serves it; see [`Ended`].
pub async fn serve(mut plan: Plan, cfg: Config, stop: Stop, notices: &mut dyn Notices) -> Ended {
    let classes = match classes::of(&plan) {
        Ok(c) => c,
        Err(e) => return Ended::BadInput(e),
    };
    let (link, index) = match handshake(&cfg).await {
        Ok(x) => x,
        Err(e) => return Ended::BadInput(e),
    };
    notices.notice(&format!(
        "connected to the Locust master at {} as worker {index} ({})",
        cfg.master, cfg.client_id
    ));
    plan.share = Share {
        block: index,
        controlled: true,
        ..Share::default()
    };
    let plan = std::sync::Arc::new(plan);
    let mut w = Worker {
        cfg,
        run_plan: plan.clone(),
        given: None,
        plan,
        classes,
        link,
        notices,
        state: State::Idle,
        last_spawn: f64::MIN,
        last_master: Instant::now(),
        runs: 0,
        passed: None,
        quitting: false,
        fatal: None,
    };
    let ended = w.run(stop).await;
    // The last messages (the run's end, quit, an exception) reach the master before the
    // process ends.
    w.link.close(Duration::from_secs(2)).await;
    ended
}

/// `client_ready` until the master's `ack`; the worker's index.
async fn handshake(cfg: &Config) -> Result<(Link, u32), String> {
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut link = Link::connect(&cfg.master, &cfg.client_id, cfg.connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        link.send("client_ready", &-1, &cfg.client_id);
        let wait = ACK_WAIT.min(deadline.saturating_duration_since(Instant::now()));
        let until = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(until, link.recv()).await {
                Ok(Some(Ok(m))) if m.kind == "ack" => {
                    return ack_index(&m, &cfg.master).map(|i| (link, i))
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(why))) => {
                    return Err(LinkError::NotLocust {
                        address: cfg.master.clone(),
                        why,
                    }
                    .to_string())
                }
                Ok(None) | Err(_) => break,
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} did not acknowledge this worker's client_ready within {}: is it a Locust master (--master)?",
                cfg.master,
                common::duration::format(cfg.connect_timeout)
            ));
        }
    }
}

/// The worker index in the master's `ack` (Locust ≥ 2.11 sends it).
fn ack_index(m: &Incoming, master: &str) -> Result<u32, String> {
    m.data
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| {
            format!(
                "{master} speaks an older Locust protocol (its ack carries no worker index: Locust before 2.11); this worker speaks Locust 2.20 to 2.47's"
            )
        })
}

impl Worker<'_> {
    fn send(&self, kind: &str, data: &impl serde::Serialize) {
        self.link.send(kind, data, &self.cfg.client_id);
    }

    async fn run(&mut self, stop: Stop) -> Ended {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cpu = host::CpuMeter::new();
        let mut interrupted = false;
        loop {
            if let Some(end) = self.should_end() {
                return end;
            }
            tokio::select! {
                m = self.link.recv() => match m {
                    Some(Ok(m)) => self.on_message(m),
                    Some(Err(why)) => {
                        let e = LinkError::NotLocust { address: self.cfg.master.clone(), why };
                        self.fail(Ended::BadInput(e.to_string()));
                    }
                    None => self.fail(Ended::Harness("the connection to the master closed".into())),
                },
                _ = heartbeat.tick() => {
                    let data = json!({
                        "state": self.state.locust_state(),
                        "current_cpu_usage": cpu.percent(),
                        "current_memory_usage": host::rss_bytes(),
                    });
                    self.send("heartbeat", &data);
                    let silent = self.last_master.elapsed();
                    if silent > self.cfg.heartbeat_timeout && self.fatal.is_none() {
                        self.fail(Ended::Harness(format!(
                            "no heartbeat from the master at {} for {}: stopped",
                            self.cfg.master,
                            common::duration::format(self.cfg.heartbeat_timeout)
                        )));
                    }
                }
                _ = report.tick() => self.report(),
                ev = state_event(&mut self.state) => match ev {
                    StateEvent::Started(r) => self.started(r),
                    StateEvent::Finished(f) => self.finished(f),
                    StateEvent::Announced(m) => self.send("pushbench_track", &m),
                },
                _ = stop.wait(), if !interrupted => {
                    interrupted = true;
                    self.notices.notice("interrupted: stopping the run and quitting");
                    self.send("quit", &());
                    self.begin_finish(Some("interrupted (SIGINT or SIGTERM)".into()), true);
                }
            }
        }
    }

    /// The end, once nothing is left running.
    fn should_end(&mut self) -> Option<Ended> {
        let done = matches!(self.state, State::Idle) && (self.fatal.is_some() || self.quitting);
        if !done {
            return None;
        }
        Some(self.fatal.take().unwrap_or(Ended::Quit {
            passed: self.passed,
        }))
    }

    /// Something fatal: tell the master, finish the run (its record is written), then end.
    fn fail(&mut self, end: Ended) {
        let msg = match &end {
            Ended::BadInput(m) | Ended::Harness(m) => m.clone(),
            Ended::Quit { .. } => String::new(),
        };
        self.notices.notice(&format!("error: {msg}"));
        self.send("exception", &json!({"msg": msg, "traceback": ""}));
        self.send("quit", &());
        self.fatal = Some(end);
        self.begin_finish(Some(format!("worker stopped: {msg}")), true);
    }

    fn on_message(&mut self, m: Incoming) {
        self.last_master = Instant::now();
        match m.kind.as_str() {
            "spawn" => self.on_spawn(&m.data),
            "stop" => self.begin_finish(None, false),
            "quit" => {
                self.notices.notice("the master said quit");
                self.begin_finish(None, true);
            }
            "reconnect" => self.notices.notice(
                "the master asked for a reconnect: the ZeroMQ socket reconnects by itself; sending client_ready",
            ),
            "pushbench_track" => self.on_remote_track(m.data),
            "pushbench_share" => self.on_share(&m.data),
            "heartbeat" | "ack" | "spawning_complete" => {}
            // Locust 1.x's names for spawn and its ramp.
            "hatch" | "hatching" => self.fail(Ended::BadInput(format!(
                "{} speaks Locust 1.x's protocol (`{}`); this worker speaks Locust 2.20 to 2.47's",
                self.cfg.master, m.kind
            ))),
            other => tracing::debug!("ignoring `{other}` from the master"),
        }
        if m.kind == "reconnect" {
            self.send("client_ready", &-1);
        }
    }

    /// The master's plugin: this worker's place among the workers, for the next run.
    fn on_share(&mut self, data: &Value) {
        let num = |k: &str| {
            data.get(k)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        match (num("segment"), num("segments")) {
            (Some(segment), Some(segments)) if segment < segments => {
                self.given = Some(Share {
                    segment,
                    segments,
                    block: 0,
                    controlled: true,
                });
            }
            _ => tracing::warn!("a pushbench_share that is not {{segment, segments}}: {data}"),
        }
    }

    /// This run's plan: the plugin's share when it gave one, else the whole journeys with
    /// this worker's block of device indices; checked against this machine's limits.
    fn plan_run(&mut self) -> Result<std::sync::Arc<Plan>, String> {
        let plan = match self.given.take() {
            Some(share) => {
                self.notices.notice(&format!(
                    "this run: worker share {}/{} (from the master's plugin): its devices are that share of each device journey",
                    share.segment, share.segments
                ));
                let mut p = (*self.plan).clone();
                p.share = share;
                std::sync::Arc::new(p)
            }
            None => {
                if !self.plan.scenario.devices.is_empty() {
                    self.notices.notice(
                        "the master's plugin did not say this worker's share (is the master running deploy/locust/locustfile.py?): planning every device journey whole",
                    );
                }
                self.plan.clone()
            }
        };
        if !self.cfg.ignore_limits {
            plan.check_limits(&crate::plan::Machine::this())
                .map_err(|e| e.to_string())?;
        }
        Ok(plan)
    }

    /// Another worker's tracked broadcast, relayed by the master's plugin.
    fn on_remote_track(&mut self, data: Value) {
        let State::Running(s) = &mut self.state else {
            return;
        };
        match serde_json::from_value::<crate::delivery::TrackMsg>(data) {
            Ok(msg) => s.track_remote(msg),
            Err(e) => tracing::warn!("a relayed broadcast that is not a tracking record: {e}"),
        }
    }

    fn on_spawn(&mut self, data: &Value) {
        self.send("spawning", &());
        let (Some(ts), Some(counts)) = (
            data.get("timestamp").and_then(Value::as_f64),
            data.get("user_classes_count").and_then(Value::as_object),
        ) else {
            return self.fail(Ended::BadInput(format!(
                "{} sent a spawn without `timestamp` and `user_classes_count`: it speaks a Locust protocol this worker does not (2.20 to 2.47)",
                self.cfg.master
            )));
        };
        if ts <= self.last_spawn {
            tracing::info!("ignoring a spawn older than the last one");
            return;
        }
        self.last_spawn = ts;
        let mut wanted = BTreeMap::new();
        for (name, n) in counts {
            let Some(n) = n.as_u64() else {
                return self.fail(Ended::BadInput(format!(
                    "{} sent a spawn whose count of `{name}` is not a number",
                    self.cfg.master
                )));
            };
            if !self.classes.iter().any(|c| &c.name == name) {
                let known: Vec<&str> = self.classes.iter().map(|c| c.name.as_str()).collect();
                return self.fail(Ended::BadInput(format!(
                    "the master asked for user class `{name}`, which {} does not have (its classes: {})",
                    self.plan.path.display(),
                    known.join(", ")
                )));
            }
            wanted.insert(name.clone(), n);
        }
        match &mut self.state {
            State::Idle => {
                let host = data.get("host").and_then(Value::as_str).map(str::to_string);
                let plan = match self.plan_run() {
                    Ok(p) => p,
                    Err(e) => return self.fail(Ended::BadInput(e)),
                };
                self.run_plan = plan.clone();
                let classes = self.classes.clone();
                let task = tokio::spawn(async move {
                    Box::pin(Session::start(&plan, classes, host.as_deref())).await
                });
                self.state = State::Starting(task, wanted);
            }
            State::Starting(_, pending) => *pending = wanted,
            State::Running(s) => {
                // Checked above: every class exists.
                for line in s.apply(&wanted).unwrap_or_default() {
                    self.notices.notice(&line);
                }
                let data = json!({"user_classes_count": s.counts(), "user_count": s.counts().values().sum::<u64>()});
                self.send("spawning_complete", &data);
            }
            State::Finishing(..) => {
                tracing::info!("a spawn while the last run drains: ignored");
            }
        }
    }

    fn started(&mut self, r: Result<Result<Session, RunError>, tokio::task::JoinError>) {
        let State::Starting(_, wanted) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        let mut s = match r {
            Ok(Ok(s)) => s,
            Ok(Err(RunError::BadInput(m))) => return self.fail(Ended::BadInput(m)),
            Ok(Err(RunError::Harness(m))) => return self.fail(Ended::Harness(m)),
            Err(e) => return self.fail(Ended::Harness(format!("the run did not start: {e}"))),
        };
        self.runs += 1;
        let meta = crate::run::meta::meta(&self.run_plan, "", None, None);
        let thresholds: Vec<(String, String)> = self
            .plan
            .thresholds
            .iter()
            .map(|t| (t.metric.to_string(), t.source.clone()))
            .collect();
        let begin = Line::Begin {
            scenario: self.plan.scenario.name.clone(),
            started_at_unix_ns: s.started_at_unix_ns(),
            meta,
            thresholds,
            worker: self.cfg.client_id.clone(),
        };
        self.send("pushbench_record", &begin);
        for line in s.apply(&wanted).unwrap_or_default() {
            self.notices.notice(&line);
        }
        let counts = s.counts();
        let data =
            json!({"user_classes_count": counts, "user_count": counts.values().sum::<u64>()});
        self.send("spawning_complete", &data);
        self.notices.notice(&format!("run {} started", self.runs));
        self.state = State::Running(Box::new(s));
    }

    /// Stops the run (if any) in the background; the worker ends after it when `quit`.
    fn begin_finish(&mut self, stopped_early: Option<String>, quit: bool) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Running(s) => {
                let plan = self.run_plan.clone();
                let task = tokio::spawn(async move { s.finish(&plan, stopped_early).await });
                self.state = State::Finishing(task, quit);
            }
            State::Starting(task, _) => {
                task.abort();
                self.stopped_without_run(quit);
            }
            State::Finishing(task, q) => self.state = State::Finishing(task, q || quit),
            State::Idle => self.stopped_without_run(quit),
        }
    }

    /// A stop or quit with no run to finish: answered as Locust's workers answer it.
    fn stopped_without_run(&mut self, quit: bool) {
        self.quitting |= quit;
        if !quit {
            self.send("client_stopped", &());
            self.send("client_ready", &-1);
        }
    }

    fn finished(&mut self, f: Result<Finished, tokio::task::JoinError>) {
        let State::Finishing(_, quit) = std::mem::replace(&mut self.state, State::Idle) else {
            return;
        };
        match f {
            Ok(Finished { run, last }) => {
                let (report, delta) = last;
                self.send("stats", &report);
                self.send("pushbench_record", &Line::Delta { delta });
                let stopped_early = run
                    .meta
                    .as_ref()
                    .and_then(|m| m.get("stopped_early"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.send(
                    "pushbench_record",
                    &Line::End {
                        duration_s: run.duration_s,
                        stopped_early,
                    },
                );
                self.passed = Some(run.thresholds.iter().all(|v| v.ok));
                self.write(&run);
            }
            Err(e) => self
                .notices
                .notice(&format!("error: the run did not finish: {e}")),
        }
        self.send("client_stopped", &());
        if quit {
            self.quitting = true;
        } else {
            self.send("client_ready", &-1);
        }
    }

    fn write(&mut self, run: &reports::Run) {
        let name = if self.runs <= 1 {
            "run.json".to_string()
        } else {
            format!("run-{}.json", self.runs)
        };
        let path = self.cfg.out.join(name);
        let written = std::fs::create_dir_all(&self.cfg.out)
            .map_err(|e| {
                RunError::BadInput(format!(
                    "{}: cannot create output folder: {e}",
                    self.cfg.out.display()
                ))
            })
            .and_then(|_| crate::run::write_record_to(run, &path));
        match written {
            Ok(()) => self
                .notices
                .notice(&format!("run record: {}", path.display())),
            Err(e) => self.notices.notice(&format!("error: {e}")),
        }
    }

    /// Locust's stats every 3 s, and the exact samples beside them.
    fn report(&mut self) {
        match &mut self.state {
            State::Running(s) => {
                let (report, delta) = s.take();
                self.send("stats", &report);
                self.send("pushbench_record", &Line::Delta { delta });
            }
            _ => {
                let empty = stats::Mapper::default().report(
                    &reports::Delta::default(),
                    0,
                    crate::delivery::clock::unix_ns() as f64 / 1e9,
                    BTreeMap::new(),
                );
                self.send("stats", &empty);
            }
        }
    }
}

/// A background step of the run that ended.
enum StateEvent {
    Started(Result<Result<Session, RunError>, tokio::task::JoinError>),
    Finished(Result<Finished, tokio::task::JoinError>),
    /// A broadcast the running session's senders tracked, for the other workers.
    Announced(crate::delivery::TrackMsg),
}

/// Waits for the session's start or finish, or its next announced broadcast.
async fn state_event(state: &mut State) -> StateEvent {
    match state {
        State::Starting(task, _) => StateEvent::Started(task.await),
        State::Finishing(task, _) => StateEvent::Finished(task.await),
        State::Running(s) => match s.next_announced().await {
            Some(m) => StateEvent::Announced(m),
            None => std::future::pending().await,
        },
        State::Idle => std::future::pending().await,
    }
}
