//! APNs error reasons: the `reason` string of an error response body and the HTTP status that
//! carries it, as in Apple's "Handling notification responses from APNs".

use std::fmt;
use std::str::FromStr;

use http::StatusCode;

/// Why APNs refused a notification. [`Reason::as_str`] is the exact string APNs puts in
/// `{"reason": …}`; [`Reason::status`] the status it comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// 400: the collapse identifier exceeds 64 bytes.
    BadCollapseId,
    /// 400: the device token is not hexadecimal of even length.
    BadDeviceToken,
    /// 400: `apns-expiration` is not a number.
    BadExpirationDate,
    /// 400: `apns-id` is not a UUID.
    BadMessageId,
    /// 400: `apns-priority` is not 1, 5 or 10.
    BadPriority,
    /// 400: `apns-topic` is not a valid topic.
    BadTopic,
    /// 400: the device token does not belong to the topic.
    DeviceTokenNotForTopic,
    /// 400: a header was sent more than once.
    DuplicateHeaders,
    /// 400: `apns-push-type` is not a known push type.
    InvalidPushType,
    /// 400: the path names no device token.
    MissingDeviceToken,
    /// 400: `apns-topic` is missing and required.
    MissingTopic,
    /// 400: the body is empty.
    PayloadEmpty,
    /// 400: the body is not a JSON object. APNs documents no reason for this case; the mock
    /// names it so that clients see a 400 they can log.
    BadPayload,
    /// 400: the topic may not be pushed to with this credential.
    TopicDisallowed,
    /// 403: the client certificate is not valid for this server.
    BadCertificate,
    /// 403: the provider token is older than an hour.
    ExpiredProviderToken,
    /// 403: the provider token's signature, key id, team or form is wrong.
    InvalidProviderToken,
    /// 403: neither a certificate nor a provider token was presented.
    MissingProviderToken,
    /// 404: the path is not `/3/device/{token}`.
    BadPath,
    /// 405: the method is not POST.
    MethodNotAllowed,
    /// 410: the device token is no longer active for the topic (the body carries a
    /// `timestamp`).
    Unregistered,
    /// 413: the payload is larger than 4096 bytes (5120 for VoIP).
    PayloadTooLarge,
    /// 429: the provider token is being replaced more often than every 20 minutes.
    TooManyProviderTokenUpdates,
    /// 429: too many requests to one device token.
    TooManyRequests,
    /// 500: an internal error.
    InternalServerError,
    /// 503: the service is unavailable.
    ServiceUnavailable,
    /// 503: the server is shutting down.
    Shutdown,
}

impl Reason {
    /// Every reason, in the order of the list above.
    pub const ALL: [Reason; 27] = [
        Self::BadCollapseId,
        Self::BadDeviceToken,
        Self::BadExpirationDate,
        Self::BadMessageId,
        Self::BadPriority,
        Self::BadTopic,
        Self::DeviceTokenNotForTopic,
        Self::DuplicateHeaders,
        Self::InvalidPushType,
        Self::MissingDeviceToken,
        Self::MissingTopic,
        Self::PayloadEmpty,
        Self::BadPayload,
        Self::TopicDisallowed,
        Self::BadCertificate,
        Self::ExpiredProviderToken,
        Self::InvalidProviderToken,
        Self::MissingProviderToken,
        Self::BadPath,
        Self::MethodNotAllowed,
        Self::Unregistered,
        Self::PayloadTooLarge,
        Self::TooManyProviderTokenUpdates,
        Self::TooManyRequests,
        Self::InternalServerError,
        Self::ServiceUnavailable,
        Self::Shutdown,
    ];

    /// The `reason` string of the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadCollapseId => "BadCollapseId",
            Self::BadDeviceToken => "BadDeviceToken",
            Self::BadExpirationDate => "BadExpirationDate",
            Self::BadMessageId => "BadMessageId",
            Self::BadPriority => "BadPriority",
            Self::BadTopic => "BadTopic",
            Self::DeviceTokenNotForTopic => "DeviceTokenNotForTopic",
            Self::DuplicateHeaders => "DuplicateHeaders",
            Self::InvalidPushType => "InvalidPushType",
            Self::MissingDeviceToken => "MissingDeviceToken",
            Self::MissingTopic => "MissingTopic",
            Self::PayloadEmpty => "PayloadEmpty",
            Self::BadPayload => "BadPayload",
            Self::TopicDisallowed => "TopicDisallowed",
            Self::BadCertificate => "BadCertificate",
            Self::ExpiredProviderToken => "ExpiredProviderToken",
            Self::InvalidProviderToken => "InvalidProviderToken",
            Self::MissingProviderToken => "MissingProviderToken",
            Self::BadPath => "BadPath",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Unregistered => "Unregistered",
            Self::PayloadTooLarge => "PayloadTooLarge",
            Self::TooManyProviderTokenUpdates => "TooManyProviderTokenUpdates",
            Self::TooManyRequests => "TooManyRequests",
            Self::InternalServerError => "InternalServerError",
            Self::ServiceUnavailable => "ServiceUnavailable",
            Self::Shutdown => "Shutdown",
        }
    }

    /// The HTTP status APNs sends this reason with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadCertificate
            | Self::ExpiredProviderToken
            | Self::InvalidProviderToken
            | Self::MissingProviderToken => StatusCode::FORBIDDEN,
            Self::BadPath => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unregistered => StatusCode::GONE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyProviderTokenUpdates | Self::TooManyRequests => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::InternalServerError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable | Self::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A `reason` string that names no [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown APNs reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    /// Reads the exact `reason` string of an APNs error body.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_through_its_string() {
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
            assert_eq!(reason.to_string(), reason.as_str());
        }
        assert_eq!(Reason::Unregistered.status().as_u16(), 410);
        assert_eq!(Reason::PayloadTooLarge.status().as_u16(), 413);
        assert_eq!(Reason::TooManyProviderTokenUpdates.status().as_u16(), 429);
        assert_eq!(Reason::Shutdown.status().as_u16(), 503);
        assert_eq!(Reason::BadTopic.status().as_u16(), 400);
        assert_eq!(
            "Nope".parse::<Reason>().unwrap_err().to_string(),
            "unknown APNs reason \"Nope\""
        );
    }
}
