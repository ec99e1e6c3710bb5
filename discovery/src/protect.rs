//! Curator's protected creation (`create().withProtection()`), so that a connection lost while
//! a create is in flight leaves neither a duplicate nor an orphan node. Matched to Curator 5's
//! `CreateBuilderImpl`, `ProtectedMode` and `ProtectedUtils`:
//!
//! 1. One protected id (a random UUID) per create; the node's name becomes
//!    `_c_<uuid>-<name>` (a sequential node gets its counter after that).
//! 2. The first attempt creates. Every retry after a `ConnectionLoss` first lists the parent's
//!    children and takes a child starting with `_c_<uuid>-` as the node the lost attempt made,
//!    provided it belongs to this session (an ephemeral node of another session is stale: it is
//!    deleted, and the create goes ahead).
//! 3. A missing parent is made (container nodes) and the create repeated.
//! 4. If the create finally fails, a node it may still have made is searched for and deleted in
//!    the background (Curator's `FindAndDeleteProtectedNodeInBackground`), so no orphan lives on
//!    in this session.

use std::time::{Duration, Instant};

use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

use crate::session::{make_parents, retry_lost};

/// Curator's prefix of protected node names.
pub const PROTECTED_PREFIX: &str = "_c_";

/// `_c_<uuid>-` for a protected id.
pub fn protected_prefix(protected_id: &uuid::Uuid) -> String {
    format!("{PROTECTED_PREFIX}{}-", protected_id.hyphenated())
}

/// The name without Curator's protected prefix (Curator's `ProtectedUtils.normalize`): a name
/// that starts with `_c_`, a canonical UUID and `-`.
pub fn unprotected(node: &str) -> &str {
    let len = PROTECTED_PREFIX.len() + 36 + 1;
    match (
        node.get(PROTECTED_PREFIX.len()..len - 1),
        node.get(len - 1..len),
    ) {
        (Some(id), Some("-"))
            if node.len() > len
                && node.starts_with(PROTECTED_PREFIX)
                && uuid::Uuid::try_parse(id).is_ok() =>
        {
            &node[len..]
        }
        _ => node,
    }
}

/// Creates `{parent}/_c_<uuid>-{name}` with `data` in `mode` (the protected way, see the
/// module doc), retrying across lost connections until `deadline`. Returns the node's path.
pub async fn create_protected(
    client: &Client,
    parent: &str,
    name: &str,
    data: &[u8],
    mode: CreateMode,
    deadline: Instant,
) -> Result<String, ZkError> {
    let prefix = protected_prefix(&uuid::Uuid::new_v4());
    let path = format!("{parent}/{prefix}{name}");
    let sequential = matches!(
        mode,
        CreateMode::EphemeralSequential | CreateMode::PersistentSequential
    );
    let options = mode.with_acls(Acls::anyone_all());
    let mut first = true;
    let mut pause = Duration::from_millis(20);
    let result = loop {
        if !first {
            match find_own(client, parent, &prefix, deadline).await {
                Ok(Some(found)) => break Ok(found),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        }
        first = false;
        match client.create(&path, data, &options).await {
            Ok((_, sequence)) if sequential => break Ok(format!("{path}{sequence}")),
            Ok(_) => break Ok(path.clone()),
            Err(ZkError::NoNode) => {
                if let Err(e) = make_parents(client, parent).await {
                    if e != ZkError::ConnectionLoss {
                        break Err(e);
                    }
                }
                // The create failed for certain: no search needed before the next one.
                first = true;
            }
            Err(ZkError::ConnectionLoss) if Instant::now() + pause < deadline => {
                tracing::debug!(%path, "connection lost during a protected create; looking for the node");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(e) => break Err(e),
        }
    };
    if result.is_err() {
        delete_in_background(client.clone(), parent.to_string(), prefix);
    }
    result
}

/// Curator's `findProtectedNodeInForeground` + `validateFoundNode`: the child with our prefix,
/// if it is ours. `ConnectionLoss` is retried here until `deadline`.
async fn find_own(
    client: &Client,
    parent: &str,
    prefix: &str,
    deadline: Instant,
) -> Result<Option<String>, ZkError> {
    let children = match retry_lost(deadline, || client.list_children(parent)).await {
        Ok(c) => c,
        Err(ZkError::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(child) = children.into_iter().find(|c| c.starts_with(prefix)) else {
        return Ok(None);
    };
    let found = format!("{parent}/{child}");
    match client.check_stat(&found).await? {
        Some(stat)
            if stat.ephemeral_owner == 0 || stat.ephemeral_owner == client.session_id().0 =>
        {
            Ok(Some(found))
        }
        Some(_) => {
            tracing::info!(node = %found, "a protected node of an older session: deleting it");
            match client.delete(&found, None).await {
                Ok(()) | Err(ZkError::NoNode) => Ok(None),
                Err(e) => Err(e),
            }
        }
        None => Ok(None),
    }
}

/// Curator's `FindAndDeleteProtectedNodeInBackground`: deletes what a failed protected create
/// may have made, retrying while the session lives.
fn delete_in_background(client: Client, parent: String, prefix: String) {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(50);
        loop {
            let done = match client.list_children(&parent).await {
                Ok(children) => {
                    let mut ok = true;
                    for c in children.iter().filter(|c| c.starts_with(&prefix)) {
                        match client.delete(&format!("{parent}/{c}"), None).await {
                            Ok(()) | Err(ZkError::NoNode) => {
                                tracing::info!(node = %c, parent = %parent, "deleted the node of a failed protected create");
                            }
                            Err(_) => ok = false,
                        }
                    }
                    ok
                }
                Err(ZkError::NoNode) => true,
                // The session ended: its ephemeral nodes end with it.
                Err(e) if crate::session::ends_session(&e) => true,
                Err(_) => false,
            };
            if done {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_normalize_match_curator() {
        let id = uuid::Uuid::parse_str("53345f98-9423-4e0c-a7b5-9f819e3ec2e1").unwrap();
        assert_eq!(
            protected_prefix(&id),
            "_c_53345f98-9423-4e0c-a7b5-9f819e3ec2e1-"
        );
        assert_eq!(
            unprotected("_c_53345f98-9423-4e0c-a7b5-9f819e3ec2e1-name1"),
            "name1"
        );
        // Not a UUID, no name after the prefix, no separator: left as they are.
        for n in [
            "_c_53345f98-9423-4e0c-a7b5-9f819e3ec2eX-name1",
            "_c_53345f98-9423-4e0c-a7b5-9f819e3ec2e1-",
            "_c_53345f98-9423-4e0c-a7b5-9f819e3ec2e1xname",
            "plain",
        ] {
            assert_eq!(unprotected(n), n);
        }
    }
}
