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
