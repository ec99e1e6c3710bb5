//! The dispatch step of a device connect: `GET` the dispatch URL and take the device's address
//! out of the answer (JSON pointer, regex or header), over a shard's pool of kept-alive
//! HTTP/1.1 connections.
//!
//! The calls go through the open-rate driver's connection ([`Conn`]: hyper's HTTP/1.1 client
//! over TCP or rustls), not reqwest. One dispatch call precedes every device connect, and in a
//! profile of the 100k ramp reqwest's request path (URL parsing with IDNA, its tower layers,
//! large boxed futures, the pooled client's checkout) took about a fifth of a shard's CPU.
//! Like any dispatcher client, a call must answer 2xx; redirects are not followed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::connection::Cause;
use crate::engine::http::{origin_of, Conn, Origin, Tls};
use crate::journey::extract::Message;
use crate::journey::{Prepared, Response};
use crate::scenario::Source;

/// A dispatch call's deadline, connect included.
const TIMEOUT: Duration = Duration::from_secs(10);

fn failed() -> Cause {
    Cow::Borrowed("dispatch")
}

/// A shard's dispatch calls: at most `concurrency` at once, so at most that many sockets are
/// held open to the gateway's HTTP API (whose process has its own open-file limit), each kept
/// alive for the next call.
pub struct Dispatcher {
    tls: Tls,
    slots: Semaphore,
    idle: Mutex<HashMap<Origin, Vec<Conn>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher making at most `concurrency` calls at once.
    pub fn new(tls: Tls, concurrency: usize) -> Dispatcher {
        Dispatcher {
            tls,
            slots: Semaphore::new(concurrency),
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Calls `url` and extracts the address by `source`.
    pub async fn address(&self, url: &str, source: &Source) -> Result<String, Cause> {
        let _slot = self.slots.acquire().await.map_err(|_| failed())?;
        let uri: http::Uri = url.parse().map_err(|_| failed())?;
        let origin = origin_of(&uri).map_err(|_| failed())?;
        let response = tokio::time::timeout(TIMEOUT, self.get(&origin, uri))
            .await
            .map_err(|_| failed())??;
        if !(200..300).contains(&response.status) {
            return Err(failed());
        }
        Message::http(&response.body, &response.headers)
            .extract(source)
            .map(|a| a.into_owned())
            .ok_or_else(failed)
    }

    /// `GET uri` on a kept-alive connection to `origin`, or a new one.
    async fn get(&self, origin: &Origin, uri: http::Uri) -> Result<Response, Cause> {
        if let Some(mut conn) = self.take(origin) {
            // The server may have closed an idle connection since: a reused connection that
            // fails is retried once on a new one (a GET is safe to repeat).
            if let Ok(response) = conn.send(uri.clone(), get_request()).await {
                self.put(conn);
                return Ok(response);
            }
        }
        let mut conn = Conn::connect(origin, false, &self.tls, TIMEOUT)
            .await
            .map_err(|_| failed())?;
        let response = conn.send(uri, get_request()).await.map_err(|_| failed())?;
        self.put(conn);
        Ok(response)
    }

    fn take(&self, origin: &Origin) -> Option<Conn> {
        let mut idle = common::sync::lock(&self.idle);
        let conns = idle.get_mut(origin)?;
        while let Some(conn) = conns.pop() {
            if conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, conn: Conn) {
        if conn.is_usable() {
            let mut idle = common::sync::lock(&self.idle);
            idle.entry(conn.origin().clone()).or_default().push(conn);
        }
    }
}

fn get_request() -> Prepared {
    Prepared {
        method: http::Method::GET,
        url: String::new(),
        headers: Vec::new(),
        body: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A dispatcher that answers requests with `answers` in turn; after `per_conn` answers on
    /// a connection it reads one more request and closes without answering (an idle
    /// connection closed just as it is reused). Counts the connections it accepted.
    async fn server(answers: Vec<&'static str>, per_conn: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut next = 0;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                for served in 0..=per_conn {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    if buf.is_empty() || served == per_conn {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    assert!(
                        text.starts_with("GET /dispatch?user=u1 HTTP/1.1\r\n"),
                        "{text}"
                    );
                    assert!(
                        text.to_ascii_lowercase().contains("host: 127.0.0.1:"),
                        "{text}"
                    );
                    let answer = answers[next % answers.len()];
                    next += 1;
                    s.write_all(answer.as_bytes()).await.unwrap();
                }
                drop(s);
            }
        });
        (format!("http://{addr}/dispatch?user=u1"), accepted)
    }

    fn json(pointer: &str) -> Source {
        Source::Json(pointer.into())
    }

    #[tokio::test]
    async fn extracts_the_address_and_keeps_the_connection() {
        let (url, accepted) = server(
            vec!["HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 29\r\n\r\n{\"ws\":\"ws://127.0.0.1:9/ws\"}\n"],
            100,
        )
        .await;
        let d = Dispatcher::new(Tls::new(true).unwrap(), 4);
        for _ in 0..5 {
            let address = d.address(&url, &json("/ws")).await.unwrap();
            assert_eq!(address, "ws://127.0.0.1:9/ws");
        }
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            1,
            "one kept-alive connection"
        );
    }

    #[tokio::test]
    async fn chunked_bodies_and_header_sources_work() {
        let (url, _) = server(
            vec!["HTTP/1.1 200 OK\r\nx-room: tcp://127.0.0.1:7\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n\"b\"\r\n1\r\n}\r\n0\r\n\r\n"],
            100,
        )
        .await;
        let d = Dispatcher::new(Tls::new(true).unwrap(), 4);
        assert_eq!(d.address(&url, &json("/a")).await.unwrap(), "b");
        let header = Source::Header("x-room".into());
        assert_eq!(d.address(&url, &header).await.unwrap(), "tcp://127.0.0.1:7");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        // One answer per connection, without `connection: close`: each later call finds the
        // kept connection, which closes on its request; the call goes again on a new one.
        let (url, accepted) = server(
            vec!["HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ws\":\"x\"}\n"],
            1,
        )
        .await;
        let d = Dispatcher::new(Tls::new(true).unwrap(), 4);
        for _ in 0..3 {
            assert_eq!(d.address(&url, &json("/ws")).await.unwrap(), "x");
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn refusals_and_missing_addresses_fail_as_dispatch() {
        let (url, _) = server(
            vec![
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
                "HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n",
            ],
            100,
        )
        .await;
        let d = Dispatcher::new(Tls::new(true).unwrap(), 4);
        for _ in 0..3 {
            assert_eq!(d.address(&url, &json("/ws")).await.unwrap_err(), "dispatch");
        }
        for bad in [
            "not a url",
            "ftp://127.0.0.1/x",
            "http://127.0.0.1:1/unreachable",
        ] {
            assert_eq!(d.address(bad, &json("/ws")).await.unwrap_err(), "dispatch");
        }
    }
}
