//! Vegeta's http targets format: `METHOD URL` lines, then `Key: Value` header lines, an
//! optional `@path/to/body` line (relative to the targets file), and a blank line between
//! targets; `#` starts a comment line. Targets carry no times: they are spaced evenly at a
//! rate (Vegeta's default is 50 per second), in file order.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Location, ReadError};
use crate::item::{Item, Request};

/// Vegeta's default attack rate.
pub const DEFAULT_RATE: f64 = 50.0;

/// Reads every target of a Vegeta targets file, spaced at `rate` per second.
pub fn read(path: &Path, text: &str, rate: f64) -> Vec<Result<Item, ReadError>> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let base = path.parent().unwrap_or(Path::new("."));
    let bad = |line: u64, message: String| ReadError::Malformed {
        path: path.to_path_buf(),
        at: Location::Line(line),
        message,
    };
    let mut out = Vec::new();
    let mut current: Option<Request> = None;
    let mut index = 0u64;
    let interval = 1e9 / rate;
    let mut finish = |current: &mut Option<Request>, out: &mut Vec<Result<Item, ReadError>>| {
        if let Some(mut r) = current.take() {
            r.ts_ns = (index as f64 * interval) as i64;
            index += 1;
            out.push(Ok(Item::Request(r)));
        }
    };
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            finish(&mut current, &mut out);
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some(r) = current.as_mut() {
            if let Some(body_path) = line.strip_prefix('@') {
                let p = base.join(body_path.trim());
                match std::fs::read(&p) {
                    Ok(b) => r.body = Bytes::from(b),
                    Err(e) => {
                        current = None;
                        out.push(Err(bad(n, format!("body file {}: {e}", p.display()))));
                    }
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                if !k.trim().is_empty() && !k.contains(' ') {
                    let (k, v) = (k.trim().to_string(), v.trim().to_string());
                    if k.eq_ignore_ascii_case("host") {
                        r.host = Some(v);
                    } else {
                        r.headers.push((k, v));
                    }
                    continue;
                }
            }
            // A new target without a blank line in between.
            finish(&mut current, &mut out);
        }
        match target_line(line) {
            Ok((method, host, path)) => {
                current = Some(Request {
                    ts_ns: 0,
                    method,
                    host: Some(host),
                    path,
                    headers: Vec::new(),
                    body: Bytes::new(),
                    id: None,
                    recorded: None,
                    file: file.clone(),
                    number: n,
                })
            }
            Err(m) => out.push(Err(bad(n, m))),
        }
    }
    finish(&mut current, &mut out);
    out
}

fn target_line(line: &str) -> Result<(String, String, String), String> {
    let (method, url) = line
        .split_once(' ')
        .ok_or_else(|| format!("expected `METHOD URL`, got `{line}`"))?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "`{method}` is not an HTTP method (expected `METHOD URL`)"
        ));
    }
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    Ok((method.to_string(), host.to_string(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_headers_and_bodies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("body.json"), "{\"a\":1}").unwrap();
        let text = "GET http://goku:9090/path/to/dragon?item=ball\nX-Account-ID: 8675309\n\n# a comment\nDELETE http://goku:9090/path/to/remove\nConfirmation-Token: 90215\nAuthorization: Token DEADBEEF\n\nPOST http://goku:9090/things\n@body.json\n";
        let path = dir.path().join("targets.txt");
        let items: Vec<Request> = read(&path, text, 10.0)
            .into_iter()
            .map(|r| match r.unwrap() {
                Item::Request(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].path, "/path/to/dragon?item=ball");
        assert_eq!(
            items[0].headers,
            vec![("X-Account-ID".into(), "8675309".into())]
        );
        assert_eq!(items[1].method, "DELETE");
        assert_eq!(items[1].headers.len(), 2);
        assert_eq!(&items[2].body[..], b"{\"a\":1}");
        assert_eq!(items[2].ts_ns, 200_000_000);
    }

    #[test]
    fn bad_target_names_the_line() {
        let out = read(Path::new("t.txt"), "GET http://a/\n\nFETCH\n", 50.0);
        let e = out[1].as_ref().unwrap_err().to_string();
        assert_eq!(e, "t.txt:3: expected `METHOD URL`, got `FETCH`");
    }
}
