//! Who is sending: the relay's senders, indexed by each way they can prove who they are — a
//! client certificate (mTLS, by SHA-256 fingerprint), a bearer token of the relay's own
//! (`apns-relay-authorization`, or `authorization`), or, for stock APNs clients, the ES256
//! provider token they send to Apple in `authorization`. A provider token is verified as APNs
//! verifies it: a sender's `team_id` as `iss`, one of its `keys` as `kid` and signer, `iat`
//! within the hour. Refusals are APNs's own: 403 `MissingProviderToken`,
//! `InvalidProviderToken`, `ExpiredProviderToken`.

use std::collections::HashMap;
use std::sync::Mutex;

use common::apns::{bearer_token, token_age, ProviderToken, TokenAge};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::inbound::Rejection;
use crate::config::{parse_fingerprint, SenderConfig};
use crate::jwt::public_key_file;

/// Sender header: the relay bearer token when `authorization` carries the sender's own
/// provider token.
pub const RELAY_AUTHORIZATION: &str = "apns-relay-authorization";
/// Verified provider tokens kept, so a token's signature is checked once, not per push.
const VERIFIED_CACHE: usize = 4096;

/// The senders, indexed by their credentials.
#[derive(Debug, Default)]
pub struct Senders {
    list: Vec<SenderConfig>,
    by_token: HashMap<String, usize>,
    by_cert: HashMap<[u8; 32], usize>,
    /// (team id, key id) → the sender and the key's public half (uncompressed P-256 point).
    by_key: HashMap<(String, String), (usize, Vec<u8>)>,
    /// Provider tokens whose signature was verified: their sender and `iat`.
    verified: Mutex<HashMap<Box<str>, (usize, u64)>>,
}

/// A sender's key file could not be used; names the config field and the file.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {source}")]
pub struct SenderKeyError {
    field: String,
    source: crate::jwt::KeyError,
}

/// A sender known by its credentials, and the provider token it sent in `authorization` (not
/// a relay bearer token), verified when the sender has `keys`.
pub(crate) struct Identity<'a> {
    pub sender: &'a SenderConfig,
    pub provider_token: Option<&'a HeaderValue>,
}

impl Senders {
    /// Indexes the configured senders, reading each token-auth sender's public keys.
    pub fn load(list: &[SenderConfig]) -> Result<Senders, SenderKeyError> {
        let mut s = Senders {
            list: list.to_vec(),
            ..Senders::default()
        };
        for (i, sender) in list.iter().enumerate() {
            if let Some(t) = &sender.bearer_token {
                s.by_token.insert(t.clone(), i);
            }
            if let Some(fp) = sender
                .client_cert_sha256
                .as_deref()
                .and_then(parse_fingerprint)
            {
                s.by_cert.insert(fp, i);
            }
            let team = sender.team_id.clone().unwrap_or_default();
            for (j, key) in sender.keys.iter().enumerate() {
                let Some((kind, path)) = key.file() else {
                    continue; // `Config::check` refuses this
                };
                let public = public_key_file(path, kind).map_err(|source| SenderKeyError {
                    field: format!("senders[{i}] ({}).keys[{j}].{kind}", sender.name),
                    source,
                })?;
                s.by_key
                    .insert((team.clone(), key.key_id.clone()), (i, public));
            }
        }
        Ok(s)
    }

    /// The sender whose client certificate has this SHA-256 fingerprint.
    pub fn by_certificate(&self, fingerprint: &[u8; 32]) -> Option<usize> {
        self.by_cert.get(fingerprint).copied()
    }

    fn by_bearer(&self, value: Option<&HeaderValue>) -> Option<usize> {
        let token = bearer_token(value?.as_bytes())?;
        self.by_token.get(token).copied()
    }

    /// Who sent a request with headers `h` (over a connection whose client certificate named
    /// `cert_sender`), at `now_secs` (Unix seconds).
    pub(crate) fn identify<'a>(
        &'a self,
        h: &'a HeaderMap,
        cert_sender: Option<usize>,
        now_secs: u64,
    ) -> Result<Identity<'a>, Rejection> {
        let authorization = h.get(http::header::AUTHORIZATION);
        let relay_token_in_authorization = self.by_bearer(authorization);
        // The sender's relay token is never taken for its provider token.
        let own = authorization.filter(|_| relay_token_in_authorization.is_none());
        let known = cert_sender
            .or_else(|| self.by_bearer(h.get(RELAY_AUTHORIZATION)))
            .or(relay_token_in_authorization);
        let index = match (known, own) {
            (Some(i), Some(token)) if self.has_keys(i) => {
                if self.verify(token, now_secs)? != i {
                    return Err(forbidden("InvalidProviderToken"));
                }
                i
            }
            (Some(i), _) => i,
            (None, Some(token)) => self.verify(token, now_secs)?,
            (None, None) if h.contains_key(RELAY_AUTHORIZATION) => {
                return Err(forbidden("InvalidProviderToken"))
            }
            (None, None) => return Err(forbidden("MissingProviderToken")),
        };
        Ok(Identity {
            sender: &self.list[index],
            provider_token: own,
        })
    }

    fn has_keys(&self, sender: usize) -> bool {
        !self.list[sender].keys.is_empty()
    }

    /// The sender whose key signed this `authorization` value, as APNs would judge it.
    fn verify(&self, authorization: &HeaderValue, now_secs: u64) -> Result<usize, Rejection> {
        let token =
            bearer_token(authorization.as_bytes()).ok_or(forbidden("InvalidProviderToken"))?;
        if token.is_empty() {
            return Err(forbidden("MissingProviderToken"));
        }
        let cached = common::sync::lock(&self.verified).get(token).copied();
        let (sender, iat) = match cached {
            Some(hit) => hit,
            None => {
                let parsed =
                    ProviderToken::parse(token).ok_or(forbidden("InvalidProviderToken"))?;
                let (sender, key) = self
                    .by_key
                    .get(&(parsed.iss.clone(), parsed.kid.clone()))
                    .ok_or(forbidden("InvalidProviderToken"))?;
                if !parsed.verify(key) {
                    return Err(forbidden("InvalidProviderToken"));
                }
                let mut verified = common::sync::lock(&self.verified);
                if verified.len() >= VERIFIED_CACHE {
                    verified.clear();
                }
                verified.insert(token.into(), (*sender, parsed.iat));
                (*sender, parsed.iat)
            }
        };
        match token_age(iat, now_secs) {
            Ok(()) => Ok(sender),
            Err(TokenAge::Expired) => Err(forbidden("ExpiredProviderToken")),
            Err(TokenAge::Future) => Err(forbidden("InvalidProviderToken")),
        }
    }
}

fn forbidden(reason: &'static str) -> Rejection {
    Rejection(StatusCode::FORBIDDEN, reason)
}
