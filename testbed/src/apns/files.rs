//! The mock's credentials on disk, so that a client outside this process can be pointed at a
//! `testbed mock-apns`: the CA certificate to trust, the server certificate and key, and a
//! provider key (`AuthKey_<KEYID>.p8`, as Apple names it) with its team and key id.
//!
//! ```text
//! DIR/ca.pem             CA certificate (trust this)
//! DIR/server.pem         server certificate (localhost, 127.0.0.1, ::1)
//! DIR/server-key.pem     its key (PKCS#8)
//! DIR/AuthKey_KEYID.p8   provider signing key (ES256)
//! DIR/provider.json      {"team_id": …, "key_id": …, "key_file": "AuthKey_KEYID.p8"}
//! ```
//!
//! [`Credentials::load_or_create`] reads these files when `ca.pem` exists and makes them
//! otherwise.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pki::{CertificateAuthority, IssuedCert, PkiError, ProviderKey};

/// A problem with a credentials directory; the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file holds something unusable.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Making a key or certificate failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// `provider.json`: which team and key the `.p8` file is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderInfo {
    /// The team id tokens must name as `iss`.
    pub team_id: String,
    /// The key id tokens must name as `kid`.
    pub key_id: String,
    /// The `.p8` file's name, in the same directory.
    pub key_file: String,
}

/// Everything a mock and its clients need.
#[derive(Debug)]
pub struct Credentials {
    /// The server certificate, its key and its CA.
    pub server: IssuedCert,
    /// The provider signing key.
    pub provider_key: ProviderKey,
    /// Team and key id.
    pub provider: ProviderInfo,
    /// Whether the files were made just now (false: read from disk).
    pub created: bool,
}

impl Credentials {
    /// Reads the credentials in `dir` when `dir/ca.pem` exists; otherwise makes a CA, a
    /// server certificate and a provider key for `team_id`/`key_id`, and writes them there
    /// (creating `dir`).
    pub fn load_or_create(
        dir: &Path,
        team_id: &str,
        key_id: &str,
    ) -> Result<Self, CredentialsError> {
        if dir.join("ca.pem").exists() {
            return Self::load(dir);
        }
        let ca = CertificateAuthority::new("pushbench mock APNs CA")?;
        let server = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
        let provider_key = ProviderKey::generate(key_id)?;
        let provider = ProviderInfo {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            key_file: format!("AuthKey_{key_id}.p8"),
        };
        fs::create_dir_all(dir).map_err(|source| CredentialsError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let info = serde_json::to_string_pretty(&provider).unwrap_or_default() + "\n";
        for (name, text) in [
            ("ca.pem", server.ca_pem.as_str()),
            ("server.pem", server.cert_pem.as_str()),
            ("server-key.pem", server.key_pem.as_str()),
            (
                provider.key_file.as_str(),
                provider_key.to_p8_pem().as_str(),
            ),
            ("provider.json", info.as_str()),
        ] {
            write(&dir.join(name), text)?;
        }
        Ok(Self {
            server,
            provider_key,
            provider,
            created: true,
        })
    }

    /// Reads the credentials in `dir`.
    pub fn load(dir: &Path) -> Result<Self, CredentialsError> {
        let ca_pem = read(&dir.join("ca.pem"))?;
        let cert_path = dir.join("server.pem");
        let cert_pem = read(&cert_path)?;
        let key_path = dir.join("server-key.pem");
        let key_pem = read(&key_path)?;
        let server = IssuedCert::from_pem(&cert_pem, &key_pem, &ca_pem).map_err(|e| {
            CredentialsError::Invalid {
                path: if e.to_string().contains("private key") {
                    key_path
                } else {
                    cert_path
                },
                message: e.to_string(),
            }
        })?;
        crate::pki::root_store(&ca_pem).map_err(|e| CredentialsError::Invalid {
            path: dir.join("ca.pem"),
            message: e.to_string(),
        })?;
        let info_path = dir.join("provider.json");
        let provider: ProviderInfo =
            serde_json::from_str(&read(&info_path)?).map_err(|e| CredentialsError::Invalid {
                path: info_path.clone(),
                message: e.to_string(),
            })?;
        let p8_path = dir.join(&provider.key_file);
        let provider_key =
            ProviderKey::from_p8_pem(&provider.key_id, &read(&p8_path)?).map_err(|e| {
                CredentialsError::Invalid {
                    path: p8_path,
                    message: e.to_string(),
                }
            })?;
        Ok(Self {
            server,
            provider_key,
            provider,
            created: false,
        })
    }
}

fn read(path: &Path) -> Result<String, CredentialsError> {
    fs::read_to_string(path).map_err(|source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<(), CredentialsError> {
    fs::write(path, text).map_err(|source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    })
}
