//! Apple's push notification service (APNs) HTTP/2 API as the mock APNs (which validates
//! requests as Apple does) and the relay (which refuses what Apple would) both read it: the
//! push types, and provider tokens ([`ProviderToken`]: an ES256 JWT in `authorization`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

/// Values `apns-push-type` may take (Apple's "Sending notification requests to APNs").
pub const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
];

/// APNs refuses provider tokens older than this (`ExpiredProviderToken`).
pub const TOKEN_LIFETIME_SECS: u64 = 3600;
/// An `iat` this far in the future is still taken (clock skew between provider and APNs).
pub const TOKEN_FUTURE_SKEW_SECS: u64 = 60;

/// The JWT of an `authorization` value `bearer <jwt>` (the scheme in any case), or `None` when
/// the value is not a bearer token. The JWT may be empty.
pub fn bearer_token(authorization: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(authorization).ok()?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim()),
        _ => None,
    }
}

/// A provider token, decoded but not yet verified: ES256, with the key id (`kid`), the team
/// (`iss`) and the issue time (`iat`, Unix seconds) APNs reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderToken<'a> {
    /// Key id.
    pub kid: String,
    /// Team id.
    pub iss: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    signed: &'a str,
    signature: Vec<u8>,
}

impl<'a> ProviderToken<'a> {
    /// Decodes `header.claims.signature`: `None` unless it is three base64url parts whose
    /// header names `alg` ES256 and a `kid`, and whose claims hold a string `iss` and an
    /// integer `iat`.
    pub fn parse(token: &'a str) -> Option<ProviderToken<'a>> {
        let mut parts = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let header = json_object(header)?;
        let claims = json_object(claims)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
            return None;
        }
        Some(ProviderToken {
            kid: header.get("kid")?.as_str()?.to_owned(),
            iss: claims.get("iss")?.as_str()?.to_owned(),
            iat: claims.get("iat")?.as_u64()?,
            signed: &token[..token.len() - signature.len() - 1],
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// Whether the signature is `public_key`'s (an uncompressed SEC1 P-256 point).
    pub fn verify(&self, public_key: &[u8]) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
            .verify(self.signed.as_bytes(), &self.signature)
            .is_ok()
    }

    /// [`token_age`] of this token at `now_secs`.
    pub fn age(&self, now_secs: u64) -> Result<(), TokenAge> {
        token_age(self.iat, now_secs)
    }
}

/// How APNs judges a provider token issued at `iat` when it arrives at `now_secs` (Unix
/// seconds): `Ok` while younger than an hour, [`TokenAge::Expired`] after, [`TokenAge::Future`]
/// when issued later than the clock skew allows.
pub fn token_age(iat: u64, now_secs: u64) -> Result<(), TokenAge> {
    if iat > now_secs + TOKEN_FUTURE_SKEW_SECS {
        return Err(TokenAge::Future);
    }
    if now_secs.saturating_sub(iat) >= TOKEN_LIFETIME_SECS {
        return Err(TokenAge::Expired);
    }
    Ok(())
}

/// Why a provider token's `iat` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAge {
    /// An hour old or more: APNs answers `ExpiredProviderToken`.
    Expired,
    /// Issued in the future: APNs answers `InvalidProviderToken`.
    Future,
}

fn json_object(part: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn a_token_is_decoded_and_its_age_judged() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256","kid":"K1"}"#),
            b64(r#"{"iss":"T1","iat":1000}"#),
            b64("sig")
        );
        let t = ProviderToken::parse(&token).unwrap();
        assert_eq!((t.kid.as_str(), t.iss.as_str(), t.iat), ("K1", "T1", 1000));
        assert_eq!(t.age(1000 + 3599), Ok(()));
        assert_eq!(t.age(1000 + 3600), Err(TokenAge::Expired));
        assert_eq!(t.age(900), Err(TokenAge::Future));
        assert!(!t.verify(&[4; 65]), "a made-up signature does not verify");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let header = b64(r#"{"alg":"ES256","kid":"K1"}"#);
        let claims = b64(r#"{"iss":"T1","iat":1000}"#);
        for bad in [
            String::new(),
            format!("{header}.{claims}"),
            format!("{header}.{claims}.c2ln.extra"),
            format!("{}.{claims}.c2ln", b64(r#"{"alg":"HS256","kid":"K1"}"#)),
            format!("{}.{claims}.c2ln", b64(r#"{"alg":"ES256"}"#)),
            format!("{header}.{}.c2ln", b64(r#"{"iss":"T1","iat":"soon"}"#)),
            format!("{header}.{claims}.!!"),
        ] {
            assert!(ProviderToken::parse(&bad).is_none(), "{bad}");
        }
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"basic abc"), None);
    }
}
