//! relay.toml's `[discovery]`: where the instance registers itself in ZooKeeper (Curator
//! ServiceDiscovery's format, so Java senders find it too) and what it says about itself.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

/// `[discovery]`: register this instance under `/{base_path}/{service}/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The ZooKeeper connect string: `host:port[,host:port…][/chroot]`.
    pub ensemble: String,
    /// The folder of services (Curator's `basePath`).
    #[serde(default = "defaults::base_path")]
    pub base_path: String,
    /// The service's name: every instance of one relay fleet registers under it.
    #[serde(default = "defaults::service")]
    pub service: String,
    /// This instance's id (unique in the service). Default: a random UUID per start, as
    /// Curator makes one; a stable id (the host's name) lets a restarted instance replace its
    /// predecessor's node in every list at once instead of after the old session's timeout.
    pub id: Option<String>,
    /// The host or address senders reach this instance at. Default: the listener's address,
    /// which must then be a specific one (not `0.0.0.0` or `::`).
    pub address: Option<String>,
    /// The instance's region (`payload.region`), for senders that prefer a region.
    pub region: Option<String>,
    /// The balancing weight (`payload.weight`): relative share of the work; 0 registers the
    /// instance without giving it work.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    /// The ZooKeeper session timeout: an instance that dies without draining leaves every
    /// sender's list after about this long.
    #[serde(
        default = "defaults::session_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub session_timeout: Duration,
    /// The bound of connecting, of one registration, and of deregistering at the drain.
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub connect_timeout: Duration,
    /// At SIGTERM the node is removed first; the listeners keep accepting this long after, so
    /// senders' watches see the instance gone before a connection to it is refused.
    #[serde(
        default = "defaults::deregister_lead",
        deserialize_with = "common::duration::deserialize"
    )]
    pub deregister_lead: Duration,
}

mod defaults {
    use std::time::Duration;
    pub fn base_path() -> String {
        "/services".into()
    }
    pub fn service() -> String {
        "apns-relay".into()
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn session_timeout() -> Duration {
        discovery::config::DEFAULT_SESSION_TIMEOUT
    }
    pub fn connect_timeout() -> Duration {
        discovery::config::DEFAULT_CONNECT_TIMEOUT
    }
    pub fn deregister_lead() -> Duration {
        Duration::from_secs(1)
    }
}

impl DiscoveryConfig {
    /// The ensemble and its timeouts.
    pub fn zk(&self) -> discovery::ZkConfig {
        discovery::ZkConfig {
            ensemble: self.ensemble.clone(),
            session_timeout: self.session_timeout,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The service's folder.
    pub fn service_path(&self) -> Result<discovery::ServicePath, String> {
        discovery::ServicePath::new(&self.base_path, &self.service).map_err(|e| {
            format!("discovery.{e}").replace("discovery.base:", "discovery.base_path:")
        })
    }

    /// The host senders reach an instance listening on `listen` at: `address`, or the
    /// listener's own address when it is a specific one.
    pub fn advertised(&self, listen: SocketAddr) -> Result<String, String> {
        match &self.address {
            Some(a) => Ok(a.clone()),
            None if listen.ip().is_unspecified() => Err(format!(
                "discovery.address: the listener binds {} (every address): say which address senders reach this instance at",
                listen.ip()
            )),
            None => Ok(listen.ip().to_string()),
        }
    }

    /// Checks what serde cannot; `listen` is the address the registered endpoints come from
    /// (the relay's, else the proxy's). The error names the field.
    pub fn check(&self, listen: Option<SocketAddr>) -> Result<(), String> {
        self.zk().check().map_err(|e| format!("discovery.{e}"))?;
        self.service_path()?;
        if let Some(id) = &self.id {
            if id.is_empty() || id.contains('/') {
                return Err(format!(
                    "discovery.id: must be a node name (not empty, no `/`), got `{id}`"
                ));
            }
        }
        if let Some(a) = &self.address {
            let host_ok = !a.is_empty()
                && (a.parse::<IpAddr>().is_ok()
                    || a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
            if !host_ok {
                return Err(format!(
                    "discovery.address: expected a host name or an IP address, got `{a}`"
                ));
            }
        }
        if let Some(listen) = listen {
            self.advertised(listen)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> DiscoveryConfig {
        toml::from_str(&format!("ensemble = \"127.0.0.1:2181\"\n{extra}")).unwrap()
    }

    #[test]
    fn defaults_and_errors_name_the_field() {
        let d = section("");
        assert_eq!(
            (d.base_path.as_str(), d.service.as_str(), d.weight),
            ("/services", "apns-relay", 1)
        );
        assert_eq!(d.session_timeout, Duration::from_secs(10));
        let listen: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        d.check(Some(listen)).unwrap();
        assert_eq!(d.advertised(listen).unwrap(), "127.0.0.1");
        let err = |extra: &str, listen: &str| {
            section(extra)
                .check(Some(listen.parse().unwrap()))
                .unwrap_err()
        };
        assert_eq!(
            err("", "0.0.0.0:8443"),
            "discovery.address: the listener binds 0.0.0.0 (every address): say which address senders reach this instance at"
        );
        assert_eq!(
            err("base_path = \"services\"", "127.0.0.1:1"),
            "discovery.base_path: must start with `/`, got `services`"
        );
        assert_eq!(
            err("service = \"a/b\"", "127.0.0.1:1"),
            "discovery.service: must be one node name (no `/`, not empty, `.` or `..`), got `a/b`"
        );
        assert_eq!(
            err("id = \"\"", "127.0.0.1:1"),
            "discovery.id: must be a node name (not empty, no `/`), got ``"
        );
        assert_eq!(
            err("address = \"http://x\"", "127.0.0.1:1"),
            "discovery.address: expected a host name or an IP address, got `http://x`"
        );
        assert_eq!(
            err("session_timeout = \"0s\"", "127.0.0.1:1"),
            "discovery.session_timeout: must be more than 0"
        );
        let e = DiscoveryConfig {
            ensemble: "a:1,,b:2".into(),
            ..section("")
        }
        .check(None)
        .unwrap_err();
        assert_eq!(
            e,
            "discovery.ensemble: expected `host:port[,host:port…][/chroot]`, got `a:1,,b:2`"
        );
    }
}
