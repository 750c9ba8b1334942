//! TLS of an instance (`kylin.server.tls.*`): the PEM files read and checked once at start,
//! then handed out as what each side needs — tonic's server config for Flight SQL, a rustls
//! acceptor for the HTTP server ([`TlsListener`]), and tonic's client config for
//! notifications to peers ([`crate::notify`]).
//!
//! With `kylin.server.tls.client-ca`, servers also accept client certificates it signed
//! (optional: ordinary clients have none; a notification must carry one), and nodes verify
//! each other's server certificates against it and present their own as client identity.
//! Without it, peers are verified against the certificates of `kylin.server.tls.cert` itself
//! (a certificate the nodes share, or a chain that includes their CA).
//!
//! rustls with the `ring` provider, as tonic already compiles it: no OpenSSL, no aws-lc.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qilin_engine::config::Config;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer};

/// A client that has not finished its TLS handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const CERT_KEY: &str = "kylin.server.tls.cert";
const KEY_KEY: &str = "kylin.server.tls.key";
const CLIENT_CA_KEY: &str = "kylin.server.tls.client-ca";

/// Why TLS could not be set up, or why a server must not start without it. Each names the
/// configuration key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{key}: {path}: {reason}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "kylin.server.tls.key ({key}) does not match the certificate of \
         kylin.server.tls.cert ({cert})"
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "kylin.server.host={0} is not a loopback address: configure TLS \
         (kylin.server.tls.cert and kylin.server.tls.key) or set \
         kylin.security.allow-plaintext=true to serve unencrypted"
    )]
    Plaintext(String),
}

/// The checked TLS material of this instance.
pub struct Tls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Tls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish()
    }
}

impl Tls {
    /// What a server (qilin-server, `qilin-jobs serve`) binds with: `Some` when
    /// `kylin.server.tls.*` is set (files read and checked: a certificate, a key that
    /// matches it, a usable client CA), `None` for plaintext — refused on a non-loopback
    /// `kylin.server.host` unless `kylin.security.allow-plaintext=true`.
    pub fn for_server(config: &Config) -> Result<Option<Arc<Tls>>, TlsError> {
        let tls = Tls::from_config(config)?;
        if tls.is_none()
            && !config.cluster.allow_plaintext
            && !crate::auth::is_loopback_host(&config.cluster.host)
        {
            return Err(TlsError::Plaintext(config.cluster.host.clone()));
        }
        Ok(tls)
    }

    /// The TLS material `kylin.server.tls.*` names, read and checked; `None` when unset.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Tls>>, TlsError> {
        let Some(files) = &config.cluster.tls else {
            return Ok(None);
        };
        let cert_pem = read(CERT_KEY, &files.cert)?;
        let key_pem = read(KEY_KEY, &files.key)?;
        let chain = certificates(CERT_KEY, &files.cert, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
            key: KEY_KEY,
            path: files.key.clone(),
            reason: format!("no PEM private key ({e})"),
        })?;
        let client_ca = match &files.client_ca {
            Some(path) => {
                let pem = read(CLIENT_CA_KEY, path)?;
                let store = roots(CLIENT_CA_KEY, path, &pem)?;
                Some((path, pem, store))
            }
            None => None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let (builder, client_ca_pem) = match client_ca {
            Some((path, pem, store)) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(store),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Invalid {
                    key: CLIENT_CA_KEY,
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                (builder.with_client_cert_verifier(verifier), Some(pem))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut http = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            },
            e => TlsError::Invalid {
                key: KEY_KEY,
                path: files.key.clone(),
                reason: e.to_string(),
            },
        })?;
        // The HTTP server speaks HTTP/1.1 only (axum without `http2`).
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = Tls {
            cert_pem,
            key_pem,
            client_ca_pem,
            http: Arc::new(http),
        };
        // tonic parses the same PEM again: any refusal of its own shows here, at start.
        tonic::transport::Server::builder()
            .tls_config(tls.flight_server())
            .map_err(|e| TlsError::Invalid {
                key: KEY_KEY,
                path: files.key.clone(),
                reason: e.to_string(),
            })?;
        Ok(Some(Arc::new(tls)))
    }

    /// Whether clients may present node certificates (`kylin.server.tls.client-ca` set).
    pub fn mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// Flight SQL's server side (ALPN h2, handshake timeout, optional client certificates).
    pub fn flight_server(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(ca) => config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true),
            None => config,
        }
    }

    /// The client side of calls to peers (notifications): their server certificates are
    /// verified against the client CA, or else against this node's own certificates; this
    /// node's certificate is its client identity.
    pub fn peer_client(&self) -> ClientTlsConfig {
        let roots = self.client_ca_pem.as_ref().unwrap_or(&self.cert_pem);
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(roots))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }

    /// The HTTP server's acceptor (ALPN http/1.1).
    pub fn http_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.http.clone())
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        key,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("malformed PEM ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate".into()));
    }
    Ok(certs)
}

fn roots(key: &'static str, path: &Path, pem: &[u8]) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certificates(key, path, pem)? {
        store.add(cert).map_err(|e| TlsError::Invalid {
            key,
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate ({e})"),
        })?;
    }
    Ok(store)
}

/// A TLS listener for `axum::serve`: a task accepts TCP connections and runs each handshake
/// in a task of its own (bounded by [`HANDSHAKE_TIMEOUT`]), so a slow or silent client never
/// holds up the others; finished handshakes are handed to the server through a channel.
/// Dropping the listener stops the accepting.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // e.g. out of file descriptors: pause rather than spin.
                        log::warn!("accepting an HTTP connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => log::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => log::debug!("TLS handshake with {peer} timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task never ends by itself; if it did, accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
