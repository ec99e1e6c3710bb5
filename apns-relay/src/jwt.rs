//! APNs provider tokens: ES256 JWTs signed with the relay's p8 key, cached and replaced well
//! inside the hour, with refreshes rate-limited (Apple answers 429
//! `TooManyProviderTokenUpdates` to a team that changes tokens too often).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use prometheus_client::metrics::counter::Counter;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// A signing-key error, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct KeyError {
    path: String,
    msg: String,
}

/// Mints ES256 provider tokens from one p8 key.
pub struct Signer {
    key: EcdsaKeyPair,
    key_id: String,
    team_id: String,
    rng: SystemRandom,
}

impl Signer {
    /// Loads an `AuthKey_XXXX.p8` file (PKCS#8 PEM, P-256).
    pub fn from_p8_file(path: &Path, key_id: &str, team_id: &str) -> Result<Signer, KeyError> {
        let err = |msg: String| KeyError {
            path: path.display().to_string(),
            msg,
        };
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| err(e.to_string()))?;
        Signer::from_pkcs8_der(der.secret_pkcs8_der(), key_id, team_id).map_err(|e| err(e.msg))
    }

    /// Builds a signer from a PKCS#8 DER key.
    pub fn from_pkcs8_der(der: &[u8], key_id: &str, team_id: &str) -> Result<Signer, KeyError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).map_err(|e| {
                KeyError {
                    path: "p8 key".into(),
                    msg: format!("not a P-256 PKCS#8 key: {e}"),
                }
            })?;
        Ok(Signer {
            key,
            key_id: key_id.into(),
            team_id: team_id.into(),
            rng,
        })
    }

    /// A token issued at `iat` (seconds since the Unix epoch).
    pub fn sign(&self, iat: u64) -> String {
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, self.key_id);
        let claims = format!(r#"{{"iss":"{}","iat":{iat}}}"#, self.team_id);
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        // Signing with a valid key and the system RNG does not fail in practice; an empty
        // signature would be refused by APNs with InvalidProviderToken, never sent silently.
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map(|s| s.as_ref().to_vec())
            .unwrap_or_default();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// DER prefix of a P-256 public key's SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, then
/// a 66-byte BIT STRING holding the uncompressed point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The public half (an uncompressed SEC1 P-256 point, what ES256 verifies with) of a sender's
/// key: `kind` `"p8"` reads the `AuthKey_XXXX.p8` itself (PKCS#8 PEM), `"public_key"` a PEM
/// `PUBLIC KEY`.
pub fn public_key_file(path: &Path, kind: &str) -> Result<Vec<u8>, KeyError> {
    let err = |msg: String| KeyError {
        path: path.display().to_string(),
        msg,
    };
    if kind == "p8" {
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| err(e.to_string()))?;
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| err(format!("not a P-256 PKCS#8 key: {e}")))?;
        return Ok(ring::signature::KeyPair::public_key(&key).as_ref().to_vec());
    }
    let spki = SubjectPublicKeyInfoDer::from_pem_file(path).map_err(|e| err(e.to_string()))?;
    match spki.as_ref().strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == 65 && point[0] == 4 => Ok(point.to_vec()),
        _ => Err(err("not a P-256 public key (ES256 needs one)".into())),
    }
}

struct Current {
    token: String,
    /// `bearer <token>`, built once: every push sends it.
    header: HeaderValue,
    minted: Instant,
    iat: u64,
    generation: u64,
}

impl Current {
    /// `None` if `token` cannot be a header value (a JWT is base64url and dots).
    fn new(token: String, minted: Instant, iat: u64, generation: u64) -> Option<Current> {
        let header = HeaderValue::try_from(format!("bearer {token}")).ok()?;
        Some(Current {
            token,
            header,
            minted,
            iat,
            generation,
        })
    }
}

/// The relay's current provider token: replaced when older than `refresh`, and at most once
/// per `min_gap` when APNs says it expired.
pub struct TokenCache {
    signer: Signer,
    refresh: Duration,
    min_gap: Duration,
    current: Mutex<Option<Current>>,
    /// Counts every token minted (the relay's `token_refreshes_total`).
    minted: Counter<u64, AtomicU64>,
}

/// A token and its generation (to ask for a refresh of exactly that one).
#[derive(Debug, Clone)]
pub struct Token {
    /// `bearer <jwt>` value for the authorization header (a shared buffer: cloning it is a
    /// reference count).
    pub header: HeaderValue,
    /// Increases with each refresh.
    pub generation: u64,
}

impl TokenCache {
    /// A cache over `signer`; each token it mints counts in `minted`.
    pub fn new(
        signer: Signer,
        refresh: Duration,
        min_gap: Duration,
        minted: Counter<u64, AtomicU64>,
    ) -> TokenCache {
        TokenCache {
            signer,
            refresh,
            min_gap,
            current: Mutex::new(None),
            minted,
        }
    }

    fn mint(&self, generation: u64) -> Current {
        self.minted.inc();
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Current::new(self.signer.sign(iat), Instant::now(), iat, generation)
            .expect("a signed JWT is base64url and dots")
    }

    /// The token to use now.
    pub fn get(&self) -> Token {
        let mut cur = common::sync::lock(&self.current);
        let stale = cur
            .as_ref()
            .is_none_or(|c| c.minted.elapsed() >= self.refresh);
        if stale {
            let generation = cur.as_ref().map_or(1, |c| c.generation + 1);
            *cur = Some(self.mint(generation));
        }
        let c = cur.as_ref().expect("just set");
        Token {
            header: c.header.clone(),
            generation: c.generation,
        }
    }

    /// The name under which this key's token is shared (team and key id).
    pub fn share_name(&self) -> String {
        format!(
            "provider-token:{}:{}",
            self.signer.team_id, self.signer.key_id
        )
    }

    /// The current token as `"<iat> <jwt>"` and its generation, for sharing.
    pub fn snapshot(&self) -> Option<(u64, String)> {
        let cur = common::sync::lock(&self.current);
        cur.as_ref()
            .map(|c| (c.generation, format!("{} {}", c.iat, c.token)))
    }

    /// Takes over a token shared by an earlier process or another instance (`"<iat> <jwt>"`,
    /// as [`snapshot`](Self::snapshot) gives), unless a token is already held or it is due for
    /// refresh. Returns whether it was adopted.
    pub fn adopt(&self, shared: &str) -> bool {
        let Some((iat, token)) = shared.split_once(' ') else {
            return false;
        };
        let Ok(iat) = iat.parse::<u64>() else {
            return false;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let age = Duration::from_secs(now.saturating_sub(iat));
        let mut cur = common::sync::lock(&self.current);
        if cur.is_some() || age >= self.refresh {
            return false;
        }
        let Some(minted) = Instant::now().checked_sub(age) else {
            return false;
        };
        *cur = Current::new(token.to_string(), minted, iat, 1);
        cur.is_some()
    }

    /// APNs said `ExpiredProviderToken` for `generation`: mint a new token unless one was
    /// minted after it already or the last one is younger than `min_gap`. Returns whether a
    /// newer token than `generation` is now available.
    pub fn expired(&self, generation: u64) -> bool {
        let mut cur = common::sync::lock(&self.current);
        match cur.as_ref() {
            Some(c) if c.generation > generation => true,
            Some(c) if c.minted.elapsed() < self.min_gap => false,
            _ => {
                let next = cur.as_ref().map_or(1, |c| c.generation + 1);
                *cur = Some(self.mint(next));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Signer::from_pkcs8_der(doc.as_ref(), "KEY123", "TEAM456").unwrap()
    }

    #[test]
    fn token_is_es256_with_kid_and_iss() {
        let s = signer();
        let t = s.sign(1_700_000_000);
        let parts: Vec<_> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header, r#"{"alg":"ES256","kid":"KEY123"}"#);
        assert_eq!(claims, r#"{"iss":"TEAM456","iat":1700000000}"#);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64);
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            ring::signature::KeyPair::public_key(&s.key).as_ref(),
        );
        public
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn the_public_key_comes_from_the_p8_or_a_pem_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let point = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
        let pem = |label: &str, der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
        };
        let p8 = dir.path().join("AuthKey_K.p8");
        std::fs::write(&p8, pem("PRIVATE KEY", doc.as_ref())).unwrap();
        assert_eq!(public_key_file(&p8, "p8").unwrap(), point);
        let public = dir.path().join("k.pub");
        let spki = [&P256_SPKI_PREFIX[..], &point].concat();
        std::fs::write(&public, pem("PUBLIC KEY", &spki)).unwrap();
        assert_eq!(public_key_file(&public, "public_key").unwrap(), point);
        let e = public_key_file(&p8, "public_key").unwrap_err().to_string();
        assert!(e.starts_with(&p8.display().to_string()), "{e}");
        let e = public_key_file(&dir.path().join("none.p8"), "p8")
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.p8"), "{e}");
    }

    #[test]
    fn expired_refreshes_once_then_rate_limits() {
        let cache = TokenCache::new(
            signer(),
            Duration::from_secs(2400),
            Duration::from_secs(1200),
            Counter::default(),
        );
        let first = cache.get();
        assert_eq!(cache.get().header, first.header, "cached");
        // A token minted just now is not replaced on ExpiredProviderToken (rate limit)...
        assert!(!cache.expired(first.generation));
        // ...but with no minimum gap it is, once: the second report of the same generation
        // sees the newer token and mints nothing.
        let cache = TokenCache::new(
            signer(),
            Duration::from_secs(2400),
            Duration::ZERO,
            Counter::default(),
        );
        let g = cache.get().generation;
        assert!(cache.expired(g));
        let after = cache.get();
        assert_eq!(after.generation, g + 1);
        assert!(cache.expired(g));
        assert_eq!(cache.get().generation, g + 1);
    }

    #[test]
    fn a_shared_token_is_adopted_while_fresh() {
        let a = TokenCache::new(
            signer(),
            Duration::from_secs(2400),
            Duration::from_secs(1200),
            Counter::default(),
        );
        let token = a.get();
        let (_, shared) = a.snapshot().unwrap();
        let b = TokenCache::new(
            signer(),
            Duration::from_secs(2400),
            Duration::from_secs(1200),
            Counter::default(),
        );
        assert!(b.adopt(&shared));
        assert_eq!(b.get().header, token.header);
        let c = TokenCache::new(
            signer(),
            Duration::from_secs(2400),
            Duration::from_secs(1200),
            Counter::default(),
        );
        assert!(
            !c.adopt("1000 old.token.x"),
            "an hour-old token is not adopted"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            !c.adopt(&format!("{now} not\na.header")),
            "a token that cannot be a header value is not adopted"
        );
        assert!(
            c.adopt(&shared),
            "and the cache is still empty after refusing it"
        );
    }
}
