//! GoReplay files: framing (the separator inside bodies), old headers, responses paired with
//! requests, `.gz`, globs and merging, and every malformed case with its message.

use std::io::Write;
use std::path::Path;

use traffic::gor::{self, GorReader, GorWriter, Kind};
use traffic::{Item, ReadOptions, Recording, Request};

const SEP: &str = "\n🐵🙈🙉\n";

fn rec(header: &str, message: &str) -> String {
    format!("{header}\n{message}{SEP}")
}

fn requests(
    dir: &Path,
    files: &[(&str, String)],
    opts: ReadOptions,
) -> (Vec<Request>, traffic::ReadStats) {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let paths: Vec<String> = files
        .iter()
        .map(|(n, _)| dir.join(n).display().to_string())
        .collect();
    let recording = Recording::open(&paths, opts).unwrap();
    let mut stream = recording.stream().unwrap();
    let items: Vec<Request> = stream
        .by_ref()
        .map(|i| match i.unwrap() {
            Item::Request(r) => r,
            other => panic!("{other:?}"),
        })
        .collect();
    (items, stream.stats().clone())
}

fn err_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.gor");
    std::fs::write(&p, text).unwrap();
    let recording = Recording::open(
        &[p.display().to_string()],
        ReadOptions {
            format: Some(traffic::Format::Gor),
            ..Default::default()
        },
    )
    .unwrap();
    let mut stream = recording.stream().unwrap();
    let e = stream.find_map(|r| r.err()).expect("an error");
    e.to_string()
        .replace(&dir.path().display().to_string(), "DIR")
}

#[test]
fn requests_and_responses_pair_by_id() {
    let d = tempfile::tempdir().unwrap();
    let text = rec("1 aa01 1700000000000000000 -1", "GET /devices/42 HTTP/1.1\r\nHost: gw.example\r\nUser-Agent: curl/8\r\n\r\n")
        + &rec("1 aa02 1700000000100000000 -1", "POST /push HTTP/1.1\r\nHost: gw.example\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"user\":\"u1\"}")
        + &rec("2 aa01 1700000000004000000 4000000", "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
        + &rec("2 aa02 1700000000103000000 3000000", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        + &rec("3 aa02 1700000000200000000 2000000", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
    let (reqs, stats) = requests(d.path(), &[("a.gor", text)], ReadOptions::default());
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/devices/42");
    assert_eq!(reqs[0].host.as_deref(), Some("gw.example"));
    assert_eq!(
        reqs[0].headers,
        vec![("User-Agent".to_string(), "curl/8".to_string())]
    );
    assert_eq!(reqs[0].recorded.map(|r| r.status), Some(404));
    assert_eq!(
        reqs[1].recorded.map(|r| (r.status, r.latency_ns)),
        Some((202, Some(3_000_000)))
    );
    assert_eq!(&reqs[1].body[..], b"{\"user\":\"u1\"}");
    assert_eq!(reqs[1].number, 2);
    assert_eq!(
        (
            stats.responses,
            stats.responses_matched,
            stats.replayed_responses
        ),
        (2, 2, 1)
    );
}

#[test]
fn old_three_field_header_reads() {
    let d = tempfile::tempdir().unwrap();
    let text = rec(
        "1 x1 1500000000000000000",
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let (reqs, _) = requests(d.path(), &[("old.gor", text)], ReadOptions::default());
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].ts_ns, 1_500_000_000_000_000_000);
}

#[test]
fn separator_inside_a_body_is_framed_by_content_length() {
    let d = tempfile::tempdir().unwrap();
    let body = format!("before{SEP}after");
    let text = rec(
        "1 b1 1000 -1",
        &format!(
            "POST /push HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    ) + &rec("1 b2 2000 -1", "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let (reqs, stats) = requests(d.path(), &[("sep.gor", text)], ReadOptions::default());
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(&reqs[0].body[..], body.as_bytes());
    assert_eq!(reqs[1].path, "/next");
    assert_eq!(stats.separator_framed, 0);
}

#[test]
fn separator_inside_a_chunked_body_is_framed_by_the_chunks() {
    let d = tempfile::tempdir().unwrap();
    let part = format!("x{SEP}y");
    let chunked = format!("{:x}\r\n{part}\r\n3\r\nend\r\n0\r\n\r\n", part.len());
    let text = rec(
        "1 c1 1000 -1",
        &format!("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"),
    ) + &rec("1 c2 2000 -1", "GET /after HTTP/1.1\r\nHost: a\r\n\r\n");
    let (reqs, _) = requests(d.path(), &[("chunked.gor", text)], ReadOptions::default());
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body, format!("{part}end").into_bytes());
    assert_eq!(reqs[1].path, "/after");
}

#[test]
fn a_truncated_body_falls_back_to_the_separator() {
    // GoReplay truncates large payloads: Content-Length says more than the record holds.
    let d = tempfile::tempdir().unwrap();
    let text = rec(
        "1 t1 1000 -1",
        "POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nonly this",
    ) + &rec("1 t2 2000 -1", "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let (reqs, stats) = requests(d.path(), &[("trunc.gor", text)], ReadOptions::default());
    assert_eq!(reqs.len(), 2);
    assert_eq!(&reqs[0].body[..], b"only this");
    assert_eq!(stats.separator_framed, 1);
}

#[test]
fn a_response_without_length_ends_at_the_separator() {
    let text = rec(
        "2 r1 1000 5",
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello",
    );
    let mut r = GorReader::new(text.as_bytes(), Path::new("r.gor"));
    let rec = r.next().unwrap().unwrap();
    assert_eq!(rec.kind, Kind::Response);
    assert_eq!(&rec.body[..], b"hello");
    assert!(r.next().is_none());
}

#[test]
fn truncated_file_names_record_and_offset() {
    let first = rec("1 a 1000 -1", "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let text =
        first.clone() + "1 b 2000 -1\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\nabc";
    assert_eq!(
        err_of(&text),
        format!("DIR/bad.gor: record 2 (byte offset {}): truncated record: Content-Length is 50 but the file ends after 3 body bytes", first.len())
    );
    let e = err_of("1 a 1000 -1\nGET / HTTP/1.1\r\nHost:");
    assert!(
        e.ends_with(
            "record 1 (byte offset 0): truncated record: the file ends inside the HTTP head"
        ),
        "{e}"
    );
    let e = err_of("1 a 1000");
    assert!(
        e.ends_with("truncated record: the file ends inside the header line"),
        "{e}"
    );
}

#[test]
fn bad_headers_say_what_was_expected() {
    let first = rec("1 a 1000 -1", "GET / HTTP/1.1\r\n\r\n");
    let e = err_of(&(first.clone() + &rec("7 a 1000 -1", "GET / HTTP/1.1\r\n\r\n")));
    assert_eq!(
        e,
        format!("DIR/bad.gor: record 2 (byte offset {}): bad header `7 a 1000 -1`: type is not 1, 2 or 3 (expected `TYPE ID TIMESTAMP_NS [LATENCY_NS]`)", first.len())
    );
    let e = err_of(&rec("1 a yesterday -1", "GET / HTTP/1.1\r\n\r\n"));
    assert!(e.contains("timestamp is not an integer"), "{e}");
    let e = err_of(&rec("1 a 1 2 3", "GET / HTTP/1.1\r\n\r\n"));
    assert!(e.contains("5 fields"), "{e}");
    let e = err_of(&rec("1 a 1000 -1", "NOT HTTP AT ALL\r\n\r\n"));
    assert!(
        e.contains("record 1 (byte offset 0): not an HTTP/1.x request"),
        "{e}"
    );
    let e = err_of(&rec("1 a 1000 -1", "GET / HTTP/1.1\r\nHost: a"));
    assert!(
        e.contains("the HTTP head is not complete before the record separator"),
        "{e}"
    );
    let e = err_of(&rec(
        "1 a 1000 -1",
        "POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n",
    ));
    assert!(e.contains("bad Content-Length `lots`"), "{e}");
}

#[test]
fn skip_malformed_counts_and_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let text = rec("1 a 1000 -1", "GET /1 HTTP/1.1\r\n\r\n")
        + &rec("9 bad 2000 -1", "GET /2 HTTP/1.1\r\n\r\n")
        + &rec("1 c 3000 -1", "garbage\r\n\r\n")
        + &rec("1 d 4000 -1", "GET /4 HTTP/1.1\r\n\r\n");
    let opts = ReadOptions {
        skip_malformed: true,
        ..Default::default()
    };
    let (reqs, stats) = requests(d.path(), &[("m.gor", text)], opts);
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/1", "/4"]);
    assert_eq!(stats.malformed, 2);
    assert!(
        stats.malformed_examples[0].contains("record 2"),
        "{:?}",
        stats.malformed_examples
    );
}

#[test]
fn gz_globs_and_merge_in_timestamp_order() {
    let d = tempfile::tempdir().unwrap();
    let a = rec("1 a1 1000 -1", "GET /a1 HTTP/1.1\r\n\r\n")
        + &rec("1 a2 3000 -1", "GET /a2 HTTP/1.1\r\n\r\n");
    let b = rec("1 b1 2000 -1", "GET /b1 HTTP/1.1\r\n\r\n")
        + &rec("1 b2 4000 -1", "GET /b2 HTTP/1.1\r\n\r\n");
    std::fs::write(d.path().join("traffic_0.gor"), a).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b.as_bytes()).unwrap();
    std::fs::write(d.path().join("traffic_1.gor.gz"), gz.finish().unwrap()).unwrap();
    let pattern = d.path().join("traffic_*").display().to_string();
    let recording = Recording::open(&[pattern], ReadOptions::default()).unwrap();
    assert_eq!(recording.files().len(), 2);
    let paths: Vec<String> = recording
        .stream()
        .unwrap()
        .map(|i| match i.unwrap() {
            Item::Request(r) => r.path,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(paths, vec!["/a1", "/b1", "/a2", "/b2"]);
    let e = Recording::open(
        &[d.path().join("nothing_*.gor").display().to_string()],
        ReadOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().ends_with("nothing_*.gor: no file matches"),
        "{e}"
    );
}

#[test]
fn out_of_order_records_are_reordered_within_the_window_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let text = rec("1 a 1000 -1", "GET /1 HTTP/1.1\r\n\r\n")
        + &rec("1 b 3000 -1", "GET /3 HTTP/1.1\r\n\r\n")
        + &rec("1 c 2000 -1", "GET /2 HTTP/1.1\r\n\r\n")
        + &rec("1 d 4000 -1", "GET /4 HTTP/1.1\r\n\r\n")
        + &rec("1 e 500 -1", "GET /0 HTTP/1.1\r\n\r\n");
    let (reqs, stats) = requests(
        d.path(),
        &[("o.gor", text.clone())],
        ReadOptions {
            reorder_window: 2,
            ..Default::default()
        },
    );
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    // /2 is put back in order; /0 comes beyond the window of 2 and is late.
    assert_eq!(paths, vec!["/1", "/2", "/3", "/0", "/4"]);
    assert_eq!((stats.out_of_order, stats.late), (2, 1));
    let (reqs, stats) = requests(d.path(), &[("o.gor", text)], ReadOptions::default());
    assert_eq!(reqs[0].path, "/0");
    assert_eq!((stats.out_of_order, stats.late), (2, 0));
}

#[test]
fn writer_output_reads_back() {
    let mut w = GorWriter::new(Vec::new());
    let headers = vec![
        ("Host".to_string(), "gw".to_string()),
        ("Transfer-Encoding".to_string(), "chunked".to_string()),
    ];
    let body = format!("a{SEP}b");
    w.write(
        Kind::Request,
        "id1",
        42,
        -1,
        &gor::encode_request("PUT", "/x", &headers, body.as_bytes()),
    )
    .unwrap();
    w.write(
        Kind::Response,
        "id1",
        50,
        8,
        &gor::encode_response(201, "Created", &[], b"ok"),
    )
    .unwrap();
    let bytes = w.into_inner();
    let recs: Vec<_> = GorReader::new(&bytes[..], Path::new("w.gor"))
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(&recs[0].body[..], body.as_bytes());
    assert_eq!(recs[0].framing, gor::Framing::Http);
    let head = gor::parse_request_head(&recs[0].message).unwrap();
    assert!(head.headers.iter().all(|(n, _)| n != "Transfer-Encoding"));
    assert_eq!(gor::parse_response_status(&recs[1].message).unwrap(), 201);
    assert_eq!((recs[1].ts_ns, recs[1].latency_ns), (50, Some(8)));
}

#[test]
fn long_files_keep_offsets_and_resync_across_buffer_refills() {
    // Well past the 64 KiB read size, so the reader's buffer is refilled and compacted.
    let mut text = String::new();
    let body = "b".repeat(3000);
    for i in 0..100 {
        text += &rec(
            &format!("1 id{i} {} -1", 1000 + i),
            &format!("POST /p/{i} HTTP/1.1\r\nContent-Length: 3000\r\n\r\n{body}"),
        );
    }
    let bad_offset = text.len();
    text += &rec("x bad 5000 -1", "GET / HTTP/1.1\r\n\r\n");
    for i in 100..150 {
        text += &rec(
            &format!("1 id{i} {} -1", 1000 + i),
            &format!("POST /p/{i} HTTP/1.1\r\nContent-Length: 3000\r\n\r\n{body}"),
        );
    }
    let mut r = GorReader::new(text.as_bytes(), Path::new("long.gor"));
    let mut ok = 0;
    let mut errors = Vec::new();
    while let Some(rec) = r.next_record() {
        match rec {
            Ok(rec) => {
                assert_eq!(rec.body.len(), 3000);
                ok += 1;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert_eq!(ok, 150);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with(&format!(
            "long.gor: record 101 (byte offset {bad_offset}): bad header"
        )),
        "{}",
        errors[0]
    );
}
