//! The HTML report opened in real headless Chromium (Debian `chromium` + `chromium-driver`,
//! installed by scripts/test.sh), driven through the W3C WebDriver HTTP API: it renders with
//! no console errors, every chart is an SVG with drawn paths, nothing is fetched from the
//! network, and the hover read-out works.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixture_run;
use reports::{compare, render, CompareOptions, Format};
use serde_json::{json, Value};

/// chromedriver on a loopback port. Dropped (also when an assertion fails), it ends the
/// session, which quits Chromium, then kills chromedriver: killing chromedriver alone would
/// leave Chromium running.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::blocking::Client,
    session: Option<String>,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test.sh installs Debian's chromium-driver)");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
                .unwrap(),
            session: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self
                .http
                .delete(format!("{}/session/{id}", self.base))
                .send();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn html_report_renders_in_headless_chromium_without_errors() {
    let base = fixture_run("push-fanout", 1, 1.0, 20);
    let new = fixture_run("push-fanout", 2, 1.3, 20);
    let c = compare(&base, &new, &CompareOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, render(Format::Html, &new, Some(&c)).unwrap()).unwrap();
    let profile = dir.path().join("profile");

    let mut driver = Driver::start();
    let session = driver.post(
        "/session",
        json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}}),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    driver.session = Some(id.clone());
    let s = |path: &str| format!("/session/{id}{path}");

    driver.post(
        &s("/url"),
        json!({"url": format!("file://{}", page.display())}),
    );
    let facts = driver.post(
        &s("/execute/sync"),
        json!({"script": r#"
            var charts = Array.from(document.querySelectorAll('svg.chart')).map(function (svg) {
                var paths = Array.from(svg.querySelectorAll('path.line'));
                var box = svg.getBoundingClientRect();
                return {id: svg.id, paths: paths.length,
                        drawn: paths.filter(function (p) { return p.getTotalLength() > 10; }).length,
                        width: box.width, height: box.height};
            });
            var svg = document.getElementById('chart-latency-0');
            var box = svg.getBoundingClientRect();
            svg.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + box.width / 2,
                                                           clientY: box.top + box.height / 2,
                                                           bubbles: true}));
            var tip = svg.parentNode.querySelector('.tip');
            return {charts: charts, title: document.title,
                    verdict: document.getElementById('verdict').textContent,
                    resources: performance.getEntriesByType('resource').map(function (e) { return e.name; }),
                    tip: tip.hidden ? null : tip.textContent,
                    baselineRows: document.querySelectorAll('#baseline tr').length};
        "#, "args": []}),
    );

    let charts = facts["charts"].as_array().unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    for want in [
        "chart-rate",
        "chart-latency-0",
        "chart-latency-1",
        "chart-percentiles",
        "chart-errors",
        "chart-connections",
        "chart-delivery",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    for c in charts {
        assert!(
            c["drawn"].as_u64().unwrap() >= 1,
            "chart without a drawn line: {c}"
        );
        assert!(
            c["width"].as_f64().unwrap() > 300.0 && c["height"].as_f64().unwrap() > 80.0,
            "{c}"
        );
    }
    assert_eq!(facts["title"], "pushbench: push-fanout");
    assert!(
        facts["verdict"].as_str().unwrap().starts_with("failed"),
        "{facts}"
    );
    assert_eq!(
        facts["resources"],
        json!([]),
        "the report fetched something"
    );
    let tip = facts["tip"]
        .as_str()
        .expect("hovering a chart shows the read-out");
    assert!(tip.contains("p99: ") && tip.contains("ms"), "{tip}");
    assert_eq!(
        facts["baselineRows"].as_u64().unwrap() as usize,
        c.checks.len() + 1
    );

    let log = driver.post(&s("/se/log"), json!({"type": "browser"}));
    let severe: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
}
