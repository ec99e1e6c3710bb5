//! One device: a task that connects (the sibling module `open`: dispatch, TCP, TLS or HTTP/2,
//! then a WebSocket upgrade or an HTTP GET), runs its protocol's handshake (MQTT CONNECT and
//! SUBSCRIBE; a WebSocket or TCP gateway's `send_on_connect` and `subscribe` exchanges; an SSE
//! stream's answer head), then
//! holds the connection — heartbeats or keep-alive pings, pushes and acks, long-poll requests,
//! the session's end by think time or churn — and reconnects with backoff when the journey
//! says so.
//!
//! Every message of every protocol goes through `on_frame`: text protocols apply the
//! journey's rules to the frame; MQTT ([`super::mqtt`]) and SSE / long-poll
//! ([`super::http_stream`]) unwrap their packets and events first, then the same push rules
//! apply (`journey::extract::Message`), so tracking is the same for all.
//!
//! Memory is the budget: the long-lived part of the task holds the socket, a frame decoder
//! with no buffer between messages, and a few timers. Reads go through a per-thread 64 KiB
//! scratch buffer after a readiness wait; the one-shot connect and handshake future is boxed
//! so its size does not stay in the task.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ack;
use super::http_stream::{self, Piece};
use super::io::{io_cause, Io};
use super::mqtt::{self, Stage};
use super::script::{DeviceScope, Proto, Script};
use super::shard::{ShardCtx, Slot};
use super::wire::{self, Decoder, Frame, Framing};
use crate::delivery::clock::unix_ns;
use crate::delivery::{names, Receipt};
use crate::journey::extract::Message;
use crate::journey::mqtt::ConnectFields;
use crate::scenario::device::HttpMode;

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

/// An established connection.
struct Link {
    io: Io,
    dec: Decoder,
    /// Captured values and `address`, for later templates.
    vars: Vec<(String, String)>,
}

/// An SSE or long-poll device's reader, and what its next poll sends.
pub(super) struct HttpState {
    pub(super) reader: http_stream::Reader,
    pub(super) host: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
}

/// Per-connection protocol state.
#[derive(Default)]
struct State {
    /// An MQTT device's session.
    mqtt: Option<Box<mqtt::Session>>,
    /// An SSE or long-poll device's reader.
    http: Option<Box<HttpState>>,
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

/// The template scope of a device: its own variables, `vars` and `{{topics}}`.
pub(super) fn scope<'a>(
    ctx: &'a ShardCtx,
    slot: &'a Slot,
    script: &'a Script,
    vars: &[(String, String)],
) -> DeviceScope<'a> {
    let mut s = DeviceScope::new(script, slot.index, &slot.user, &ctx.base_url);
    s.extra = vars.to_vec();
    if !slot.topics.is_empty() {
        s.set("topics", slot.topics.join(","));
    }
    s
}

/// Dispatch, connect, TLS, upgrade or request, and the protocol's handshake.
async fn establish(ctx: &ShardCtx, slot: &Slot, script: &Script) -> Result<(Link, State), Cause> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let connecting = super::open::connect(ctx, slot, script, &mut vars);
    let opened = match tokio::time::timeout(script.connect_timeout, connecting).await {
        Ok(r) => r?,
        Err(_) => return Err("timeout".into()),
    };
    let mut link = Link {
        io: opened.io,
        dec: Decoder::new(opened.framing),
        vars,
    };
    let mut st = State {
        http: opened.http,
        ..State::default()
    };
    if let Proto::Mqtt(version) = script.proto {
        st.mqtt = Some(Box::new(mqtt::Session::new(
            version,
            opened.framing,
            script.mqtt_ack_delay,
        )));
    }
    if !opened.leftover.is_empty() {
        feed(ctx, slot, script, &mut link, &mut st, &opened.leftover)?;
    }
    let deadline = tokio::time::Instant::now() + script.connect_timeout;
    match script.proto {
        Proto::Mqtt(_) => mqtt_handshake(ctx, slot, script, &mut link, &mut st, deadline).await?,
        // The stream's answer head says whether it is an event stream at all.
        Proto::Http(HttpMode::Sse) => {
            until(ctx, slot, script, &mut link, &mut st, deadline, |st| {
                st.http.as_ref().is_some_and(|h| h.reader.head_seen())
            })
            .await?
        }
        Proto::Http(HttpMode::LongPoll) => {}
        Proto::Text => exchange(ctx, slot, script, &mut link, &mut st).await?,
    }
    Ok((link, st))
}

/// Reads (and writes what the reads queue) until `done` holds, by `deadline`.
async fn until(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
    deadline: tokio::time::Instant,
    done: impl Fn(&State) -> bool,
) -> Result<(), Cause> {
    while !done(st) {
        match tokio::time::timeout_at(deadline, read_step(ctx, slot, script, link, st)).await {
            Ok(r) => r?,
            Err(_) => return Err("timeout".into()),
        }
        flush(link, st).await?;
    }
    Ok(())
}

/// MQTT: CONNECT → CONNACK, then one SUBSCRIBE of every topic → SUBACK.
async fn mqtt_handshake(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
    deadline: tokio::time::Instant,
) -> Result<(), Cause> {
    let Some(m) = &script.def.connect.mqtt else {
        return Ok(());
    };
    let fields = {
        let sc = scope(ctx, slot, script, &link.vars);
        let render =
            |t: &crate::scenario::Template| t.render(&sc).map_err(|_| Cow::Borrowed("connect"));
        ConnectFields {
            client_id: match &m.client_id {
                Some(t) => render(t)?,
                None => slot.user.to_string(),
            },
            clean: m.clean,
            keep_alive_s: script
                .keep_alive
                .map_or(0, |k| u16::try_from(k.as_secs()).unwrap_or(u16::MAX)),
            session_expiry_s: m
                .session_expiry
                .map(|d| u32::try_from(d.get().as_secs()).unwrap_or(u32::MAX)),
            login: match &m.username {
                Some(u) => Some((
                    render(u)?,
                    m.password
                        .as_ref()
                        .map(render)
                        .transpose()?
                        .unwrap_or_default(),
                )),
                None => None,
            },
        }
    };
    let Some(session) = st.mqtt.as_mut() else {
        return Ok(());
    };
    session.connect(&fields, &mut st.out)?;
    flush(link, st).await?;
    until(ctx, slot, script, link, st, deadline, |st| {
        mqtt_stage(st) != Stage::Connecting
    })
    .await?;
    if slot.topics.is_empty() {
        return Ok(());
    }
    let filters: Vec<(String, u8)> = slot
        .topics
        .iter()
        .zip(&script.def.topics)
        .map(|(t, sub)| (t.to_string(), sub.qos.unwrap_or(script.mqtt_qos)))
        .collect();
    if let Some(session) = st.mqtt.as_mut() {
        session.subscribe(&filters, &mut st.out)?;
    }
    flush(link, st).await?;
    until(ctx, slot, script, link, st, deadline, |st| {
        mqtt_stage(st) == Stage::Up
    })
    .await
}

fn mqtt_stage(st: &State) -> Stage {
    st.mqtt.as_ref().map_or(Stage::Up, |m| m.stage())
}

/// The `send_on_connect` exchanges, then `subscribe` once per topic, each awaiting its
/// answer when it expects one.
async fn exchange(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    link: &mut Link,
    st: &mut State,
) -> Result<(), Cause> {
    let framing = link.dec.framing();
    let n = script.def.send_on_connect.len();
    let mut all: Vec<(&crate::scenario::device::Exchange, Option<&str>)> = script
        .def
        .send_on_connect
        .iter()
        .map(|x| (x, None))
        .collect();
    if let Some(x) = &script.def.subscribe {
        all.extend(slot.topics.iter().map(|t| (x, Some(&**t))));
    }
    for (i, (x, topic)) in all.into_iter().enumerate() {
        let msg = {
            let mut sc = scope(ctx, slot, script, &link.vars);
            if let Some(t) = topic {
                sc.set("topic", t.to_string());
            }
            x.send.render(&sc).map_err(|_| Cow::Borrowed("refused"))?
        };
        // Answers to the subscribe exchanges are matched against `subscribe`.
        let i = i.min(n);
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
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
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
    if st.mqtt.is_some() {
        return on_mqtt(ctx, slot, script, framing, vars, st, m);
    }
    if st.http.is_some() {
        return on_http(ctx, slot, script, framing, vars, st, m);
    }
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
        let x = def.send_on_connect.get(i).or(def.subscribe.as_ref());
        if x.and_then(|x| x.expect.as_ref())
            .is_some_and(|e| msg.matches(e))
        {
            let captures = x.map(|x| &x.capture).into_iter().flatten();
            for (name, source) in captures {
                if let Some(v) = msg.extract(source) {
                    vars.retain(|(n, _)| n != name);
                    vars.push((name.clone(), v.into_owned()));
                }
            }
            st.awaiting = None;
            return;
        }
        if !def.push.as_ref().is_some_and(|p| is_push(p, &msg)) {
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
        if is_push(p, &msg) {
            on_push(
                ctx,
                slot,
                script,
                p,
                &msg,
                framing,
                vars,
                &mut st.out,
                false,
            );
        }
    }
}

/// Whether `msg` is a push by the journey's `push.match` (none: every message is).
fn is_push(p: &crate::scenario::device::Push, msg: &Message<'_>) -> bool {
    p.match_.as_ref().is_none_or(|m| msg.matches(m))
}

/// A message of an MQTT, SSE or long-poll device: a push when the journey says so.
#[allow(clippy::too_many_arguments)]
fn deliver(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    framing: Framing,
    vars: &[(String, String)],
    out: &mut Vec<u8>,
    msg: &Message<'_>,
    dup: bool,
) {
    if let Some(p) = &script.def.push {
        if is_push(p, msg) {
            on_push(ctx, slot, script, p, msg, framing, vars, out, dup);
        }
    }
}

/// Bytes of an MQTT connection: packets handled by the session, messages delivered.
fn on_mqtt(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    framing: Framing,
    vars: &[(String, String)],
    st: &mut State,
    data: &[u8],
) {
    let Some(mut session) = st.mqtt.take() else {
        return;
    };
    let fed = session.feed(data, &mut st.out, &mut |m, out| {
        let msg = Message::with_properties(&m.payload, &m.properties);
        deliver(ctx, slot, script, framing, vars, out, &msg, m.dup);
    });
    st.mqtt = Some(session);
    match fed {
        Err(cause) => st.fail = Some(cause),
        Ok(fed) => {
            if fed.pong {
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
            }
            if let Some(reason) = fed.disconnected {
                st.closed = true;
                st.error_cause = Some(format!("disconnect_{reason}"));
            }
        }
    }
}

/// Bytes of an SSE or long-poll connection: events and answers delivered; a long-poll
/// answer sends the next poll, resuming after it.
fn on_http(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    framing: Framing,
    vars: &[(String, String)],
    st: &mut State,
    data: &[u8],
) {
    let Some(mut h) = st.http.take() else {
        return;
    };
    let mut poll_again = false;
    let mut ended = false;
    let out = &mut st.out;
    let fed = h.reader.feed(data, &mut |piece| match piece {
        Piece::Event { id, name, data } => {
            let mut props = Vec::with_capacity(2);
            if let Some(id) = id {
                props.push(("id".to_string(), id.to_string()));
                *common::sync::lock(&slot.resume) = Some(id.into());
            }
            if let Some(name) = name {
                props.push(("event".to_string(), name.to_string()));
            }
            let msg = Message::with_properties(data, &props);
            deliver(ctx, slot, script, framing, vars, out, &msg, false);
        }
        Piece::Message { body, resume } => {
            deliver(
                ctx,
                slot,
                script,
                framing,
                vars,
                out,
                &Message::new(body),
                false,
            );
            *common::sync::lock(&slot.resume) = Some(resume.into());
            poll_again = true;
        }
        Piece::Empty => poll_again = true,
        Piece::End => ended = true,
    });
    if let Err(cause) = fed {
        st.fail = Some(cause);
    } else if ended {
        st.closed = true;
    } else if poll_again {
        if let Proto::Http(mode) = script.proto {
            let resume = common::sync::lock(&slot.resume).clone();
            let req = http_stream::request(mode, &h.host, &h.path, resume.as_deref(), &h.headers);
            st.out.extend_from_slice(req.as_bytes());
        }
    }
    st.http = Some(h);
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
    out: &mut Vec<u8>,
    dup: bool,
) {
    let at_ns = unix_ns();
    let Some(id) = msg.extract(&p.id) else {
        let key = reports::MetricKey::new(names::DELIVERY_UNEXPECTED);
        ctx.record(|r| r.add(&key, Instant::now(), 1));
        return;
    };
    // MQTT's DUP flag, or the journey's own redelivery mark.
    let redelivery = dup || p.redelivery.as_ref().is_some_and(|r| msg.matches(r));
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
        ack::render(ack, &id, ctx, slot, script, vars, framing, out);
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
    // MQTT: a PINGREQ every keep-alive period; its PINGRESP is due within the next one.
    let mut next_hb = match script.keep_alive {
        Some(k) if st.mqtt.is_some() => Some(Instant::now() + k),
        _ => def.heartbeat.as_ref().map(|h| Instant::now() + hb_gap(h)),
    };
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
        let acks_due = st.mqtt.as_ref().and_then(|m| m.next_due());
        let wake = [
            next_hb,
            end_at,
            churn_at,
            st.pong_due.map(|p| p.0),
            acks_due,
        ]
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
                if let Some(m) = st.mqtt.as_mut() {
                    m.release_due(now, &mut st.out);
                    if let (Some(t), Some(k)) = (next_hb, script.keep_alive) {
                        if t <= now {
                            m.ping(&mut st.out);
                            if st.pong_due.is_none() {
                                st.pong_due = Some((now + k, now));
                            }
                            next_hb = Some(now + k);
                        }
                    }
                } else if let (Some(t), Some(h)) = (next_hb, &def.heartbeat) {
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

/// A clean close: MQTT's DISCONNECT or the journey's close message, a WebSocket close
/// frame, FIN.
async fn close(script: &Script, ctx: &ShardCtx, slot: &Slot, link: &mut Link, st: &mut State) {
    let framing = link.dec.framing();
    if let Some(m) = &st.mqtt {
        m.disconnect(&mut st.out);
    } else if let Some(c) = &script.def.close {
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
            tls_h2: tokio_rustls::TlsConnector::from(
                crate::engine::http::Tls::new(true).unwrap().http2_config(),
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
