//! A request as engines send it: rendered from a step ([`prepare`]) into a [`Prepared`]
//! request, carried by a [`Transport`] (goose's client in the closed model, the open-rate
//! driver's connection pool otherwise), answered with a [`Response`] or a [`TransportError`].

use std::time::Duration;

use bytes::Bytes;

use super::vars::Vars;
use crate::scenario::step::{Body, Request};
use crate::scenario::template::Unset;

/// A request ready for the wire.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The method.
    pub method: http::Method,
    /// The absolute URL.
    pub url: String,
    /// Headers, as rendered.
    pub headers: Vec<(String, String)>,
    /// The body, if any.
    pub body: Option<Bytes>,
}

/// A response as the journey sees it.
#[derive(Debug, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why a request failed before a response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made.
    #[error("connect: {0}")]
    Connect(String),
    /// No response within the timeout.
    #[error("timeout")]
    Timeout,
    /// The connection failed mid-request.
    #[error("{0}")]
    Io(String),
    /// The URL cannot be requested.
    #[error("bad url: {0}")]
    BadUrl(String),
    /// The run ended (its grace over, or interrupted) while the request was in flight.
    #[error("unfinished when the run ended")]
    Unfinished,
}

impl TransportError {
    /// The `cause` tag of a request that failed this way.
    pub fn cause(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "connect",
            TransportError::Timeout => "timeout",
            TransportError::Io(_) => "io",
            TransportError::BadUrl(_) => "bad_url",
            TransportError::Unfinished => "unfinished",
        }
    }
}

/// Carries one request and reads the whole response.
pub trait Transport {
    /// Sends `req` under `name` (the step name), returning the whole response.
    fn send(
        &mut self,
        name: &str,
        req: Prepared,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<Response, TransportError>> + Send;
}

/// Why a step could not be rendered into a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    /// A template read a variable that is not set.
    #[error(transparent)]
    Unset(#[from] Unset),
    /// A header's rendered value is not a valid HTTP header value (a line break from a
    /// variable, say).
    #[error("header `{0}`: the rendered value is not a valid HTTP header value")]
    Header(String),
}

impl PrepareError {
    /// The `cause` tag of an iteration that stopped here.
    pub fn cause(&self) -> &'static str {
        match self {
            PrepareError::Unset(_) => "template",
            PrepareError::Header(_) => "header",
        }
    }
}

/// Renders a request step.
pub fn prepare(req: &Request, vars: &Vars) -> Result<Prepared, PrepareError> {
    let url = req.url.render(vars)?;
    let mut headers = Vec::with_capacity(req.headers.len() + 1);
    for (name, value) in &req.headers {
        let value = value.render(vars)?;
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(PrepareError::Header(name.clone()));
        }
        headers.push((name.clone(), value));
    }
    let body = match &req.body {
        Body::None => None,
        Body::Raw(t) => Some(Bytes::from(t.render(vars)?)),
        Body::Json(j) => {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("content-type".into(), "application/json".into()));
            }
            let mut out = String::with_capacity(256);
            j.render_into(vars, &mut out)?;
            Some(Bytes::from(out))
        }
    };
    Ok(Prepared {
        method: method_of(req),
        url,
        headers,
        body,
    })
}

fn method_of(req: &Request) -> http::Method {
    use crate::scenario::Method as M;
    match req.method {
        M::Get => http::Method::GET,
        M::Post => http::Method::POST,
        M::Put => http::Method::PUT,
        M::Patch => http::Method::PATCH,
        M::Delete => http::Method::DELETE,
        M::Head => http::Method::HEAD,
    }
}
