//! Transforms: window, filters, rewrites, speed, max wait, loops and the rate cap.

use std::time::Duration;

use traffic::{Item, Paced, ReadOptions, Recording, Transforms};

const SEP: &str = "\n🐵🙈🙉\n";

/// Requests at 0, 100, 200, 1200, 1300 ms.
fn recording() -> (tempfile::TempDir, Recording) {
    let d = tempfile::tempdir().unwrap();
    let base: i64 = 1_700_000_000_000_000_000;
    let reqs = [
        (0, "GET /devices/1"),
        (100, "POST /push"),
        (200, "GET /healthz"),
        (1200, "POST /push"),
        (1300, "DELETE /devices/1"),
    ];
    let mut text = String::new();
    for (i, (ms, line)) in reqs.iter().enumerate() {
        text += &format!("1 r{i} {} -1\n{line} HTTP/1.1\r\nHost: prod.example:8080\r\nX-Trace: t{i}\r\n\r\n{SEP}", base + ms * 1_000_000);
    }
    let p = d.path().join("t.gor");
    std::fs::write(&p, text).unwrap();
    let r = Recording::open(&[p.display().to_string()], ReadOptions::default()).unwrap();
    (d, r)
}

fn play(t: Transforms) -> Vec<(u64, String)> {
    let (_d, rec) = recording();
    Paced::new(&rec, t)
        .unwrap()
        .map(|s| {
            let s = s.unwrap();
            let Item::Request(r) = s.item else { panic!() };
            (
                s.offset.as_millis() as u64,
                format!("{} {}", r.method, r.path),
            )
        })
        .collect()
}

fn offsets(t: Transforms) -> Vec<u64> {
    play(t).into_iter().map(|(o, _)| o).collect()
}

#[test]
fn recorded_speed_keeps_the_gaps() {
    assert_eq!(
        offsets(Transforms::default()),
        vec![0, 100, 200, 1200, 1300]
    );
}

#[test]
fn speed_scales_the_gaps() {
    assert_eq!(
        offsets(Transforms {
            speed: 2.0,
            ..Default::default()
        }),
        vec![0, 50, 100, 600, 650]
    );
    assert_eq!(
        offsets(Transforms {
            speed: 0.5,
            ..Default::default()
        }),
        vec![0, 200, 400, 2400, 2600]
    );
}

#[test]
fn max_wait_cuts_long_gaps() {
    let t = Transforms {
        max_wait: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    assert_eq!(offsets(t), vec![0, 100, 200, 500, 600]);
}

#[test]
fn rate_cap_spaces_requests() {
    let t = Transforms {
        rate_cap: Some(5.0),
        ..Default::default()
    };
    assert_eq!(offsets(t), vec![0, 200, 400, 1400, 1600]);
}

#[test]
fn loops_repeat_after_the_mean_gap() {
    let t = Transforms {
        loops: 2,
        ..Default::default()
    };
    assert_eq!(
        offsets(t),
        vec![0, 100, 200, 1200, 1300, 1625, 1725, 1825, 2825, 2925]
    );
}

#[test]
fn window_and_filters_select() {
    let t = Transforms {
        from: Some(Duration::from_millis(100)),
        to: Some(Duration::from_millis(1250)),
        ..Default::default()
    };
    assert_eq!(
        play(t),
        vec![
            (0, "POST /push".into()),
            (100, "GET /healthz".into()),
            (1100, "POST /push".into())
        ]
    );
    let t = Transforms {
        methods: vec!["POST".into()],
        ..Default::default()
    };
    assert_eq!(play(t).len(), 2);
    let t = Transforms {
        path: Some(regex::Regex::new("^/devices/").unwrap()),
        ..Default::default()
    };
    assert_eq!(play(t).len(), 2);
    let t = Transforms {
        exclude_path: Some(regex::Regex::new("healthz").unwrap()),
        ..Default::default()
    };
    assert_eq!(play(t).len(), 4);
    let t = Transforms {
        hosts: vec!["prod.example".into()],
        ..Default::default()
    };
    assert_eq!(play(t).len(), 5);
    let t = Transforms {
        hosts: vec!["other".into()],
        ..Default::default()
    };
    assert_eq!(play(t).len(), 0);
}

#[test]
fn rewrites_change_path_host_and_headers() {
    let (_d, rec) = recording();
    let t = Transforms {
        rewrite_path: vec![(
            regex::Regex::new("^/devices/(\\d+)").unwrap(),
            "/v2/devices/$1".into(),
        )],
        host: Some("staging.example".into()),
        set_headers: vec![
            ("X-Replay".into(), "1".into()),
            ("x-trace".into(), "fixed".into()),
        ],
        remove_headers: vec!["nothing".into()],
        ..Default::default()
    };
    let first = Paced::new(&rec, t).unwrap().next().unwrap().unwrap();
    let Item::Request(r) = first.item else {
        panic!()
    };
    assert_eq!(r.path, "/v2/devices/1");
    assert_eq!(r.host.as_deref(), Some("staging.example"));
    assert_eq!(
        r.headers,
        vec![
            ("X-Replay".to_string(), "1".to_string()),
            ("x-trace".to_string(), "fixed".to_string())
        ]
    );
}

#[test]
fn bad_numbers_are_refused() {
    let (_d, rec) = recording();
    let e = Paced::new(
        &rec,
        Transforms {
            speed: 0.0,
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("speed must be a positive factor"),
        "{e}"
    );
    let e = Paced::new(
        &rec,
        Transforms {
            loops: 0,
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(
        e.to_string().contains("loop count must be at least 1"),
        "{e}"
    );
}
