//! The link's control socket: one text command per line over TCP, one answer line each, so a
//! test, a benchmark script or an operator (`nc 127.0.0.1 PORT`) can cut the link while it
//! carries traffic.
//!
//! | command | answer |
//! | --- | --- |
//! | `cut` | `ok cut until restored` |
//! | `cut 5s` | `ok cut for 5s` (restored by itself) |
//! | `restore` | `ok restored` |
//! | `profile` | `ok ` and the profile in force |
//! | `profile rtt=180ms loss=3%` | `ok ` and the new profile, in force from the next packet |
//! | `stats` | one JSON object: counters per direction (`up` is A to B), `cut`, `profile` |
//!
//! Anything else is answered `error: …` and the connection stays open.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use super::Link;

/// Serves `link`'s commands on `listener`, a thread per connection, until the process ends.
pub fn serve(listener: TcpListener, link: Arc<Link>) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = stream?;
        let link = link.clone();
        std::thread::Builder::new()
            .name("link-control".into())
            .spawn(move || {
                if let Err(e) = answer(stream, &link) {
                    tracing::debug!(error = %e, "link control connection ended");
                }
            })?;
    }
    Ok(())
}

fn answer(stream: TcpStream, link: &Link) -> io::Result<()> {
    let mut out = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", link.command(&line))?;
    }
    Ok(())
}

/// Sends one command to the control socket at `addr` and returns the answer line (a client
/// for tests and tools).
pub fn send(addr: SocketAddr, command: &str) -> io::Result<String> {
    let stream = TcpStream::connect(addr)?;
    let mut out = stream.try_clone()?;
    writeln!(out, "{command}")?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    Ok(answer.trim_end().to_string())
}
