//! The open-rate driver: iterations start at scheduled instants whatever the target does
//! (constant or ramping arrival rates, and later a recording's timestamps), over a fixed pool
//! of connections. Latency is measured from each iteration's scheduled instant, so a stalled
//! target shows in the tail instead of slowing the schedule down (coordinated omission).
//!
//! A ticker puts due iterations on a bounded queue; workers (one per HTTP/1.1 connection, or
//! `streams` per HTTP/2 connection) take them in order. When the queue is full the iteration
//! is not started and counts in `dropped_iterations`.
//!
//! Replay uses the same pool and workers through [`run_prebuilt`]: its pacer puts pre-built
//! requests ([`Fire`]) on the queue at their scheduled instants instead of the ticker's
//! arrivals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::http::{origin_of, Conn, Origin, Tls};
use crate::engine::pacer;
use crate::journey::{self, Journey, Prepared, Response, Transport, TransportError};
use crate::plan::Schedule;
use crate::stop::{Stop, StopReason};
use reports::Recorders;

/// Pool settings of one open-model sender.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections.
    pub connections: usize,
    /// HTTP/2 (else HTTP/1.1).
    pub http2: bool,
    /// Concurrent iterations per HTTP/2 connection.
    pub streams: usize,
    /// Iterations that may wait for a worker.
    pub queue: usize,
}

impl PoolConfig {
    /// The pool a scenario's `pool:` section asks for.
    pub fn of(pool: &crate::scenario::Pool) -> PoolConfig {
        PoolConfig {
            connections: pool.connections,
            http2: pool.http2,
            streams: pool.streams,
            queue: pool.queue,
        }
    }
}

/// One scheduled iteration.
#[derive(Debug, Clone, Copy)]
struct Job {
    intended: Instant,
}

/// What one open-model sender did.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenOutcome {
    /// Iterations scheduled (started + dropped).
    pub scheduled: u64,
    /// Iterations not started because the queue was full.
    pub dropped: u64,
}

/// Runs `journey` at the arrival `rate` until the schedule ends or `stop` is pulled.
pub async fn run(
    journey: Arc<Journey>,
    rate: Schedule,
    pool: PoolConfig,
    tls: Tls,
    recorders: Arc<Recorders>,
    stop: Stop,
) -> OpenOutcome {
    let (tx, rx) = flume::bounded::<Job>(pool.queue.max(1));
    let mut tasks = Vec::new();
    for (w, transport) in transports(&pool, &tls).into_iter().enumerate() {
        tasks.push(tokio::spawn(worker(
            w as u64 + 1,
            journey.clone(),
            transport,
            rx.clone(),
            recorders.clone(),
            stop.clone(),
        )));
    }
    let pacer = {
        let (journey, recorders, stop) = (journey.clone(), recorders.clone(), stop.clone());
        pacer::spawn("open-pacer", move || {
            tick(&journey, &rate, &tx, &recorders, &stop)
        })
    };
    let mut outcome = match pacer {
        Ok(p) => tokio::task::spawn_blocking(move || p.join().unwrap_or_default())
            .await
            .unwrap_or_default(),
        Err(e) => {
            stop.stop(StopReason::Failed(format!("cannot start the pacer: {e}")));
            OpenOutcome::default()
        }
    };
    for t in tasks {
        let _ = t.await;
    }
    // Iterations that were due but still waited for a connection when the run ended were
    // never started: they count as dropped, at their instant.
    let recorder = recorders.handle();
    let mut rec = common::sync::lock(&recorder);
    for job in rx.drain() {
        outcome.dropped += 1;
        rec.count(journey.dropped, job.intended, true);
    }
    drop(rec);
    outcome
}

/// One transport per worker: its own HTTP/1.1 connection, or a share of its group's HTTP/2
/// connection.
fn transports(pool: &PoolConfig, tls: &Tls) -> Vec<PoolTransport> {
    let workers = if pool.http2 {
        pool.connections * pool.streams
    } else {
        pool.connections
    };
    let shared: Vec<Arc<tokio::sync::Mutex<HashMap<Origin, Conn>>>> = (0..pool.connections)
        .map(|_| Arc::new(tokio::sync::Mutex::new(HashMap::new())))
        .collect();
    (0..workers)
        .map(|w| PoolTransport {
            http2: pool.http2,
            tls: tls.clone(),
            own: None,
            shared: pool.http2.then(|| shared[w % pool.connections].clone()),
        })
        .collect()
}

/// A pre-built request for [`run_prebuilt`], due at `intended`.
#[derive(Debug)]
pub struct Fire<T> {
    /// When it is due; its latency is measured from here.
    pub intended: Instant,
    /// The request.
    pub request: Prepared,
    /// Handed back with the outcome.
    pub context: T,
}

/// What became of one [`Fire`].
#[derive(Debug)]
pub struct Fired<T> {
    /// The request's context.
    pub context: T,
    /// When it was due.
    pub intended: Instant,
    /// When a worker took it and started sending.
    pub sent: Instant,
    /// When the whole response was read (or the request failed).
    pub done: Instant,
    /// The response, or why there is none.
    pub result: Result<Response, TransportError>,
}

/// Runs the pool's workers on pre-built requests: each request on `queue` (put there at its
/// instant by the caller's pacer, which counts what did not fit) is sent as it is taken, and
/// its outcome goes to `done` with the worker's thread recorder; a request still in flight at
/// the cut ends as `unfinished`. Returns when the queue is closed and drained, or when `stop`
/// is pulled, with the requests still queued then (due, never started).
pub async fn run_prebuilt<T, F>(
    queue: flume::Receiver<Fire<T>>,
    pool: PoolConfig,
    tls: Tls,
    timeout: Duration,
    recorders: Arc<Recorders>,
    stop: Stop,
    done: F,
) -> Vec<Fire<T>>
where
    T: Send + 'static,
    F: Fn(Fired<T>, &std::sync::Mutex<reports::Recorder>) + Send + Sync + 'static,
{
    let done = Arc::new(done);
    let mut tasks = Vec::new();
    for mut transport in transports(&pool, &tls) {
        let (queue, recorders, stop, done) =
            (queue.clone(), recorders.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let fire = tokio::select! {
                    f = queue.recv_async() => match f { Ok(f) => f, Err(_) => break },
                    _ = stop.wait() => break,
                };
                let sent = Instant::now();
                let result = tokio::select! {
                    r = transport.send("", fire.request, timeout) => r,
                    () = stop.wait_cut() => Err(TransportError::Unfinished),
                };
                let fired = Fired {
                    context: fire.context,
                    intended: fire.intended,
                    sent,
                    done: Instant::now(),
                    result,
                };
                done(fired, &recorders.for_thread());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    queue.drain().collect()
}

/// The pacer: puts each iteration on the queue at its instant (a full queue drops it);
/// catches up in a batch after a late wake.
fn tick(
    journey: &Journey,
    rate: &Schedule,
    tx: &flume::Sender<Job>,
    recorders: &Recorders,
    stop: &Stop,
) -> OpenOutcome {
    let start = recorders.origin();
    let recorder = recorders.handle();
    let mut outcome = OpenOutcome::default();
    let mut arrivals = rate.arrivals().peekable();
    while let Some(&offset) = arrivals.peek() {
        if !pacer::sleep_until(start + Duration::from_secs_f64(offset), stop) {
            break;
        }
        let now = Instant::now();
        let mut rec = common::sync::lock(&recorder);
        while let Some(&offset) = arrivals.peek() {
            let intended = start + Duration::from_secs_f64(offset);
            if intended > now {
                break;
            }
            arrivals.next();
            outcome.scheduled += 1;
            rec.record(
                journey.pacer_lag,
                intended,
                now.saturating_duration_since(intended).as_micros() as u64,
            );
            let dropped = tx.try_send(Job { intended }).is_err();
            outcome.dropped += u64::from(dropped);
            rec.count(journey.dropped, intended, dropped);
        }
    }
    outcome
}

async fn worker(
    id: u64,
    journey: Arc<Journey>,
    mut transport: PoolTransport,
    rx: flume::Receiver<Job>,
    recorders: Arc<Recorders>,
    stop: Stop,
) {
    let mut vars = journey.vars(id);
    loop {
        let job = tokio::select! {
            biased;
            _ = stop.wait() => break,
            job = rx.recv_async() => match job { Ok(j) => j, Err(_) => break },
        };
        let recorder = recorders.for_thread();
        if stop.is_stopped() {
            // Taken just as the run stopped: never started, like the jobs still queued.
            common::sync::lock(&recorder).count(journey.dropped, job.intended, true);
            break;
        }
        let lag = Instant::now().saturating_duration_since(job.intended);
        common::sync::lock(&recorder).record(
            journey.schedule_lag,
            job.intended,
            lag.as_micros() as u64,
        );
        journey::run_iteration(
            &journey,
            &mut transport,
            &mut vars,
            &recorder,
            job.intended,
            &stop,
        )
        .await;
    }
}

/// The transport of one closed-loop user ([`super::users`]): a connection of its own, as a
/// pool worker's.
pub fn user_transport(http2: bool, tls: &Tls) -> impl Transport + Send + 'static {
    PoolTransport {
        http2,
        tls: tls.clone(),
        own: None,
        shared: None,
    }
}

/// A worker's way to the target: its own HTTP/1.1 connections, or a handle on its group's
/// shared HTTP/2 connection.
struct PoolTransport {
    http2: bool,
    tls: Tls,
    own: Option<Conn>,
    shared: Option<Arc<tokio::sync::Mutex<HashMap<Origin, Conn>>>>,
}

impl PoolTransport {
    async fn conn_for(
        &mut self,
        origin: &Origin,
        timeout: Duration,
    ) -> Result<&mut Conn, TransportError> {
        let fresh = self
            .own
            .as_ref()
            .is_some_and(|c| c.origin() == origin && c.is_usable());
        if !fresh {
            self.own = None;
            let conn = match &self.shared {
                Some(shared) => {
                    let mut map = shared.lock().await;
                    match map
                        .get(origin)
                        .filter(|c| c.is_usable())
                        .and_then(Conn::share)
                    {
                        Some(c) => c,
                        None => {
                            let c = Conn::connect(origin, self.http2, &self.tls, timeout).await?;
                            let handle = c.share();
                            if let Some(h) = handle {
                                map.insert(origin.clone(), h);
                            }
                            c
                        }
                    }
                }
                None => Conn::connect(origin, self.http2, &self.tls, timeout).await?,
            };
            self.own = Some(conn);
        }
        self.own
            .as_mut()
            .ok_or_else(|| TransportError::Connect("no connection".into()))
    }
}

impl Transport for PoolTransport {
    async fn send(
        &mut self,
        _name: &str,
        req: Prepared,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|e| TransportError::BadUrl(format!("{}: {e}", req.url)))?;
        let origin = origin_of(&uri)?;
        let result = tokio::time::timeout(timeout, async {
            let conn = self.conn_for(&origin, timeout).await?;
            conn.send(uri, req).await
        })
        .await
        .unwrap_or(Err(TransportError::Timeout));
        if result.is_err() {
            // A connection in an unknown state is not reused: the next request reconnects.
            self.own = None;
        }
        result
    }
}
