//! The gateway's HTTP routes: JSON in and out, errors as `{"error": code, "message": sentence}`
//! with real status codes.
//!
//! | route | methods |
//! | --- | --- |
//! | `/devices` | `POST` register a device |
//! | `/devices/{id}` | `GET` read, `DELETE` remove |
//! | `/push` | `POST` push to a user's devices (registered, and connected to a room) |
//! | `/broadcast` | `POST` push to a topic's devices, or to all |
//! | `/dispatch?user=U` | `GET` the room for a user's long connection |
//! | `/stats` | `GET` counters |
//! | `/healthz` | `GET` liveness (no faults) |
//! | `/admin/faults` | `GET` read, `POST` replace the faults (no faults) |

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::faults::{FaultConfig, Plan};
use super::room::wire::PushSpec;
use super::state::NewDevice;
use super::Gateway;
use crate::timer;

/// The body type of every response.
pub(crate) type Body = Full<Bytes>;

/// The largest request body accepted (1 MiB); larger ones get `413`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Serves one request: applies the faults, routes, and holds the answer until the planned
/// deadline.
pub(crate) async fn handle(
    gateway: Arc<Gateway>,
    request: http::Request<Incoming>,
) -> Response<Body> {
    // Deadlines are computed from arrival so that the time spent serving is inside the latency.
    let arrival = Instant::now();
    gateway.state.count_request();
    let (parts, body) = request.into_parts();
    let route = Route::parse(parts.uri.path());
    let plan = match route {
        Some(Route::Healthz | Route::AdminFaults) => Plan::NONE,
        _ => gateway.faults.plan(arrival),
    };
    let response = match plan.injected {
        Some(status) => {
            // Read the body anyway so that an HTTP/1.1 connection stays reusable.
            let _ = read_body(&parts, body).await;
            gateway.state.count_injected_error();
            error(
                status,
                "injected",
                format!("injected fault: answering {status} on purpose"),
            )
        }
        None => match route {
            Some(route) => serve(&gateway, route, &parts, body)
                .await
                .unwrap_or_else(ApiError::into_response),
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {}", parts.uri.path()),
            ),
        },
    };
    if let Some(deadline) = plan.deadline {
        timer::sleep_until(deadline).await;
    }
    response
}

/// The routes, matched on the path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Devices,
    Device(&'a str),
    Push,
    Broadcast,
    Dispatch,
    Stats,
    Healthz,
    AdminFaults,
}

impl<'a> Route<'a> {
    fn parse(path: &'a str) -> Option<Self> {
        Some(match path {
            "/devices" => Route::Devices,
            "/push" => Route::Push,
            "/broadcast" => Route::Broadcast,
            "/dispatch" => Route::Dispatch,
            "/stats" => Route::Stats,
            "/healthz" => Route::Healthz,
            "/admin/faults" => Route::AdminFaults,
            _ => {
                let id = path.strip_prefix("/devices/")?;
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                Route::Device(id)
            }
        })
    }

    /// The value of the `Allow` header for this route.
    fn allow(self) -> &'static str {
        match self {
            Route::Devices | Route::Push | Route::Broadcast => "POST",
            Route::Device(_) => "GET, DELETE",
            Route::Dispatch | Route::Stats | Route::Healthz => "GET",
            Route::AdminFaults => "GET, POST",
        }
    }
}

async fn serve(
    gateway: &Gateway,
    route: Route<'_>,
    parts: &Parts,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let state = &gateway.state;
    match (route, &parts.method) {
        (Route::Devices, &Method::POST) => {
            let request: RegisterRequest = read_json(parts, body).await?;
            require_non_empty("user", &request.user)?;
            let device = state.register(NewDevice {
                user: request.user,
                topics: request.topics,
                platform: request.platform,
                token: request.token,
            });
            let mut response = json(StatusCode::CREATED, &*device);
            if let Ok(location) = HeaderValue::from_str(&format!("/devices/{}", device.device_id)) {
                response.headers_mut().insert(LOCATION, location);
            }
            Ok(response)
        }
        (Route::Device(id), &Method::GET) => state
            .device(id)
            .map(|device| json(StatusCode::OK, &*device))
            .ok_or_else(|| device_not_found(id)),
        (Route::Device(id), &Method::DELETE) => state
            .remove(id)
            .map(|_| empty(StatusCode::NO_CONTENT))
            .ok_or_else(|| device_not_found(id)),
        (Route::Push, &Method::POST) => {
            let request: PushRequest = read_json(parts, body).await?;
            require_non_empty("user", &request.user)?;
            let id = request.id.unwrap_or_else(new_message_id);
            let registered = state.devices_of(&request.user);
            let online = gateway.center.unicast(
                &request.user,
                PushSpec {
                    id: &id,
                    kind: "unicast",
                    topic: None,
                    sent_at_ns: request.sent_at_ns,
                    body: request.body.as_ref(),
                },
            );
            if registered + online == 0 {
                return Err(ApiError {
                    status: StatusCode::NOT_FOUND,
                    code: "unknown_user",
                    message: format!(
                        "user `{}` has no registered device and no connection",
                        request.user
                    ),
                    allow: None,
                });
            }
            state.count_push();
            Ok(json(
                StatusCode::ACCEPTED,
                &PushAccepted {
                    id: &id,
                    user: &request.user,
                    devices: registered + online,
                },
            ))
        }
        (Route::Broadcast, &Method::POST) => {
            let request: BroadcastRequest = read_json(parts, body).await?;
            let id = request.id.unwrap_or_else(new_message_id);
            let registered = state.broadcast(request.topic.as_deref());
            let online = gateway.center.broadcast(
                request.topic.as_deref(),
                PushSpec {
                    id: &id,
                    kind: "broadcast",
                    topic: request.topic.as_deref(),
                    sent_at_ns: request.sent_at_ns,
                    body: request.body.as_ref(),
                },
            );
            Ok(json(
                StatusCode::ACCEPTED,
                &BroadcastAccepted {
                    id: &id,
                    recipients: registered + online,
                },
            ))
        }
        (Route::Dispatch, &Method::GET) => {
            let user = query_param(parts.uri.query().unwrap_or(""), "user")
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("query parameter `user` is required".to_owned())
                })?;
            let room = gateway.center.dispatch(&user).ok_or_else(|| ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "no_room",
                message: "no room is running".to_owned(),
                allow: None,
            })?;
            Ok(json(
                StatusCode::OK,
                &Dispatched {
                    user: &user,
                    room: &room.name,
                    ws: format!("ws://{}/ws", room.ws),
                    tcp: room.tcp.to_string(),
                },
            ))
        }
        (Route::Stats, &Method::GET) => Ok(json(StatusCode::OK, &gateway.stats().await)),
        (Route::Healthz, &Method::GET) => Ok(json(StatusCode::OK, &Health { ok: true })),
        (Route::AdminFaults, &Method::GET) => Ok(json(StatusCode::OK, &gateway.faults.current())),
        (Route::AdminFaults, &Method::POST) => {
            let config: FaultConfig = read_json(parts, body).await?;
            config
                .validate()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            gateway.set_faults(config);
            Ok(json(StatusCode::OK, &gateway.faults.current()))
        }
        (route, method) => Err(ApiError::method_not_allowed(
            route,
            method,
            parts.uri.path(),
        )),
    }
}

/// `POST /devices` body. Unknown fields are ignored so that clients may send more.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
struct RegisterRequest {
    user: String,
    #[serde(default)]
    topics: Vec<String>,
    platform: Option<String>,
    token: Option<String>,
}

/// `POST /push` body.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
struct PushRequest {
    user: String,
    id: Option<String>,
    body: Option<serde_json::Value>,
    sent_at_ns: Option<u64>,
}

/// `POST /broadcast` body.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a JSON object")]
struct BroadcastRequest {
    topic: Option<String>,
    id: Option<String>,
    body: Option<serde_json::Value>,
    sent_at_ns: Option<u64>,
}

/// `GET /dispatch` answer.
#[derive(Serialize)]
struct Dispatched<'a> {
    user: &'a str,
    room: &'a str,
    ws: String,
    tcp: String,
}

#[derive(Serialize)]
struct PushAccepted<'a> {
    id: &'a str,
    user: &'a str,
    devices: usize,
}

#[derive(Serialize)]
struct BroadcastAccepted<'a> {
    id: &'a str,
    recipients: u64,
}

#[derive(Serialize)]
struct Health {
    ok: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// An error answer: status, machine-readable code and a human sentence.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The `Allow` header of a `405`.
    allow: Option<&'static str>,
}

impl ApiError {
    fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message,
            allow: None,
        }
    }

    fn method_not_allowed(route: Route<'_>, method: &Method, path: &str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: format!(
                "method {method} is not allowed on {path}; allowed: {}",
                route.allow()
            ),
            allow: Some(route.allow()),
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut response = error(self.status, self.code, self.message);
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

fn device_not_found(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no device with id `{id}`"),
        allow: None,
    }
}

fn require_non_empty(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "field `{field}` must be a non-empty string"
        )));
    }
    Ok(())
}

/// The first value of `name` in a query string, percent-decoded (`+` reads as a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Reads and parses a JSON body; an empty body reads as `{}`.
async fn read_json<T: DeserializeOwned>(parts: &Parts, body: Incoming) -> Result<T, ApiError> {
    check_content_type(parts)?;
    let bytes = read_body(parts, body).await?;
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Accepts a missing content type, `application/json` and any `+json` type.
fn check_content_type(parts: &Parts) -> Result<(), ApiError> {
    let Some(value) = parts.headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "unsupported_media_type",
        message: format!("content type `{text}` is not JSON; send application/json"),
        allow: None,
    })
}

async fn read_body(parts: &Parts, body: Incoming) -> Result<Bytes, ApiError> {
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "payload_too_large",
        message: format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        allow: None,
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_json_type(status, Bytes::from(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "could not serialise a response");
            with_json_type(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(
                    br#"{"error":"internal","message":"could not serialise the response"}"#,
                ),
            )
        }
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: code,
            message: &message,
        },
    )
}

fn with_json_type(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exact_paths() {
        assert_eq!(Route::parse("/devices"), Some(Route::Devices));
        assert_eq!(Route::parse("/devices/abc"), Some(Route::Device("abc")));
        assert_eq!(Route::parse("/devices/"), None);
        assert_eq!(Route::parse("/devices/a/b"), None);
        assert_eq!(Route::parse("/admin/faults"), Some(Route::AdminFaults));
        assert_eq!(Route::parse("/push/"), None);
        assert_eq!(Route::parse("/"), None);
        assert_eq!(Route::parse("/dispatch"), Some(Route::Dispatch));
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(
            query_param("a=1&user=u%201+x", "user").as_deref(),
            Some("u 1 x")
        );
        assert_eq!(query_param("user=%zz%4", "user").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("users=1", "user"), None);
        assert_eq!(query_param("user", "user").as_deref(), Some(""));
    }
}
