//! Readers never panic on arbitrary input: random bytes, and valid files cut or corrupted at
//! random places (the fuzz targets in `replay/fuzz/` do the same at length).

use std::path::Path;

use traffic::gor::GorReader;

const SEP: &str = "\n🐵🙈🙉\n";

fn valid_gor() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..20 {
        s += &format!(
            "1 id{i} {} -1\nPOST /p/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello{SEP}",
            1000 + i
        );
        s += &format!("2 id{i} {} 7\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{SEP}", 1001 + i);
    }
    s.into_bytes()
}

fn mutate(rng: &mut fastrand::Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    match rng.u8(0..4) {
        0 => v.truncate(rng.usize(0..=v.len())),
        1 => {
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(0..v.len());
                v[i] = rng.u8(..);
            }
        }
        2 => {
            let i = rng.usize(0..v.len());
            let junk: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
            v.splice(i..i, junk);
        }
        _ => v = (0..rng.usize(0..512)).map(|_| rng.u8(..)).collect(),
    }
    v
}

#[test]
fn gor_reader_survives_mutations() {
    let mut rng = fastrand::Rng::with_seed(7);
    let base = valid_gor();
    for _ in 0..3000 {
        let input = mutate(&mut rng, &base);
        let mut r = GorReader::new(&input[..], Path::new("f.gor"));
        let mut n = 0;
        while let Some(rec) = r.next_record() {
            n += 1;
            if let Ok(rec) = rec {
                let _ = traffic::gor::parse_request_head(&rec.message);
            }
            assert!(n < 10_000, "the reader must make progress");
        }
    }
}

#[test]
fn har_and_detection_survive_mutations() {
    let mut rng = fastrand::Rng::with_seed(11);
    let base = br#"{"log":{"entries":[{"startedDateTime":"2026-11-25T10:00:00Z","request":{"method":"GET","url":"http://a/b","headers":[]},"response":{"status":200},"_webSocketMessages":[{"type":"send","time":1.5,"opcode":1,"data":"x"}]}]}}"#;
    for _ in 0..3000 {
        let input = mutate(&mut rng, base);
        if let Ok(items) = traffic::har::read(Path::new("f.har"), &input) {
            let _ = items.len();
        }
        let _ = traffic::source::detect_bytes(&input);
        let _ = traffic::accesslog::parse_line(&String::from_utf8_lossy(&input));
        let _ = traffic::vegeta::read(Path::new("t"), &String::from_utf8_lossy(&input), 50.0);
        let _ = traffic::gor::dechunk(&input);
    }
}
