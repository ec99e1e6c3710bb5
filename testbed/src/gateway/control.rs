//! The control link between the center and a room process: loopback TCP carrying frames of
//! `[u32 total length][u32 header length][JSON header][payload]` (big-endian). The header is a
//! [`ToRoom`] or [`ToCenter`] message; the payload carries a push's JSON text as is, so a
//! broadcast is serialised once in the center and never re-encoded on the way.

use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::faults::FaultConfig;
use super::room::{RoomCounters, RoomSettings};

/// The largest control frame accepted: a push body is at most 1 MiB, so this leaves room.
const MAX_CONTROL_FRAME: usize = 16 << 20;

/// Center → room process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ToRoom {
    /// The answer to `hello`: who the room is and how it behaves.
    Config {
        name: String,
        host: IpAddr,
        settings: RoomSettings,
        faults: FaultConfig,
    },
    /// Deliver the payload (a push's JSON) to every connection of `user`.
    Unicast { user: String, id: String },
    /// Deliver the payload to every connection, or to those subscribed to `topic`.
    Broadcast { topic: Option<String>, id: String },
    /// Replace the faults.
    Faults { faults: FaultConfig },
    /// Answer with the counters, echoing `seq`.
    Stats { seq: u64 },
    /// The center has recorded the `online` with this `seq`.
    Online { seq: u64 },
    /// Close every connection with `shutdown` and exit.
    Shutdown,
}

/// Room process → center.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ToCenter {
    /// First frame: which room this process is.
    Hello { index: usize },
    /// The room listens on these addresses.
    Ready { ws: SocketAddr, tcp: SocketAddr },
    /// A hello was accepted; the center answers `online` with the same `seq`.
    Online {
        seq: u64,
        user: String,
        topics: Vec<String>,
    },
    /// A connection of `user` closed.
    Offline { user: String, topics: Vec<String> },
    /// A connection added these topics.
    Subscribed { topics: Vec<String> },
    /// The counters (`seq` 0 for an unrequested report).
    Stats { seq: u64, counters: RoomCounters },
}

/// Encodes one frame.
pub(crate) fn encode<T: Serialize>(header: &T, payload: &[u8]) -> Bytes {
    let header = serde_json::to_vec(header).unwrap_or_default();
    let mut out = BytesMut::with_capacity(8 + header.len() + payload.len());
    out.put_u32((4 + header.len() + payload.len()) as u32);
    out.put_u32(header.len() as u32);
    out.put_slice(&header);
    out.put_slice(payload);
    out.freeze()
}

/// Writes one frame.
pub(crate) async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    header: &T,
    payload: &[u8],
) -> io::Result<()> {
    writer.write_all(&encode(header, payload)).await
}

/// Largest batch of queued frames gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// Size of a link's read buffer: many small frames arrive per read when the link is busy.
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// Writes the frames queued on `frames` until the channel closes or the socket fails. Frames
/// already waiting are written together (up to [`WRITE_BATCH`] bytes, one `write` when the
/// socket takes them), so a burst of reports — a room's `online` per accepted hello, the
/// center's answers — costs one system call and one loopback segment, not one per frame.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &mut tokio::sync::mpsc::UnboundedReceiver<Bytes>,
) -> io::Result<()> {
    let mut batch = BytesMut::new();
    while let Some(first) = frames.recv().await {
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if batch.is_empty() && frame.len() >= WRITE_BATCH {
                // A large frame (a broadcast's payload) goes as it is, without a copy.
                writer.write_all(&frame).await?;
            } else {
                batch.extend_from_slice(&frame);
            }
            if batch.len() < WRITE_BATCH {
                next = frames.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            writer.write_all(&batch).await?;
            batch.clear();
        }
    }
    Ok(())
}

/// Reads one frame; `None` at a clean end of stream. Give it a buffered reader (see
/// [`READ_BUFFER`]) on a long-lived link: unbuffered, a frame costs two reads.
pub(crate) async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(
    reader: &mut R,
) -> io::Result<Option<(T, Bytes)>> {
    let total = match reader.read_u32().await {
        Ok(n) => n as usize,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    if !(4..=MAX_CONTROL_FRAME).contains(&total) {
        return Err(invalid(format!("control frame of {total} bytes")));
    }
    let mut frame = vec![0u8; total];
    reader.read_exact(&mut frame).await?;
    let header_len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    if header_len > total - 4 {
        return Err(invalid(format!(
            "control header of {header_len} bytes in a frame of {total}"
        )));
    }
    let header: T = serde_json::from_slice(&frame[4..4 + header_len])
        .map_err(|e| invalid(format!("control header: {e}")))?;
    let payload = Bytes::from(frame).slice(4 + header_len..);
    Ok(Some((header, payload)))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_with_payload() {
        let message = ToRoom::Broadcast {
            topic: Some("news".into()),
            id: "m1".into(),
        };
        let bytes = encode(&message, br#"{"type":"push"}"#);
        let mut reader = &bytes[..];
        let (decoded, payload): (ToRoom, Bytes) =
            read(&mut reader).await.expect("valid").expect("a frame");
        assert_eq!(decoded, message);
        assert_eq!(&payload[..], br#"{"type":"push"}"#);
        let end: Option<(ToRoom, Bytes)> = read(&mut reader).await.expect("clean end");
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn queued_frames_are_written_in_order_and_together() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let frames: Vec<ToRoom> = (0..100).map(|seq| ToRoom::Online { seq }).collect();
        for frame in &frames {
            tx.send(encode(frame, &[])).expect("open");
        }
        // A large frame between small ones keeps its place.
        let big = vec![b'x'; WRITE_BATCH + 10];
        tx.send(encode(&ToRoom::Stats { seq: 7 }, &big))
            .expect("open");
        tx.send(encode(&ToRoom::Shutdown, &[])).expect("open");
        drop(tx);
        let mut written = Vec::new();
        write_frames(&mut written, &mut rx).await.expect("written");
        let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER, &written[..]);
        for frame in &frames {
            let (decoded, _): (ToRoom, Bytes) =
                read(&mut reader).await.expect("valid").expect("a frame");
            assert_eq!(&decoded, frame);
        }
        let (decoded, payload): (ToRoom, Bytes) =
            read(&mut reader).await.expect("valid").expect("a frame");
        assert_eq!(decoded, ToRoom::Stats { seq: 7 });
        assert_eq!(payload.len(), big.len());
        let (decoded, _): (ToRoom, Bytes) =
            read(&mut reader).await.expect("valid").expect("a frame");
        assert_eq!(decoded, ToRoom::Shutdown);
        let end: Option<(ToRoom, Bytes)> = read(&mut reader).await.expect("clean end");
        assert!(end.is_none());
    }
}
