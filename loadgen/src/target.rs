//! Targets: the embedded reference gateway's faults, and a reachability check for URL
//! targets so an unreachable target is one clear error before any load starts.

use std::time::Duration;

use crate::scenario::Faults;

/// The embedded gateway's faults from the scenario's `target.faults`.
pub fn faults(f: Option<&Faults>) -> testbed::gateway::FaultConfig {
    let mut out = testbed::gateway::FaultConfig::default();
    if let Some(f) = f {
        let ms = |d: Option<crate::scenario::Dur>| d.map_or(0.0, |d| d.get().as_secs_f64() * 1e3);
        out.latency_ms = ms(f.latency);
        out.jitter_ms = ms(f.jitter);
        out.error_rate = f.error_rate.unwrap_or(0.0);
        if let Some(s) = f.error_status {
            out.error_status = s;
        }
        out.push_drop_rate = f.push_drop_rate.unwrap_or(0.0);
        out.push_duplicate_rate = f.push_duplicate_rate.unwrap_or(0.0);
        out.push_delay_rate = f.push_delay_rate.unwrap_or(0.0);
        out.push_delay_ms = ms(f.push_delay);
        out.conn_reset_rate = f.conn_reset_rate.unwrap_or(0.0);
        out.refuse_rate = f.refuse_rate.unwrap_or(0.0);
    }
    out
}

/// The embedded gateway's rooms from the scenario's `target.rooms`: room processes are this
/// executable's hidden `__room` subcommand.
pub fn rooms(r: Option<&crate::scenario::device::EmbeddedRooms>) -> testbed::RoomsConfig {
    let mut out = testbed::RoomsConfig::default();
    if let Some(r) = r {
        if let Some(n) = r.count {
            out.count = n as usize;
        }
        if let Some(h) = r.heartbeat {
            out.heartbeat = h.get();
        }
        if r.processes {
            match std::env::current_exe() {
                Ok(program) => {
                    out.processes = Some(testbed::RoomCommand {
                        program,
                        args: vec!["__room".into()],
                    })
                }
                Err(e) => tracing::warn!("cannot find loadgen to start room processes: {e}"),
            }
        }
    }
    out
}

/// Checks that a TCP connection to the URL's host and port can be made.
pub async fn reachable(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("target {url}: not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("target {url}: no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("target {url} is unreachable: {e}")),
        Err(_) => Err(format!("target {url} is unreachable: no answer within 5s")),
    }
}
