//! The live instance list against a real ZooKeeper: node churn (registrations and an outside
//! client, kazoo, coming and going), balancing and fail-over over real sockets, and the bad
//! inputs: an unreachable ensemble, a path with no instances, malformed nodes.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use discovery::{
    Balance, Registration, ServiceInstance, ServicePath, ServiceWatch, WatchOptions, ZkConfig,
};
use support::{config, kazoo};
use testkit::servers::ZooKeeper;

const WAIT: Duration = Duration::from_secs(10);

fn ids(view: &discovery::Instances) -> Vec<String> {
    let mut ids: Vec<String> = view.instances().map(|i| i.id.clone()).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn the_watch_follows_node_churn() {
    support::logs();
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let cfg = config(&hosts, Duration::from_secs(4));
    let path = ServicePath::new("/services", "relays").unwrap();
    let watch = ServiceWatch::start(&cfg, &path, WatchOptions::default())
        .await
        .unwrap();
    assert!(!watch.instances().path_exists);
    assert_eq!(
        watch.pick().unwrap_err().to_string(),
        "no instance of `/services/relays` to use: the path does not exist"
    );

    let mut regs = Vec::new();
    for n in 0..3 {
        let i = ServiceInstance::new("relays", &format!("127.0.0.{}", n + 1));
        regs.push(Registration::start(&cfg, &path, i).await.unwrap());
    }
    let all: Vec<String> = regs.iter().map(|r| r.instance().id).collect();
    let view = watch
        .wait_until(WAIT, |v| v.members.len() == 3)
        .await
        .unwrap_or_else(|v| panic!("{v:?}"));
    assert!(view.path_exists && view.stale.is_none());
    assert_eq!(ids(&view), sorted(all.clone()));
    let once = discovery::read_once(&cfg, &path).await.unwrap();
    assert_eq!(ids(&once), sorted(all.clone()));

    // One drains, one dies (its session closes), one new comes.
    regs.remove(0).drain().await.unwrap();
    drop(regs.remove(0));
    let view = watch
        .wait_until(WAIT, |v| v.members.len() == 1)
        .await
        .unwrap_or_else(|v| panic!("{v:?}"));
    assert_eq!(ids(&view), [all[2].clone()]);
    let late = Registration::start(&cfg, &path, ServiceInstance::new("relays", "127.0.0.9"))
        .await
        .unwrap();
    let view = watch
        .wait_until(WAIT, |v| v.members.len() == 2)
        .await
        .unwrap_or_else(|v| panic!("{v:?}"));
    assert_eq!(ids(&view), sorted(vec![all[2].clone(), late.instance().id]));

    // An outside client rewrites one node's data: the data watch follows.
    let node = late.registered().unwrap().path;
    let data = String::from_utf8(late.instance().with_weight(9).to_json()).unwrap();
    let _: String = kazoo(&hosts, &["set", &node, &data]);
    watch
        .wait_until(WAIT, |v| v.instances().any(|i| i.weight() == 9))
        .await
        .unwrap_or_else(|v| panic!("{v:?}"));
    // And a Java-style instance written by that client joins the list.
    let foreign = r#"{"name":"relays","id":"java-1","address":"10.1.1.1","port":8080,"sslPort":null,"payload":{"@class":"com.example.RelayDetails","region":"eu"},"registrationTimeUTC":1733400000000,"serviceType":"STATIC","uriSpec":{"parts":[{"value":"scheme","variable":true},{"value":"://","variable":false},{"value":"address","variable":true},{"value":":","variable":false},{"value":"port","variable":true}]}}"#;
    let _: String = kazoo(&hosts, &["create", "/services/relays/java-1", foreign]);
    let view = watch
        .wait_until(WAIT, |v| v.members.len() == 3)
        .await
        .unwrap_or_else(|v| panic!("{v:?}"));
    let java = view.instances().find(|i| i.id == "java-1").unwrap();
    assert_eq!(java.uri(), "http://10.1.1.1:8080");
    assert_eq!(java.region(), Some("eu"));
    assert!(java.enabled, "no `enabled` (older Curator): enabled");
}

/// Listeners for instances that answer, and the address of one that does not.
async fn listeners(n: usize) -> Vec<tokio::net::TcpListener> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn balancing_and_fail_over_over_real_sockets() {
    support::logs();
    let zk = ZooKeeper::start();
    let cfg = config(&zk.connect_string(), Duration::from_secs(4));
    let path = ServicePath::new("/services", "relays").unwrap();
    let live = listeners(2).await;
    // A port that refuses: bound, then closed.
    let dead_port = listeners(1).await[0].local_addr().unwrap().port();
    let mut regs = Vec::new();
    for (port, weight) in [
        (live[0].local_addr().unwrap().port(), 1),
        (live[1].local_addr().unwrap().port(), 2),
        (dead_port, 1),
    ] {
        let mut i = ServiceInstance::new("relays", "127.0.0.1").with_weight(weight);
        i.port = Some(port);
        regs.push(Registration::start(&cfg, &path, i).await.unwrap());
    }
    let options = WatchOptions {
        balance: Balance::RoundRobin,
        down_for: Duration::from_secs(30),
    };
    let watch = ServiceWatch::start(&cfg, &path, options).await.unwrap();
    watch
        .wait_until(WAIT, |v| v.members.len() == 3)
        .await
        .unwrap();

    // Round robin by weight: 1 : 2 : 1 over 40 picks.
    let mut by_port: HashMap<u16, usize> = HashMap::new();
    for _ in 0..40 {
        *by_port
            .entry(watch.pick().unwrap().instance().port.unwrap())
            .or_default() += 1;
    }
    let live_ports: Vec<u16> = live
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    assert_eq!(by_port[&live_ports[0]], 10);
    assert_eq!(by_port[&live_ports[1]], 20);
    assert_eq!(by_port[&dead_port], 10);

    // Fail-over: 30 pieces of work, each connects to what it is given and moves on when the
    // connection is refused. The dead instance is tried once, then passed over.
    let mut refused = 0;
    let mut served: HashMap<u16, usize> = HashMap::new();
    for _ in 0..30 {
        let mut tries = watch.failover();
        loop {
            let lease = tries.next_lease().unwrap();
            let uri = lease.instance().uri();
            let addr = uri.trim_start_matches("http://").to_string();
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(_) => {
                    *served.entry(lease.instance().port.unwrap()).or_default() += 1;
                    lease.done();
                    break;
                }
                Err(_) => {
                    refused += 1;
                    lease.connect_failed();
                }
            }
        }
    }
    assert_eq!(refused, 1, "the dead instance is benched after one refusal");
    assert_eq!(served.values().sum::<usize>(), 30);
    assert!(!served.contains_key(&dead_port));
    assert!(watch.instances().members.iter().any(|m| m.is_down()));

    // When every instance fails, the failover says so.
    let mut tries = watch.failover();
    let mut n = 0;
    let err = loop {
        match tries.next_lease() {
            Ok(l) => {
                n += 1;
                l.connect_failed();
            }
            Err(e) => break e,
        }
    };
    assert_eq!(n, 3);
    assert_eq!(
        err.to_string(),
        "no instance of `/services/relays` to use: all 3 instances that take work failed to connect"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn least_in_flight_goes_to_the_idle_instance() {
    let zk = ZooKeeper::start();
    let cfg = config(&zk.connect_string(), Duration::from_secs(4));
    let path = ServicePath::new("/services", "relays").unwrap();
    let a = Registration::start(&cfg, &path, ServiceInstance::new("relays", "10.0.0.1"))
        .await
        .unwrap();
    let _b = Registration::start(&cfg, &path, ServiceInstance::new("relays", "10.0.0.2"))
        .await
        .unwrap();
    let options = WatchOptions {
        balance: Balance::LeastInFlight,
        ..WatchOptions::default()
    };
    let watch = ServiceWatch::start(&cfg, &path, options).await.unwrap();
    watch
        .wait_until(WAIT, |v| v.members.len() == 2)
        .await
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| watch.pick().unwrap()).collect();
    let on_a = held
        .iter()
        .filter(|l| l.instance().id == a.instance().id)
        .count();
    assert_eq!(on_a, 2, "spread evenly while all are held");
    // Release the two on `a`: the next two picks go to `a`.
    let (on_a, on_b): (Vec<_>, Vec<_>) = held
        .into_iter()
        .partition(|l| l.instance().id == a.instance().id);
    drop(on_a);
    let again: Vec<_> = (0..2).map(|_| watch.pick().unwrap()).collect();
    assert!(again.iter().all(|l| l.instance().id == a.instance().id));
    assert_eq!(on_b.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_ensemble_is_one_line_within_the_bound() {
    // Nobody listens on a private address's port (127.x.y.z, bound then released).
    let addr = testkit::net::private_addr();
    let cfg = ZkConfig {
        ensemble: addr.to_string(),
        session_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
    };
    let path = ServicePath::new("/services", "relays").unwrap();
    let t = Instant::now();
    let err = ServiceWatch::start(&cfg, &path, WatchOptions::default())
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let want = format!(
        "cannot reach the ZooKeeper ensemble `{addr}` within 1s: no server accepted a session"
    );
    assert_eq!(err.to_string(), want);
    let t = Instant::now();
    let err = Registration::start(&cfg, &path, ServiceInstance::new("relays", "h"))
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(err.to_string(), want);

    let bad = ZkConfig::new("");
    assert_eq!(
        ServiceWatch::start(&bad, &path, WatchOptions::default())
            .await
            .unwrap_err()
            .to_string(),
        "ensemble: expected `host:port[,host:port…][/chroot]`, got ``"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_nodes_and_empty_paths_are_named() {
    support::logs();
    let zk = ZooKeeper::start();
    let hosts = zk.connect_string();
    let cfg = config(&hosts, Duration::from_secs(4));
    let _: String = kazoo(&hosts, &["mkdir", "/services/empty"]);
    let empty = ServicePath::new("/services", "empty").unwrap();
    let watch = ServiceWatch::start(&cfg, &empty, WatchOptions::default())
        .await
        .unwrap();
    assert!(watch.instances().path_exists);
    assert_eq!(
        watch.pick().unwrap_err().to_string(),
        "no instance of `/services/empty` to use: the path has no children"
    );

    let _: String = kazoo(&hosts, &["create", "/services/bad/a-hello", "hello"]);
    let _: String = kazoo(
        &hosts,
        &["create", "/services/bad/b-noaddr", r#"{"id":"x"}"#],
    );
    let bad = ServicePath::new("/services", "bad").unwrap();
    let watch = ServiceWatch::start(&cfg, &bad, WatchOptions::default())
        .await
        .unwrap();
    let view = watch.instances();
    assert_eq!(
        view.malformed,
        [
            (
                "a-hello".to_string(),
                "not JSON: expected value at line 1 column 1".to_string()
            ),
            (
                "b-noaddr".to_string(),
                "`address` is missing or empty".to_string()
            )
        ]
    );
    assert_eq!(
        watch.pick().unwrap_err().to_string(),
        "no instance of `/services/bad` to use: all 2 nodes are malformed (first: a-hello: not JSON: expected value at line 1 column 1)"
    );
    // A good instance next to them is used; the bad ones stay skipped.
    let good = Registration::start(&cfg, &bad, ServiceInstance::new("bad", "127.0.0.1"))
        .await
        .unwrap();
    watch
        .wait_until(WAIT, |v| v.members.len() == 1 && v.malformed.len() == 2)
        .await
        .unwrap_or_else(|v| panic!("{v:?}"));
    assert_eq!(watch.pick().unwrap().instance().id, good.instance().id);
}
