//! Provider authentication tokens: checks an `authorization: bearer <JWT>` the way APNs does
//! (ES256 signature by a known key id, issuer = team id, `iat` within the last hour) and
//! answers `TooManyProviderTokenUpdates` when a team switches to a new token too soon.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::apns::{bearer_token, token_age, ProviderToken, TokenAge};

use super::{Reason, TokenAuth};

/// Verified tokens kept to skip re-verifying their signature on every request.
const VERIFIED_CACHE: usize = 4096;

/// Checks provider tokens as APNs does: what the mock runs for every request under token
/// auth, public so that a client's tests can check the tokens it mints.
///
/// ```
/// use testbed::apns::{TokenAuth, TokenVerifier};
/// use testbed::pki::ProviderKey;
///
/// let key = ProviderKey::generate("KEY1234567").unwrap();
/// let verifier = TokenVerifier::new(&TokenAuth::new("TEAM123456", [&key]));
/// let now = 1_700_000_000;
/// let jwt = key.provider_token("TEAM123456", now - 5).unwrap();
/// let claims = verifier.check(Some(format!("bearer {jwt}").as_bytes()), now).unwrap();
/// assert_eq!((claims.kid.as_str(), claims.iat), ("KEY1234567", now - 5));
/// let old = key.provider_token("TEAM123456", now - 3600).unwrap();
/// let refused = verifier.check(Some(format!("bearer {old}").as_bytes()), now);
/// assert_eq!(refused.unwrap_err().as_str(), "ExpiredProviderToken");
/// ```
pub struct TokenVerifier {
    team_id: String,
    /// Public keys (uncompressed P-256 points) by key id.
    keys: HashMap<String, Vec<u8>>,
    min_update_interval: Option<Duration>,
    state: Mutex<UpdateState>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("team_id", &self.team_id)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct UpdateState {
    /// Token strings already verified and admitted, with their claims.
    verified: HashMap<String, Claims>,
    /// `(kid, iat)` of every token the team has been allowed to use.
    allowed: HashSet<(String, u64)>,
    /// When the team last switched to a new `(kid, iat)`.
    last_update: Option<Instant>,
}

/// What a JWT holds once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Key id.
    pub kid: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
}

impl TokenVerifier {
    /// A verifier for `auth`'s team and keys, with its update-interval rule.
    pub fn new(auth: &TokenAuth) -> Self {
        Self {
            team_id: auth.team_id.clone(),
            keys: auth
                .keys
                .iter()
                .map(|(kid, key)| (kid.clone(), key.clone()))
                .collect(),
            min_update_interval: auth.min_update_interval,
            state: Mutex::new(UpdateState::default()),
        }
    }

    /// Checks the `authorization` header value (`None` when absent) at `now_secs` (Unix
    /// seconds) and returns the token's key id and `iat`, or the reason APNs would refuse it
    /// with. A token accepted once stays accepted until it expires; a new `(kid, iat)` within
    /// the update interval of the previous new one is `TooManyProviderTokenUpdates`.
    pub fn check(&self, authorization: Option<&[u8]>, now_secs: u64) -> Result<Claims, Reason> {
        let Some(value) = authorization else {
            return Err(Reason::MissingProviderToken);
        };
        let token = bearer_token(value).ok_or(Reason::InvalidProviderToken)?;
        if token.is_empty() {
            return Err(Reason::MissingProviderToken);
        }
        let cached = self.lock().verified.get(token).cloned();
        let known = cached.is_some();
        let claims = match cached {
            Some(claims) => claims,
            None => {
                self.verify(&ProviderToken::parse(token).ok_or(Reason::InvalidProviderToken)?)?
            }
        };
        match token_age(claims.iat, now_secs) {
            Ok(()) => {}
            Err(TokenAge::Future) => return Err(Reason::InvalidProviderToken),
            Err(TokenAge::Expired) => return Err(Reason::ExpiredProviderToken),
        }
        if !known {
            self.admit(token, claims.clone())?;
        }
        Ok(claims)
    }

    /// Checks the key id, the team and the signature.
    fn verify(&self, token: &ProviderToken<'_>) -> Result<Claims, Reason> {
        let key = self
            .keys
            .get(&token.kid)
            .ok_or(Reason::InvalidProviderToken)?;
        if token.iss != self.team_id || !token.verify(key) {
            return Err(Reason::InvalidProviderToken);
        }
        Ok(Claims {
            kid: token.kid.clone(),
            iat: token.iat,
        })
    }

    /// Lets a verified token in, unless it is a new token arriving too soon after the last.
    fn admit(&self, token: &str, claims: Claims) -> Result<(), Reason> {
        let mut state = self.lock();
        let key = (claims.kid.clone(), claims.iat);
        if !state.allowed.contains(&key) {
            if let (Some(interval), Some(last)) = (self.min_update_interval, state.last_update) {
                if last.elapsed() < interval {
                    return Err(Reason::TooManyProviderTokenUpdates);
                }
            }
            state.allowed.insert(key);
            state.last_update = Some(Instant::now());
        }
        if state.verified.len() >= VERIFIED_CACHE {
            state.verified.clear();
        }
        state.verified.insert(token.to_owned(), claims);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, UpdateState> {
        common::sync::lock(&self.state)
    }
}
