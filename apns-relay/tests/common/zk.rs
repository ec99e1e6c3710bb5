//! Nodes written by a plain ZooKeeper client (not the discovery crate): what another party, or a
//! broken one, leaves under a service's path.

use std::time::Duration;

use zookeeper_client::{Acls, Client, CreateMode};

/// Creates the persistent node `path` holding `data`, with its parents.
pub async fn create(hosts: &str, path: &str, data: &[u8]) {
    let client = tokio::time::timeout(Duration::from_secs(10), Client::connect(hosts))
        .await
        .expect("ZooKeeper answers within 10 s")
        .unwrap_or_else(|e| panic!("connect {hosts}: {e}"));
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    if let Some((parent, _)) = path.rsplit_once('/') {
        if !parent.is_empty() {
            client
                .mkdir(parent, &persistent)
                .await
                .unwrap_or_else(|e| panic!("mkdir {parent}: {e}"));
        }
    }
    client
        .create(path, data, &persistent)
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
}
