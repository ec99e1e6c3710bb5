//! Validation of one `POST /3/device/{token}` request the way APNs validates it: path and
//! method, the `apns-*` headers, the payload. Authentication is checked by the caller
//! (`token` or the connection's certificate) before [`validate`] runs.

use http::{HeaderMap, Method};

use super::Reason;

/// Largest payload APNs accepts, in bytes.
pub const MAX_PAYLOAD: usize = 4096;
/// Largest VoIP payload APNs accepts, in bytes.
pub const MAX_VOIP_PAYLOAD: usize = 5120;
/// Longest `apns-collapse-id`, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;
/// The values of `apns-push-type` APNs knows.
pub use common::apns::PUSH_TYPES;

/// Checks what APNs checks of a request before credentials and device state: path and
/// method, the `apns-*` headers (with `apns-topic` required), the payload. Returns the device
/// token or the reason.
///
/// ```
/// use http::{HeaderMap, Method};
/// use testbed::apns::{check_request, Reason};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("apns-topic", "com.example.app".parse().unwrap());
/// let body = br#"{"aps":{"alert":"hi"}}"#;
/// assert_eq!(check_request(&Method::POST, "/3/device/0a0b", &headers, body).unwrap(), "0a0b");
/// headers.insert("apns-priority", "7".parse().unwrap());
/// let refused = check_request(&Method::POST, "/3/device/0a0b", &headers, body);
/// assert_eq!(refused.unwrap_err(), Reason::BadPriority);
/// ```
pub fn check_request(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Reason> {
    let token = route(method, path)?;
    let read = self::headers(headers, true)?;
    payload(body, read.push_type.as_deref())?;
    Ok(token)
}

/// The headers of a valid request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Headers {
    pub apns_id: Option<String>,
    pub topic: Option<String>,
    pub collapse_id: Option<String>,
    pub push_type: Option<String>,
    pub priority: Option<u8>,
    pub expiration: Option<u64>,
}

/// The device token named by the path, or why the path or method is refused.
pub(crate) fn route(method: &Method, path: &str) -> Result<String, Reason> {
    let Some(token) = path.strip_prefix("/3/device/") else {
        return Err(Reason::BadPath);
    };
    if token.contains(['/', '?']) {
        return Err(Reason::BadPath);
    }
    if method != Method::POST {
        return Err(Reason::MethodNotAllowed);
    }
    if token.is_empty() {
        return Err(Reason::MissingDeviceToken);
    }
    if token.len() % 2 != 0 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Reason::BadDeviceToken);
    }
    Ok(token.to_owned())
}

/// Reads and checks the `apns-*` headers. `topic_required` is false only for a certificate
/// connection whose certificate covers a single topic.
pub(crate) fn headers(map: &HeaderMap, topic_required: bool) -> Result<Headers, Reason> {
    for name in [
        "apns-id",
        "apns-topic",
        "apns-collapse-id",
        "apns-push-type",
        "apns-priority",
        "apns-expiration",
        "authorization",
    ] {
        if map.get_all(name).iter().count() > 1 {
            return Err(Reason::DuplicateHeaders);
        }
    }
    let text = |name: &str, bad: Reason| -> Result<Option<String>, Reason> {
        map.get(name)
            .map(|v| v.to_str().map(str::to_owned).map_err(|_| bad))
            .transpose()
    };
    let apns_id = text("apns-id", Reason::BadMessageId)?;
    if let Some(id) = &apns_id {
        if !is_uuid(id) {
            return Err(Reason::BadMessageId);
        }
    }
    let topic = text("apns-topic", Reason::BadTopic)?;
    match &topic {
        None if topic_required => return Err(Reason::MissingTopic),
        Some(topic) if !is_topic(topic) => return Err(Reason::BadTopic),
        _ => {}
    }
    let push_type = text("apns-push-type", Reason::InvalidPushType)?;
    if let Some(push_type) = &push_type {
        if !PUSH_TYPES.contains(&push_type.as_str()) {
            return Err(Reason::InvalidPushType);
        }
    }
    let priority = match text("apns-priority", Reason::BadPriority)?.as_deref() {
        None => None,
        Some("10") => Some(10),
        Some("5") => Some(5),
        Some("1") => Some(1),
        Some(_) => return Err(Reason::BadPriority),
    };
    // Apple: background notifications must be sent with priority 5; 10 is an error.
    if push_type.as_deref() == Some("background") && priority == Some(10) {
        return Err(Reason::BadPriority);
    }
    let expiration = text("apns-expiration", Reason::BadExpirationDate)?
        .map(|e| e.parse::<u64>().map_err(|_| Reason::BadExpirationDate))
        .transpose()?;
    let collapse_id = text("apns-collapse-id", Reason::BadCollapseId)?;
    if collapse_id
        .as_ref()
        .is_some_and(|c| c.len() > MAX_COLLAPSE_ID)
    {
        return Err(Reason::BadCollapseId);
    }
    Ok(Headers {
        apns_id,
        topic,
        collapse_id,
        push_type,
        priority,
        expiration,
    })
}

/// Whether `topic` may be pushed to when the credential allows `allowed` (empty: any). A
/// topic is allowed when it is one of them or one of them plus the suffix of a push type
/// (`.voip`, `.complication`, `.pushkit.fileprovider`, `.location-query`,
/// `.push-type.liveactivity`, `.voip-ptt`).
pub(crate) fn topic_allowed(topic: &str, allowed: &[String]) -> bool {
    const SUFFIXES: &[&str] = &[
        "",
        ".voip",
        ".complication",
        ".pushkit.fileprovider",
        ".location-query",
        ".push-type.liveactivity",
        ".voip-ptt",
    ];
    allowed.is_empty()
        || allowed.iter().any(|base| {
            topic
                .strip_prefix(base.as_str())
                .is_some_and(|rest| SUFFIXES.contains(&rest))
        })
}

/// Checks the payload: present, within the size limit of the push type, a JSON object.
pub(crate) fn payload(body: &[u8], push_type: Option<&str>) -> Result<(), Reason> {
    let limit = payload_limit(push_type);
    if body.is_empty() {
        return Err(Reason::PayloadEmpty);
    }
    if body.len() > limit {
        return Err(Reason::PayloadTooLarge);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(Reason::BadPayload),
    }
}

/// The payload size limit for a push type.
pub(crate) fn payload_limit(push_type: Option<&str>) -> usize {
    if push_type == Some("voip") {
        MAX_VOIP_PAYLOAD
    } else {
        MAX_PAYLOAD
    }
}

/// `8-4-4-4-12` hexadecimal digits, either case.
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A bundle id like topic: non-empty, printable ASCII without spaces.
fn is_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn routes() {
        let post = Method::POST;
        assert_eq!(route(&post, "/3/device/ab12").unwrap(), "ab12");
        assert_eq!(
            route(&post, "/3/device/").unwrap_err(),
            Reason::MissingDeviceToken
        );
        assert_eq!(
            route(&post, "/3/device/abc").unwrap_err(),
            Reason::BadDeviceToken
        );
        assert_eq!(
            route(&post, "/3/device/zz").unwrap_err(),
            Reason::BadDeviceToken
        );
        assert_eq!(route(&post, "/2/device/ab").unwrap_err(), Reason::BadPath);
        assert_eq!(
            route(&Method::GET, "/3/device/ab").unwrap_err(),
            Reason::MethodNotAllowed
        );
    }

    #[test]
    fn header_reasons() {
        let ok = [("apns-topic", "com.example.app")];
        assert!(headers(&map(&ok), true).is_ok());
        let cases: &[(&[(&str, &str)], Reason)] = &[
            (&[], Reason::MissingTopic),
            (&[("apns-topic", "a b")], Reason::BadTopic),
            (
                &[("apns-topic", "t"), ("apns-id", "not-a-uuid")],
                Reason::BadMessageId,
            ),
            (
                &[("apns-topic", "t"), ("apns-push-type", "fax")],
                Reason::InvalidPushType,
            ),
            (
                &[("apns-topic", "t"), ("apns-priority", "7")],
                Reason::BadPriority,
            ),
            (
                &[
                    ("apns-topic", "t"),
                    ("apns-push-type", "background"),
                    ("apns-priority", "10"),
                ],
                Reason::BadPriority,
            ),
            (
                &[("apns-topic", "t"), ("apns-expiration", "soon")],
                Reason::BadExpirationDate,
            ),
            (
                &[("apns-topic", "t"), ("apns-topic", "u")],
                Reason::DuplicateHeaders,
            ),
        ];
        for (pairs, reason) in cases {
            assert_eq!(
                headers(&map(pairs), true).unwrap_err(),
                *reason,
                "{pairs:?}"
            );
        }
        assert!(headers(&map(&[]), false).is_ok());
        let long = "x".repeat(65);
        let mut m = map(&ok);
        m.insert("apns-collapse-id", long.parse().unwrap());
        assert_eq!(headers(&m, true).unwrap_err(), Reason::BadCollapseId);
        m.insert("apns-collapse-id", "x".repeat(64).parse().unwrap());
        assert_eq!(headers(&m, true).unwrap().collapse_id.unwrap().len(), 64);
    }

    #[test]
    fn payloads_and_topics() {
        assert_eq!(payload(b"", None).unwrap_err(), Reason::PayloadEmpty);
        assert_eq!(payload(b"[1]", None).unwrap_err(), Reason::BadPayload);
        assert!(payload(b"{}", None).is_ok());
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(4090));
        assert_eq!(
            payload(big.as_bytes(), None).unwrap_err(),
            Reason::PayloadTooLarge
        );
        assert!(payload(big.as_bytes(), Some("voip")).is_ok());
        let allowed = vec!["com.example.app".to_owned()];
        assert!(topic_allowed("com.example.app.voip", &allowed));
        assert!(!topic_allowed("com.example.app.other", &allowed));
        assert!(!topic_allowed("com.example", &allowed));
        assert!(topic_allowed("anything", &[]));
    }
}
