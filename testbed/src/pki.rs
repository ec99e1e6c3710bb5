//! Test PKI: a throwaway certificate authority, server and client certificates issued by it,
//! and APNs provider keys (ES256, P-256) with a JWT signer, so that tests can run TLS, mTLS and
//! token authentication against loopback servers without any file shipped in the repository.
//!
//! Certificates are made with `rcgen` on its `ring` backend; provider keys and JWT signatures use
//! `ring` directly (already in the tree through rustls, so no second crypto library is built).
//!
//! ```
//! use testbed::pki::{CertificateAuthority, ProviderKey};
//!
//! let ca = CertificateAuthority::new("pushbench test CA").unwrap();
//! let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
//! let client = ca.issue_client("sender-1").unwrap();
//! assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(client.key_pem.contains("PRIVATE KEY"));
//!
//! let key = ProviderKey::generate("ABC123DEFG").unwrap();
//! let jwt = key.provider_token("TEAM123456", 1_700_000_000).unwrap();
//! assert_eq!(jwt.split('.').count(), 3);
//! // The .p8 file Apple hands out is this PEM form.
//! let again = ProviderKey::from_p8_pem("ABC123DEFG", &key.to_p8_pem()).unwrap();
//! assert_eq!(again.public_key(), key.public_key());
//! ```

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A failure to make, read or use a key or certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused to make a key or certificate (for example an invalid DNS name).
    #[error("could not generate the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A PEM text did not hold what was expected; the message says what.
    #[error("{0}")]
    Pem(String),
    /// The key is not a PKCS#8 P-256 ECDSA key, as an APNs `.p8` key is.
    #[error("not a P-256 PKCS#8 key (an APNs .p8 key): {0}")]
    ProviderKey(String),
    /// ring could not draw randomness or sign.
    #[error("the crypto library failed to {0}")]
    Crypto(&'static str),
    /// rustls refused a configuration built from these certificates.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A self-signed certificate authority that issues server and client certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate issued by a [`CertificateAuthority`], with its private key.
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key (P-256), PKCS#8 PEM.
    pub key_pem: String,
    /// The issuing CA's certificate, PEM (the trust anchor to give the other side).
    pub ca_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
}

impl Clone for IssuedCert {
    fn clone(&self) -> Self {
        Self {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            ca_pem: self.ca_pem.clone(),
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new CA with a fresh P-256 key, valid from 1975 to 4096, named `common_name`.
    pub fn new(common_name: &str) -> Result<Self, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM: the trust anchor for clients (server certificates) or for a
    /// server checking client certificates.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// A server certificate for `names`: each one an IP address literal (`127.0.0.1`, `::1`)
    /// or a DNS name (`localhost`, `api.push.apple.com`). The first name is also the common
    /// name.
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCert, PkiError> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name = name(names.first().copied().unwrap_or("server"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// A client certificate (TLS client authentication) with `common_name` as its subject,
    /// e.g. an APNs provider certificate's topic or a relay sender's name.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, params: CertificateParams) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }
}

impl IssuedCert {
    /// Reads a certificate (first one in `cert_pem`) and its key (`key_pem`: PKCS#8, SEC1 or
    /// PKCS#1 PEM) issued elsewhere; `ca_pem` is kept as given.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Self, PkiError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Pem(format!("no certificate in the PEM text: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| PkiError::Pem(format!("no private key in the PEM text: {e}")))?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            ca_pem: ca_pem.to_owned(),
            cert_der,
            key_der: key,
        })
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key, DER (in the format it was read or made in).
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }

    /// Key then certificate, PEM: the form `reqwest::Identity::from_pem` and `curl --cert`
    /// take.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.key_pem, self.cert_pem)
    }
}

/// Root certificates holding the CA certificates found in `ca_pem`.
pub fn root_store(ca_pem: &str) -> Result<rustls::RootCertStore, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| PkiError::Pem(format!("bad CA certificate PEM: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(PkiError::Pem("no certificate in the CA PEM text".into()));
    }
    Ok(roots)
}

/// A rustls client configuration (ring provider) that trusts `ca_pem`, offers ALPN `h2` only,
/// and presents `identity` as its client certificate when given: what an APNs client uses.
pub fn h2_client_config(
    ca_pem: &str,
    identity: Option<&IssuedCert>,
) -> Result<rustls::ClientConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_pem)?);
    let mut config = match identity {
        Some(identity) => {
            builder.with_client_auth_cert(vec![identity.cert_der()], identity.key_der())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A rustls server configuration (ring provider) presenting `server`, offering `alpn` (e.g.
/// `[b"h2"]`), and, when `client_ca_pem` is given, requiring a client certificate issued by
/// that CA (mutual TLS, as a relay's senders use).
pub fn tls_server_config(
    server: &IssuedCert,
    client_ca_pem: Option<&str>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(pem)?),
                provider,
            )
            .build()
            .map_err(|e| PkiError::Tls(rustls::Error::General(e.to_string())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(vec![server.cert_der()], server.key_der())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// An APNs provider signing key: ES256 on P-256, as in the `.p8` file Apple issues, with its
/// 10-character key id.
pub struct ProviderKey {
    key_id: String,
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ProviderKey {
    /// A fresh random key with id `key_id`.
    pub fn generate(key_id: &str) -> Result<Self, PkiError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| PkiError::Crypto("generate a P-256 key"))?;
        Self::from_pkcs8_der(key_id, pkcs8.as_ref())
    }

    /// Reads a `.p8` file's text (`-----BEGIN PRIVATE KEY-----`, PKCS#8 P-256).
    pub fn from_p8_pem(key_id: &str, pem: &str) -> Result<Self, PkiError> {
        let der = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(der)) => der.secret_pkcs8_der().to_vec(),
            Ok(_) => {
                return Err(PkiError::ProviderKey(
                    "the PEM block is not `PRIVATE KEY` (PKCS#8)".into(),
                ))
            }
            Err(e) => {
                return Err(PkiError::Pem(format!(
                    "no private key in the .p8 text: {e}"
                )))
            }
        };
        Self::from_pkcs8_der(key_id, &der)
    }

    /// Reads a PKCS#8 DER P-256 key.
    pub fn from_pkcs8_der(key_id: &str, der: &[u8]) -> Result<Self, PkiError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| PkiError::ProviderKey(e.to_string()))?;
        Ok(Self {
            key_id: key_id.to_owned(),
            pkcs8: der.to_vec(),
            pair,
        })
    }

    /// The key id (`kid` of the JWT header).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The key as `.p8` text: PKCS#8 in a `PRIVATE KEY` PEM block.
    pub fn to_p8_pem(&self) -> String {
        pem_block("PRIVATE KEY", &self.pkcs8)
    }

    /// The public key as an uncompressed SEC1 point (65 bytes, `04 ‖ x ‖ y`): what a verifier
    /// such as the mock APNs is configured with.
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Signs `signing_input` (`base64url(header) "." base64url(claims)`) with ES256 and
    /// returns the JWS signature, base64url (64-byte `r ‖ s` form, as JWS requires).
    pub fn sign(&self, signing_input: &[u8]) -> Result<String, PkiError> {
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signing_input)
            .map_err(|_| PkiError::Crypto("sign"))?;
        Ok(URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// An APNs provider authentication token: a JWT with header `{"alg":"ES256","kid":…}` and
    /// claims `{"iss": team_id, "iat": iat}` (seconds since the Unix epoch), signed by this
    /// key. Sent as `authorization: bearer <token>`.
    pub fn provider_token(&self, team_id: &str, iat: u64) -> Result<String, PkiError> {
        let header = serde_json::json!({ "alg": "ES256", "kid": self.key_id });
        let claims = serde_json::json!({ "iss": team_id, "iat": iat });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{signature}"))
    }

    /// [`provider_token`](Self::provider_token) issued now.
    pub fn provider_token_now(&self, team_id: &str) -> Result<String, PkiError> {
        self.provider_token(team_id, unix_now())
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A PEM block with 64-character lines.
fn pem_block(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
