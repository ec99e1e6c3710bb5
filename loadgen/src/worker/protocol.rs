//! Locust's master/worker messages on the wire: a ZeroMQ DEALER socket (identity = the
//! worker's client id) connected to the master's ROUTER; each message is one frame holding the
//! msgpack array `[type, data, node_id]` (`locust/rpc/protocol.py`). [`Link`] owns the socket:
//! one task writes what [`Link::send`] queues, another reads, so a slow send never holds up
//! the heartbeat.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

/// A message from the master, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// Its type (`ack`, `spawn`, `stop`, …).
    pub kind: String,
    /// Its data (`null` when there is none).
    pub data: serde_json::Value,
}

/// What went wrong talking to the master.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The address is not `HOST:PORT`.
    #[error("--master `{0}`: expected HOST:PORT such as 127.0.0.1:5557")]
    Address(String),
    /// No ZeroMQ peer answered at the address in time.
    #[error("no Locust master answered at {address} within {within}: {why}")]
    Unreachable {
        /// The master's address.
        address: String,
        /// How long we tried.
        within: String,
        /// The last error.
        why: String,
    },
    /// Something answered, but not in ZeroMQ (ZMTP 3).
    #[error("{address} does not speak ZeroMQ ({why}): is it a Locust master's port (--master-bind-port, 5557 by default)?")]
    NotZmq {
        /// The master's address.
        address: String,
        /// The handshake's error.
        why: String,
    },
    /// A frame that is not Locust's msgpack `[type, data, node_id]`.
    #[error("{address} is not a Locust master: it sent a frame that is not a msgpack [type, data, node_id] message ({why})")]
    NotLocust {
        /// The master's address.
        address: String,
        /// What did not decode.
        why: String,
    },
}

/// `HOST:PORT` (or `HOST`, port 5557) as a ZeroMQ TCP endpoint.
pub fn endpoint(master: &str) -> Result<String, LinkError> {
    let bad = || LinkError::Address(master.to_string());
    let (host, port) = match master.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (master, 5557),
    };
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok(format!("tcp://{host}:{port}"))
}

/// Encodes one message: `rmp_serde::to_vec_named`, so structs and maps travel as msgpack
/// maps as Python's `msgpack` writes dicts (plain `to_vec` writes structs as arrays).
pub fn encode(kind: &str, data: &impl Serialize, node_id: &str) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail; an empty frame would be refused by the
    // master as garbage rather than lose the worker here.
    rmp_serde::to_vec_named(&(kind, data, node_id)).unwrap_or_default()
}

/// Decodes one frame from the master.
pub fn decode(frame: &[u8]) -> Result<Incoming, String> {
    match rmp_serde::from_slice::<(String, serde_json::Value, serde_json::Value)>(frame) {
        Ok((kind, data, _)) => Ok(Incoming { kind, data }),
        Err(first) => {
            // A message whose data has non-string map keys (possible in custom messages of
            // other plugins) still tells its type; ours never carry such data.
            let any = rmp_serde::from_slice::<(String, serde::de::IgnoredAny, serde::de::IgnoredAny)>(
                frame,
            );
            match any {
                Ok((kind, _, _)) => Ok(Incoming {
                    kind,
                    data: serde_json::Value::Null,
                }),
                Err(_) => Err(first.to_string()),
            }
        }
    }
}

/// The connection to the master.
#[derive(Debug)]
pub struct Link {
    out: Option<mpsc::UnboundedSender<Vec<u8>>>,
    incoming: mpsc::UnboundedReceiver<Result<Incoming, String>>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Connects to `address` as `client_id`, waiting at most `within` for the ZeroMQ
    /// handshake.
    pub async fn connect(
        address: &str,
        client_id: &str,
        within: Duration,
    ) -> Result<Link, LinkError> {
        let endpoint = endpoint(address)?;
        let mut options = SocketOptions::default();
        let identity = client_id
            .parse()
            .map_err(|_| LinkError::Address(address.to_string()))?;
        options.peer_identity(identity).connect_timeout(within);
        let mut socket = DealerSocket::with_options(options);
        if let Err(e) = socket.connect(&endpoint).await {
            let why = e.to_string();
            return Err(match e {
                zeromq::ZmqError::Network(_) | zeromq::ZmqError::ConnectTimeout(_) => {
                    LinkError::Unreachable {
                        address: address.to_string(),
                        within: common::duration::format(within),
                        why,
                    }
                }
                _ => LinkError::NotZmq {
                    address: address.to_string(),
                    why,
                },
            });
        }
        let (mut send, mut recv) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (in_tx, incoming) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                // A master that is gone does not take messages; the heartbeat timeout ends
                // the worker, so a failed send is dropped, not retried.
                let sent = tokio::time::timeout(
                    Duration::from_secs(5),
                    send.send(ZmqMessage::from(frame)),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    tracing::debug!("a message to the master was not sent: {sent:?}");
                }
            }
        });
        let reader = tokio::spawn(async move {
            loop {
                let message = match recv.recv().await {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!("reading from the master: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(frame) = message.into_vec().pop() else {
                    continue;
                };
                if in_tx.send(decode(&frame)).is_err() {
                    break;
                }
            }
        });
        Ok(Link {
            out: Some(out),
            incoming,
            writer,
            reader,
        })
    }

    /// Queues a message to the master.
    pub fn send(&self, kind: &str, data: &impl Serialize, node_id: &str) {
        if let Some(out) = &self.out {
            let _ = out.send(encode(kind, data, node_id));
        }
    }

    /// Sends what is queued (at most `within`), then closes.
    pub async fn close(mut self, within: Duration) {
        self.out = None;
        let _ = tokio::time::timeout(within, &mut self.writer).await;
    }

    /// The next message from the master (`Err`: a frame that did not decode).
    pub async fn recv(&mut self) -> Option<Result<Incoming, String>> {
        self.incoming.recv().await
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.writer.abort();
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_locust_writes_them() {
        let frame = encode(
            "spawning_complete",
            &serde_json::json!({"user_classes_count": {"a": 2}, "user_count": 2}),
            "w1",
        );
        // A msgpack array of three: fixarray marker 0x93.
        assert_eq!(frame[0], 0x93);
        let m = decode(&frame).unwrap();
        assert_eq!(m.kind, "spawning_complete");
        assert_eq!(m.data["user_classes_count"]["a"], 2);
        let none = encode("stop", &(), "w1");
        assert_eq!(decode(&none).unwrap().data, serde_json::Value::Null);
        assert!(decode(b"GET / HTTP/1.1").is_err());
    }

    #[test]
    fn addresses_take_a_default_port() {
        assert_eq!(endpoint("10.0.0.1").unwrap(), "tcp://10.0.0.1:5557");
        assert_eq!(endpoint("master:6000").unwrap(), "tcp://master:6000");
        assert_eq!(
            endpoint("m:port").unwrap_err().to_string(),
            "--master `m:port`: expected HOST:PORT such as 127.0.0.1:5557"
        );
    }
}
