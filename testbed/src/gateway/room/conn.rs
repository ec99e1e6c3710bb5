//! One device connection, from accept to close: the WebSocket handshake (if any), hello,
//! subscribe, ping/pong, pushes with at-least-once redelivery, acks, the idle timeout, and a
//! clean `error` + close (or an injected reset) at the end.
//!
//! The write queue is bounded: a device that stops reading while pushes keep coming is closed
//! as a slow consumer once more than `max_queued_frames` frames wait for its socket, so one
//! stuck device cannot grow the room's memory without bound.
//!
//! The task is kept small because 100k of them live at once: reads wait for readiness and go
//! into a per-thread scratch buffer, so a connection keeps only a partial frame between reads;
//! writes are shared [`Bytes`] queued until the socket takes them; the one-shot handshake
//! future is boxed so that it does not inflate the long-lived one.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::wire::{self, ClientMessage, Decoder, Inbound, PushFrame, ServerMessage, Transport};
use super::{ws, Room};
use crate::gateway::faults::PushFault;

/// What a room tells one of its connections.
#[derive(Debug)]
pub(crate) enum Command {
    /// Deliver a push (the faults for this delivery already rolled; drops never get here).
    Push(Arc<PushFrame>, PushFault),
    /// Injected fault: reset the connection.
    Reset,
}

/// How long the last frames (an `error`, a close frame) may take to leave before the socket is
/// closed anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Size of the per-thread read buffer: one maximal frame with its header.
const SCRATCH: usize = wire::MAX_FRAME + 16;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Serves one accepted connection until it ends.
pub(crate) async fn serve(room: Arc<Room>, mut stream: TcpStream, transport: Transport) {
    room.counters.connections.fetch_add(1, Relaxed);
    let _open = OpenGuard(&room);
    let _ = stream.set_nodelay(true);
    let mut partial = Vec::new();
    if transport == Transport::Ws {
        match Box::pin(ws::accept(&mut stream, room.settings.hello_timeout)).await {
            Ok(rest) => partial = rest,
            Err(error) => {
                tracing::debug!(%error, "WebSocket handshake failed");
                return;
            }
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        idle_at: Instant::now() + room.settings.hello_timeout,
        room: Arc::clone(&room),
        stream,
        transport,
        decoder: Decoder::default(),
        partial,
        out: VecDeque::new(),
        tx: Some(tx),
        joined: None,
        pending: Vec::new(),
        delayed: Vec::new(),
    };
    let end = conn.run(&mut rx).await;
    if let Some(id) = conn.joined {
        room.leave(id);
    }
    Box::pin(conn.finish(end)).await;
}

/// Keeps the `connections` gauge true however the task ends.
struct OpenGuard<'a>(&'a Room);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.counters.connections.fetch_sub(1, Relaxed);
    }
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The client closed, or the socket failed: nothing more to say.
    Gone,
    /// The client sent a WebSocket close: echo it (already queued) and close.
    ClientClosed,
    /// The server closes, saying why.
    Close { code: &'static str, message: String },
    /// Injected fault: TCP RST, no close frame.
    Reset,
    /// Too many frames wait for a socket the device does not read: reset, no close frame (it
    /// would not be read either, and a reset frees the kernel's send buffer at once).
    SlowConsumer,
}

impl End {
    fn close(code: &'static str, message: impl Into<String>) -> Self {
        End::Close {
            code,
            message: message.into(),
        }
    }
}

/// A push sent on this connection and not acked yet.
#[derive(Debug)]
struct Pending {
    frame: Arc<PushFrame>,
    due: Instant,
    resends: u32,
}

/// A push held back by the delay fault.
#[derive(Debug)]
struct Delayed {
    frame: Arc<PushFrame>,
    due: Instant,
    duplicate: bool,
}

/// What the socket had for [`Conn::run`].
enum Io {
    /// Frames read and parsed, or why the connection ends.
    Read(Result<Vec<Parsed>, End>),
    /// The socket can take more of the queued frames.
    Writable(io::Result<()>),
}

/// A frame read and parsed, owned so that it outlives the scratch buffer.
#[derive(Debug)]
enum Parsed {
    Message(ClientMessage),
    WsPing(Vec<u8>),
    WsClose,
    Malformed(String),
}

struct Conn {
    room: Arc<Room>,
    stream: TcpStream,
    transport: Transport,
    decoder: Decoder,
    /// Bytes of a frame not complete yet (usually empty).
    partial: Vec<u8>,
    out: VecDeque<Bytes>,
    /// This connection's command sender, until it is handed to the room at hello.
    tx: Option<mpsc::UnboundedSender<Command>>,
    /// The id in the room, once the hello is accepted.
    joined: Option<u64>,
    pending: Vec<Pending>,
    delayed: Vec<Delayed>,
    /// Closed with `idle` when no frame arrives before this.
    idle_at: Instant,
}

impl Conn {
    async fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>) -> End {
        let mut stop = self.room.stop.clone();
        if *stop.borrow_and_update() {
            return End::close("shutdown", "the gateway is shutting down");
        }
        // Frames that arrived together with the handshake request.
        if !self.partial.is_empty() {
            let parsed = self.decode_buffered(None);
            if let Err(end) = self.handle_all(parsed).await {
                return end;
            }
        }
        let sleep = tokio::time::sleep_until(self.next_due().into());
        tokio::pin!(sleep);
        loop {
            if let Err(end) = self.flush() {
                return end;
            }
            let due = self.next_due();
            if sleep.deadline() != due.into() {
                sleep.as_mut().reset(due.into());
            }
            let want_write = !self.out.is_empty();
            let step = tokio::select! {
                io = std::future::poll_fn(|cx| self.poll_io(cx, want_write)) => match io {
                    Io::Read(Ok(parsed)) => self.handle_all(parsed).await,
                    Io::Read(Err(end)) => Err(end),
                    Io::Writable(ready) => ready.map_err(|_| End::Gone),
                },
                command = rx.recv() => match command {
                    Some(command) => self.command(command),
                    None => Err(End::close("shutdown", "the room is shutting down")),
                },
                () = &mut sleep => self.timers(),
                _ = stop.changed() => Err(End::close("shutdown", "the gateway is shutting down")),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Waits until the socket can take queued frames (when `want_write`) or has bytes to read;
    /// reads them (one read, into the thread's scratch buffer) and parses every whole frame.
    ///
    /// The read goes through `AsyncRead`, which forgets the socket's readiness after a short
    /// read: the next wait then sleeps until new bytes arrive, instead of first reading again
    /// only to learn that nothing is there (one wasted system call per message otherwise).
    fn poll_io(&mut self, cx: &mut Context<'_>, want_write: bool) -> Poll<Io> {
        if want_write {
            if let Poll::Ready(ready) = self.stream.poll_write_ready(cx) {
                return Poll::Ready(Io::Writable(ready));
            }
        }
        SCRATCH_BUF.with_borrow_mut(|scratch| {
            let mut buf = ReadBuf::new(scratch);
            let n = match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Io::Read(Err(End::Gone))),
                Poll::Ready(Ok(())) => buf.filled().len(),
            };
            if n == 0 {
                return Poll::Ready(Io::Read(Err(End::Gone)));
            }
            let parsed = if self.partial.is_empty() {
                self.decode_buffered(Some(&mut scratch[..n]))
            } else {
                self.partial.extend_from_slice(&scratch[..n]);
                self.decode_buffered(None)
            };
            Poll::Ready(Io::Read(Ok(parsed)))
        })
    }

    /// Parses whole frames from `fresh` (bytes just read, when nothing was pending) or from
    /// `self.partial`, keeping an incomplete tail in `self.partial`.
    fn decode_buffered(&mut self, fresh: Option<&mut [u8]>) -> Vec<Parsed> {
        let mut parsed = Vec::new();
        let from_partial = fresh.is_none();
        let mut taken = std::mem::take(&mut self.partial);
        let buf: &mut [u8] = match fresh {
            Some(fresh) => fresh,
            None => &mut taken,
        };
        let mut at = 0;
        loop {
            match self.decoder.decode(self.transport, &mut buf[at..]) {
                Ok(Some((inbound, used))) => {
                    at += used;
                    match inbound {
                        Inbound::Message(bytes) => parsed.push(
                            ClientMessage::parse(&bytes)
                                .map_or_else(|e| Parsed::Malformed(e.0), Parsed::Message),
                        ),
                        Inbound::Ping(payload) => parsed.push(Parsed::WsPing(payload.to_vec())),
                        Inbound::Close => {
                            parsed.push(Parsed::WsClose);
                            break;
                        }
                        Inbound::Ignored => {}
                    }
                    if matches!(parsed.last(), Some(Parsed::Malformed(_))) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(malformed) => {
                    parsed.push(Parsed::Malformed(malformed.0));
                    break;
                }
            }
        }
        if from_partial {
            taken.drain(..at);
            if taken.is_empty() && taken.capacity() > 4096 {
                taken = Vec::new();
            }
            self.partial = taken;
        } else {
            self.partial = buf[at..].to_vec();
        }
        parsed
    }

    async fn handle_all(&mut self, parsed: Vec<Parsed>) -> Result<(), End> {
        for item in parsed {
            self.handle(item).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, item: Parsed) -> Result<(), End> {
        let settings = self.room.settings;
        if self.joined.is_some() {
            self.idle_at = Instant::now() + settings.idle_after();
        }
        let message = match item {
            Parsed::Message(message) => message,
            Parsed::WsPing(payload) => {
                self.queue(wire::ws_frame(0xA, &payload));
                return Ok(());
            }
            Parsed::WsClose => {
                self.queue(wire::ws_close(1000));
                return Err(End::ClientClosed);
            }
            Parsed::Malformed(message) => return Err(End::close("malformed", message)),
        };
        let Some(id) = self.joined else {
            return self.hello(message).await;
        };
        match message {
            ClientMessage::Hello { .. } => Err(End::close(
                "bad_hello",
                "hello sent twice on one connection",
            )),
            ClientMessage::Subscribe { topics } => {
                let all = self.room.subscribe(id, topics);
                self.send(&ServerMessage::Subscribed { topics: &all });
                Ok(())
            }
            ClientMessage::Ping { seq } => {
                self.send(&ServerMessage::Pong { seq: seq.as_ref() });
                Ok(())
            }
            ClientMessage::Ack { id } => {
                self.room.counters.acks.fetch_add(1, Relaxed);
                self.pending.retain(|p| p.frame.id() != id);
                Ok(())
            }
        }
    }

    async fn hello(&mut self, message: ClientMessage) -> Result<(), End> {
        let ClientMessage::Hello { user, topics } = message else {
            return Err(End::close("bad_hello", "the first message must be a hello"));
        };
        let Some(user) = user.filter(|u| !u.trim().is_empty()) else {
            return Err(End::close(
                "bad_hello",
                "hello needs a non-empty string `user`",
            ));
        };
        let refuse_rate = self.room.faults.current().refuse_rate;
        if refuse_rate > 0.0 && fastrand::f64() < refuse_rate {
            self.room.counters.injected_refusals.fetch_add(1, Relaxed);
            return Err(End::close("refused", "injected fault: hello refused"));
        }
        let Some(tx) = self.tx.take() else {
            return Err(End::close(
                "bad_hello",
                "hello sent twice on one connection",
            ));
        };
        let id = self.room.join(user, topics, tx).await;
        self.joined = Some(id);
        let conn = format!("{}-{id}", self.room.name);
        let heartbeat = self.room.settings.heartbeat;
        let heartbeat_s = if heartbeat.subsec_nanos() == 0 {
            serde_json::Number::from(heartbeat.as_secs())
        } else {
            serde_json::Number::from_f64(heartbeat.as_secs_f64())
                .unwrap_or_else(|| serde_json::Number::from(0))
        };
        let room = Arc::clone(&self.room);
        self.send(&ServerMessage::Welcome {
            conn: &conn,
            room: &room.name,
            heartbeat_s,
        });
        self.idle_at = Instant::now() + self.room.settings.idle_after();
        Ok(())
    }

    fn command(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Push(frame, fault) => {
                if fault.delay_us > 0 {
                    self.delayed.push(Delayed {
                        frame,
                        due: Instant::now() + Duration::from_micros(u64::from(fault.delay_us)),
                        duplicate: fault.duplicate,
                    });
                } else {
                    self.deliver(frame, fault.duplicate);
                }
                Ok(())
            }
            Command::Reset => {
                self.room.counters.injected_resets.fetch_add(1, Relaxed);
                Err(End::Reset)
            }
        }
    }

    fn deliver(&mut self, frame: Arc<PushFrame>, duplicate: bool) {
        let counters = &self.room.counters;
        let bytes = frame.frame(self.transport, false);
        if duplicate {
            self.out.push_back(bytes.clone());
            counters.injected_push_duplicates.fetch_add(1, Relaxed);
            counters.pushes_delivered.fetch_add(1, Relaxed);
        }
        self.out.push_back(bytes);
        counters.pushes_delivered.fetch_add(1, Relaxed);
        self.pending.push(Pending {
            frame,
            due: Instant::now() + self.room.settings.ack_timeout,
            resends: 0,
        });
    }

    fn timers(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if now >= self.idle_at {
            let message = if self.joined.is_some() {
                format!(
                    "no frame for {:?} ({} missed heartbeats)",
                    self.room.settings.idle_after(),
                    self.room.settings.missed_heartbeats
                )
            } else {
                format!("no hello within {:?}", self.room.settings.hello_timeout)
            };
            return Err(End::close("idle", message));
        }
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].due <= now {
                let held = self.delayed.swap_remove(i);
                self.deliver(held.frame, held.duplicate);
            } else {
                i += 1;
            }
        }
        let settings = self.room.settings;
        let counters = &self.room.counters;
        let transport = self.transport;
        let out = &mut self.out;
        self.pending.retain_mut(|pending| {
            if pending.due > now {
                return true;
            }
            if pending.resends >= settings.max_redeliveries {
                return false;
            }
            pending.resends += 1;
            pending.due = now + settings.ack_timeout;
            out.push_back(pending.frame.frame(transport, true));
            counters.redelivered.fetch_add(1, Relaxed);
            counters.pushes_delivered.fetch_add(1, Relaxed);
            true
        });
        Ok(())
    }

    fn next_due(&self) -> Instant {
        let mut due = self.idle_at;
        for pending in &self.pending {
            due = due.min(pending.due);
        }
        for delayed in &self.delayed {
            due = due.min(delayed.due);
        }
        due
    }

    fn send(&mut self, message: &ServerMessage<'_>) {
        let frame = wire::encode(self.transport, &message.to_json());
        self.queue(frame);
    }

    fn queue(&mut self, frame: Bytes) {
        self.out.push_back(frame);
    }

    /// Writes queued frames until the socket would block; a queue still longer than
    /// `max_queued_frames` then ends the connection as a slow consumer.
    fn flush(&mut self) -> Result<(), End> {
        while let Some(front) = self.out.front_mut() {
            match self.stream.try_write(front) {
                Ok(n) if n == front.len() => {
                    self.out.pop_front();
                }
                Ok(n) => front.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(End::Gone),
            }
        }
        if self.out.len() > self.room.settings.max_queued_frames {
            self.room
                .counters
                .slow_consumer_closed
                .fetch_add(1, Relaxed);
            return Err(End::SlowConsumer);
        }
        Ok(())
    }

    /// Says goodbye as `end` requires and closes the socket.
    async fn finish(mut self, end: End) {
        match end {
            End::Reset | End::SlowConsumer => {
                let _ = self.stream.set_zero_linger();
                return;
            }
            End::Gone => return,
            End::ClientClosed => {}
            End::Close { code, message } => {
                tracing::debug!(code, %message, "closing a device connection");
                self.send(&ServerMessage::Error {
                    code,
                    message: &message,
                });
                if self.transport == Transport::Ws {
                    let status = match code {
                        "idle" => 1000,
                        "shutdown" => 1001,
                        _ => 1008,
                    };
                    self.queue(wire::ws_close(status));
                }
            }
        }
        let out = std::mem::take(&mut self.out);
        let stream = &mut self.stream;
        let _ = tokio::time::timeout(CLOSE_GRACE, async move {
            for frame in out {
                stream.write_all(&frame).await?;
            }
            stream.shutdown().await?;
            // Closing with unread input would send a RST that can destroy the frames above
            // before the client reads them: read until the client closes too.
            let mut sink = [0u8; 512];
            while stream.read(&mut sink).await? > 0 {}
            io::Result::Ok(())
        })
        .await;
    }
}
