//! Constants of Apple's push notification service (APNs) HTTP/2 API, shared by the mock APNs
//! (which validates requests as Apple does) and the relay (which refuses what Apple would).

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
