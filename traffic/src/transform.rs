//! What an operator does to a recording before playing it: a time window, filters (method,
//! host, path regex), URL and header rewrites, and pacing — speed factor, a cap on the wait
//! between records, a rate cap and loops. [`Paced`] applies them and gives each item the
//! offset from the start of the replay at which it is due.
//!
//! Pacing works on the gaps between consecutive kept records, like GoReplay: each gap is
//! divided by the speed, then cut to `max_wait`, then stretched to at least `1 / rate_cap`.

use std::time::Duration;

use regex::Regex;

use crate::error::ReadError;
use crate::item::Item;
use crate::source::{ReadStats, Recording, Stream};

/// The transforms of a replay. `Default` keeps everything at recorded speed, once.
#[derive(Debug, Clone)]
pub struct Transforms {
    /// Keep records from this far into the recording.
    pub from: Option<Duration>,
    /// Keep records until this far into the recording.
    pub to: Option<Duration>,
    /// Keep only these methods (upper case); empty keeps all.
    pub methods: Vec<String>,
    /// Keep only requests to these hosts (without port, case-insensitive); empty keeps all.
    pub hosts: Vec<String>,
    /// Keep only paths (with query) matching this.
    pub path: Option<Regex>,
    /// Drop paths matching this.
    pub exclude_path: Option<Regex>,
    /// Rewrite paths: regex → replacement (`$1` for groups), applied in order.
    pub rewrite_path: Vec<(Regex, String)>,
    /// Send this `Host` instead of the target's.
    pub host: Option<String>,
    /// Set (replace or add) these headers.
    pub set_headers: Vec<(String, String)>,
    /// Remove these headers (case-insensitive).
    pub remove_headers: Vec<String>,
    /// Replay speed: 2.0 plays twice as fast, 0.5 half as fast.
    pub speed: f64,
    /// The longest wait between two records (after the speed).
    pub max_wait: Option<Duration>,
    /// Play the recording this many times (at least 1).
    pub loops: u32,
    /// At most this many requests per second.
    pub rate_cap: Option<f64>,
}

impl Default for Transforms {
    fn default() -> Self {
        Transforms {
            from: None,
            to: None,
            methods: Vec::new(),
            hosts: Vec::new(),
            path: None,
            exclude_path: None,
            rewrite_path: Vec::new(),
            host: None,
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            speed: 1.0,
            max_wait: None,
            loops: 1,
            rate_cap: None,
        }
    }
}

impl Transforms {
    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), ReadError> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(ReadError::Option(format!(
                "speed must be a positive factor such as 2x or 0.5x, got {}",
                self.speed
            )));
        }
        if let Some(r) = self.rate_cap {
            if !(r.is_finite() && r > 0.0) {
                return Err(ReadError::Option(format!(
                    "rate cap must be a positive number of requests per second, got {r}"
                )));
            }
        }
        if self.loops == 0 {
            return Err(ReadError::Option("loop count must be at least 1".into()));
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if t <= f {
                return Err(ReadError::Option(format!(
                    "time window ends ({t:?}) before it starts ({f:?})"
                )));
            }
        }
        Ok(())
    }

    /// True when `item` (at `rel` into the recording) passes the window and the filters.
    fn keeps(&self, item: &Item, rel: Duration) -> bool {
        if self.from.is_some_and(|f| rel < f) || self.to.is_some_and(|t| rel >= t) {
            return false;
        }
        let Item::Request(r) = item else {
            return self.methods.is_empty() && self.path.is_none();
        };
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&r.method))
        {
            return false;
        }
        if !self.hosts.is_empty() {
            let host = r.host.as_deref().unwrap_or("");
            let host = host.rsplit_once(':').map_or(host, |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host
                }
            });
            if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return false;
            }
        }
        if self.path.as_ref().is_some_and(|re| !re.is_match(&r.path)) {
            return false;
        }
        !self
            .exclude_path
            .as_ref()
            .is_some_and(|re| re.is_match(&r.path))
    }

    /// Applies the rewrites to a kept item.
    fn rewrite(&self, item: &mut Item) {
        let r = match item {
            Item::Request(r) => r,
            Item::Session(s) => return self.rewrite_session(s),
        };
        for (re, with) in &self.rewrite_path {
            if let std::borrow::Cow::Owned(p) = re.replace_all(&r.path, with.as_str()) {
                r.path = p;
            }
        }
        if let Some(h) = &self.host {
            r.host = Some(h.clone());
        }
        if !self.remove_headers.is_empty() {
            r.headers.retain(|(n, _)| {
                !self
                    .remove_headers
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(n))
            });
        }
        for (name, value) in &self.set_headers {
            r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            r.headers.push((name.clone(), value.clone()));
        }
    }
}

impl Transforms {
    /// A session's URL path and handshake headers get the path and header rewrites (its host
    /// is the WebSocket target's, chosen by the player).
    fn rewrite_session(&self, s: &mut crate::item::DeviceSession) {
        let at = s.url.find("://").map_or(0, |i| i + 3);
        if let Some(p) = s.url[at..].find(['/', '?']) {
            let (origin, path) = s.url.split_at(at + p);
            let mut path = path.to_string();
            for (re, with) in &self.rewrite_path {
                if let std::borrow::Cow::Owned(p) = re.replace_all(&path, with.as_str()) {
                    path = p;
                }
            }
            s.url = format!("{origin}{path}");
        }
        if !self.remove_headers.is_empty() {
            s.headers.retain(|(n, _)| {
                !self
                    .remove_headers
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(n))
            });
        }
        for (name, value) in &self.set_headers {
            s.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            s.headers.push((name.clone(), value.clone()));
        }
    }
}

/// An item and when it is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// Offset from the start of the replay.
    pub offset: Duration,
    /// The item, rewritten.
    pub item: Item,
    /// Which pass of a looped replay (0-based).
    pub pass: u32,
}

/// The transformed, paced stream of a recording. Stats of every pass so far are in
/// [`Paced::stats`] (the counts of the last pass when looping).
pub struct Paced {
    recording: Recording,
    transforms: Transforms,
    stream: Stream,
    pass: u32,
    first_ts: Option<i64>,
    prev_ts: Option<i64>,
    offset_ns: f64,
    kept_in_pass: u64,
    mean_gap_ns: f64,
    done: bool,
}

impl Paced {
    /// The paced stream of `recording` under `transforms`.
    pub fn new(recording: &Recording, transforms: Transforms) -> Result<Paced, ReadError> {
        transforms.validate()?;
        Ok(Paced {
            stream: recording.stream()?,
            recording: recording.clone(),
            transforms,
            pass: 0,
            first_ts: None,
            prev_ts: None,
            offset_ns: 0.0,
            kept_in_pass: 0,
            mean_gap_ns: 0.0,
            done: false,
        })
    }

    /// Counts of the current pass.
    pub fn stats(&self) -> &ReadStats {
        self.stream.stats()
    }

    fn gap_ns(&self, ts: i64) -> f64 {
        let t = &self.transforms;
        let Some(prev) = self.prev_ts else {
            // The first item of a later pass follows the last one by the mean gap.
            return if self.pass > 0 { self.mean_gap_ns } else { 0.0 };
        };
        let mut gap = (ts.saturating_sub(prev)).max(0) as f64 / t.speed;
        if let Some(m) = t.max_wait {
            gap = gap.min(m.as_nanos() as f64);
        }
        gap
    }
}

impl Iterator for Paced {
    type Item = Result<Scheduled, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let item = match self.stream.next() {
                Some(Ok(item)) => item,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    if self.pass + 1 >= self.transforms.loops || self.kept_in_pass == 0 {
                        self.done = true;
                        return None;
                    }
                    match self.recording.stream() {
                        Ok(s) => self.stream = s,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e));
                        }
                    }
                    if self.pass == 0 && self.kept_in_pass > 1 {
                        self.mean_gap_ns = self.offset_ns / (self.kept_in_pass - 1) as f64;
                    }
                    self.pass += 1;
                    self.prev_ts = None;
                    self.kept_in_pass = 0;
                    continue;
                }
            };
            let ts = item.ts_ns();
            let first = *self.first_ts.get_or_insert(ts);
            let rel = Duration::from_nanos(ts.saturating_sub(first).max(0) as u64);
            if !self.transforms.keeps(&item, rel) {
                continue;
            }
            let mut gap = if self.prev_ts.is_none() && self.pass == 0 {
                0.0
            } else {
                self.gap_ns(ts)
            };
            if let Some(cap) = self.transforms.rate_cap {
                if self.prev_ts.is_some() || self.pass > 0 {
                    gap = gap.max(1e9 / cap);
                }
            }
            self.offset_ns += gap;
            self.prev_ts = Some(self.prev_ts.map_or(ts, |p| p.max(ts)));
            self.kept_in_pass += 1;
            let mut item = item;
            self.transforms.rewrite(&mut item);
            return Some(Ok(Scheduled {
                offset: Duration::from_nanos(self.offset_ns as u64),
                item,
                pass: self.pass,
            }));
        }
        None
    }
}
