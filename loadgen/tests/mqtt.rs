//! MQTT devices and publishing senders against a real mosquitto (Debian's): MQTT 3.1.1 and 5
//! over TCP and WebSocket with QoS 0, 1 and 2 and several topic filters per connection, a
//! broker restart with persistent sessions, and refusals counted by their reason. loadgen runs
//! as its real binary.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use loadgen::journey::mqtt::{self, ConnectFields, Incoming, Reader, Version};
use testkit::servers::Mosquitto;

fn count(run: &serde_json::Value, key: &str) -> u64 {
    run["metrics"][key]["value"].as_u64().unwrap_or(0)
}

fn passed(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(out),
        stdout(out)
    );
}

/// The README's MQTT scenario, run as printed (only the broker's address and the counts
/// made small).
#[test]
fn the_readme_mqtt_scenario_runs_against_mosquitto() {
    let broker = Mosquitto::start();
    let d = Dir::new();
    let text = readme_example("mqtt")
        .replace("mqtt://127.0.0.1:1883", &broker.url())
        .replace("count: 1000", "count: 20")
        .replace("duration: 30s", "duration: 5s")
        .replace("per_second: 200", "per_second: 20");
    let (out, run) = d.run(&text);
    passed(&out);
    let run = run.unwrap();
    let expected = count(&run, "delivery_expected");
    assert!(expected > 40, "{expected}: {}", run["metrics"]);
    assert_eq!(
        count(&run, "delivery_received"),
        expected,
        "{}",
        run["metrics"]
    );
    assert_eq!(count(&run, "delivery_lost"), 0);
    assert_eq!(count(&run, "delivery_duplicates"), 0);
    assert_eq!(count(&run, "delivery_unexpected"), 0);
    assert_eq!(count(&run, "connections_opened"), 20);
    assert_eq!(count(&run, "connections_failed"), 0);
    // Every device got the topic broadcasts through its `news/#` filter.
    assert!(count(&run, "delivery_received{journey=news}") >= 20 * 3);
}

/// The scenario printed in README.md after `<!-- example: NAME -->`.
pub fn readme_example(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let marker = format!("<!-- example: {name} -->");
    let at = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[at..];
    let start = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = rest[start..].find("```").expect("the block's end");
    rest[start..start + len].to_string()
}

/// QoS 0, 1 and 2, MQTT 3.1.1 over TCP and MQTT 5 over WebSocket, two topic filters per
/// connection (one with a wildcard), ids from the payload and from MQTT 5 user properties.
#[test]
fn qos_0_1_2_over_tcp_and_websocket_with_several_filters_per_connection() {
    let broker = Mosquitto::start();
    let d = Dir::new();
    let scenario = format!(
        r#"version: 1
name: qos
target: {{ base_url: "{base}" }}
duration: 4s
devices:
  - name: tcp311
    count: 10
    topics: [ {{ topic: "dev/{{{{user}}}}", qos: 1 }}, {{ topic: "all/+/q2", qos: 2 }} ]
    connect: {{ url: "{{{{base_url}}}}", mqtt: {{ client_id: "c-{{{{user}}}}", keep_alive: 1s }} }}
    push: {{ id: {{ json: /id }}, sent_at: {{ json: /sent_at_ns }} }}
  - name: ws5
    count: 10
    topics: [ "dev/{{{{user}}}}", {{ topic: "all/#", qos: 2 }} ]
    connect: {{ url: "{ws}/mqtt", mqtt: {{ version: "5", qos: 0 }} }}
    push: {{ id: {{ header: msg-id }} }}
senders:
  - name: unicast1
    rate: {{ per_second: 30 }}
    steps:
      - post: '{{{{base_url}}}}/dev/{{{{random_device "tcp311"}}}}?qos=1'
        json: {{ id: "{{{{msg_id}}}}", sent_at_ns: "{{{{now_ns}}}}" }}
        track: {{ unicast: '{{{{random_device "tcp311"}}}}', within: 3s }}
  - name: unicast0
    rate: {{ per_second: 30 }}
    steps:
      - post: '{{{{base_url}}}}/dev/{{{{random_device "ws5"}}}}?qos=0&version=5'
        headers: {{ msg-id: "{{{{msg_id}}}}" }}
        body: "hello"
        track: {{ unicast: '{{{{random_device "ws5"}}}}', within: 3s }}
  - name: topic2
    rate: {{ per_second: 5 }}
    steps:
      - post: "{{{{base_url}}}}/all/x/q2?qos=2&version=5"
        headers: {{ msg-id: "{{{{msg_id}}}}" }}
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ topic: all/x/q2, within: 3s }}
"#,
        base = broker.url(),
        ws = broker.ws_url(),
    );
    let (out, run) = d.run(&scenario);
    passed(&out);
    let run = run.unwrap();
    let m = &run["metrics"];
    let expected = count(&run, "delivery_expected");
    assert_eq!(count(&run, "delivery_received"), expected, "{m}");
    for journey in ["unicast1", "unicast0"] {
        let n = count(&run, &format!("delivery_received{{journey={journey}}}"));
        assert!(n >= 60, "{journey}: {n}: {m}");
    }
    // A QoS 2 publish to all/x/q2 reaches every device of both journeys, exactly once.
    let topic = count(&run, "delivery_received{journey=topic2}");
    assert!(topic >= 20 * 10, "{topic}: {m}");
    assert_eq!(count(&run, "delivery_expected{journey=topic2}"), topic);
    assert_eq!(count(&run, "delivery_duplicates"), 0, "{m}");
    assert_eq!(count(&run, "delivery_unexpected"), 0, "{m}");
    assert_eq!(count(&run, "http_req_failed"), 0, "{m}");
    assert_eq!(count(&run, "connections_failed"), 0, "{m}");
    assert_eq!(metric(&run, "ws_connecting")["count"], 10);
    assert_eq!(metric(&run, "tcp_connecting")["count"], 10);
    // Keep-alive pings every second on the TCP devices: PINGRESP round trips measured.
    assert!(
        metric(&run, "heartbeat_rtt")["count"].as_u64().unwrap() >= 20,
        "{m}"
    );
}

/// A bare MQTT client of the test's own, to watch the broker.
struct Watcher {
    stream: TcpStream,
    reader: Reader,
}

impl Watcher {
    fn connect(broker: &Mosquitto, filter: &str) -> Watcher {
        let mut stream = TcpStream::connect(broker.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = Vec::new();
        let fields = ConnectFields {
            client_id: format!("watcher-{}", std::process::id()),
            clean: true,
            keep_alive_s: 0,
            ..Default::default()
        };
        mqtt::connect(Version::V311, &fields, &mut out).unwrap();
        mqtt::subscribe(Version::V311, 1, &[(filter.to_string(), 0)], &mut out).unwrap();
        stream.write_all(&out).unwrap();
        Watcher {
            stream,
            reader: Reader::new(Version::V311),
        }
    }

    /// Reads until `n` messages have come.
    fn messages(&mut self, n: usize) {
        let mut seen = 0;
        let mut buf = [0u8; 4096];
        while seen < n {
            let got = self.stream.read(&mut buf).expect("the watcher reads");
            assert!(got > 0, "the broker closed the watcher");
            self.reader
                .feed(&buf[..got], &mut |p| {
                    if matches!(p, Incoming::Publish(_)) {
                        seen += 1;
                    }
                })
                .unwrap();
        }
    }
}

/// MQTT over TLS (`mqtts://`, mosquitto's TLS listener with a certificate of a test CA):
/// MQTT 3.1.1 and 5 devices receive QoS 1 publishes (sent over the plain listener) and ack
/// them; without trusting the certificate every connect fails as `handshake` and the run goes
/// on.
#[test]
fn mqtts_devices_receive_over_tls_and_an_untrusted_broker_fails_the_handshake() {
    let ca = testbed::pki::CertificateAuthority::new("mqtt test CA").unwrap();
    let cert = ca.issue_server(&["localhost"]).unwrap();
    let files = tempfile::tempdir().unwrap();
    // mosquitto drops to its own user: it must read these.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (crt, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    for f in [&crt, &key] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let tls = testkit::net::private_addr();
    let broker = Mosquitto::start_with(&format!(
        "listener {} {}\ncertfile {}\nkeyfile {}\n",
        tls.port(),
        tls.ip(),
        crt.display(),
        key.display()
    ));
    assert!(
        testkit::wait::within(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(tls).is_ok()
        }),
        "mosquitto's TLS listener: {}",
        broker.log()
    );
    for insecure in [true, false] {
        let d = Dir::new();
        let scenario = format!(
            r#"version: 1
name: mqtts
target: {{ base_url: "{base}", insecure: {insecure} }}
duration: 3s
devices:
  - name: v311
    count: 5
    topics: [ {{ topic: "tls/{{{{user}}}}", qos: 1 }} ]
    connect: {{ url: "mqtts://{tls}", mqtt: {{}} }}
    push: {{ id: {{ json: /id }} }}
  - name: v5
    count: 5
    topics: [ {{ topic: "tls/{{{{user}}}}", qos: 1 }} ]
    connect: {{ url: "mqtts://{tls}", mqtt: {{ version: "5" }} }}
    push: {{ id: {{ json: /id }} }}
senders:
  - name: to311
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 30, over: 100ms }}, {{ hold: 1500ms }} ] }}
    steps:
      - post: '{{{{base_url}}}}/tls/{{{{random_device "v311"}}}}?qos=1'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "v311"}}}}', within: 1s }}
  - name: to5
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 30, over: 100ms }}, {{ hold: 1500ms }} ] }}
    steps:
      - post: '{{{{base_url}}}}/tls/{{{{random_device "v5"}}}}?qos=1'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "v5"}}}}', within: 1s }}
"#,
            base = broker.url(),
        );
        let (out, run) = d.run(&scenario);
        passed(&out);
        let run = run.unwrap();
        let m = &run["metrics"];
        if insecure {
            assert_eq!(count(&run, "connections_failed"), 0, "{m}");
            assert_eq!(count(&run, "connections_opened"), 10, "{m}");
            for journey in ["to311", "to5"] {
                let n = count(&run, &format!("delivery_received{{journey={journey}}}"));
                assert!(n >= 30, "{journey}: {m}");
            }
            let received = count(&run, "delivery_received");
            assert_eq!(count(&run, "delivery_expected"), received, "{m}");
            assert_eq!(count(&run, "delivery_duplicates"), 0, "{m}");
            assert_eq!(count(&run, "delivery_unexpected"), 0, "{m}");
        } else {
            for journey in ["v311", "v5"] {
                let key = format!("connections_failed{{cause=handshake,journey={journey}}}");
                assert_eq!(count(&run, &key), 5, "{m}");
            }
            assert_eq!(count(&run, "connections_opened"), 0, "{m}");
        }
    }
}

/// Persistent sessions (clean: false) across a broker restart: devices hold their PUBACKs
/// back, the broker goes down with QoS 1 messages in flight, comes back from its saved state,
/// sends them again with DUP set when the devices reconnect, and queued messages follow.
/// Redeliveries are counted apart from duplicates, and nothing is lost.
#[test]
fn a_broker_restart_redelivers_qos1_messages_to_persistent_sessions() {
    let mut broker = Mosquitto::start();
    let d = Dir::new();
    let scenario = format!(
        r#"version: 1
name: restart
target: {{ base_url: "{base}", delivery: store_and_forward }}
duration: 9s
devices:
  - name: phones
    count: 10
    topics: [ {{ topic: "dev/{{{{user}}}}", qos: 1 }} ]
    connect:
      url: "{{{{base_url}}}}"
      mqtt: {{ clean: false, keep_alive: 2s, ack_delay: 1500ms }}
    push: {{ id: {{ json: /id }} }}
    reconnect: {{ backoff: {{ initial: 100ms, max: 400ms }} }}
senders:
  - name: unicast
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 20, over: 100ms }}, {{ hold: 5s }} ] }}
    timeout: 1s
    steps:
      - post: '{{{{base_url}}}}/dev/{{{{random_device "phones"}}}}?qos=1'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "phones"}}}}', within: 6s }}
"#,
        base = broker.url(),
    );
    d.write("s.yaml", &scenario);
    let mut cmd = d.command(&["run", "s.yaml", "--out", "out", "--quiet"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Restart once the sender has published for a while: with acks held 1.5 s, messages are
    // in flight then.
    let mut watcher = Watcher::connect(&broker, "dev/#");
    watcher.messages(20);
    drop(watcher);
    let down = Instant::now();
    broker.restart();
    eprintln!("broker down for {:?}", down.elapsed());
    let out = child.wait_with_output().unwrap();
    passed(&out);
    let run = d.run_record().unwrap();
    let m = &run["metrics"];
    let redelivered = count(&run, "delivery_redelivered");
    assert!(redelivered > 0, "no DUP redelivery: {m}\n{}", broker.log());
    assert_eq!(count(&run, "delivery_duplicates"), 0, "{m}");
    assert_eq!(count(&run, "delivery_lost"), 0, "{m}");
    assert_eq!(
        count(&run, "delivery_received"),
        count(&run, "delivery_expected"),
        "{m}"
    );
    assert_eq!(count(&run, "delivery_unexpected"), 0, "{m}");
    // Every device lost its connection with the broker and came back.
    assert!(count(&run, "connections_opened") >= 20, "{m}");
    let dropped = count(&run, "connections_failed{cause=closed,journey=phones}")
        + count(&run, "connections_failed{cause=reset,journey=phones}");
    assert!(dropped >= 10, "{m}");
}

/// A broker refusing CONNECT (bad credentials: CONNACK with its reason code, in 3.1.1 and 5)
/// and a server that answers with something that is not MQTT are each counted under their
/// cause; the devices with good credentials on the same broker go on receiving.
#[test]
fn refusals_and_malformed_packets_are_counted_by_cause_and_the_run_goes_on() {
    let d = Dir::new();
    let passwords = d.path().join("passwd");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&passwords)
        .args(["dev", "s3cret"])
        .status()
        .unwrap();
    assert!(made.success());
    let broker = Mosquitto::start_with(&format!(
        "allow_anonymous false\npassword_file {}",
        passwords.display()
    ));
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_addr = junk.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in junk.incoming().flatten() {
            let mut s = s;
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let scenario = format!(
        r#"version: 1
name: refusals
target: {{ base_url: "{base}" }}
duration: 3s
devices:
  - name: good
    count: 5
    topics: [ "dev/{{{{user}}}}" ]
    connect: {{ url: "{{{{base_url}}}}", mqtt: {{ username: dev, password: s3cret, qos: 1 }} }}
    push: {{ id: {{ json: /id }} }}
  - name: wrong311
    count: 3
    connect: {{ url: "{{{{base_url}}}}", mqtt: {{ username: dev, password: nope }} }}
  - name: anonymous5
    count: 3
    connect: {{ url: "{{{{base_url}}}}", mqtt: {{ version: "5" }} }}
  - name: junk
    count: 2
    connect: {{ url: "mqtt://{junk}", mqtt: {{}} }}
senders:
  - name: unicast
    rate: {{ per_second: 20 }}
    steps:
      - post: 'mqtt://dev:s3cret@{addr}/dev/{{{{random_device "good"}}}}?qos=1'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "good"}}}}', within: 2s }}
"#,
        base = broker.url(),
        addr = broker.addr(),
        junk = junk_addr,
    );
    let (out, run) = d.run(&scenario);
    passed(&out);
    let run = run.unwrap();
    let m = &run["metrics"];
    // mosquitto 2 answers a wrong password with 3.1.1's code 5 (not authorized), not 4.
    assert_eq!(
        count(
            &run,
            "connections_failed{cause=connack_not_authorized,journey=wrong311}"
        ),
        3,
        "{m}"
    );
    assert_eq!(
        count(
            &run,
            "connections_failed{cause=connack_not_authorized,journey=anonymous5}"
        ),
        3,
        "{m}"
    );
    assert_eq!(
        count(&run, "connections_failed{cause=malformed,journey=junk}"),
        2,
        "{m}"
    );
    assert_eq!(count(&run, "connections_failed{journey=good}"), 0, "{m}");
    let received = count(&run, "delivery_received");
    assert!(received >= 30, "{m}");
    assert_eq!(received, count(&run, "delivery_expected"), "{m}");
}

/// Scenario errors in MQTT options name the file, line and column, and exit 2.
#[test]
fn bad_mqtt_options_are_refused_at_their_place() {
    let d = Dir::new();
    let base = "version: 1\nname: x\ntarget: { base_url: \"mqtt://127.0.0.1:1\" }\nduration: 1s\ndevices:\n  - name: p\n    count: 1\n";
    let cases = [
        (
            "    topics: [ { topic: a, qos: 3 } ]\n    connect: { url: \"{{base_url}}\", mqtt: {} }\n",
            "s.yaml:8:",
            "devices[0].topics[0].qos: expected 0, 1 or 2",
        ),
        (
            "    connect: { url: \"{{base_url}}\", mqtt: { session_expiry: 1h } }\n",
            "s.yaml:8:",
            "session expiry is MQTT 5's",
        ),
        (
            "    connect: { url: \"{{base_url}}\" }\n",
            "s.yaml:8:",
            "an mqtt:// device needs its session options",
        ),
        (
            "    connect: { url: \"{{base_url}}\", mqtt: { password: x } }\n",
            "s.yaml:8:",
            "a password needs `username`",
        ),
        (
            "    connect: { url: \"{{base_url}}\", mqtt: {} }\n    heartbeat: { every: 1s, send: ping }\n",
            "s.yaml:9:",
            "MQTT devices do not send messages of their own",
        ),
        (
            "    topics: [ \"t/{{address}}\" ]\n    connect: { url: \"{{base_url}}\", mqtt: {} }\n",
            "s.yaml:8:",
            "devices[0].topics[0]: variable `address` is not available here",
        ),
        (
            "    connect: { url: \"{{base_url}}\", mqtt: { version: \"4\" } }\n",
            "s.yaml:8:",
            "unknown variant `4`",
        ),
    ];
    for (tail, at, want) in cases {
        d.write("s.yaml", &format!("{base}{tail}"));
        let out = d.loadgen(&["check", "s.yaml"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{tail}: {err}");
        assert!(err.contains(at) && err.contains(want), "{tail}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // A sender's `random_device` must name a device journey.
    d.write(
        "s.yaml",
        &format!(
            "{base}    connect: {{ url: \"{{{{base_url}}}}\", mqtt: {{}} }}\nsenders:\n  - name: s\n    rate: {{ per_second: 1 }}\n    steps:\n      - post: '{{{{base_url}}}}/t/{{{{random_device \"phonez\"}}}}'\n"
        ),
    );
    let out = d.loadgen(&["check", "s.yaml"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("s.yaml:13:") && err.contains("names no device journey"),
        "{err}"
    );
    // Senders publish over plain MQTT only: an mqtts:// step, literal or through
    // `{{base_url}}`, is refused at check rather than failing every request.
    for (target, post) in [
        ("mqtt://127.0.0.1:1", "mqtts://127.0.0.1:2/t"),
        ("mqtts://127.0.0.1:1", "{{base_url}}/t"),
    ] {
        d.write(
            "s.yaml",
            &format!(
                "{}    connect: {{ url: \"{{{{base_url}}}}\", mqtt: {{}} }}\nsenders:\n  - name: s\n    rate: {{ per_second: 1 }}\n    steps:\n      - post: '{post}'\n",
                base.replace("mqtt://127.0.0.1:1", target)
            ),
        );
        let out = d.loadgen(&["check", "s.yaml"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("s.yaml:13:16")
                && err.contains("senders[0].steps[0]: senders publish over mqtt:// only"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}
