//! TLS connections to a relay: certificate checking (or not, for self-signed relays),
//! ALPN, and timeouts on every connect and handshake.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use chatmaild::filtermail::transport::tls::TlsConfigs;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// A TLS connection to the relay.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// How to reach a relay: certificate policy, ALPN protocols and a timeout.
///
/// Cheap to clone; one connector serves any number of concurrent connections.
#[derive(Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
    /// Bounds each TCP connect and each TLS handshake separately.
    pub timeout: Duration,
}

impl Connector {
    /// `insecure` accepts any certificate (self-signed relays); the handshake signature is
    /// still checked. Otherwise the certificate must chain to the bundled web PKI roots,
    /// so the operator machine's CA store does not change the verdict.
    pub fn new(insecure: bool, timeout: Duration) -> anyhow::Result<Connector> {
        // filtermail's transport already has both verifiers; one copy of the unsafe one.
        let configs = TlsConfigs::new().map_err(|e| anyhow!("TLS setup: {e}"))?;
        let config = if insecure {
            configs.encrypt
        } else {
            configs.verify
        };
        Ok(Connector { config, timeout })
    }

    /// The same connector offering these ALPN protocols (e.g. `["imap"]` for the port-443
    /// mux); an empty list offers none.
    pub fn with_alpn(&self, protocols: &[&str]) -> Connector {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        Connector {
            config: Arc::new(config),
            timeout: self.timeout,
        }
    }

    /// A plain TCP connection (system resolver), with Nagle off: the protocols here are
    /// request/response and small writes must not wait.
    pub async fn tcp(&self, host: &str, port: u16) -> anyhow::Result<TcpStream> {
        let stream = tokio::time::timeout(self.timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| anyhow!("connecting to {host}:{port}: timed out"))?
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Implicit TLS (993, 465, 443).
    pub async fn tls(&self, host: &str, port: u16) -> anyhow::Result<TlsStream> {
        let tcp = self.tcp(host, port).await?;
        self.upgrade(tcp, host).await
    }

    /// TLS handshake on an open connection (after STARTTLS), checked against `host`.
    pub async fn upgrade(&self, tcp: TcpStream, host: &str) -> anyhow::Result<TlsStream> {
        let name = ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host:?} is not a valid TLS server name"))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        tokio::time::timeout(self.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake with {host}: timed out"))?
            .with_context(|| format!("TLS handshake with {host}"))
    }
}

/// The ALPN protocol the server picked, if any.
pub fn negotiated_alpn(stream: &TlsStream) -> Option<String> {
    let (_, session) = stream.get_ref();
    session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// Whether an error chain is a certificate verification failure (so the caller can
/// suggest `--insecure` for self-signed relays).
pub fn is_certificate_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
            || e.downcast_ref::<rustls::Error>()
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
    })
}
