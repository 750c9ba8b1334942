//! TLS material for tests: a throw-away CA and certificates it signs (ECDSA P-256 through
//! `rcgen`, valid for `127.0.0.1` and `localhost`), written as PEM files that
//! `kylin.server.tls.*` can name, plus TLS clients for Flight SQL.
//!
//! ```ignore
//! let pki = TestPki::new();
//! let server = SsbServer::start_with_http(&pki.server_properties(false)).await;
//! let mut client = qilin_tests::tls::connect(&server.process.addr, &pki.ca_pem, "ADMIN", "KYLIN").await;
//! let http = Http::basic(&server.http_addr(), "ADMIN", "KYLIN").with_tls(&pki.ca_pem);
//! ```

use std::fmt::Display;
use std::path::{Path, PathBuf};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::server::MAX_MESSAGE_BYTES;

/// A certificate and its key, as PEM files (and text).
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A test CA with one node certificate, in a temp directory that lives as long as this.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (what clients trust and `kylin.server.tls.client-ca` names).
    pub ca: PathBuf,
    pub ca_pem: String,
    /// A certificate for `127.0.0.1` / `localhost` signed by the CA, usable by servers and
    /// as a client (node) identity.
    pub node: CertFiles,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir for TLS files");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Qilin test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-signed CA");
        let ca_pem = ca_cert.pem();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &ca_pem).expect("write CA");
        let issuer = Issuer::new(params, ca_key);
        let mut pki = TestPki {
            dir,
            ca,
            ca_pem,
            node: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            issuer,
        };
        pki.node = pki.issue("node");
        pki
    }

    /// A new certificate signed by the CA (server and client use), as `NAME.pem` and
    /// `NAME.key` in the temp directory.
    pub fn issue(&self, name: &str) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let cert = leaf_params(name)
            .signed_by(&key, &self.issuer)
            .expect("sign certificate");
        self.write(name, cert.pem(), key.serialize_pem())
    }

    /// A self-signed certificate no one trusts (same names as the node's).
    pub fn untrusted(&self, name: &str) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let cert = leaf_params(name).self_signed(&key).expect("self-signed");
        self.write(name, cert.pem(), key.serialize_pem())
    }

    /// A file in the temp directory with `text`.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    fn write(&self, name: &str, cert_pem: String, key_pem: String) -> CertFiles {
        let files = CertFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
            cert_pem,
            key_pem,
        };
        std::fs::write(&files.cert, &files.cert_pem).expect("write certificate");
        std::fs::write(&files.key, &files.key_pem).expect("write key");
        files
    }

    /// `kylin.server.tls.cert` / `.key` naming the node certificate, and with `mutual` the
    /// client CA too (nodes verify each other and present their certificate).
    pub fn server_properties(&self, mutual: bool) -> String {
        let mut p = tls_properties(&self.node.cert, &self.node.key);
        if mutual {
            p.push_str(&format!(
                "kylin.server.tls.client-ca={}\n",
                self.ca.display()
            ));
        }
        p
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn leaf_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .expect("certificate params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// `kylin.server.tls.cert=CERT` and `kylin.server.tls.key=KEY` lines.
pub fn tls_properties(cert: &Path, key: &Path) -> String {
    format!(
        "kylin.server.tls.cert={}\nkylin.server.tls.key={}\n",
        cert.display(),
        key.display()
    )
}

/// A TLS channel to `addr` (`host:port`) trusting `ca_pem`, presenting `identity` (a client
/// certificate) if given; the connection error (e.g. an unknown issuer) as text.
pub async fn try_channel(
    addr: impl Display,
    ca_pem: &str,
    identity: Option<&CertFiles>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    Channel::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| error_chain(&e))
}

/// A Flight SQL client over TLS (trusting `ca_pem`) after the Basic-auth handshake.
pub async fn connect(
    addr: impl Display,
    ca_pem: &str,
    user: &str,
    pass: &str,
) -> FlightSqlServiceClient<Channel> {
    let addr = addr.to_string();
    let channel = try_channel(&addr, ca_pem, None)
        .await
        .unwrap_or_else(|e| panic!("TLS connection to {addr}: {e}"));
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut c = FlightSqlServiceClient::new_from_inner(inner);
    c.handshake(user, pass)
        .await
        .unwrap_or_else(|e| panic!("handshake with {addr} over TLS as {user}: {e}"));
    c
}

/// An error with its causes, one after the other.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
