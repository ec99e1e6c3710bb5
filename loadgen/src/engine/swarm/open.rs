//! Opening a device's connection: the dispatch call, the URL's scheme picking the transport
//! (TCP; TLS with ALPN `http/1.1`, or `h2` for SSE and long-poll over HTTP/2; HTTP/2 by prior
//! knowledge over plain TCP), then the WebSocket upgrade or the first SSE / long-poll request.
//! What comes after (the protocol's handshake, exchanges, holding) is [`super::connection`]'s.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use common::endpoint::Endpoint;

use super::connection::{scope, Cause, HttpState};
use super::h2io::H2Io;
use super::http_stream;
use super::io::{Io, TlsIo};
use super::script::{Proto, Script};
use super::shard::{ShardCtx, Slot};
use super::wire::{self, Framing};
use crate::scenario::device::HttpVersion;

/// Where to connect, from a rendered URL.
pub(super) struct Dest {
    addr: SocketAddr,
    kind: Kind,
    host: String,
    path: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ws,
    Wss,
    Tcp,
    Mqtt,
    Mqtts,
    Http,
    Https,
}

impl Kind {
    fn tls(self) -> bool {
        matches!(self, Kind::Wss | Kind::Mqtts | Kind::Https)
    }
}

async fn resolve(url: &str) -> Result<Dest, Cause> {
    let uri: http::Uri = url.parse().map_err(|_| Cow::Borrowed("connect"))?;
    let endpoint = Endpoint::of(
        &uri,
        &["ws", "wss", "tcp", "mqtt", "mqtts", "http", "https"],
    )
    .map_err(|_| Cow::Borrowed("connect"))?;
    let kind = match endpoint.scheme.as_str() {
        "ws" => Kind::Ws,
        "wss" => Kind::Wss,
        "mqtt" => Kind::Mqtt,
        "mqtts" => Kind::Mqtts,
        "http" => Kind::Http,
        "https" => Kind::Https,
        _ => Kind::Tcp,
    };
    let addr = super::net::resolve(&endpoint)
        .await
        .map_err(|_| Cow::Borrowed("connect"))?;
    let host = uri
        .authority()
        .map_or_else(|| endpoint.authority(), |a| a.to_string());
    Ok(Dest {
        addr,
        kind,
        host,
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.to_string()),
    })
}

/// What [`connect`] opened.
pub(super) struct Opened {
    pub(super) io: Io,
    pub(super) framing: Framing,
    /// Bytes that came after the upgrade's head.
    pub(super) leftover: Vec<u8>,
    /// SSE / long-poll: where the next poll goes.
    pub(super) http: Option<Box<HttpState>>,
}

/// The dispatch call (its address becomes `{{address}}` in `vars`), TCP connect, TLS and the
/// WebSocket upgrade: the stream, its framing, and bytes that came after the upgrade's head.
pub(super) async fn connect(
    ctx: &ShardCtx,
    slot: &Slot,
    script: &Script,
    vars: &mut Vec<(String, String)>,
) -> Result<Opened, Cause> {
    let def = &script.def;
    if let Some(d) = &def.connect.dispatch {
        let url = d
            .get
            .render(&scope(ctx, slot, script, vars))
            .map_err(|_| Cow::Borrowed("dispatch"))?;
        let address = ctx.dispatch.address(&url, &d.address).await?;
        vars.push(("address".into(), address));
    }
    let url = match &def.connect.url {
        Some(t) => t
            .render(&scope(ctx, slot, script, vars))
            .map_err(|_| Cow::Borrowed("connect"))?,
        None => super::script::lookup(vars, "address")
            .ok_or(Cow::Borrowed("connect"))?
            .to_string(),
    };
    let dest = resolve(&url).await?;
    let t0 = Instant::now();
    let tcp = super::net::connect(dest.addr, ctx.source_for(slot.global))
        .await
        .map_err(|_| Cow::Borrowed("connect"))?;
    // SSE and long-poll over HTTP/2: ALPN `h2` over TLS, prior knowledge over plain TCP.
    let h2 = matches!(dest.kind, Kind::Http | Kind::Https)
        && (def.connect.http.as_ref()).is_some_and(|h| h.version == HttpVersion::Http2);
    let mut io = match dest.kind {
        k if k.tls() => {
            let name = rustls::pki_types::ServerName::try_from(
                dest.host.split(':').next().unwrap_or("").to_string(),
            )
            .map_err(|_| Cow::Borrowed("handshake"))?;
            let connector = if h2 { &ctx.tls_h2 } else { &ctx.tls };
            let s = connector.connect(name, tcp).await.map_err(|e| {
                Cow::Borrowed(if h2 && refused_alpn(&e) {
                    "no_h2"
                } else {
                    "handshake"
                })
            })?;
            if h2 {
                // A server that does not pick h2 would answer HTTP/1.1 to the preface.
                if s.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                    return Err(Cow::Borrowed("no_h2"));
                }
                Io::H2(Box::new(
                    H2Io::handshake(s, true)
                        .await
                        .map_err(|_| Cow::Borrowed("handshake"))?,
                ))
            } else {
                Io::Tls(Box::new(TlsIo {
                    stream: s,
                    buf: vec![0; 16 * 1024].into_boxed_slice(),
                }))
            }
        }
        _ if h2 => Io::H2(Box::new(
            H2Io::handshake(tcp, false)
                .await
                .map_err(|_| Cow::Borrowed("handshake"))?,
        )),
        _ => Io::Plain(tcp),
    };
    let mut headers = Vec::new();
    if !def.connect.headers.is_empty() {
        let sc = scope(ctx, slot, script, vars);
        for (n, v) in &def.connect.headers {
            headers.push((
                n.clone(),
                v.render(&sc).map_err(|_| Cow::Borrowed("handshake"))?,
            ));
        }
    }
    let mut http = None;
    let (framing, leftover, key) = match dest.kind {
        Kind::Tcp => (script.tcp_framing, Vec::new(), &script.keys.tcp_connecting),
        Kind::Mqtt | Kind::Mqtts => (Framing::Raw, Vec::new(), &script.keys.tcp_connecting),
        Kind::Http | Kind::Https => {
            let Proto::Http(mode) = script.proto else {
                return Err(Cow::Borrowed("connect"));
            };
            let resume = common::sync::lock(&slot.resume).clone();
            let req =
                http_stream::request(mode, &dest.host, &dest.path, resume.as_deref(), &headers);
            io.write_all(req.as_bytes())
                .await
                .map_err(|_| Cow::Borrowed("handshake"))?;
            http = Some(Box::new(HttpState {
                reader: http_stream::Reader::new(mode),
                host: dest.host.clone(),
                path: dest.path.clone(),
                headers,
            }));
            (Framing::Raw, Vec::new(), &script.keys.tcp_connecting)
        }
        Kind::Ws | Kind::Wss => {
            if matches!(script.proto, Proto::Mqtt(_))
                && !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
            {
                // MQTT over WebSocket (MQTT 5 §6, 3.1.1 §6): the subprotocol is `mqtt`.
                headers.push(("Sec-WebSocket-Protocol".into(), "mqtt".into()));
            }
            let leftover = upgrade(&mut io, &dest, &headers).await?;
            (Framing::Ws, leftover, &script.keys.ws_connecting)
        }
    };
    let done = Instant::now();
    ctx.record(|r| r.record(key, done, done.duration_since(t0).as_micros() as u64));
    Ok(Opened {
        io,
        framing,
        leftover,
        http,
    })
}

/// The server ended the TLS handshake with `no_application_protocol` (RFC 7301 §3.2): it
/// speaks none of the offered protocols (here: `h2`).
fn refused_alpn(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
            )
        })
}

/// The WebSocket opening handshake on `io`; returns the bytes after the answer's head.
async fn upgrade(io: &mut Io, dest: &Dest, headers: &[(String, String)]) -> Result<Vec<u8>, Cause> {
    let key = wire::new_key();
    let req = wire::upgrade_request(&dest.host, &dest.path, &key, headers);
    io.write_all(req.as_bytes())
        .await
        .map_err(|_| Cow::Borrowed("handshake"))?;
    let mut head: Vec<u8> = Vec::with_capacity(256);
    let end = loop {
        let alive = io
            .read_with(&mut |d| head.extend_from_slice(d))
            .await
            .map_err(|_| Cow::Borrowed("handshake"))?;
        if !alive || head.len() > 16 * 1024 {
            return Err(Cow::Borrowed("handshake"));
        }
        if let Some(end) =
            wire::upgrade_answer(&head, &key).map_err(|_| Cow::Borrowed("handshake"))?
        {
            break end;
        }
    };
    Ok(head.split_off(end))
}
