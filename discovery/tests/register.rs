//! Registration against a real ZooKeeper (Debian's package, started by the test kit), read back
//! with kazoo: Curator's JSON, protected creation across a lost answer, re-registration after a
//! session expiry, update and drain.

mod support;

use std::time::Duration;

use discovery::{
    Registration, ServiceInstance, ServicePath, ServiceType, ServiceWatch, UriSpec, WatchOptions,
};
use support::{children, config, LossyProxy};
use testkit::servers::ZooKeeper;

fn relay_instance() -> ServiceInstance {
    let mut i = ServiceInstance::new("ignored", "127.0.0.1")
        .with_region("us-west-1")
        .with_weight(3)
        .with_endpoint("relay", "https://127.0.0.1:8443")
        .with_endpoint("proxy", "https://127.0.0.1:8080");
    i.ssl_port = Some(8443);
    i.uri_spec = Some(UriSpec::parse("{scheme}://{address}:{ssl-port}").unwrap());
    i
}

/// `_c_` + a canonical UUID + `-` + the instance id (Curator's protected name).
fn is_protected_name(node: &str, id: &str) -> bool {
    let Some(rest) = node.strip_prefix("_c_") else {
        return false;
    };
    rest.len() == 36 + 1 + id.len()
        && uuid::Uuid::try_parse(&rest[..36]).is_ok()
        && &rest[36..37] == "-"
        && &rest[37..] == id
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_is_curators_json_read_back_with_kazoo() {
    support::logs();
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let path = ServicePath::new("/services", "apns-relay").unwrap();
    let instance = relay_instance();
    let reg = Registration::start(
        &config(&hosts, Duration::from_secs(4)),
        &path,
        instance.clone(),
    )
    .await
    .unwrap();
    let at = reg.registered().unwrap();

    let nodes = children(&hosts, "/services/apns-relay").unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let node = &nodes[0];
    assert!(is_protected_name(&node.name, &instance.id), "{}", node.name);
    assert_eq!(at.path, format!("/services/apns-relay/{}", node.name));
    assert_eq!(
        node.ephemeral_owner, at.session,
        "ephemeral, owned by our session"
    );
    // Jackson's order: ServiceInstance's fields as declared (enabled last, CURATOR-275).
    assert_eq!(
        node.keys.as_deref().unwrap(),
        [
            "name",
            "id",
            "address",
            "port",
            "sslPort",
            "payload",
            "registrationTimeUTC",
            "serviceType",
            "uriSpec",
            "enabled"
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&node.data).unwrap();
    assert_eq!(json["name"], "apns-relay");
    assert_eq!(json["id"], instance.id.as_str());
    assert_eq!(json["address"], "127.0.0.1");
    assert_eq!(
        json["port"],
        serde_json::Value::Null,
        "nulls written, as Jackson does"
    );
    assert_eq!(json["sslPort"], 8443);
    assert_eq!(json["serviceType"], "DYNAMIC");
    assert_eq!(json["enabled"], true);
    assert!(json["registrationTimeUTC"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(
        json["payload"],
        serde_json::json!({
            "@class": "java.util.LinkedHashMap",
            "region": "us-west-1",
            "weight": 3,
            "endpoints": {"relay": "https://127.0.0.1:8443", "proxy": "https://127.0.0.1:8080"}
        })
    );
    assert_eq!(
        json["uriSpec"],
        serde_json::json!({"parts": [
            {"value": "scheme", "variable": true},
            {"value": "://", "variable": false},
            {"value": "address", "variable": true},
            {"value": ":", "variable": false},
            {"value": "ssl-port", "variable": true}
        ]})
    );

    reg.drain().await.unwrap();
    assert_eq!(children(&hosts, "/services/apns-relay").unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_answer_leaves_exactly_one_node() {
    support::logs();
    let zk = ZooKeeper::start();
    let proxy = LossyProxy::start(zk.addr()).await;
    let through = config(&proxy.addr().to_string(), Duration::from_secs(4));
    let hosts = zk.connect_string();
    for (service, kind) in [
        ("dynamic", ServiceType::Dynamic),
        ("sequential", ServiceType::DynamicSequential),
    ] {
        let path = ServicePath::new("/services", service).unwrap();
        let mut instance = relay_instance();
        instance.service_type = kind;
        proxy.arm(b"_c_");
        let before = proxy.dropped();
        let reg = Registration::start(&through, &path, instance.clone())
            .await
            .unwrap();
        assert_eq!(
            proxy.dropped(),
            before + 1,
            "{service}: the create's answer was lost"
        );
        let nodes = children(&hosts, &path.path()).unwrap();
        assert_eq!(nodes.len(), 1, "{service}: {nodes:?}");
        let at = reg.registered().unwrap();
        assert_eq!(at.path, format!("{}/{}", path.path(), nodes[0].name));
        assert_eq!(nodes[0].ephemeral_owner, at.session);
        if kind == ServiceType::DynamicSequential {
            // The name, then ZooKeeper's 10-digit sequence.
            let (name, sequence) = nodes[0].name.split_at(nodes[0].name.len() - 10);
            assert!(is_protected_name(name, &instance.id), "{}", nodes[0].name);
            assert!(sequence.bytes().all(|b| b.is_ascii_digit()), "{sequence}");
        } else {
            assert!(is_protected_name(&nodes[0].name, &instance.id));
        }
    }
}

/// The control for the test above: the same lost answer makes a plain sequential create,
/// retried, leave two nodes (so the proxy really loses answers to creates that succeeded).
#[tokio::test(flavor = "multi_thread")]
async fn without_protection_the_lost_answer_duplicates() {
    use zookeeper_client::{Acls, Client, CreateMode, Error};
    let zk = ZooKeeper::start();
    let proxy = LossyProxy::start(zk.addr()).await;
    let client = Client::connect(&proxy.addr().to_string()).await.unwrap();
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    client.create("/ctl", b"", &persistent).await.unwrap();
    proxy.arm(b"/ctl/n-");
    let seq = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client.create("/ctl/n-", b"", &seq).await {
            Err(Error::ConnectionLoss) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(attempts >= 2);
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(children(&zk.connect_string(), "/ctl").unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_expiry_registers_again() {
    support::logs();
    let mut zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let cfg = config(&hosts, Duration::from_secs(1));
    let path = ServicePath::new("/services", "apns-relay").unwrap();
    let instance = relay_instance();
    let reg = Registration::start(&cfg, &path, instance.clone())
        .await
        .unwrap();
    let watch = ServiceWatch::start(&cfg, &path, WatchOptions::default())
        .await
        .unwrap();
    let first = reg.registered().unwrap();
    let mut changes = reg.subscribe();

    // Down past the session timeout: the client expires the session itself (7/5 of it).
    zk.stop();
    tokio::time::timeout(Duration::from_secs(15), changes.wait_for(Option::is_none))
        .await
        .expect("the registration saw its session end")
        .unwrap();
    zk.start_again();
    let again = tokio::time::timeout(
        Duration::from_secs(20),
        changes.wait_for(|r| r.as_ref().is_some_and(|r| r.session != first.session)),
    )
    .await
    .expect("registered again in a new session")
    .unwrap()
    .clone()
    .unwrap();
    assert_ne!(again.path, first.path, "a new protected name");

    // The old session's node (ZooKeeper restores sessions on restart) is deleted: one node.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let nodes = loop {
        let nodes = children(&hosts, &path.path()).unwrap();
        if nodes.len() == 1 || std::time::Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(format!("{}/{}", path.path(), nodes[0].name), again.path);
    assert_eq!(nodes[0].ephemeral_owner, again.session);

    // The watch's session expired too; it follows the new node.
    let view = watch
        .wait_until(Duration::from_secs(20), |v| {
            v.stale.is_none()
                && v.members.len() == 1
                && format!("{}/{}", path.path(), v.members[0].node()) == again.path
        })
        .await
        .unwrap_or_else(|v| panic!("the watch did not follow: {v:?}"));
    assert_eq!(view.members[0].instance().id, instance.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_disable_and_drain_reach_watchers() {
    support::logs();
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let cfg = config(&hosts, Duration::from_secs(4));
    let path = ServicePath::new("/pushbench", "relays").unwrap();
    let watch = ServiceWatch::start(&cfg, &path, WatchOptions::default())
        .await
        .unwrap();
    let reg = Registration::start(&cfg, &path, relay_instance())
        .await
        .unwrap();
    watch
        .wait_until(Duration::from_secs(10), |v| v.members.len() == 1)
        .await
        .unwrap();
    assert_eq!(watch.pick().unwrap().instance().weight(), 3);

    reg.update(reg.instance().with_weight(7)).await.unwrap();
    watch
        .wait_until(Duration::from_secs(10), |v| {
            v.instances().next().is_some_and(|i| i.weight() == 7)
        })
        .await
        .unwrap();
    let nodes = children(&hosts, "/pushbench/relays").unwrap();
    let json: serde_json::Value = serde_json::from_str(&nodes[0].data).unwrap();
    assert_eq!(json["payload"]["weight"], 7, "kazoo reads the update");

    reg.set_enabled(false).await.unwrap();
    watch
        .wait_until(Duration::from_secs(10), |v| {
            v.instances().next().is_some_and(|i| !i.enabled)
        })
        .await
        .unwrap();
    assert_eq!(
        watch.pick().unwrap_err().to_string(),
        "no instance of `/pushbench/relays` to use: all 1 instances are disabled or have weight 0"
    );
    let other = relay_instance();
    assert_eq!(
        reg.update(other.clone()).await.unwrap_err().to_string(),
        format!(
            "update: the instance id must stay `{}`, got `{}`",
            reg.instance().id,
            other.id
        )
    );

    reg.drain().await.unwrap();
    let view = watch
        .wait_until(Duration::from_secs(10), |v| v.members.is_empty())
        .await
        .unwrap();
    assert!(view.malformed.is_empty());
    assert_eq!(
        watch.pick().unwrap_err().to_string(),
        "no instance of `/pushbench/relays` to use: the path has no children"
    );
    assert_eq!(children(&hosts, "/pushbench/relays").unwrap().len(), 0);
}
