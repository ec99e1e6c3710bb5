//! Opening recordings: globs, `.gz`, format detection, and the merge of several files into one
//! stream in timestamp order.
//!
//! Each file is read in its own order through a bounded reorder buffer (like GoReplay's
//! per-file read depth): a record that comes earlier than one already read is put back in
//! order when it is within the buffer, and counted as out of order either way. The buffer is
//! also where a GoReplay response (type 2) meets its request by id. Files are then merged by
//! the timestamp of their next item; an item older than one already emitted is counted as
//! late (the pacer fires it without waiting).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::accesslog::{self, AccessLogReader};
use crate::error::{Location, ReadError};
use crate::gor::{self, GorReader, GorRecord, Kind};
use crate::item::{Item, Recorded, Request};
use crate::{har, vegeta};

/// A recording format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// GoReplay `.gor`.
    Gor,
    /// HAR 1.2 (JSON).
    Har,
    /// Common or combined access log.
    AccessLog,
    /// Vegeta http targets.
    Vegeta,
}

impl Format {
    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Format::Gor => "gor",
            Format::Har => "har",
            Format::AccessLog => "access-log",
            Format::Vegeta => "vegeta",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "gor" => Ok(Format::Gor),
            "har" => Ok(Format::Har),
            "access-log" | "log" | "clf" => Ok(Format::AccessLog),
            "vegeta" => Ok(Format::Vegeta),
            _ => Err(format!(
                "unknown format `{s}`: expected gor, har, access-log or vegeta"
            )),
        }
    }
}

/// How to read a recording.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The format of every file; `None` detects it per file from its content.
    pub format: Option<Format>,
    /// Skip and count malformed records, entries and lines instead of failing.
    pub skip_malformed: bool,
    /// Records held per file to put out-of-order records back in order and to pair
    /// responses with requests.
    pub reorder_window: usize,
    /// Requests per second for formats without times (Vegeta targets).
    pub untimed_rate: f64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            skip_malformed: false,
            reorder_window: 10_000,
            untimed_rate: vegeta::DEFAULT_RATE,
        }
    }
}

/// Counts kept while reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Files read.
    pub files: usize,
    /// Requests read.
    pub requests: u64,
    /// WebSocket device sessions read.
    pub sessions: u64,
    /// Recorded responses (GoReplay type 2) read.
    pub responses: u64,
    /// Responses attached to their request.
    pub responses_matched: u64,
    /// Replayed responses (type 3) read and ignored.
    pub replayed_responses: u64,
    /// Records whose body was framed by the separator because the HTTP framing did not end
    /// at one (truncated bodies, HEAD responses).
    pub separator_framed: u64,
    /// Malformed records, entries or lines skipped (with `skip_malformed`).
    pub malformed: u64,
    /// Access-log lines of WebSocket upgrades (status 101) skipped: no frames to replay.
    pub upgrades_skipped: u64,
    /// The first few of those errors.
    pub malformed_examples: Vec<String>,
    /// Records earlier than one read before them in the same file.
    pub out_of_order: u64,
    /// Items emitted after a later one (beyond the reorder window, or across files).
    pub late: u64,
}

/// A recording: the files (globs expanded) and how to read them.
#[derive(Debug, Clone)]
pub struct Recording {
    files: Vec<(PathBuf, Format)>,
    opts: ReadOptions,
}

impl Recording {
    /// Expands `patterns` (file names or globs), checks that each file can be opened and
    /// detects its format.
    pub fn open<S: AsRef<str>>(patterns: &[S], opts: ReadOptions) -> Result<Recording, ReadError> {
        if !(opts.untimed_rate.is_finite() && opts.untimed_rate > 0.0) {
            return Err(ReadError::Option(format!(
                "the rate for untimed formats must be positive, got {}",
                opts.untimed_rate
            )));
        }
        let mut files = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            for path in expand(p)? {
                let format = match opts.format {
                    Some(f) => f,
                    None => detect(&path)?,
                };
                files.push((path, format));
            }
        }
        if files.is_empty() {
            return Err(ReadError::Option("no recording files given".into()));
        }
        Ok(Recording { files, opts })
    }

    /// The files and their formats.
    pub fn files(&self) -> &[(PathBuf, Format)] {
        &self.files
    }

    /// The read options.
    pub fn options(&self) -> &ReadOptions {
        &self.opts
    }

    /// A fresh stream over the whole recording.
    pub fn stream(&self) -> Result<Stream, ReadError> {
        let mut sources = Vec::with_capacity(self.files.len());
        for (path, format) in &self.files {
            sources.push(Reorder::new(
                open_source(path, *format, &self.opts)?,
                self.opts.reorder_window,
            ));
        }
        Ok(Stream {
            heads: vec![None; sources.len()],
            sources,
            stats: ReadStats {
                files: self.files.len(),
                ..ReadStats::default()
            },
            skip: self.opts.skip_malformed,
            last_ts: i64::MIN,
            failed: false,
        })
    }
}

/// Expands one file name or glob (`*`, `?`, `[...]` in any path component), sorted.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, ReadError> {
    if !pattern.contains(['*', '?', '[']) {
        let p = PathBuf::from(pattern);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(vec![p]),
            Ok(_) => Err(ReadError::Format {
                path: p,
                message: "not a file".into(),
            }),
            Err(source) => Err(ReadError::Io { path: p, source }),
        };
    }
    let path = Path::new(pattern);
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in path.components() {
        let text = comp.as_os_str().to_string_lossy();
        if !text.contains(['*', '?', '[']) {
            current.iter_mut().for_each(|c| c.push(comp));
            continue;
        }
        let re = glob_regex(&text).map_err(|e| ReadError::Option(format!("{pattern}: {e}")))?;
        let mut next = Vec::new();
        for dir in &current {
            let listing = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let Ok(entries) = std::fs::read_dir(listing) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if re.is_match(&name) && (!name.starts_with('.') || text.starts_with('.')) {
                    next.push(dir.join(name));
                }
            }
        }
        current = next;
    }
    let mut files: Vec<PathBuf> = current.into_iter().filter(|p| p.is_file()).collect();
    files.sort();
    if files.is_empty() {
        return Err(ReadError::NoMatch {
            pattern: pattern.to_string(),
        });
    }
    Ok(files)
}

fn glob_regex(glob: &str) -> Result<regex::Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if c == '\\' || c == '[' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                re.push(']');
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}

/// Opens a file, decompressing gzip (by its magic bytes, whatever the name).
fn open_bytes(path: &Path) -> Result<Box<dyn Read + Send>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let magic = f.fill_buf().map_err(io)?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(f)))
    } else {
        Ok(Box::new(f))
    }
}

/// Detects the format from the first bytes of the (decompressed) content.
pub fn detect(path: &Path) -> Result<Format, ReadError> {
    let mut head = Vec::with_capacity(4096);
    open_bytes(path)?
        .take(4096)
        .read_to_end(&mut head)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    detect_bytes(&head).ok_or_else(|| ReadError::Format {
        path: path.to_path_buf(),
        message: "cannot tell the format (not GoReplay, HAR, an access log or Vegeta targets); name it with --format".into(),
    })
}

/// Detects the format of content starting with `head`.
pub fn detect_bytes(head: &[u8]) -> Option<Format> {
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start();
    if text.starts_with('{') {
        return Some(Format::Har);
    }
    let first = text.lines().find(|l| !l.starts_with('#'))?;
    let fields: Vec<&str> = first.split(' ').collect();
    if (fields.len() == 3 || fields.len() == 4)
        && matches!(fields[0], "1" | "2" | "3")
        && fields[2].parse::<i64>().is_ok()
    {
        return Some(Format::Gor);
    }
    if accesslog::parse_line(first).is_ok() {
        return Some(Format::AccessLog);
    }
    if fields.len() == 2
        && fields[0].bytes().all(|b| b.is_ascii_uppercase())
        && (fields[1].starts_with("http://") || fields[1].starts_with("https://"))
    {
        return Some(Format::Vegeta);
    }
    None
}

/// What a file yields before reordering.
enum Entry {
    Item(Item),
    Response { id: String, recorded: Recorded },
    Replayed,
}

enum Source {
    Gor {
        reader: GorReader<Box<dyn Read + Send>>,
        file: Arc<str>,
        path: PathBuf,
    },
    Log(AccessLogReader<BufReader<Box<dyn Read + Send>>>),
    Items(std::vec::IntoIter<Result<Item, ReadError>>),
}

fn open_source(path: &Path, format: Format, opts: &ReadOptions) -> Result<Source, ReadError> {
    let bytes = open_bytes(path)?;
    let read_all = |mut r: Box<dyn Read + Send>| {
        let mut v = Vec::new();
        r.read_to_end(&mut v)
            .map(|_| v)
            .map_err(|source| ReadError::Io {
                path: path.to_path_buf(),
                source,
            })
    };
    Ok(match format {
        Format::Gor => Source::Gor {
            reader: GorReader::new(bytes, path),
            file: Arc::from(path.display().to_string()),
            path: path.to_path_buf(),
        },
        Format::AccessLog => Source::Log(AccessLogReader::new(BufReader::new(bytes), path)),
        Format::Har => Source::Items(har::read(path, &read_all(bytes)?)?.into_iter()),
        Format::Vegeta => {
            let text = String::from_utf8(read_all(bytes)?).map_err(|e| ReadError::Format {
                path: path.to_path_buf(),
                message: format!("Vegeta targets must be UTF-8 text: {e}"),
            })?;
            Source::Items(vegeta::read(path, &text, opts.untimed_rate).into_iter())
        }
    })
}

impl Source {
    fn next(&mut self, stats: &mut ReadStats) -> Option<Result<Entry, ReadError>> {
        match self {
            Source::Gor { reader, file, path } => {
                let rec = match reader.next_record()? {
                    Ok(r) => r,
                    Err(e) => return Some(Err(e)),
                };
                if rec.framing == gor::Framing::Separator {
                    stats.separator_framed += 1;
                }
                Some(gor_entry(rec, file, path))
            }
            Source::Log(r) => {
                let next = r.next().map(|r| r.map(Entry::Item));
                stats.upgrades_skipped += r.take_upgrades();
                next
            }
            Source::Items(it) => it.next().map(|r| r.map(Entry::Item)),
        }
    }
}

fn gor_entry(rec: GorRecord, file: &Arc<str>, path: &Path) -> Result<Entry, ReadError> {
    let bad = |message: String| ReadError::Malformed {
        path: path.to_path_buf(),
        at: Location::Record {
            number: rec.number,
            offset: rec.offset,
        },
        message,
    };
    match rec.kind {
        Kind::Request => {
            let head = gor::parse_request_head(&rec.message).map_err(bad)?;
            let (mut host, path) = split_target(&head.target);
            let mut headers = Vec::with_capacity(head.headers.len());
            for (n, v) in head.headers {
                if n.eq_ignore_ascii_case("host") {
                    host.get_or_insert(v);
                } else {
                    headers.push((n, v));
                }
            }
            Ok(Entry::Item(Item::Request(Request {
                ts_ns: rec.ts_ns,
                method: head.method,
                host,
                path,
                headers,
                body: rec.body,
                id: Some(rec.id),
                recorded: None,
                file: file.clone(),
                number: rec.number,
            })))
        }
        Kind::Response => {
            let status = gor::parse_response_status(&rec.message).map_err(bad)?;
            Ok(Entry::Response {
                id: rec.id,
                recorded: Recorded {
                    status,
                    latency_ns: rec.latency_ns.filter(|l| *l >= 0),
                    comparable: true,
                },
            })
        }
        Kind::ReplayedResponse => Ok(Entry::Replayed),
    }
}

/// Splits an absolute-form target (`http://host/path`, as sent to a proxy) into host and path.
fn split_target(target: &str) -> (Option<String>, String) {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return match rest.find(['/', '?']) {
                Some(i) if rest.as_bytes()[i] == b'?' => {
                    (Some(rest[..i].into()), format!("/{}", &rest[i..]))
                }
                Some(i) => (Some(rest[..i].into()), rest[i..].into()),
                None => (Some(rest.into()), "/".into()),
            };
        }
    }
    (None, target.to_string())
}

/// One file behind its reorder buffer.
struct Reorder {
    source: Source,
    window: usize,
    buffer: BTreeMap<(i64, u64), Item>,
    pending: HashMap<String, (i64, u64)>,
    seq: u64,
    max_ts: i64,
    exhausted: bool,
}

impl Reorder {
    fn new(source: Source, window: usize) -> Reorder {
        Reorder {
            source,
            window: window.max(1),
            buffer: BTreeMap::new(),
            pending: HashMap::new(),
            seq: 0,
            max_ts: i64::MIN,
            exhausted: false,
        }
    }

    fn next(&mut self, stats: &mut ReadStats) -> Option<Result<Item, ReadError>> {
        while !self.exhausted && self.buffer.len() < self.window {
            match self.source.next(stats) {
                None => self.exhausted = true,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(Entry::Replayed)) => stats.replayed_responses += 1,
                Some(Ok(Entry::Response { id, recorded })) => {
                    stats.responses += 1;
                    if let Some(key) = self.pending.remove(&id) {
                        if let Some(Item::Request(r)) = self.buffer.get_mut(&key) {
                            r.recorded = Some(recorded);
                            stats.responses_matched += 1;
                        }
                    }
                }
                Some(Ok(Entry::Item(item))) => {
                    let ts = item.ts_ns();
                    if ts < self.max_ts {
                        stats.out_of_order += 1;
                    }
                    self.max_ts = self.max_ts.max(ts);
                    match &item {
                        Item::Request(r) => {
                            stats.requests += 1;
                            if let Some(id) = &r.id {
                                self.pending.insert(id.clone(), (ts, self.seq));
                            }
                        }
                        Item::Session(_) => stats.sessions += 1,
                    }
                    self.buffer.insert((ts, self.seq), item);
                    self.seq += 1;
                }
            }
        }
        let (_, item) = self.buffer.pop_first()?;
        if let Item::Request(Request { id: Some(id), .. }) = &item {
            self.pending.remove(id);
        }
        Some(Ok(item))
    }
}

/// The items of a recording in timestamp order; see the module docs.
pub struct Stream {
    sources: Vec<Reorder>,
    heads: Vec<Option<Item>>,
    stats: ReadStats,
    skip: bool,
    last_ts: i64,
    failed: bool,
}

impl Stream {
    /// Counts so far (complete once the stream is exhausted).
    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }
}

impl Iterator for Stream {
    type Item = Result<Item, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        for i in 0..self.sources.len() {
            while self.heads[i].is_none() {
                match self.sources[i].next(&mut self.stats) {
                    None => break,
                    Some(Ok(item)) => self.heads[i] = Some(item),
                    Some(Err(e)) if self.skip && e.is_skippable() => {
                        self.stats.malformed += 1;
                        if self.stats.malformed_examples.len() < 5 {
                            self.stats.malformed_examples.push(e.to_string());
                        }
                    }
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
        let best = (0..self.heads.len())
            .filter(|&i| self.heads[i].is_some())
            .min_by_key(|&i| self.heads[i].as_ref().map_or(i64::MAX, Item::ts_ns))?;
        let item = self.heads[best].take()?;
        let ts = item.ts_ns();
        if ts < self.last_ts {
            self.stats.late += 1;
        }
        self.last_ts = self.last_ts.max(ts);
        Some(Ok(item))
    }
}
