//! Where discovery looks: the ZooKeeper ensemble with its timeouts ([`ZkConfig`]) and the
//! service's path (`/{base}/{service}`, [`ServicePath`]). Plain serde types with
//! `deny_unknown_fields`, so the relay's and loadgen's files can embed them; [`ZkConfig::check`]
//! and [`ServicePath::new`] name the field that is wrong.

use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// The session timeout asked of the servers when a file does not set one.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound of a first connection, a registration or a first read when a file does not set
/// one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an instance that refused a connection is passed over when a file does not say.
pub const DEFAULT_DOWN_FOR: Duration = Duration::from_secs(5);

/// The ZooKeeper ensemble and the timeouts that keep every call bounded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZkConfig {
    /// The connect string: `host:port[,host:port…][/chroot]`.
    pub ensemble: String,
    /// The session timeout asked of the servers (they bound it to 2–20 ticks). An instance that
    /// dies without draining disappears from every watcher after about this long.
    #[serde(
        default = "defaults::session_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub session_timeout: Duration,
    /// How long a first connection, or one registration or read, may take before it fails
    /// with a one-line error.
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "common::duration::deserialize"
    )]
    pub connect_timeout: Duration,
}

mod defaults {
    use std::time::Duration;
    pub fn session_timeout() -> Duration {
        super::DEFAULT_SESSION_TIMEOUT
    }
    pub fn connect_timeout() -> Duration {
        super::DEFAULT_CONNECT_TIMEOUT
    }
}

impl ZkConfig {
    /// An ensemble with the default timeouts (session 10 s, connect 5 s).
    pub fn new(ensemble: &str) -> ZkConfig {
        ZkConfig {
            ensemble: ensemble.to_string(),
            session_timeout: defaults::session_timeout(),
            connect_timeout: defaults::connect_timeout(),
        }
    }

    /// Checks what serde cannot; the error names the field.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |field: &str, msg: String| Err(Error::Config(format!("{field}: {msg}")));
        let hosts = self.ensemble.split('/').next().unwrap_or_default();
        if hosts.is_empty() || hosts.split(',').any(|h| h.trim().is_empty()) {
            return bad(
                "ensemble",
                format!(
                    "expected `host:port[,host:port…][/chroot]`, got `{}`",
                    self.ensemble
                ),
            );
        }
        if self.session_timeout.is_zero() {
            return bad("session_timeout", "must be more than 0".into());
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be more than 0".into());
        }
        Ok(())
    }
}

/// A service's folder: `/{base}/{service}`, whose children are its instances.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePath {
    base: String,
    service: String,
}

impl ServicePath {
    /// `base` is an absolute ZooKeeper path (`/services`); `service` one node name.
    pub fn new(base: &str, service: &str) -> Result<ServicePath, Error> {
        let bad = |field: &str, msg: String| Err(Error::Config(format!("{field}: {msg}")));
        let base = base.trim_end_matches('/');
        if !base.starts_with('/') && !base.is_empty() {
            return bad("base", format!("must start with `/`, got `{base}`"));
        }
        if base.split('/').skip(1).any(|s| !node_name_ok(s)) {
            return bad(
                "base",
                format!("`{base}` has an empty, `.` or `..` segment"),
            );
        }
        if service.contains('/') || !node_name_ok(service) {
            return bad(
                "service",
                format!("must be one node name (no `/`, not empty, `.` or `..`), got `{service}`"),
            );
        }
        Ok(ServicePath {
            base: base.to_string(),
            service: service.to_string(),
        })
    }

    /// Parses `/base/…/service` (the last segment is the service); the error names `path`.
    pub fn parse(path: &str) -> Result<ServicePath, Error> {
        let bad = || {
            Error::Config(format!(
                "path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `{path}`"
            ))
        };
        let trimmed = path.trim_end_matches('/');
        match trimmed.rsplit_once('/') {
            Some((base, service)) if trimmed.starts_with('/') => {
                ServicePath::new(base, service).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }

    /// The service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// `/{base}/{service}`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.base, self.service)
    }
}

impl std::fmt::Display for ServicePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.service)
    }
}

fn node_name_ok(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_their_errors() {
        assert_eq!(
            ServicePath::new("/services/", "apns-relay").unwrap().path(),
            "/services/apns-relay"
        );
        assert_eq!(ServicePath::parse("/a/b/c").unwrap().service(), "c");
        assert_eq!(ServicePath::new("", "top").unwrap().path(), "/top");
        let err = |r: Result<ServicePath, Error>| r.unwrap_err().to_string();
        assert_eq!(
            err(ServicePath::new("services", "x")),
            "base: must start with `/`, got `services`"
        );
        assert_eq!(
            err(ServicePath::new("/a//b", "x")),
            "base: `/a//b` has an empty, `.` or `..` segment"
        );
        assert_eq!(
            err(ServicePath::new("/a", "x/y")),
            "service: must be one node name (no `/`, not empty, `.` or `..`), got `x/y`"
        );
        assert_eq!(
            err(ServicePath::parse("relay")),
            "path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `relay`"
        );
        assert_eq!(
            err(ServicePath::parse("/a/../relay")),
            "path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `/a/../relay`"
        );
    }

    #[test]
    fn config_from_toml_and_its_errors() {
        let c: ZkConfig =
            serde_json::from_str(r#"{"ensemble":"127.0.0.1:2181","session_timeout":"4s"}"#)
                .unwrap();
        assert_eq!(c.session_timeout, Duration::from_secs(4));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        c.check().unwrap();
        let e = serde_json::from_str::<ZkConfig>(r#"{"ensemble":"h:1","sesion_timeout":"4s"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unknown field `sesion_timeout`"), "{e}");
        assert_eq!(
            ZkConfig::new("a:1,,b:2").check().unwrap_err().to_string(),
            "ensemble: expected `host:port[,host:port…][/chroot]`, got `a:1,,b:2`"
        );
    }
}
