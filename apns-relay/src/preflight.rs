//! What `apns-relay check` (and `serve`, before it starts) verifies beyond the file's text:
//! every file the config names opens and holds what its field needs (keys, certificates, CA
//! bundles, senders' public keys), and the dedupe store's directory is writable. Each error is
//! one line naming the config field and the path. It also says which rule the proxy listener
//! falls under, and why, and where the instance will register in ZooKeeper.

use std::path::Path;

use crate::config::{Config, ConfigError, DedupeBackend, ListenerTls};
use crate::tls;

/// Opens every file the config names and checks the dedupe directory can be written; `name`
/// (the config file) starts each error. Returns notes for the operator (which proxy rule
/// applies and why).
pub fn preflight(config: &Config, name: &str) -> Result<Vec<String>, ConfigError> {
    let err = |field: &str, e: &dyn std::fmt::Display| ConfigError(format!("{name}: {field}: {e}"));
    if let Some(t) = config.relay.as_ref().and_then(|r| r.tls.as_ref()) {
        listener_tls(t, "relay.tls", &[b"h2"]).map_err(|(f, e)| err(&f, &e))?;
    }
    if let Some(t) = config.proxy.as_ref().and_then(|p| p.tls.as_ref()) {
        listener_tls(t, "proxy.tls", &[b"http/1.1"]).map_err(|(f, e)| err(&f, &e))?;
    }
    if config.relay.is_some() {
        if let Some(ca) = &config.apns.ca {
            tls::load_roots(ca).map_err(|e| err("apns.ca", &e))?;
        }
        if let Some(t) = &config.apns.token {
            crate::jwt::Signer::from_p8_file(&t.key, &t.key_id, &t.team_id)
                .map_err(|e| err("apns.token.key", &e))?;
        }
        if let Some(c) = &config.apns.certificate {
            tls::load_certs(&c.cert).map_err(|e| err("apns.certificate.cert", &e))?;
            tls::load_key(&c.key).map_err(|e| err("apns.certificate.key", &e))?;
            tls::client_config(config.apns.ca.as_deref(), Some((&c.cert, &c.key)))
                .map_err(|e| err("apns.certificate", &e))?;
        }
        if config.dedupe.backend == DedupeBackend::Disk {
            writable(&config.dedupe.path).map_err(|e| err("dedupe.path", &e))?;
        }
    }
    crate::relay::auth::Senders::load(&config.senders)
        .map_err(|e| ConfigError(format!("{name}: {e}")))?;
    let mut notes = proxy_notes(config);
    notes.extend(discovery_note(config));
    Ok(notes)
}

/// Where `serve` will register the instance (nothing is asked of ZooKeeper here).
fn discovery_note(config: &Config) -> Option<String> {
    let d = config.discovery.as_ref()?;
    let path = d.service_path().ok()?;
    let listen = config
        .relay
        .as_ref()
        .map(|r| r.listen)
        .or(config.proxy.as_ref().map(|p| p.listen))?;
    let host = d.advertised(listen).ok()?;
    Some(format!(
        "discovery: registers under {path} in ZooKeeper `{}` as id {}, at {host} (the ports the listeners bind), weight {}{}",
        d.ensemble,
        d.id.as_deref().unwrap_or("<a new UUID per start>"),
        d.weight,
        d.region
            .as_deref()
            .map(|r| format!(", region {r}"))
            .unwrap_or_default()
    ))
}

/// Which rule the proxy listener falls under, and why.
fn proxy_notes(config: &Config) -> Vec<String> {
    let Some(proxy) = &config.proxy else {
        return Vec::new();
    };
    let by_address: Vec<&str> = config
        .senders
        .iter()
        .filter(|s| !s.proxy_source_cidrs.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    let note = match (&proxy.tls, config.proxy_password_senders()) {
        (Some(_), Some(names)) => format!(
            "proxy: TLS listener on {}: required, Basic credentials ({names}) must not cross \
             the border in clear",
            proxy.listen
        ),
        (Some(_), None) => format!("proxy: TLS listener on {}", proxy.listen),
        (None, _) if proxy.listen.ip().is_loopback() => {
            format!("proxy: plain listener on loopback {}", proxy.listen)
        }
        (None, _) => format!(
            "proxy: plain listener on {}: allowed, every proxy sender ({}) is admitted by \
             source address alone, so no credential crosses the border (the tunnels carry \
             TLS to APNs end to end)",
            proxy.listen,
            if by_address.is_empty() {
                "none configured".to_string()
            } else {
                by_address.join(", ")
            }
        ),
    };
    vec![note]
}

/// Loads a listener's certificate, key and client CA, each on its own so an error names its
/// field, then the whole server configuration (a key that does not match the certificate).
fn listener_tls(t: &ListenerTls, field: &str, alpn: &[&[u8]]) -> Result<(), (String, String)> {
    let fail = |sub: &str, e: &dyn std::fmt::Display| (format!("{field}{sub}"), e.to_string());
    tls::load_certs(&t.cert).map_err(|e| fail(".cert", &e))?;
    tls::load_key(&t.key).map_err(|e| fail(".key", &e))?;
    if let Some(ca) = &t.client_ca {
        tls::load_roots(ca).map_err(|e| fail(".client_ca", &e))?;
    }
    tls::server_config(t, alpn).map_err(|e| fail("", &e))?;
    Ok(())
}

/// Whether files can be created in `dir` (or, when it does not exist yet, in the closest
/// directory above it that does, where `serve` will create it): writes and removes a probe.
fn writable(dir: &Path) -> Result<(), String> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .ok_or_else(|| format!("{}: no existing directory above it", dir.display()))?;
    if !existing.is_dir() {
        return Err(format!("{}: not a directory", existing.display()));
    }
    let probe = existing.join(format!(".apns-relay-check-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| format!("{}: cannot write there: {e}", existing.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
