//! One device: a task that connects (dispatch, TCP, TLS, WebSocket upgrade), runs the
//! `send_on_connect` exchanges, then holds the connection — heartbeats, pushes and acks, the
//! session's end by think time or churn — and reconnects with backoff when the journey says so.
//!
//! Memory is the budget: the long-lived part of the task holds the socket, a frame decoder
//! with no buffer between messages, and a few timers. Reads go through a per-thread 64 KiB
//! scratch buffer after a readiness wait; the one-shot connect and handshake future is boxed
//! so its size does not stay in the task.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::endpoint::Endpoint;

use super::ack;
use super::script::{DeviceScope, Script};
use super::shard::{ShardCtx, Slot};
use super::wire::{self, Decoder, Frame, Framing};
use crate::delivery::clock::unix_ns;
use crate::delivery::{names, Receipt};
use crate::journey::extract::Message;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// A failure cause (the `cause` tag of `connections_failed`).
pub(crate) type Cause = Cow<'static, str>;

/// How a session ended.
enum Ended {
    /// The device was told to stop.
    Stopped,
    /// The device closed it (think time over).
    Clean,
    /// Churn dropped it.
    Churned,
    /// It failed.
    Failed,
}

/// Runs device `slot` until the schedule or the run stops it.
pub async fn run(ctx: Arc<ShardCtx>, slot: Arc<Slot>) {
    let script = &ctx.table.scripts[slot.script as usize];
    let mut failures: u32 = 0;
    loop {
        if !slot.wanted.load(Ordering::Acquire) || ctx.stop.is_stopped() {
            break;
        }
        let ended = session(&ctx, &slot, script).await;
        let backoff = script.def.reconnect.as_ref().map(|r| &r.backoff);
        let bound = match ended {
            Ended::Stopped => break,
            Ended::Clean => match backoff {
                Some(b) => {
                    failures = 0;
                    b.initial.get()
                }
                None => break,
            },
            Ended::Churned => {
                failures = 0;
                backoff.map_or(Duration::from_millis(100), |b| b.initial.get())
            }
            Ended::Failed => match backoff {
                Some(b) => {
                    failures = failures.saturating_add(1);
                    let exp = b.initial.get().saturating_mul(1 << (failures - 1).min(20));
                    exp.min(b.max.get())
                }
                None => break,
            },
        };
        let delay = bound.mul_f64(fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = slot.wake.notified() => {}
        }
    }
    slot.running.store(false, Ordering::Release);
}

async fn session(ctx: &Arc<ShardCtx>, slot: &Slot, script: &Script) -> Ended {
    // A connect still under way when the run ends is cut and counted (`unfinished`), so no
    // attempt goes without an outcome and the end is not held up by a slow handshake.
    let established = tokio::select! {
        r = Box::pin(establish(ctx, slot, script)) => r,
        () = ctx.stop.wait() => Err(Cow::Borrowed("unfinished")),
    };
    let (mut link, mut st) = match established {
        Ok(x) => x,
        Err(cause) => {
            count_failure(ctx, script, &cause);
            return if ctx.stop.is_stopped() {
                Ended::Stopped
            } else {
                Ended::Failed
            };
        }
    };
    let now = Instant::now();
    ctx.record(|r| r.add(script.keys.opened, now, 1));
    let start_ns = unix_ns();
    slot.start_ns.store(start_ns, Ordering::Release);
    slot.end_ns.store(0, Ordering::Release);
    let _ = slot
        .first_ns
        .compare_exchange(0, start_ns, Ordering::AcqRel, Ordering::Acquire);
    ctx.active.fetch_add(1, Ordering::Relaxed);
    common::sync::lock(&ctx.conn_events).0.push(slot.global);
    let held = hold(ctx, slot, script, &mut link, &mut st).await;
    slot.end_ns.store(unix_ns(), Ordering::Release);
    ctx.active.fetch_sub(1, Ordering::Relaxed);
    common::sync::lock(&ctx.conn_events).1.push(slot.global);
    match held {
        Ok(e) => {
            let key = match e {
                Ended::Clean => script.keys.closed_think,
                Ended::Churned => script.keys.closed_churn,
                _ => script.keys.closed_end,
            };
            ctx.record(|r| r.add(key, Instant::now(), 1));
            e
        }
        Err(cause) => {
            count_failure(ctx, script, &cause);
            Ended::Failed
        }
    }
}

fn count_failure(ctx: &ShardCtx, script: &Script, cause: &str) {
    let key = script.keys.failed(cause);
    ctx.record(|r| r.add(&key, Instant::now(), 1));
}

/// The connection's byte stream.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsIo>),
}

struct TlsIo {
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    buf: Box<[u8]>,
}

impl Io {
    /// Waits for data and hands it to `on`; `Ok(false)` at the end of the stream.
    /// Cancel-safe: nothing is consumed unless it was handed over.
    async fn read_with(&mut self, on: &mut (dyn FnMut(&[u8]) + Send)) -> io::Result<bool> {
        match self {
            // `poll_read` into the shared scratch buffer, handing the data over within the
            // same poll: a read shorter than the buffer tells tokio the socket is drained,
            // so the next read waits for readiness instead of costing an extra `recv`
            // that finds nothing (which `try_read` would).
            Io::Plain(s) => {
                std::future::poll_fn(|cx| {
                    SCRATCH.with_borrow_mut(|buf| {
                        let mut rb = tokio::io::ReadBuf::new(buf);
                        match std::pin::Pin::new(&mut *s).poll_read(cx, &mut rb) {
                            std::task::Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                                std::task::Poll::Ready(Ok(false))
                            }
                            std::task::Poll::Ready(Ok(())) => {
                                on(rb.filled());
                                std::task::Poll::Ready(Ok(true))
                            }
                            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                            std::task::Poll::Pending => std::task::Poll::Pending,
                        }
                    })
                })
                .await
            }
            Io::Tls(t) => {
                let n = t.stream.read(&mut t.buf).await?;
                if n == 0 {
                    return Ok(false);
                }
                on(&t.buf[..n]);
                Ok(true)
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.write_all(data).await,
            Io::Tls(t) => {
                t.stream.write_all(data).await?;
                t.stream.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(t) => t.stream.shutdown().await,
        };
    }
}

/// An established connection.
struct Link {
    io: Io,
    dec: Decoder,
    /// Captured values and `address`, for later templates.
    vars: Vec<(String, String)>,
}

/// Per-connection protocol state.
#[derive(Default)]
struct State {
    /// Bytes to write after the current read.
    out: Vec<u8>,
    /// Index of the `send_on_connect` exchange waiting for its answer.
    awaiting: Option<usize>,
    /// When the pong is due, and when the ping went.
    pong_due: Option<(Instant, Instant)>,
    /// The connection cannot go on.
    fail: Option<Cause>,
    /// The server closed (close frame).
    closed: bool,
    /// The cause a server error message announced.
    error_cause: Option<String>,
}

fn io_cause(e: &io::Error) -> Cause {
    Cow::Borrowed(match e.kind() {
        io::ErrorKind::UnexpectedEof => "closed",
        io::ErrorKind::TimedOut => "timeout",
        _ => "reset",
    })
}

fn scope<'a>(
    ctx: &'a ShardCtx,
    slot: &'a Slot,
    script: &'a Script,
    vars: &[(String, String)],
) -> DeviceScope<'a> {
    let mut s = DeviceScope::new(script, slot.index, slot.global, &slot.user, &ctx.base_url);
    s.extra = vars.to_vec();
    s
}

/// Where to connect, from a rendered URL.
struct Dest {
    addr: SocketAddr,
    kind: Kind,
    host: String,
    path: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ws,
    Wss,
    Tcp,
}

async fn resolve(url: &str) -> Result<Dest, Cause> {
    let uri: http::Uri = url.parse().map_err(|_| Cow::Borrowed("connect"))?;
    let endpoint =
        Endpoint::of(&uri, &["ws", "wss", "tcp"]).map_err(|_| Cow::Borrowed("connect"))?;
    let kind = match endpoint.scheme.as_str() {
        "ws" => Kind::Ws,
        "wss" => Kind::Wss,
        _ => Kind::Tcp,
    };
    let addr = super::net::resolve(&endpoint)
        .await
        .map_err(|_| Cow::Borrowed("connect"))?;
    let host = uri
        .authority()
        .map_or_else(|| endpoint.authority(), |a| a.to_string());
    Ok(Dest {
        addr,
        kind,
        host,
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string()),
    })
}

/// Dispatch, connect, TLS, upgrade and the `send_on_connect` exchanges.
async fn establish(ctx: &ShardCtx, slot: &Slot, script: &Script) -> Result<(Link, State), Cause> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let connecting = connect(ctx, slot, script, &mut vars);
    let (io, framing, leftover) =
        match tokio::time::timeout(script.connect_timeout, connecting).await {
            Ok(r) => r?,
            Err(_) => return Err("timeout".into()),
        };
    let mut link = Link {
        io,
        dec: Decoder::new(framing),
        vars,
    };
    let mut st = State::default();
    if !leftover.is_empty() {
        feed(ctx, slot, script, &mut link, &mut st, &leftover)?;
    }
    exchange(ctx, slot, script, &mut link, &mut st).await?;
    Ok((link, st))
}

/// The dispatch call (its address becomes `{{address}}` in `vars`), TCP connect, TLS and the
/// WebSocket upgrade: the stream, its framing, and bytes that came after the upgrade's head.
async fn connect(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    vars: &mut Vec<(String, String)>,
) -> Result<(Io, Framing, Vec<u8>), Cause> {
    let def = &script.def;
    if let Some(d) = &def.connect.dispatch {
        let url = d
            .get
            .render(&scope(ctx, slot, script, vars))
            .map_err(|_| Cow::Borrowed("dispatch"))?;
        let address = ctx.dispatch.address(&url, &d.address).await?;
        vars.push(("address".into(), address));
    }
    let url = match &def.connect.url {
        Some(t) => t
            .render(&scope(ctx, slot, script, vars))
            .map_err(|_| Cow::Borrowed("connect"))?,
        None => super::script::lookup(vars, "address")
            .ok_or(Cow::Borrowed("connect"))?
            .to_string(),
    };
    let dest = resolve(&url).await?;
    let t0 = Instant::now();
    let tcp = super::net::connect(dest.addr, ctx.source_for(slot.global))
        .await
        .map_err(|_| Cow::Borrowed("connect"))?;
    let mut io = match dest.kind {
        Kind::Wss => {
            let name = rustls::pki_types::ServerName::try_from(
                dest.host.split(':').next().unwrap_or("").to_string(),
            )
            .map_err(|_| Cow::Borrowed("handshake"))?;
            let s = ctx
                .tls
                .connect(name, tcp)
                .await
                .map_err(|_| Cow::Borrowed("handshake"))?;
            Io::Tls(Box::new(TlsIo {
                stream: s,
                buf: vec![0; 16 * 1024].into_boxed_slice(),
            }))
        }
        _ => Io::Plain(tcp),
    };
    let (framing, leftover, key) = if dest.kind == Kind::Tcp {
        (script.tcp_framing, Vec::new(), &script.keys.tcp_connecting)
    } else {
        let sc = scope(ctx, slot, script, vars);
        let mut headers = Vec::new();
        for (n, v) in &def.connect.headers {
            headers.push((
                n.clone(),
                v.render(&sc).map_err(|_| Cow::Borrowed("handshake"))?,
            ));
        }
        let leftover = upgrade(&mut io, &dest, &headers).await?;
        (Framing::Ws, leftover, &script.keys.ws_connecting)
    };
    let done = Instant::now();
    ctx.record(|r| r.record(key, done, done.duration_since(t0).as_micros() as u64));
    Ok((io, framing, leftover))
}

/// The WebSocket opening handshake on `io`; returns the bytes after the answer's head.
async fn upgrade(io: &mut Io, dest: &Dest, headers: &[(String, String)]) -> Result<Vec<u8>, Cause> {
    let key = wire::new_key();
    let req = wire::upgrade_request(&dest.host, &dest.path, &key, headers);
    io.write_all(req.as_bytes())
        .await
        .map_err(|_| Cow::Borrowed("handshake"))?;
    let mut head: Vec<u8> = Vec::with_capacity(256);
    let end = loop {
        let alive = io
            .read_with(&mut |d| head.extend_from_slice(d))
            .await
            .map_err(|_| Cow::Borrowed("handshake"))?;
        if !alive || head.len() > 16 * 1024 {
            return Err(Cow::Borrowed("handshake"));
        }
        if let Some(end) =
            wire::upgrade_answer(&head, &key).map_err(|_| Cow::Borrowed("handshake"))?
        {
            break end;
        }
    };
    Ok(head.split_off(end))
}

/// The `send_on_connect` exchanges, each awaiting its answer when it expects one.
async fn exchange(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
) -> Result<(), Cause> {
    let framing = link.dec.framing();
    for (i, x) in script.def.send_on_connect.iter().enumerate() {
        let msg = x
            .send
            .render(&scope(ctx, slot, script, &link.vars))
            .map_err(|_| Cow::Borrowed("refused"))?;
        wire::encode(framing, msg.as_bytes(), &mut st.out);
        flush(link, st).await?;
        if x.expect.is_none() {
            continue;
        }
        st.awaiting = Some(i);
        let within = x.within.map_or(Duration::from_secs(10), |w| w.get());
        let deadline = tokio::time::Instant::now() + within;
        while st.awaiting.is_some() {
            match tokio::time::timeout_at(deadline, read_step(ctx, slot, script, link, st)).await {
                Ok(r) => r?,
                Err(_) => return Err("timeout".into()),
            }
            flush(link, st).await?;
        }
    }
    Ok(())
}

/// Decodes `data` and handles every frame in it.
fn feed(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
    data: &[u8],
) -> Result<(), Cause> {
    let Link { dec, vars, .. } = link;
    let framing = dec.framing();
    dec.feed(data, &mut |f| {
        on_frame(ctx, slot, script, framing, vars, st, f)
    })
    .map_err(|_| Cow::Borrowed("malformed"))?;
    match st.fail.take() {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// Reads once and handles what came. Cancel-safe.
async fn read_step(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
) -> Result<(), Cause> {
    let Link { io, dec, vars } = link;
    let framing = dec.framing();
    let mut bad = false;
    let alive = io
        .read_with(&mut |data| {
            if bad || st.fail.is_some() {
                return;
            }
            let r = dec.feed(data, &mut |f| {
                on_frame(ctx, slot, script, framing, vars, st, f)
            });
            bad = r.is_err();
        })
        .await
        .map_err(|e| io_cause(&e))?;
    if bad {
        return Err("malformed".into());
    }
    if let Some(c) = st.fail.take() {
        return Err(c);
    }
    if st.closed || !alive {
        return Err(match st.error_cause.take() {
            Some(c) => Cow::Owned(c),
            None if st.awaiting.is_some() => Cow::Borrowed("refused"),
            None => Cow::Borrowed("closed"),
        });
    }
    Ok(())
}

/// Writes what the last read or timer queued. The write future is boxed: it is short-lived
/// and would otherwise stay in every idle connection's task.
async fn flush(link: &mut Link, st: &mut State) -> Result<(), Cause> {
    if !st.out.is_empty() {
        let mut out = std::mem::take(&mut st.out);
        // Usually the socket takes it all at once (an ack is a few dozen bytes): no boxed
        // future for that.
        if let Io::Plain(s) = &link.io {
            match s.try_write(&out) {
                // The buffer is dropped, not kept: an idle connection holds no capacity.
                Ok(n) if n == out.len() => return Ok(()),
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_cause(&e)),
            }
        }
        Box::pin(link.io.write_all(&out))
            .await
            .map_err(|e| io_cause(&e))?;
    }
    Ok(())
}

/// A cause tag from a server's error code: lower-case letters, digits and `_` only.
fn sanitize(cause: &str) -> String {
    let s: String = cause
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "refused".into()
    } else {
        s
    }
}

fn on_frame(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    framing: Framing,
    vars: &mut Vec<(String, String)>,
    st: &mut State,
    frame: Frame<'_>,
) {
    let m = match frame {
        Frame::Message(m) => m,
        Frame::Ping(p) => {
            wire::encode_ws(wire::OP_PONG, p, &mut st.out);
            return;
        }
        Frame::Pong => return,
        Frame::Close => {
            st.closed = true;
            return;
        }
    };
    let def = &script.def;
    // One view for every rule below: JSON is parsed on the first rule that needs it, and
    // strings borrow from the frame.
    let msg = Message::new(m);
    if let Some(e) = &def.error {
        if msg.matches(&e.match_) {
            let cause = e
                .cause
                .as_ref()
                .and_then(|c| msg.extract(c))
                .map_or_else(|| "refused".to_string(), |c| sanitize(&c));
            if st.awaiting.is_some() {
                st.fail = Some(Cow::Owned(cause));
            } else {
                st.error_cause = Some(cause);
            }
            return;
        }
    }
    if let Some(i) = st.awaiting {
        let x = &def.send_on_connect[i];
        if x.expect.as_ref().is_some_and(|e| msg.matches(e)) {
            for (name, source) in &x.capture {
                if let Some(v) = msg.extract(source) {
                    vars.retain(|(n, _)| n != name);
                    vars.push((name.clone(), v.into_owned()));
                }
            }
            st.awaiting = None;
            return;
        }
        if !def.push.as_ref().is_some_and(|p| msg.matches(&p.match_)) {
            st.fail = Some("refused".into());
            return;
        }
    }
    if let Some(hb) = &def.heartbeat {
        if hb.expect.as_ref().is_some_and(|e| msg.matches(e)) {
            if let Some((_, sent)) = st.pong_due.take() {
                let now = Instant::now();
                ctx.record(|r| {
                    r.record(
                        script.keys.heartbeat_rtt,
                        now,
                        now.duration_since(sent).as_micros() as u64,
                    )
                });
            }
            return;
        }
    }
    if let Some(p) = &def.push {
        if msg.matches(&p.match_) {
            on_push(ctx, slot, script, p, &msg, framing, vars, st);
        }
    }
}

/// A push arrived: its receipt goes to delivery tracking, and its ack is queued.
#[allow(clippy::too_many_arguments)]
fn on_push(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    p: &crate::scenario::device::Push,
    msg: &Message<'_>,
    framing: Framing,
    vars: &[(String, String)],
    st: &mut State,
) {
    let at_ns = unix_ns();
    let Some(id) = msg.extract(&p.id) else {
        let key = reports::MetricKey::new(names::DELIVERY_UNEXPECTED);
        ctx.record(|r| r.add(&key, Instant::now(), 1));
        return;
    };
    let redelivery = p.redelivery.as_ref().is_some_and(|r| msg.matches(r));
    let sent_ns = p.sent_at.as_ref().and_then(|s| {
        let v = msg.extract(&s.source)?;
        let n: f64 = v.trim().parse().ok()?;
        (n > 0.0).then(|| (n * s.unit.nanos() as f64) as u64)
    });
    let local = ctx.table.local_of(slot.global);
    common::sync::lock(&ctx.tracker).receipt(
        &id,
        Receipt {
            local,
            at_ns,
            redelivery,
            sent_ns,
        },
        &ctx.table,
    );
    if let Some(ack) = &p.ack {
        ack::render(ack, &id, ctx, slot, script, vars, framing, &mut st.out);
    }
}

/// Holds an established connection until it ends.
async fn hold(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
) -> Result<Ended, Cause> {
    let def = &script.def;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let hb_gap = |h: &crate::scenario::device::Heartbeat| {
        h.every.get()
            + h.jitter
                .map_or(Duration::ZERO, |j| j.get().mul_f64(fastrand::f64()))
    };
    let mut next_hb = def.heartbeat.as_ref().map(|h| Instant::now() + hb_gap(h));
    let end_at = def.think.as_ref().map(|t| Instant::now() + t.sample());
    let churn_at = def.churn.as_ref().filter(|c| c.per_second > 0.0).map(|c| {
        let u = 1.0 - fastrand::f64();
        Instant::now() + Duration::from_secs_f64((-u.ln() / c.per_second).min(1e7))
    });
    flush(link, st).await?;
    // The timer and the wake-up registration live across loop turns: re-arming them for every
    // received message would cost a timer-wheel insert and removal and a waiter-list round
    // trip per push.
    let mut armed = far;
    let sleep = tokio::time::sleep_until(far.into());
    tokio::pin!(sleep);
    let wake_up = slot.wake.notified();
    tokio::pin!(wake_up);
    loop {
        if ctx.stop.is_stopped() || !slot.wanted.load(Ordering::Acquire) {
            Box::pin(close(script, ctx, slot, link, st)).await;
            return Ok(Ended::Stopped);
        }
        let wake = [next_hb, end_at, churn_at, st.pong_due.map(|p| p.0)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far);
        if wake != armed {
            sleep.as_mut().reset(wake.into());
            armed = wake;
        }
        tokio::select! {
            biased;
            _ = &mut wake_up => {
                wake_up.set(slot.wake.notified());
                continue;
            }
            r = read_step(ctx, slot, script, link, st) => r?,
            _ = &mut sleep => {
                // Fired: the next turn re-arms it (`armed` no longer matches).
                armed = far + Duration::from_secs(1);
                let now = Instant::now();
                if st.pong_due.is_some_and(|p| p.0 <= now) {
                    return Err("heartbeat".into());
                }
                if end_at.is_some_and(|t| t <= now) {
                    Box::pin(close(script, ctx, slot, link, st)).await;
                    return Ok(Ended::Clean);
                }
                if churn_at.is_some_and(|t| t <= now) {
                    return Ok(Ended::Churned);
                }
                if let (Some(t), Some(h)) = (next_hb, &def.heartbeat) {
                    if t <= now {
                        let msg = h
                            .send
                            .render(&scope(ctx, slot, script, &link.vars))
                            .unwrap_or_default();
                        wire::encode(link.dec.framing(), msg.as_bytes(), &mut st.out);
                        if h.expect.is_some() && st.pong_due.is_none() {
                            let within = h.within.map_or(Duration::from_secs(10), |w| w.get());
                            st.pong_due = Some((now + within, now));
                        }
                        next_hb = Some(now + hb_gap(h));
                    }
                }
            }
        }
        flush(link, st).await?;
    }
}

/// A clean close: the journey's close message, a WebSocket close frame, FIN.
async fn close(script: &Script, ctx: &ShardCtx, slot: &Slot, link: &mut Link, st: &mut State) {
    let framing = link.dec.framing();
    if let Some(c) = &script.def.close {
        if let Ok(text) = c.render(&scope(ctx, slot, script, &link.vars)) {
            wire::encode(framing, text.as_bytes(), &mut st.out);
        }
    }
    if framing == Framing::Ws {
        wire::encode_ws(wire::OP_CLOSE, &1000u16.to_be_bytes(), &mut st.out);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), flush(link, st)).await;
    link.io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::device::Device;

    /// The task each device lives in: its size is paid once per connection for the whole
    /// run, so it must stay small (the one-shot connect future is boxed).
    #[test]
    fn the_long_lived_device_task_is_small() {
        let device: Device = serde_norway::from_str(
            "name: d\ncount: 1\nconnect: { url: \"ws://127.0.0.1:1/ws\" }\n",
        )
        .unwrap();
        let plans = crate::plan::DeviceJourneyPlan::all(
            std::slice::from_ref(&device),
            Duration::from_secs(1),
        );
        let scripts = Script::compile_all(&[device], plans);
        let table = super::super::shard::DeviceTable::build(scripts, 0, 1, "");
        let origin = Instant::now();
        let ctx = Arc::new(ShardCtx {
            tracker: std::sync::Mutex::new(crate::delivery::DeliveryTracker::new(
                origin,
                Default::default(),
            )),
            recorders: reports::Recorders::new(origin),
            base_url: String::new(),
            sources: Vec::new(),
            stop: crate::stop::Stop::new(),
            conn_events: std::sync::Mutex::new((Vec::new(), Vec::new())),
            active: std::sync::atomic::AtomicU64::new(0),
            dispatch: super::super::dispatch::Dispatcher::new(
                crate::engine::http::Tls::new(true).unwrap(),
                1,
            ),
            tls: tokio_rustls::TlsConnector::from(
                crate::engine::http::Tls::new(true).unwrap().http1_config(),
            ),
            table,
        });
        let slot = ctx.table.slots[0].clone();
        let task = run(ctx, slot);
        let size = std::mem::size_of_val(&task);
        eprintln!("device task future: {size} bytes");
        // Debug builds lay futures out larger than release builds; an unboxed connect and
        // handshake future would add several KiB.
        assert!(size <= 1536, "device task future is {size} bytes");
    }
}
