//! The replay plan: a scenario's `replay:` section (or `loadgen replay`'s flags) checked by
//! reading the whole recording once through its transforms, so a malformed record is
//! reported before anything is sent, and the counts and length `check` and the run record
//! show.

use std::path::Path;
use std::time::Duration;

use traffic::{DeviceSession, Item, Paced, ReadOptions, ReadStats, Recording, Transforms};

use crate::scenario::replay::ReplaySpec;
use crate::scenario::Pool;

/// How long a session stays open after its last recorded message (scaled), for the
/// server's last answers; it ends sooner once everything recorded has arrived.
pub const LINGER: Duration = Duration::from_secs(2);

/// The longest replay planned: beyond it the recording's times are almost certainly read in
/// the wrong unit (or `speed` is far too low), and the run would never end.
pub const MAX_LENGTH: Duration = Duration::from_secs(7 * 24 * 3600);

/// A replay that cannot be planned (bad input, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ReplayPlanError {
    /// An option is invalid; the message names the field.
    #[error("{0}")]
    Option(String),
    /// The recording cannot be read.
    #[error(transparent)]
    Read(#[from] traffic::ReadError),
    /// The replay would last longer than [`MAX_LENGTH`]; the message names the item.
    #[error("{0}")]
    TooLong(String),
    /// Nothing is left to replay; the message says why.
    #[error("{0}")]
    Empty(String),
}

/// A checked replay.
#[derive(Debug)]
pub struct ReplayPlan {
    /// The recording.
    pub recording: Recording,
    /// Its transforms.
    pub transforms: Transforms,
    /// The connection pool.
    pub pool: Pool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Compare replayed statuses with recorded ones.
    pub compare_status: bool,
    /// Requests that will be sent.
    pub planned_requests: u64,
    /// WebSocket device sessions in the stream.
    pub planned_sessions: u64,
    /// Client→server messages of those sessions.
    pub planned_ws_sends: u64,
    /// Server→client messages the recording holds for those sessions.
    pub recorded_ws_receives: u64,
    /// Requests whose replayed status is compared with a recorded one (a GoReplay response
    /// record matched to it, a HAR response; not an access log's status, which is not
    /// comparable).
    pub recorded_responses: u64,
    /// Where sessions connect (`ws://…`/`wss://…`); `None`: the HTTP target's ws twin.
    pub ws_target: Option<String>,
    /// Offset of the last request from the start.
    pub length: Duration,
    /// Reader counts of one pass.
    pub read_stats: ReadStats,
}

impl ReplayPlan {
    /// Checks `spec` (files relative to `base_dir`) and reads the recording once through its
    /// transforms, so a malformed record is reported before anything is sent.
    pub fn new(spec: &ReplaySpec, base_dir: &Path) -> Result<ReplayPlan, ReplayPlanError> {
        let opt = ReplayPlanError::Option;
        if spec.files.is_empty() {
            return Err(opt("replay.files: name at least one recording file".into()));
        }
        let files: Vec<String> = spec
            .files
            .iter()
            .map(|f| {
                if Path::new(f).is_absolute() || base_dir == Path::new(".") {
                    f.clone()
                } else {
                    base_dir.join(f).display().to_string()
                }
            })
            .collect();
        let recording = Recording::open(&files, read_options(spec)?)?;
        let transforms = transforms(spec)?;
        let pool = spec.pool.clone().unwrap_or_default();
        if pool.connections == 0 || pool.streams == 0 {
            return Err(opt(
                "replay.pool: `connections` and `streams` must be at least 1".into(),
            ));
        }
        let ws_target = spec
            .ws_target
            .as_deref()
            .map(|u| target_from(u).map_err(|e| opt(format!("replay.ws_target: {e}"))))
            .transpose()?;
        // One pass: counts, length, and every read error before the run.
        let mut paced = Paced::new(&recording, transforms.clone())?;
        let mut counts = Counts::default();
        for s in paced.by_ref() {
            let s = s?;
            counts.add(&s, transforms.speed);
            if counts.length > MAX_LENGTH {
                return Err(ReplayPlanError::TooLong(format!(
                    "{}: the replay would last {} to this item (at speed {}), longer than {}: \
                     are its times in the unit the format says? (`replay.window` or \
                     `replay.speed` shorten a long recording)",
                    place(&recording, &s.item),
                    common::duration::format(Duration::from_secs(counts.length.as_secs())),
                    transforms.speed,
                    common::duration::format(MAX_LENGTH),
                )));
            }
        }
        let stats = paced.stats().clone();
        if counts.requests == 0 && counts.sessions == 0 {
            return Err(ReplayPlanError::Empty(nothing_to_replay(&files, &stats)));
        }
        Ok(ReplayPlan {
            read_stats: stats,
            recording,
            transforms,
            pool,
            timeout: spec.timeout.map_or(Duration::from_secs(30), |d| d.get()),
            compare_status: spec.compare_status,
            planned_requests: counts.requests,
            planned_sessions: counts.sessions,
            planned_ws_sends: counts.ws_sends,
            recorded_ws_receives: counts.ws_receives,
            recorded_responses: counts.recorded,
            ws_target,
            length: counts.length,
        })
    }

    /// What the run record's `meta.replay` holds.
    pub fn meta(&self) -> serde_json::Value {
        let s = &self.read_stats;
        serde_json::json!({
            "files": self.recording.files().iter().map(|(p, f)| serde_json::json!({"path": p.display().to_string(), "format": f.name()})).collect::<Vec<_>>(),
            "planned_requests": self.planned_requests,
            "planned_length_s": self.length.as_secs_f64(),
            "planned_rate": if self.length.is_zero() { 0.0 } else { self.planned_requests as f64 / self.length.as_secs_f64() },
            "speed": self.transforms.speed,
            "loops": self.transforms.loops,
            "ws_sessions": self.planned_sessions,
            "ws_planned_sends": self.planned_ws_sends,
            "ws_recorded_receives": self.recorded_ws_receives,
            "ws_target": self.ws_target,
            "out_of_order": s.out_of_order,
            "late": s.late,
            "malformed_skipped": s.malformed,
            "upgrades_skipped": s.upgrades_skipped,
            "recorded_responses": self.recorded_responses,
        })
    }
}

/// What one pass over the transformed recording finds.
#[derive(Debug, Default)]
struct Counts {
    requests: u64,
    sessions: u64,
    ws_sends: u64,
    ws_receives: u64,
    recorded: u64,
    length: Duration,
}

impl Counts {
    fn add(&mut self, s: &traffic::Scheduled, speed: f64) {
        match &s.item {
            Item::Request(r) => {
                self.requests += 1;
                self.recorded += u64::from(r.recorded.is_some_and(|r| r.comparable));
                self.length = self.length.max(s.offset);
            }
            Item::Session(d) => {
                self.sessions += 1;
                let sends = d
                    .messages
                    .iter()
                    .filter(|m| m.direction == traffic::WsDirection::Send)
                    .count() as u64;
                self.ws_sends += sends;
                self.ws_receives += d.messages.len() as u64 - sends;
                self.length = self.length.max(s.offset + span(d, speed) + LINGER);
            }
        }
    }
}

/// Where an item is in its recording, as the reader's errors say it: a GoReplay record, a HAR
/// entry, a line.
fn place(recording: &Recording, item: &Item) -> String {
    let number = match item {
        Item::Request(r) => r.number,
        Item::Session(s) => s.number,
    };
    let format = recording
        .files()
        .iter()
        .find(|(p, _)| p.display().to_string() == item.file())
        .map(|(_, f)| *f);
    match format {
        Some(traffic::Format::Gor) => format!("{}: record {number}", item.file()),
        Some(traffic::Format::Har) => {
            format!("{}: log.entries[{}]", item.file(), number.saturating_sub(1))
        }
        _ => format!("{}:{number}", item.file()),
    }
}

/// Why a recording planned nothing: everything malformed and skipped, everything filtered
/// out, or nothing in the files.
fn nothing_to_replay(files: &[String], stats: &ReadStats) -> String {
    let files = files.join(", ");
    if stats.requests + stats.sessions == 0 && stats.malformed > 0 {
        format!(
            "{files}: nothing to replay: all {} records were malformed and skipped (first: {})",
            stats.malformed,
            stats.malformed_examples.first().map_or("-", String::as_str)
        )
    } else if stats.requests + stats.sessions > 0 {
        format!(
            "{files}: nothing to replay: the filter and window keep none of the {} requests \
             and {} sessions read",
            stats.requests, stats.sessions
        )
    } else {
        format!("{files}: nothing to replay: no request or session in the recording")
    }
}

/// How to read the recording.
fn read_options(spec: &ReplaySpec) -> Result<ReadOptions, ReplayPlanError> {
    let format = match &spec.format {
        Some(f) => Some(
            f.parse()
                .map_err(|e| ReplayPlanError::Option(format!("replay.format: {e}")))?,
        ),
        None => None,
    };
    let defaults = ReadOptions::default();
    Ok(ReadOptions {
        format,
        skip_malformed: spec.skip_malformed,
        reorder_window: spec.reorder_window.unwrap_or(defaults.reorder_window),
        untimed_rate: spec.untimed_rate.unwrap_or(defaults.untimed_rate),
    })
}

/// The transforms the section asks for, checked.
fn transforms(spec: &ReplaySpec) -> Result<Transforms, ReplayPlanError> {
    let opt = ReplayPlanError::Option;
    let regex = |field: &str, re: &str| {
        regex::Regex::new(re).map_err(|e| {
            opt(format!(
                "{field}: {}",
                crate::scenario::extract::regex_error(re, &e)
            ))
        })
    };
    let filter = spec.filter.clone().unwrap_or_default();
    let rewrite = spec.rewrite.clone().unwrap_or_default();
    let window = spec.window.clone().unwrap_or_default();
    let transforms = Transforms {
        from: window.from.map(|d| d.get()),
        to: window.to.map(|d| d.get()),
        methods: filter
            .methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        hosts: filter.hosts.clone(),
        path: filter
            .path
            .as_deref()
            .map(|r| regex("replay.filter.path", r))
            .transpose()?,
        exclude_path: filter
            .exclude_path
            .as_deref()
            .map(|r| regex("replay.filter.exclude_path", r))
            .transpose()?,
        rewrite_path: rewrite
            .path
            .iter()
            .map(|p| Ok((regex("replay.rewrite.path", &p.pattern)?, p.to.clone())))
            .collect::<Result<_, ReplayPlanError>>()?,
        host: rewrite.host.clone(),
        set_headers: rewrite.set_headers.clone().into_iter().collect(),
        remove_headers: rewrite.remove_headers.clone(),
        speed: spec.speed.map_or(1.0, |s| s.0),
        max_wait: spec.max_wait.map(|d| d.get()),
        loops: spec.loops.unwrap_or(1),
        rate_cap: spec.rate_cap,
    };
    transforms
        .validate()
        .map_err(|e| opt(format!("replay: {e}")))?;
    Ok(transforms)
}

/// A WebSocket target that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsTargetError {
    /// The scheme is not ws, wss, http or https.
    #[error("expected a ws://, wss://, http:// or https:// URL, got `{0}`")]
    Scheme(String),
    /// No host (or not a URL at all).
    #[error("`{0}` is not a URL with a host")]
    NoHost(String),
}

/// Checks a WebSocket target given by the operator: `ws://` or `wss://` with a host (an
/// `http(s)://` URL is taken as its `ws(s)://` twin).
pub fn target_from(url: &str) -> Result<String, WsTargetError> {
    let twin = ws_twin(url).ok_or_else(|| WsTargetError::Scheme(url.to_string()))?;
    let ok = twin.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if !ok {
        return Err(WsTargetError::NoHost(twin));
    }
    Ok(twin.trim_end_matches('/').to_string())
}

/// `http(s)://` → `ws(s)://`; ws URLs as they are; anything else `None`.
fn ws_twin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return None,
    };
    Some(format!("{scheme}://{rest}"))
}

/// Offset of a session's last recorded message, at `speed`.
pub fn span(session: &DeviceSession, speed: f64) -> Duration {
    let last = session
        .messages
        .iter()
        .map(|m| m.offset_ns.max(0))
        .max()
        .unwrap_or(0);
    Duration::from_secs_f64(last as f64 / 1e9 / speed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_targets() {
        assert_eq!(
            target_from("http://127.0.0.1:9/").unwrap(),
            "ws://127.0.0.1:9"
        );
        assert_eq!(target_from("wss://gw.example").unwrap(), "wss://gw.example");
        assert_eq!(
            target_from("ftp://x"),
            Err(WsTargetError::Scheme("ftp://x".into()))
        );
    }
}
