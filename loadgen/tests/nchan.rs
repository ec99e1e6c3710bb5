//! SSE, long-poll and WebSocket devices with several channels per connection against a real
//! nginx + nchan (Debian's `libnginx-mod-nchan`), publishing through nchan's HTTP publisher;
//! and WebSocket subscribe messages against the reference gateway. loadgen runs as its real
//! binary.

mod common;
use common::*;

use testkit::servers::Nginx;

const NCHAN: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// nchan with multiplexed subscribers (`/sub/a,b,c`: one connection, several channels) for
/// every transport it has, its publisher on `/pub/CHANNEL`, and two answers that are not
/// event streams.
fn nchan() -> Nginx {
    assert!(
        std::path::Path::new(NCHAN).is_file(),
        "{NCHAN} is missing: scripts/test.sh installs libnginx-mod-nchan"
    );
    Nginx::start(
        r#"
  server {
    listen {listen};
    location ~ ^/sub/(.+)$ {
      nchan_subscriber;
      nchan_channel_id_split_delimiter ",";
      nchan_channel_id "$1";
    }
    location ~ ^/pub/(.+)$ {
      nchan_publisher;
      nchan_channel_id "$1";
      nchan_message_buffer_length 200;
    }
    location /plain/ { default_type text/plain; return 200 "no events here\n"; }
  }
"#,
        &[NCHAN],
    )
}

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

/// The scenario printed in README.md after `<!-- example: NAME -->`.
fn readme_example(name: &str) -> String {
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

/// Every tracked push arrived once, and something was tracked on each sender.
fn all_received(name: &str, run: &serde_json::Value, senders: &[&str]) {
    let m = format!("{name}: {}", run["metrics"]);
    let expected = count(run, "delivery_expected");
    assert_eq!(count(run, "delivery_received"), expected, "{m}");
    assert_eq!(count(run, "delivery_lost"), 0, "{m}");
    assert_eq!(count(run, "delivery_duplicates"), 0, "{m}");
    assert_eq!(count(run, "delivery_unexpected"), 0, "{m}");
    assert_eq!(count(run, "connections_failed"), 0, "{m}");
    for s in senders {
        let n = count(run, &format!("delivery_received{{journey={s}}}"));
        assert!(n >= 20, "{s}: {n}: {m}");
    }
}

/// The README's SSE scenario as printed (addresses and counts made small), and the same with
/// `mode: long-poll` and over WebSocket: one connection per device carries its own channel
/// and the shared one.
#[test]
fn sse_long_poll_and_websocket_with_several_channels_per_connection() {
    // Each transport gets an nginx of its own: nchan keeps channels' messages, and a new
    // subscriber starts from the oldest one kept.
    let sse = readme_example("sse")
        .replace("count: 1000", "count: 20")
        .replace("duration: 30s", "duration: 4s")
        .replace("per_second: 200", "per_second: 20")
        .replace("per_second: 1 }", "per_second: 4 }");
    let long_poll = sse.replace("mode: sse", "mode: long-poll");
    let ws = sse
        .replace(
            "connect: { url: \"{{base_url}}/sub/{{topics}}\", http: { mode: sse } }",
            "connect: { url: \"ws://NCHAN/sub/{{topics}}\" }",
        )
        .replace("push: { id:", "push: { match: { json: /id }, id:");
    assert_ne!(ws, sse, "the README's connect line changed");
    for (name, text) in [("sse", sse), ("long-poll", long_poll), ("websocket", ws)] {
        let gw = nchan();
        let text = text
            .replace("http://127.0.0.1:8080", &gw.url())
            .replace("NCHAN", &gw.addr().to_string());
        let d = Dir::new();
        let (out, run) = d.run(&text);
        passed(&out);
        let run = run.unwrap();
        all_received(name, &run, &["unicast", "all"]);
        assert!(
            count(&run, "delivery_received{journey=all}") >= 20 * 10,
            "{name}: {}",
            run["metrics"]
        );
        let key = if name == "websocket" {
            "ws_connecting"
        } else {
            "tcp_connecting"
        };
        assert_eq!(metric(&run, key)["count"], 20, "{name}");
    }
}

/// Store and forward, checked: devices drop their connection at random and reconnect; an SSE
/// device resumes with `Last-Event-ID`, a long-poll device with `If-None-Match`, so nchan
/// sends what was published while they were away and nothing is lost or unverifiable.
#[test]
fn resumed_streams_keep_a_store_and_forward_promise() {
    let gw = nchan();
    for mode in ["sse", "long-poll"] {
        let d = Dir::new();
        let scenario = format!(
            r#"version: 1
name: resume
target: {{ base_url: "{base}", delivery: store_and_forward }}
duration: 5s
devices:
  - name: phones
    count: 10
    topics: [ "r-{mode}-{{{{user}}}}" ]
    connect: {{ url: "{{{{base_url}}}}/sub/{{{{topics}}}}", http: {{ mode: {mode} }} }}
    push: {{ id: {{ json: /id }} }}
    churn: {{ per_second: 1.0 }}
    reconnect: {{ backoff: {{ initial: 200ms, max: 400ms }} }}
senders:
  - name: unicast
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 40, over: 100ms }}, {{ hold: 3s }} ] }}
    steps:
      - post: '{{{{base_url}}}}/pub/r-{mode}-{{{{random_device "phones"}}}}'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "phones"}}}}', within: 2s }}
"#,
            base = gw.url(),
        );
        let (out, run) = d.run(&scenario);
        passed(&out);
        let run = run.unwrap();
        let m = &run["metrics"];
        assert!(
            count(&run, "connections_closed{journey=phones,reason=churn}") >= 10,
            "{mode}: {m}"
        );
        let expected = count(&run, "delivery_expected");
        assert!(expected >= 60, "{mode}: {m}");
        assert_eq!(count(&run, "delivery_received"), expected, "{mode}: {m}");
        assert_eq!(count(&run, "delivery_lost"), 0, "{mode}: {m}");
        assert_eq!(count(&run, "delivery_duplicates"), 0, "{mode}: {m}");
    }
}

/// SSE and long-poll over HTTP/2 (prior knowledge; nginx 1.22's `listen … http2`), with
/// each device's own channel and a shared one on one connection, under churn: a device
/// resumes on a new HTTP/2 connection (`Last-Event-ID`, `If-None-Match`), so under a
/// store-and-forward promise nothing is lost. Publishers use the HTTP/1.1 listener.
#[test]
fn sse_and_long_poll_over_http2_resume_with_several_channels() {
    let h2 = testkit::net::private_addr();
    let subscriber = r#"
    location ~ ^/sub/(.+)$ {
      nchan_subscriber;
      nchan_channel_id_split_delimiter ",";
      nchan_channel_id "$1";
    }"#;
    let gw = Nginx::start(
        &format!(
            r#"
  server {{
    listen {{listen}};
    location ~ ^/pub/(.+)$ {{
      nchan_publisher;
      nchan_channel_id "$1";
      nchan_message_buffer_length 200;
    }}
  }}
  server {{
    listen {h2} http2;{subscriber}
  }}
"#
        ),
        &[NCHAN],
    );
    for mode in ["sse", "long-poll"] {
        let d = Dir::new();
        let scenario = format!(
            r#"version: 1
name: h2
target: {{ base_url: "{base}", delivery: store_and_forward }}
duration: 5s
devices:
  - name: phones
    count: 10
    topics: [ "h2-{mode}-{{{{user}}}}", "h2-{mode}-all" ]
    connect: {{ url: "http://{h2}/sub/{{{{topics}}}}", http: {{ mode: {mode}, version: "2" }} }}
    push: {{ id: {{ json: /id }} }}
    churn: {{ per_second: 1.0 }}
    reconnect: {{ backoff: {{ initial: 200ms, max: 400ms }} }}
senders:
  - name: unicast
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 30, over: 100ms }}, {{ hold: 3s }} ] }}
    steps:
      - post: '{{{{base_url}}}}/pub/h2-{mode}-{{{{random_device "phones"}}}}'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "phones"}}}}', within: 2s }}
  - name: all
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 4, over: 100ms }}, {{ hold: 3s }} ] }}
    steps:
      - post: "{{{{base_url}}}}/pub/h2-{mode}-all"
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ topic: h2-{mode}-all, within: 2s }}
"#,
            base = gw.url(),
        );
        let (out, run) = d.run(&scenario);
        passed(&out);
        let run = run.unwrap();
        let m = &run["metrics"];
        assert!(
            count(&run, "connections_closed{journey=phones,reason=churn}") >= 10,
            "{mode}: {m}"
        );
        assert!(count(&run, "connections_opened") >= 20, "{mode}: {m}");
        assert_eq!(count(&run, "connections_failed"), 0, "{mode}: {m}");
        let expected = count(&run, "delivery_expected");
        assert!(
            count(&run, "delivery_received{journey=all}") >= 10 * 8,
            "{mode}: {m}"
        );
        assert!(
            count(&run, "delivery_received{journey=unicast}") >= 50,
            "{mode}: {m}"
        );
        assert_eq!(count(&run, "delivery_received"), expected, "{mode}: {m}");
        assert_eq!(count(&run, "delivery_lost"), 0, "{mode}: {m}");
        assert_eq!(count(&run, "delivery_duplicates"), 0, "{mode}: {m}");
    }
}

/// SSE over HTTP/2 on TLS (ALPN `h2`, nginx's `listen … ssl http2`) receives every push on
/// both channels of a connection; a TLS listener without HTTP/2 refuses ALPN `h2` (nginx ends
/// the handshake with `no_application_protocol`), and each device that asks it for HTTP/2
/// fails as `no_h2` while the others go on.
#[test]
fn sse_over_http2_on_tls_and_a_server_without_h2_counted_as_no_h2() {
    let ca = testbed::pki::CertificateAuthority::new("nchan test CA").unwrap();
    let cert = ca.issue_server(&["localhost"]).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (crt, key) = (files.path().join("cert.pem"), files.path().join("key.pem"));
    std::fs::write(&crt, &cert.cert_pem).unwrap();
    std::fs::write(&key, &cert.key_pem).unwrap();
    let (h2s, h1s) = (testkit::net::private_addr(), testkit::net::private_addr());
    let tls = format!(
        "ssl_certificate {}; ssl_certificate_key {};",
        crt.display(),
        key.display()
    );
    let subscriber = r#"
    location ~ ^/sub/(.+)$ {
      nchan_subscriber;
      nchan_channel_id_split_delimiter ",";
      nchan_channel_id "$1";
    }"#;
    let gw = Nginx::start(
        &format!(
            r#"
  server {{
    listen {{listen}};
    location ~ ^/pub/(.+)$ {{
      nchan_publisher;
      nchan_channel_id "$1";
    }}
  }}
  server {{
    listen {h2s} ssl http2;
    {tls}{subscriber}
  }}
  server {{
    listen {h1s} ssl;
    {tls}{subscriber}
  }}
"#
        ),
        &[NCHAN],
    );
    let d = Dir::new();
    let scenario = format!(
        r#"version: 1
name: h2-tls
target: {{ base_url: "{base}", insecure: true }}
duration: 4s
devices:
  - name: phones
    count: 5
    topics: [ "t-{{{{user}}}}", t-all ]
    connect: {{ url: "https://{h2s}/sub/{{{{topics}}}}", http: {{ mode: sse, version: "2" }} }}
    push: {{ id: {{ json: /id }} }}
  - name: old
    count: 3
    connect: {{ url: "https://{h1s}/sub/o-{{{{user}}}}", http: {{ mode: sse, version: "2" }} }}
senders:
  - name: unicast
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 20, over: 100ms }}, {{ hold: 2s }} ] }}
    steps:
      - post: '{{{{base_url}}}}/pub/t-{{{{random_device "phones"}}}}'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "phones"}}}}', within: 1s }}
  - name: all
    rate: {{ stages: [ {{ hold: 1s }}, {{ to: 4, over: 100ms }}, {{ hold: 2s }} ] }}
    steps:
      - post: "{{{{base_url}}}}/pub/t-all"
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ topic: t-all, within: 1s }}
"#,
        base = gw.url(),
    );
    let (out, run) = d.run(&scenario);
    passed(&out);
    let run = run.unwrap();
    let m = &run["metrics"];
    assert_eq!(
        count(&run, "connections_failed{cause=no_h2,journey=old}"),
        3,
        "{m}"
    );
    assert_eq!(count(&run, "connections_failed{journey=phones}"), 0, "{m}");
    assert!(
        count(&run, "delivery_received{journey=all}") >= 5 * 5,
        "{m}"
    );
    assert!(
        count(&run, "delivery_received{journey=unicast}") >= 20,
        "{m}"
    );
    assert_eq!(
        count(&run, "delivery_received"),
        count(&run, "delivery_expected"),
        "{m}"
    );
    assert_eq!(count(&run, "delivery_duplicates"), 0, "{m}");
}

/// An SSE URL that answers 200 but not `text/event-stream`, and one that answers 404, are
/// counted by cause; the good devices beside them go on receiving.
#[test]
fn answers_that_are_not_event_streams_are_counted_by_cause() {
    let gw = nchan();
    let d = Dir::new();
    let scenario = format!(
        r#"version: 1
name: bad-streams
target: {{ base_url: "{base}" }}
duration: 3s
devices:
  - name: good
    count: 5
    topics: [ "g-{{{{user}}}}" ]
    connect: {{ url: "{{{{base_url}}}}/sub/{{{{topics}}}}", http: {{ mode: sse }} }}
    push: {{ id: {{ json: /id }} }}
  - name: plain
    count: 3
    connect: {{ url: "{{{{base_url}}}}/plain/x", http: {{ mode: sse }} }}
  - name: missing
    count: 2
    connect: {{ url: "{{{{base_url}}}}/nothing", http: {{ mode: long-poll }} }}
senders:
  - name: unicast
    rate: {{ per_second: 20 }}
    steps:
      - post: '{{{{base_url}}}}/pub/g-{{{{random_device "good"}}}}'
        json: {{ id: "{{{{msg_id}}}}" }}
        track: {{ unicast: '{{{{random_device "good"}}}}', within: 2s }}
"#,
        base = gw.url(),
    );
    let (out, run) = d.run(&scenario);
    passed(&out);
    let run = run.unwrap();
    let m = &run["metrics"];
    assert_eq!(
        count(
            &run,
            "connections_failed{cause=not_event_stream,journey=plain}"
        ),
        3,
        "{m}"
    );
    assert_eq!(
        count(&run, "connections_failed{cause=status_404,journey=missing}"),
        2,
        "{m}"
    );
    assert_eq!(count(&run, "connections_failed{journey=good}"), 0, "{m}");
    assert!(count(&run, "delivery_received") >= 30, "{m}");
    assert_eq!(
        count(&run, "delivery_received"),
        count(&run, "delivery_expected"),
        "{m}"
    );
}

/// The README's WebSocket scenario: subscribe messages, one per topic, after the hello, on the
/// reference gateway; a topic broadcast reaches exactly the devices that subscribed.
#[test]
fn the_readme_websocket_subscribe_scenario_runs() {
    let d = Dir::new();
    let text = readme_example("websocket")
        .replace("count: 100", "count: 20")
        .replace("duration: 10s", "duration: 4s");
    let (out, run) = d.run(&text);
    passed(&out);
    let run = run.unwrap();
    let m = &run["metrics"];
    let received = count(&run, "delivery_received{journey=sports}");
    assert!(received >= 20 * 4, "{m}");
    assert_eq!(count(&run, "delivery_expected"), received, "{m}");
    assert_eq!(count(&run, "delivery_unexpected"), 0, "{m}");
    assert_eq!(count(&run, "connections_failed"), 0, "{m}");
}
