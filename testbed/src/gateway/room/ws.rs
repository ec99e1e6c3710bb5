//! The server side of the WebSocket opening handshake (RFC 6455 §4.2): `GET /ws` with
//! `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and a key, answered with `101` and the
//! accept hash; anything else is answered with a `400`/`404`/`426` and closed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest handshake request accepted.
const MAX_REQUEST: usize = 8 * 1024;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("connection failed during the WebSocket handshake: {0}")]
    Io(#[from] std::io::Error),
    /// No complete request in time.
    #[error("no WebSocket handshake within {0:?}")]
    Timeout(Duration),
    /// The request was refused with this status line.
    #[error("refused WebSocket handshake: {0}")]
    Refused(&'static str),
}

/// Reads the upgrade request and answers it; on success the stream carries WebSocket frames
/// and the returned bytes are what the client sent after the request (usually nothing).
pub async fn accept(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, HandshakeError> {
    match tokio::time::timeout(within, read_and_answer(stream)).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Timeout(within)),
    }
}

async fn read_and_answer(stream: &mut TcpStream) -> Result<Vec<u8>, HandshakeError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(used)) => {
                let answer = answer(&request);
                let rest = buf[used..].to_vec();
                return match answer {
                    Ok(accept) => {
                        let response = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                        );
                        stream.write_all(response.as_bytes()).await?;
                        Ok(rest)
                    }
                    Err(status) => {
                        let response = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        );
                        stream.write_all(response.as_bytes()).await?;
                        let _ = stream.shutdown().await;
                        Err(HandshakeError::Refused(status))
                    }
                };
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => {}
            Ok(httparse::Status::Partial) => {
                write_status(stream, "431 Request Header Fields Too Large").await;
                return Err(HandshakeError::Refused(
                    "431 Request Header Fields Too Large",
                ));
            }
            Err(_) => {
                write_status(stream, "400 Bad Request").await;
                return Err(HandshakeError::Refused("400 Bad Request"));
            }
        }
    }
}

async fn write_status(stream: &mut TcpStream, status: &str) {
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The `Sec-WebSocket-Accept` value for a valid upgrade request, or the refusal status.
fn answer(request: &httparse::Request<'_, '_>) -> Result<String, &'static str> {
    if request.method != Some("GET") {
        return Err("405 Method Not Allowed");
    }
    let path = request.path.unwrap_or("");
    if path.split('?').next() != Some("/ws") {
        return Err("404 Not Found");
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err("426 Upgrade Required");
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err("426 Upgrade Required");
    }
    let key = header("sec-websocket-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or("400 Bad Request")?;
    Ok(common::websocket::accept_key(key))
}
