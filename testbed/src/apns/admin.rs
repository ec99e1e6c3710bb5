//! The mock's admin endpoint: plain HTTP (keep it on loopback) for an operator or a test
//! outside the mock's process to read what it accepted.
//!
//! - `GET /notifications`: `{"count", "duplicates", "notifications": [...]}`, every accepted
//!   notification in arrival order ([`Notification::to_json`](super::Notification::to_json)).
//! - `GET /stats`: the counters ([`ApnsStats`](super::ApnsStats)) plus `duplicates` (apns-ids
//!   accepted more than once) and `duplicate_ids` (`[{"apns_id", "times"}]`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Mock;

/// Serves the admin endpoint until `stop` turns true.
pub(crate) async fn serve(listener: TcpListener, mock: Arc<Mock>, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = stop.wait_for(|s| *s) => return,
        };
        let mock = Arc::clone(&mock);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (status, body) = answer(&mock, req.method(), req.uri().path());
                let mut res = Response::new(Full::new(Bytes::from(body)));
                *res.status_mut() = status;
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                async move { Ok::<_, Infallible>(res) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn answer(mock: &Mock, method: &http::Method, path: &str) -> (StatusCode, String) {
    if method != http::Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error":"GET only"}"#.into(),
        );
    }
    let duplicates = mock.seen.duplicates();
    let body = match path {
        "/notifications" => {
            let list: Vec<_> = mock
                .seen
                .notifications()
                .iter()
                .map(|n| n.to_json())
                .collect();
            serde_json::json!({
                "count": list.len(),
                "duplicates": duplicates.len(),
                "notifications": list,
            })
        }
        "/stats" => {
            let mut stats = serde_json::to_value(mock.seen.stats()).unwrap_or_default();
            stats["duplicates"] = duplicates.len().into();
            stats["duplicate_ids"] = duplicates
                .iter()
                .map(|(id, times)| serde_json::json!({"apns_id": id, "times": times}))
                .collect();
            stats
        }
        _ => {
            return (
                StatusCode::NOT_FOUND,
                r#"{"error":"GET /notifications or /stats"}"#.into(),
            )
        }
    };
    (StatusCode::OK, format!("{body}\n"))
}
