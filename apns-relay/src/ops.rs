//! The operations listener: `GET /metrics` (Prometheus text) and `GET /healthz` (200 while
//! the dedupe store answers and the process is not shutting down, else 503).

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

use crate::dedupe::Store;
use crate::metrics::Metrics;

/// Serves `/metrics` and `/healthz` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Option<Arc<dyn Store>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (metrics, store, shutdown) = (metrics.clone(), store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (metrics, store, shutdown) = (metrics.clone(), store.clone(), shutdown.clone());
                let draining = *shutdown.borrow();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, metrics.render()),
                        "/healthz" => health(store.as_deref(), draining).await,
                        _ => (StatusCode::NOT_FOUND, "not found\n".into()),
                    };
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    *res.status_mut() = status;
                    if req.uri().path() == "/metrics" {
                        res.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                    }
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn health(store: Option<&dyn Store>, shutting_down: bool) -> (StatusCode, String) {
    if shutting_down {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
    }
    if let Some(store) = store {
        match tokio::time::timeout(std::time::Duration::from_secs(2), store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("dedupe store: {e}\n"),
                )
            }
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dedupe store: no answer in 2s\n".into(),
                )
            }
        }
    }
    (StatusCode::OK, "ok\n".into())
}
