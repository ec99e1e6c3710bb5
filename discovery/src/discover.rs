//! What a client of a service writes in its own file to find it ([`Discover`]: the ensemble,
//! the service's path, the balancing, which of an instance's endpoints to use), and how it turns
//! that into a live list and URLs: [`Discover::watch`], [`Discover::next_url`].

use common::duration::Dur;
use serde::Deserialize;

use crate::config::{
    ServicePath, ZkConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DOWN_FOR, DEFAULT_SESSION_TIMEOUT,
};
use crate::watch::{Failover, ServiceWatch, WatchOptions};
use crate::{Balance, Error, Lease, ServiceInstance};

/// How a client finds a service's instances and spreads its work over them: the section a
/// client's file embeds (the router's `apple.discovery`, a loadgen scenario's
/// `target.discovery`).
///
/// ```toml
/// discovery = { ensemble = "10.0.0.1:2181,10.0.0.2:2181", path = "/services/apns-relay", balance = "least_in_flight" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Discover {
    /// The ZooKeeper connect string: `host:port[,host:port…][/chroot]`.
    pub ensemble: String,
    /// The service's path, `/{base}/{service}`: its children are the instances.
    pub path: String,
    /// `round_robin` (default: smooth, by weight) or `least_in_flight` (fewest pieces of work
    /// out per unit of weight).
    #[serde(default)]
    pub balance: Balance,
    /// Which of an instance's named endpoints (`payload.endpoints`) to use; without it the
    /// client's own default (the router: `relay`), else the instance's URI
    /// (`{scheme}://{address}:{port}`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The ZooKeeper session timeout (default 10s).
    #[serde(default = "defaults::session_dur")]
    pub session_timeout: Dur,
    /// The bound of connecting and of the first read (default 5s): an unreachable ensemble is
    /// an error after this long, never a hang.
    #[serde(default = "defaults::connect_dur")]
    pub connect_timeout: Dur,
    /// How long an instance that refused a connection is passed over (default 5s).
    #[serde(default = "defaults::down_for")]
    pub down_for: Dur,
}

impl Discover {
    /// The ensemble and its timeouts.
    pub fn zk(&self) -> ZkConfig {
        ZkConfig {
            ensemble: self.ensemble.clone(),
            session_timeout: self.session_timeout.get(),
            connect_timeout: self.connect_timeout.get(),
        }
    }

    /// The service's path.
    pub fn service_path(&self) -> Result<ServicePath, Error> {
        ServicePath::parse(&self.path)
    }

    /// Checks what serde cannot; the error names the field (`ensemble`, `path`, `endpoint`,
    /// …), for the caller to prefix with where the section is.
    pub fn check(&self) -> Result<(), Error> {
        self.zk().check()?;
        self.service_path()?;
        if self.endpoint.as_deref().is_some_and(str::is_empty) {
            return Err(Error::Config("endpoint: must not be empty".into()));
        }
        Ok(())
    }

    /// Connects and follows the service (see [`ServiceWatch::start`]).
    pub async fn watch(&self) -> Result<ServiceWatch, Error> {
        self.check()?;
        let options = WatchOptions {
            balance: self.balance,
            down_for: self.down_for.get(),
        };
        ServiceWatch::start(&self.zk(), &self.service_path()?, options).await
    }

    /// The URL to use of `instance`: its endpoint named `endpoint` (or `default_endpoint`),
    /// or, when neither is set, its URI. `None` when the instance has no such endpoint.
    pub fn url_of(
        &self,
        instance: &ServiceInstance,
        default_endpoint: Option<&str>,
    ) -> Option<String> {
        match self.endpoint.as_deref().or(default_endpoint) {
            Some(name) => instance
                .endpoint(name)
                .map(|u| u.trim_end_matches('/').to_string()),
            None => Some(instance.uri()),
        }
    }

    /// The next instance of `tries` that has the endpoint to use, with its URL; instances
    /// without it are passed over (and counted in the error when none is left).
    pub fn next_url(
        &self,
        tries: &mut Failover<'_>,
        default_endpoint: Option<&str>,
    ) -> Result<(String, Lease), Error> {
        loop {
            match tries.next_lease() {
                Ok(lease) => match self.url_of(lease.instance(), default_endpoint) {
                    Some(url) => return Ok((url, lease)),
                    None => tries.passed_over += 1,
                },
                Err(Error::NoInstance { path, why }) if tries.passed_over > 0 => {
                    let name = self
                        .endpoint
                        .as_deref()
                        .or(default_endpoint)
                        .unwrap_or_default();
                    let without =
                        format!("{} instances have no `{name}` endpoint", tries.passed_over);
                    // `why` counts only the instances that failed, if any did.
                    let why = if why.contains("failed to connect") {
                        format!("{why}; {without}")
                    } else {
                        without
                    };
                    return Err(Error::NoInstance { path, why });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

mod defaults {
    use common::duration::Dur;
    pub fn session_dur() -> Dur {
        Dur(super::DEFAULT_SESSION_TIMEOUT)
    }
    pub fn connect_dur() -> Dur {
        Dur(super::DEFAULT_CONNECT_TIMEOUT)
    }
    pub fn down_for() -> Dur {
        Dur(super::DEFAULT_DOWN_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Discover, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_section_and_names_the_bad_field() {
        let d = parse(r#"{"ensemble":"127.0.0.1:2181","path":"/services/relay","balance":"least_in_flight","down_for":"2s"}"#).unwrap();
        assert_eq!(d.balance, Balance::LeastInFlight);
        assert_eq!(d.zk().session_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(d.down_for.get(), std::time::Duration::from_secs(2));
        d.check().unwrap();
        let e = parse(r#"{"ensemble":"h:1","path":"/a/b","balance":"random"}"#).unwrap_err();
        assert!(
            e.starts_with("unknown variant `random`, expected `round_robin` or `least_in_flight`"),
            "{e}"
        );
        let e = parse(r#"{"ensemble":"h:1","path":"/a/b","connect_timeout":"5"}"#).unwrap_err();
        assert!(e.starts_with("expected a duration such as"), "{e}");
        let check = |json: &str| parse(json).unwrap().check().unwrap_err().to_string();
        assert_eq!(
            check(r#"{"ensemble":"","path":"/a/b"}"#),
            "ensemble: expected `host:port[,host:port…][/chroot]`, got ``"
        );
        assert_eq!(
            check(r#"{"ensemble":"h:1","path":"relays"}"#),
            "path: expected `/base/service` (node names: no empty, `.` or `..` segment), got `relays`"
        );
        assert_eq!(
            check(r#"{"ensemble":"h:1","path":"/a/b","endpoint":""}"#),
            "endpoint: must not be empty"
        );
    }

    #[test]
    fn the_url_is_the_named_endpoint_or_the_uri() {
        let mut i =
            ServiceInstance::new("s", "10.0.0.5").with_endpoint("relay", "http://10.0.0.5:8080/");
        i.port = Some(8080);
        let d = parse(r#"{"ensemble":"h:1","path":"/a/b"}"#).unwrap();
        assert_eq!(d.url_of(&i, None).as_deref(), Some("http://10.0.0.5:8080"));
        assert_eq!(
            d.url_of(&i, Some("relay")).as_deref(),
            Some("http://10.0.0.5:8080")
        );
        assert_eq!(d.url_of(&i, Some("proxy")), None);
        let d = parse(r#"{"ensemble":"h:1","path":"/a/b","endpoint":"proxy"}"#).unwrap();
        assert_eq!(d.url_of(&i, Some("relay")), None);
    }
}
