//! Apache Curator itself (Debian's libcurator-discovery-java, the Java senders' library) on
//! the other side: it reads what [`Registration`] writes, and [`ServiceWatch`] reads what
//! Curator's `registerService` writes.

mod support;

use std::process::Command;
use std::time::Duration;

use discovery::{Registration, ServiceInstance, ServicePath, ServiceWatch, UriSpec, WatchOptions};
use support::config;
use testkit::servers::ZooKeeper;
use testkit::Spawned;

/// `java CuratorCheck.java HOSTS BASE SERVICE ARGS…` (the JDK's source launcher, Curator's jar
/// and the dependencies its manifest names, plus the recipes jar its ServiceProvider needs and
/// the manifest leaves out).
fn curator(hosts: &str, args: &[&str]) -> Command {
    testkit::process::require("java");
    let jars = [
        "/usr/share/java/curator-x-discovery.jar",
        "/usr/share/java/curator-recipes.jar",
    ];
    for jar in jars {
        assert!(
            std::path::Path::new(jar).is_file(),
            "{jar} is missing: scripts/test.sh installs libcurator-discovery-java and libcurator-recipes-java"
        );
    }
    let mut cmd = Command::new("java");
    cmd.args([
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        &jars.join(":"),
    ])
    .arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/CuratorCheck.java"
    ))
    .arg(hosts)
    .args(args);
    cmd
}

#[tokio::test(flavor = "multi_thread")]
async fn curator_reads_our_registration() {
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let path = ServicePath::new("/services", "apns-relay").unwrap();
    let mut instance = ServiceInstance::new("apns-relay", "127.0.0.1")
        .with_region("us-west-1")
        .with_weight(3)
        .with_endpoint("relay", "https://127.0.0.1:8443");
    instance.ssl_port = Some(8443);
    instance.uri_spec = Some(UriSpec::parse("{scheme}://{address}:{ssl-port}").unwrap());
    let reg = Registration::start(&config(&hosts, Duration::from_secs(4)), &path, instance)
        .await
        .unwrap();
    let id = reg.instance().id;

    let mut java = Spawned::start(curator(&hosts, &["/services", "apns-relay", "list"]));
    java.wait_for(Duration::from_secs(60), |l| (l == "done").then_some(()));
    let lines = java.lines().to_vec();
    assert_eq!(
        lines,
        [
            format!(
                "instance id={id} name=apns-relay address=127.0.0.1 port=null sslPort=8443 enabled=true \
                 type=DYNAMIC uri=https://127.0.0.1:8443 region=us-west-1 weight=3 \
                 relay=https://127.0.0.1:8443 payloadClass=java.util.LinkedHashMap"
            ),
            format!("provider id={id}"),
            "done".to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn we_read_curators_registration() {
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let mut java = Spawned::start(curator(
        &hosts,
        &["/services", "apns-relay", "register", "java-relay-1"],
    ));
    java.wait_for(Duration::from_secs(60), |l| {
        (l == "registered java-relay-1").then_some(())
    });
    let path = ServicePath::new("/services", "apns-relay").unwrap();
    let watch = ServiceWatch::start(
        &config(&hosts, Duration::from_secs(4)),
        &path,
        WatchOptions::default(),
    )
    .await
    .unwrap();
    let view = watch.instances();
    assert!(view.malformed.is_empty(), "{:?}", view.malformed);
    let i = view.instances().next().expect("Curator's instance");
    assert_eq!(i.id, "java-relay-1");
    assert_eq!(i.name, "apns-relay");
    assert_eq!(i.uri(), "https://127.0.0.2:9443");
    assert_eq!(i.weight(), 2);
    assert_eq!(i.region(), Some("eu-central-1"));
    assert_eq!(i.endpoint("relay"), Some("https://127.0.0.2:9443"));
    assert!(i.enabled);
    assert_eq!(
        view.members[0].node(),
        "java-relay-1",
        "Curator's unprotected node name"
    );
    assert_eq!(watch.pick().unwrap().instance().id, "java-relay-1");
}
