//! A URL's endpoint: whether it needs TLS, its host and its port (the scheme's default when
//! the URL has none). Every client in pushbench (the open-rate driver, dispatch calls,
//! device connections, replayed WebSocket sessions, the relay's APNs pool) reads URLs this
//! way, so `wss://h` means port 443 everywhere.

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The scheme, lower case (`http`, `https`, `ws`, `wss`, `tcp`, `mqtt`, …).
    pub scheme: String,
    /// Host name or address, without IPv6 brackets.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The scheme runs over TLS.
    pub tls: bool,
}

/// Why a URL has no usable endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL at all.
    #[error("`{0}` is not a URL")]
    NotUrl(String),
    /// A scheme the caller does not speak.
    #[error("`{url}`: the scheme must be {expected}")]
    Scheme {
        /// The URL.
        url: String,
        /// The schemes the caller speaks, e.g. `http:// or https://`.
        expected: String,
    },
    /// No host.
    #[error("`{0}` has no host")]
    NoHost(String),
    /// A port beyond 65535.
    #[error("`{0}`: the port must be 1 to 65535")]
    BadPort(String),
}

/// Default ports and TLS of the schemes pushbench speaks.
fn scheme_defaults(scheme: &str) -> Option<(u16, bool)> {
    Some(match scheme {
        "http" | "ws" => (80, false),
        "https" | "wss" => (443, true),
        "tcp" => (80, false),
        "mqtt" => (1883, false),
        "mqtts" | "ssl" => (8883, true),
        _ => return None,
    })
}

impl Endpoint {
    /// The endpoint of `url`, whose scheme must be one of `schemes`.
    pub fn parse(url: &str, schemes: &[&str]) -> Result<Endpoint, EndpointError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|_| EndpointError::NotUrl(url.to_string()))?;
        Endpoint::of(&uri, schemes)
    }

    /// The endpoint of a parsed URI, whose scheme must be one of `schemes`.
    pub fn of(uri: &http::Uri, schemes: &[&str]) -> Result<Endpoint, EndpointError> {
        let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
        let defaults = scheme
            .as_deref()
            .filter(|s| schemes.contains(s))
            .and_then(scheme_defaults);
        let (Some(scheme), Some((default_port, tls))) = (scheme, defaults) else {
            return Err(EndpointError::Scheme {
                url: uri.to_string(),
                expected: schemes
                    .iter()
                    .map(|s| std::format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| EndpointError::NoHost(uri.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // The port as written: `http::Uri` reads one beyond 65535 as no port at all.
        let written = uri
            .authority()
            .map(|a| a.as_str())
            .and_then(|a| a.rsplit_once(':'))
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let port = match written {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(EndpointError::BadPort(uri.to_string())),
            },
        };
        Ok(Endpoint {
            port,
            scheme,
            host,
            tls,
        })
    }

    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            std::format!("[{}]:{}", self.host, self.port)
        } else {
            std::format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_and_tls_follow_the_scheme() {
        let e = Endpoint::parse("wss://gw.example/ws", &["ws", "wss"]).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("gw.example", 443, true));
        let e = Endpoint::parse("http://[::1]:8080/x", &["http", "https"]).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("::1", 8080, false));
        assert_eq!(e.authority(), "[::1]:8080");
        let e = Endpoint::parse("HTTPS://h", &["http", "https"]).unwrap();
        assert_eq!((e.scheme.as_str(), e.port), ("https", 443));
    }

    #[test]
    fn refusals_say_what_was_expected() {
        assert_eq!(
            Endpoint::parse("ftp://h/x", &["http", "https"])
                .unwrap_err()
                .to_string(),
            "`ftp://h/x`: the scheme must be http:// or https://"
        );
        assert!(matches!(
            Endpoint::parse("not a url", &["http"]),
            Err(EndpointError::NotUrl(_))
        ));
        assert!(Endpoint::parse("/just/a/path", &["http"]).is_err());
        assert_eq!(
            Endpoint::parse("http://h:99999/x", &["http"])
                .unwrap_err()
                .to_string(),
            "`http://h:99999/x`: the port must be 1 to 65535"
        );
    }
}
