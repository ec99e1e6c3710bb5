//! The test PKI over real TLS on loopback: a server configuration that requires client
//! certificates accepts one from its CA and refuses a stranger's or none.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use testbed::pki::{self, CertificateAuthority};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[tokio::test]
async fn mutual_tls_with_issued_certificates() {
    let ca = CertificateAuthority::new("relay CA").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let senders = CertificateAuthority::new("sender CA").unwrap();
    let config = pki::tls_server_config(&server, Some(senders.cert_pem()), &[b"h2"]).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"hello").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let attempt = |identity: Option<pki::IssuedCert>| {
        let config = pki::h2_client_config(server.ca_pem.as_str(), identity.as_ref()).unwrap();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
                .await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
            let mut text = String::new();
            tls.read_to_string(&mut text).await?;
            Ok::<_, std::io::Error>(text)
        }
    };
    let sender = senders.issue_client("sender-1").unwrap();
    assert_eq!(attempt(Some(sender)).await.unwrap(), "hello");
    // TLS 1.3: the server's refusal arrives with the first read.
    let stranger = ca.issue_client("sender-2").unwrap();
    assert!(attempt(Some(stranger)).await.is_err());
    assert!(attempt(None).await.is_err());

    // A CA that is not PEM is refused with a message.
    let error = pki::tls_server_config(&server, Some("junk"), &[]).unwrap_err();
    assert_eq!(error.to_string(), "no certificate in the CA PEM text");
}
