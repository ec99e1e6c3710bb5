//! `testbed mock-apns`, run for real: it writes its credentials, an outside client using
//! them is served over HTTP/2, a second start reads the same files, and bad input exits 2.

mod running;
use running::start;

use std::process::Command;

#[test]
fn writes_credentials_that_an_outside_client_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("creds");
    let tls = tls_dir.to_str().unwrap();
    let run = start(
        &[
            "mock-apns",
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            tls,
            "--topic",
            "com.example.app",
        ],
        2,
    );
    let url = run.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(run.lines[1].contains(tls), "{}", run.lines[1]);
    for file in [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "AuthKey_KEY1234567.p8",
        "provider.json",
    ] {
        assert!(tls_dir.join(file).is_file(), "{file} written");
    }
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tls_dir.join("provider.json")).unwrap())
            .unwrap();
    assert_eq!(info["team_id"], "TEAM123456");

    // A client that knows only the files: the .p8 key signs its token.
    let key = testbed::pki::ProviderKey::from_p8_pem(
        "KEY1234567",
        &std::fs::read_to_string(tls_dir.join("AuthKey_KEY1234567.p8")).unwrap(),
    )
    .unwrap();
    let jwt = key.provider_token_now("TEAM123456").unwrap();
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP: curl is not installed (scripts/test.sh installs it)");
        return;
    }
    let curl = |extra: &[&str]| {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--http2", "--cacert"])
            .arg(tls_dir.join("ca.pem"))
            .args(["--write-out", "\n%{http_version} %{http_code}"])
            .args(extra)
            .args(["--data", r#"{"aps":{"alert":"hi"}}"#])
            .arg(format!("{url}/3/device/0a0b"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let auth = format!("authorization: bearer {jwt}");
    let ok = curl(&["-H", &auth, "-H", "apns-topic: com.example.app"]);
    assert!(ok.trim_end().ends_with("2 200"), "{ok}");
    let disallowed = curl(&["-H", &auth, "-H", "apns-topic: com.other"]);
    assert!(
        disallowed.contains("TopicDisallowed") && disallowed.ends_with("2 400"),
        "{disallowed}"
    );
    drop(run);

    // `testbed apns-token` signs with the same key, for clients that cannot sign ES256.
    let minted = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["apns-token", "--tls-dir", tls])
        .output()
        .unwrap();
    assert!(minted.status.success());
    let minted = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let verifier =
        testbed::apns::TokenVerifier::new(&testbed::apns::TokenAuth::new("TEAM123456", [&key]));
    let claims = verifier
        .check(
            Some(format!("bearer {minted}").as_bytes()),
            testbed::pki::unix_now(),
        )
        .unwrap();
    assert_eq!(claims.kid, "KEY1234567");

    // A second start reads the same credentials: the old token still verifies.
    let again = start(
        &["mock-apns", "--listen", "127.0.0.1:0", "--tls-dir", tls],
        2,
    );
    let url2 = again.url();
    let output = Command::new("curl")
        .args(["--silent", "--http2", "--cacert"])
        .arg(tls_dir.join("ca.pem"))
        .args([
            "--write-out",
            "%{http_code}",
            "-o",
            "/dev/null",
            "-H",
            &auth,
        ])
        .args(["-H", "apns-topic: com.example.app", "--data", "{}"])
        .arg(format!("{url2}/3/device/0a0b"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
}

#[test]
fn bad_input_exits_2_with_one_sentence() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(args)
            .output()
            .expect("testbed runs")
    };
    let output = run(&["mock-apns", "--listen", "127.0.0.1:0", "--rate-503", "1.5"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "testbed: rate_503 must be between 0 and 1, got 1.5"
    );
    let output = run(&["mock-apns", "--listen", "not-an-address"]);
    assert_eq!(output.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "garbage").unwrap();
    let tls = dir.path().to_str().unwrap();
    let output = run(&["mock-apns", "--listen", "127.0.0.1:0", "--tls-dir", tls]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("testbed: {tls}/server.pem: ")),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let output = run(&["apns-token", "--tls-dir", tls]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("server.pem"));

    let missing = dir.path().join("absent.pem");
    let output = run(&[
        "mock-apns",
        "--listen",
        "127.0.0.1:0",
        "--client-ca",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("absent.pem"));
}

#[test]
fn what_the_mock_accepted_is_readable_from_outside() {
    if Command::new("curl").arg("--version").output().is_err() {
        panic!("curl is not installed (scripts/test.sh installs it)");
    }
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path().join("creds");
    let record = dir.path().join("accepted.jsonl");
    let run = start(
        &[
            "mock-apns",
            "--listen",
            "127.0.0.1:0",
            "--tls-dir",
            tls_dir.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
            "--record",
            record.to_str().unwrap(),
        ],
        4,
    );
    let admin = run.lines[2]
        .strip_prefix("admin on ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{:?}", run.lines))
        .to_owned();
    assert_eq!(run.lines[3], format!("recording to {}", record.display()));
    let key = testbed::pki::ProviderKey::from_p8_pem(
        "KEY1234567",
        &std::fs::read_to_string(tls_dir.join("AuthKey_KEY1234567.p8")).unwrap(),
    )
    .unwrap();
    let auth = format!(
        "authorization: bearer {}",
        key.provider_token_now("TEAM123456").unwrap()
    );
    let url = run.url();
    let push = |id: &str, device: &str| {
        let out = Command::new("curl")
            .args(["--silent", "--http2", "--cacert"])
            .arg(tls_dir.join("ca.pem"))
            .args(["--write-out", "%{http_code}", "-o", "/dev/null"])
            .args(["-H", &auth, "-H", &format!("apns-id: {id}")])
            .args(["-H", "apns-topic: com.example.app"])
            .args(["--data", r#"{"aps":{"alert":"hi"}}"#])
            .arg(format!("{url}/3/device/{device}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (a, b) = (
        "0a2b3c4d-0000-4000-8000-00000000000a",
        "0a2b3c4d-0000-4000-8000-00000000000b",
    );
    // A sender that sends one push twice: the device would show it twice.
    for (id, device) in [(a, "0a0a"), (b, "0b0b"), (a, "0a0a")] {
        assert_eq!(push(id, device), "200");
    }
    let get = |path: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["--silent", "--fail", &format!("{admin}{path}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {path}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let listed = get("/notifications");
    assert_eq!(
        (listed["count"].clone(), listed["duplicates"].clone()),
        (3.into(), 1.into())
    );
    let ids: Vec<&str> = listed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["apns_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a, b, a]);
    assert_eq!(listed["notifications"][1]["device_token"], "0b0b");
    assert_eq!(listed["notifications"][1]["payload"]["aps"]["alert"], "hi");
    let stats = get("/stats");
    assert_eq!(stats["accepted"], 3);
    assert_eq!(
        stats["duplicate_ids"],
        serde_json::json!([{"apns_id": a, "times": 2}])
    );
    // The record file holds the same, one JSON line per notification, written as they came.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines, listed["notifications"].as_array().unwrap().clone());

    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["mock-apns", "--listen", "127.0.0.1:0", "--tls-dir"])
        .arg(&tls_dir)
        .args(["--record", "/nonexistent/dir/accepted.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("testbed: /nonexistent/dir/accepted.jsonl: No such file or directory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
