//! A room as a process of its own: [`run_process`] connects to the center's control link,
//! takes its name, settings and faults from it, serves its connections, reports users online
//! and offline, and delivers what the center routes to it, until the link closes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::wire::PushFrame;
use super::{Presence, RoomCounters, RunningRoom};
use crate::gateway::control::{self, ToCenter, ToRoom};
use crate::gateway::faults::Faults;

/// How often a room process reports its counters unasked (when they changed).
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Runs one room process: `args` are the arguments after the program's own prefix, i.e.
/// `--control ADDR --index N` as [`RoomCommand`](super::RoomCommand) appends them. Returns
/// when the center closes the link (exit 0), 2 on bad arguments, 1 when the room cannot run.
///
/// Raises the soft open-files limit to the hard one first: a room holds one descriptor per
/// connection.
pub fn run_process<I, S>(args: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let (control, index) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("room: {message}");
            return ExitCode::from(2);
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    // One thread: rooms are many processes on few cores, and a room's work is I/O.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("room {index}: cannot start the Tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(control, index)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("room {index}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args<I, S>(args: I) -> Result<(SocketAddr, usize), String>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString>,
{
    let mut control = None;
    let mut index = None;
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = || {
            args.next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--control" => {
                let v = value()?;
                control = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--control {v}: {e}"))?,
                );
            }
            "--index" => {
                let v = value()?;
                index = Some(
                    v.parse::<usize>()
                        .map_err(|e| format!("--index {v}: {e}"))?,
                );
            }
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    Ok((
        control.ok_or("--control ADDR is required")?,
        index.ok_or("--index N is required")?,
    ))
}

/// The room process's end of the control link, as the room's [`Presence`].
#[derive(Debug)]
pub(crate) struct CenterLink {
    out: mpsc::UnboundedSender<Bytes>,
    next_seq: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

impl CenterLink {
    fn send(&self, message: &ToCenter) {
        let _ = self.out.send(control::encode(message, &[]));
    }

    /// Reports a connection online and waits until the center has recorded it, so that a
    /// push sent right after the device's `welcome` finds it.
    pub async fn online(&self, user: &str, topics: &[String]) {
        let seq = self.next_seq.fetch_add(1, Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        common::sync::lock(&self.waiters).insert(seq, tx);
        self.send(&ToCenter::Online {
            seq,
            user: user.to_owned(),
            topics: topics.to_vec(),
        });
        let _ = rx.await;
    }

    /// Reports a connection closed.
    pub fn offline(&self, user: &str, topics: &[String]) {
        self.send(&ToCenter::Offline {
            user: user.to_owned(),
            topics: topics.to_vec(),
        });
    }

    /// Reports topics added on a connection.
    pub fn subscribed(&self, topics: &[String]) {
        self.send(&ToCenter::Subscribed {
            topics: topics.to_vec(),
        });
    }

    fn online_recorded(&self, seq: u64) {
        let waiter = common::sync::lock(&self.waiters).remove(&seq);
        if let Some(waiter) = waiter {
            let _ = waiter.send(());
        }
    }
}

async fn serve(control_addr: SocketAddr, index: usize) -> io::Result<()> {
    let mut stream = TcpStream::connect(control_addr).await?;
    let _ = stream.set_nodelay(true);
    control::write(&mut stream, &ToCenter::Hello { index }, &[]).await?;
    let Some((
        ToRoom::Config {
            name,
            host,
            settings,
            faults,
        },
        _,
    )) = control::read(&mut stream).await?
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the center did not send the room's config",
        ));
    };
    let (out, out_rx) = mpsc::unbounded_channel();
    let link = Arc::new(CenterLink {
        out: out.clone(),
        next_seq: AtomicU64::new(0),
        waiters: Mutex::default(),
    });
    let faults = Arc::new(Faults::new(faults));
    let running = RunningRoom::start(
        name,
        host,
        settings,
        Arc::clone(&faults),
        Presence::Remote(Arc::clone(&link)),
    )
    .await?;
    control::write(
        &mut stream,
        &ToCenter::Ready {
            ws: running.ws,
            tcp: running.tcp,
        },
        &[],
    )
    .await?;
    let (reader, writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::with_capacity(control::READ_BUFFER, reader);
    let writer = tokio::spawn(write_frames(writer, out_rx));
    let reporter = tokio::spawn(report_counters(Arc::clone(&running.room), out.clone()));
    let result = loop {
        let frame: io::Result<Option<(ToRoom, Bytes)>> = control::read(&mut reader).await;
        let (message, payload) = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        let room = &running.room;
        match message {
            ToRoom::Unicast { user, id } => {
                room.unicast(&user, &Arc::new(PushFrame::new(&id, payload)));
            }
            ToRoom::Broadcast { topic, id } => {
                room.broadcast(topic.as_deref(), &Arc::new(PushFrame::new(&id, payload)));
            }
            ToRoom::Faults { faults: config } => faults.set(config),
            ToRoom::Stats { seq } => {
                let counters = room.counters.snapshot();
                let _ = out.send(control::encode(&ToCenter::Stats { seq, counters }, &[]));
            }
            ToRoom::Online { seq } => link.online_recorded(seq),
            ToRoom::Shutdown => break Ok(()),
            ToRoom::Config { .. } => {}
        }
    };
    // The center is gone or shutting down: close every connection with `shutdown`.
    running.stop();
    reporter.abort();
    drop(out);
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.abort();
    result
}

async fn write_frames(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    let _ = control::write_frames(&mut writer, &mut frames).await;
}

/// Sends the counters to the center whenever they changed, every [`REPORT_EVERY`].
async fn report_counters(room: Arc<super::Room>, out: mpsc::UnboundedSender<Bytes>) {
    let mut last = RoomCounters::default();
    let mut tick = tokio::time::interval(REPORT_EVERY);
    loop {
        tick.tick().await;
        let counters = room.counters.snapshot();
        if counters != last {
            last = counters;
            let report = control::encode(&ToCenter::Stats { seq: 0, counters }, &[]);
            if out.send(report).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_and_errors_name_the_flag() {
        assert_eq!(
            parse_args(["--control", "127.0.0.1:9", "--index", "3"]),
            Ok(("127.0.0.1:9".parse().expect("addr"), 3))
        );
        assert_eq!(
            parse_args(["--index", "x"]),
            Err("--index x: invalid digit found in string".to_owned())
        );
        assert_eq!(
            parse_args(["--index", "1"]),
            Err("--control ADDR is required".to_owned())
        );
        assert_eq!(
            parse_args(["--bogus"]),
            Err("unexpected argument `--bogus`".to_owned())
        );
    }
}
