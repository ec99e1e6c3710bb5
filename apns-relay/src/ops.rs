//! The operations listener: `GET /metrics` (Prometheus text) and `GET /healthz`, a JSON report
//! of the dedupe store, the outbound pool and the registration in ZooKeeper, `200` while the relay serves and its store
//! answers, `503` while it drains (from SIGTERM until it stops) or when the store fails. It keeps
//! answering through the drain, so a load balancer sees the 503 and stops sending.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::dedupe::Store;
use crate::metrics::Metrics;

/// How long `/healthz` waits for the store to answer.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/healthz` looks at.
#[derive(Clone)]
pub struct Health {
    /// The metrics (`/metrics`, and the pool gauge).
    pub metrics: Arc<Metrics>,
    /// The relay's dedupe store, when a relay runs.
    pub store: Option<Arc<dyn Store>>,
    /// The number of outbound connections the pool keeps, when a relay runs.
    pub pool_size: Option<usize>,
    /// True from the start of a graceful shutdown.
    pub draining: watch::Receiver<bool>,
    /// The registration in ZooKeeper, when `[discovery]` is configured.
    pub discovery: Option<watch::Receiver<crate::registration::Status>>,
}

/// Serves `/metrics` and `/healthz` until `stop` turns true.
pub async fn serve(listener: TcpListener, health: Health, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = stop.wait_for(|s| *s) => return,
        };
        let health = health.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let health = health.clone();
                async move {
                    let (status, content_type, body) = match req.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            "text/plain; version=0.0.4; charset=utf-8",
                            health.metrics.render(),
                        ),
                        "/healthz" => {
                            let (status, body) = health.report().await;
                            (status, "application/json", body)
                        }
                        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                    };
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    *res.status_mut() = status;
                    res.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(content_type),
                    );
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

impl Health {
    /// The `/healthz` status and JSON body:
    /// `{"status": "ok" | "draining" | "store failing", "draining": bool,
    ///   "store": "ok" | "<error>" | null, "pool": {"open": n, "configured": n} | null,
    ///   "discovery": {"registered": bool, "node", "session" | "why"}}` (`discovery` only
    ///   when `[discovery]` is configured).
    /// The registration is reported, not judged: an instance ZooKeeper cannot reach still
    /// serves senders that know its address.
    pub async fn report(&self) -> (StatusCode, String) {
        let draining = *self.draining.borrow();
        let store = match &self.store {
            None => None,
            Some(store) => Some(
                match tokio::time::timeout(STORE_TIMEOUT, store.ping()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer in {STORE_TIMEOUT:?}")),
                },
            ),
        };
        let store_failing = matches!(store, Some(Err(_)));
        let status = if draining {
            "draining"
        } else if store_failing {
            "store failing"
        } else {
            "ok"
        };
        let pool = self.pool_size.map(|configured| {
            serde_json::json!({
                "open": self.metrics.pool_connections.get(),
                "configured": configured,
            })
        });
        let mut body = serde_json::json!({
            "status": status,
            "draining": draining,
            "store": store.map(|s| match s {
                Ok(()) => "ok".to_string(),
                Err(e) => e,
            }),
            "pool": pool,
        });
        if let Some(d) = &self.discovery {
            body["discovery"] = d.borrow().to_json();
        }
        let code = if draining || store_failing {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (code, format!("{body}\n"))
    }
}
