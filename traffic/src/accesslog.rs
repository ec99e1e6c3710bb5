//! Common and combined access logs (Apache, nginx): method, path and time of each request,
//! for the rate shape only (no headers or bodies are logged). Times have one-second
//! resolution, so the requests of one second are spread evenly across it instead of firing
//! as a burst at its start. Lines of WebSocket upgrades (status 101) are skipped and counted:
//! the log holds no frames to replay, and a plain GET in their place would hang on a
//! long-poll or WebSocket endpoint.

use std::collections::VecDeque;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use regex::Regex;

use crate::error::{Location, ReadError};
use crate::item::{Item, Recorded, Request};

static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(\S+) (\S+) (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}|-) (\d+|-)(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?"#)
        .expect("static regex")
});

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Whole seconds since the Unix epoch.
    pub second: i64,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Status, when logged.
    pub status: Option<u16>,
    /// `Host` is not in these formats; the `User-Agent` of combined logs is kept.
    pub user_agent: Option<String>,
}

/// Parses one line of the common or combined log format.
pub fn parse_line(line: &str) -> Result<LogLine, String> {
    let c = LINE.captures(line).ok_or(
        "not a common or combined log line (`HOST IDENT USER [TIME] \"REQUEST\" STATUS BYTES`)",
    )?;
    let time = &c[4];
    let at = chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z")
        .map_err(|e| format!("time `{time}`: {e} (expected like 10/Oct/2000:13:55:36 -0700)"))?;
    let request = &c[5];
    let mut parts = request.split(' ');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !path.starts_with('/')
    {
        return Err(format!(
            "request `{request}` is not `METHOD /path PROTOCOL`"
        ));
    }
    Ok(LogLine {
        second: at.timestamp(),
        method: method.to_string(),
        path: path.to_string(),
        status: c[6].parse().ok(),
        user_agent: c
            .get(9)
            .map(|m| m.as_str().to_string())
            .filter(|u| u != "-"),
    })
}

/// Reads an access log line by line.
pub struct AccessLogReader<R> {
    lines: std::io::Lines<R>,
    path: PathBuf,
    file: Arc<str>,
    line_no: u64,
    /// Lines of the second being gathered: (line number, line).
    second: Vec<(u64, LogLine)>,
    out: VecDeque<Result<Item, ReadError>>,
    done: bool,
    upgrades: u64,
}

impl<R: BufRead> AccessLogReader<R> {
    /// A reader of `inner`; `path` names the file in errors.
    pub fn new(inner: R, path: &Path) -> AccessLogReader<R> {
        AccessLogReader {
            lines: inner.lines(),
            path: path.to_path_buf(),
            file: Arc::from(path.display().to_string()),
            line_no: 0,
            second: Vec::new(),
            out: VecDeque::new(),
            done: false,
            upgrades: 0,
        }
    }

    /// WebSocket upgrade lines (status 101) skipped since the last call.
    pub fn take_upgrades(&mut self) -> u64 {
        std::mem::take(&mut self.upgrades)
    }

    /// Spreads the gathered second's requests evenly over it.
    fn flush_second(&mut self) {
        let n = self.second.len() as i64;
        for (i, (number, l)) in self.second.drain(..).enumerate() {
            let ts_ns = l.second * 1_000_000_000 + (i as i64) * 1_000_000_000 / n;
            let mut headers = Vec::new();
            if let Some(ua) = l.user_agent {
                headers.push(("user-agent".to_string(), ua));
            }
            self.out.push_back(Ok(Item::Request(Request {
                ts_ns,
                method: l.method,
                host: None,
                path: l.path,
                headers,
                body: Bytes::new(),
                id: None,
                recorded: l.status.map(|status| Recorded {
                    status,
                    latency_ns: None,
                    comparable: false,
                }),
                file: self.file.clone(),
                number,
            })));
        }
    }
}

impl<R: BufRead> Iterator for AccessLogReader<R> {
    type Item = Result<Item, ReadError>;
    fn next(&mut self) -> Option<Self::Item> {
        while self.out.is_empty() && !self.done {
            match self.lines.next() {
                None => {
                    self.flush_second();
                    self.done = true;
                }
                Some(Err(e)) => {
                    self.done = true;
                    self.out.push_back(Err(ReadError::Malformed {
                        path: self.path.clone(),
                        at: Location::Line(self.line_no + 1),
                        message: format!("cannot read the line: {e}"),
                    }));
                }
                Some(Ok(line)) => {
                    self.line_no += 1;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match parse_line(&line) {
                        Ok(l) if l.status == Some(101) => self.upgrades += 1,
                        Ok(l) => {
                            if self
                                .second
                                .last()
                                .is_some_and(|(_, p)| p.second != l.second)
                            {
                                self.flush_second();
                            }
                            self.second.push((self.line_no, l));
                        }
                        Err(message) => {
                            self.flush_second();
                            self.out.push_back(Err(ReadError::Malformed {
                                path: self.path.clone(),
                                at: Location::Line(self.line_no),
                                message,
                            }));
                        }
                    }
                }
            }
        }
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_combined_lines_parse() {
        let l = parse_line(r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#).unwrap();
        assert_eq!(
            (l.method.as_str(), l.path.as_str(), l.status),
            ("GET", "/apache_pb.gif", Some(200))
        );
        assert_eq!(l.second, 971211336);
        let l = parse_line(r#"10.0.0.1 - - [25/Nov/2026:10:00:01 +0000] "POST /push?x=1 HTTP/1.1" 202 12 "-" "curl/8.0""#).unwrap();
        assert_eq!(l.user_agent.as_deref(), Some("curl/8.0"));
        assert_eq!(l.path, "/push?x=1");
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse_line("hello")
            .unwrap_err()
            .contains("not a common or combined log line"));
        let e = parse_line(r#"1.2.3.4 - - [99/Foo/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 1"#)
            .unwrap_err();
        assert!(e.contains("time `99/Foo/2000:13:55:36 -0700`"), "{e}");
        let e = parse_line(r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "-" 400 0"#).unwrap_err();
        assert!(e.contains("is not `METHOD /path PROTOCOL`"), "{e}");
    }

    #[test]
    fn one_second_is_spread_evenly() {
        let text = "\
1.1.1.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a HTTP/1.1\" 200 1
1.1.1.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /b HTTP/1.1\" 200 1
1.1.1.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /c HTTP/1.1\" 200 1
1.1.1.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /d HTTP/1.1\" 200 1
1.1.1.1 - - [10/Oct/2000:13:55:37 +0000] \"GET /e HTTP/1.1\" 200 1
";
        let items: Vec<Item> = AccessLogReader::new(text.as_bytes(), Path::new("a.log"))
            .map(|r| r.unwrap())
            .collect();
        let ts: Vec<i64> = items
            .iter()
            .map(|i| i.ts_ns() - 971_186_136_000_000_000)
            .collect();
        assert_eq!(
            ts,
            vec![0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
        );
    }

    #[test]
    fn websocket_upgrades_are_skipped_and_counted() {
        let text = "\
1.1.1.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /ws HTTP/1.1\" 101 0
1.1.1.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a HTTP/1.1\" 200 1
1.1.1.1 - - [10/Oct/2000:13:55:37 +0000] \"GET /ws HTTP/1.1\" 101 0
";
        let mut r = AccessLogReader::new(text.as_bytes(), Path::new("a.log"));
        let paths: Vec<String> = r
            .by_ref()
            .map(|i| match i.unwrap() {
                Item::Request(r) => r.path,
                Item::Session(_) => unreachable!("logs hold requests"),
            })
            .collect();
        assert_eq!(paths, vec!["/a"]);
        assert_eq!(r.take_upgrades(), 2);
        assert_eq!(r.take_upgrades(), 0);
    }
}
