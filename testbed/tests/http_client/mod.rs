//! The reqwest client the tests use for plain-HTTP loopback requests.
//!
//! When testbed is built together with apns-relay (`cargo nextest run -p testbed -p
//! apns-relay`), Cargo unifies reqwest's features, so reqwest gets apns-relay's
//! `rustls-no-provider` and refuses to build any client — even a plain-HTTP one — without a
//! process-wide rustls crypto provider. Installing ring's, the provider the workspace builds
//! every rustls config with, makes the tests independent of what else is in the build.

/// A default reqwest client, after making sure a process-wide rustls provider exists.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
