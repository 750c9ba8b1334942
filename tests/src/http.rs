//! A small HTTP/1.1 client for the REST tests (std `TcpStream`, one request per connection,
//! `Connection: close`): enough for JSON requests and replies with `Content-Length` or chunked
//! bodies, without another HTTP stack in the workspace. HTTPS through rustls (the one tonic
//! compiles) with [`Http::with_tls`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use serde_json::Value;

/// How long one exchange may take (a query over a cold cache included).
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A reply: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (naming the status and body) if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The JSON body of a reply that must have `status`; panics with the body otherwise.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected HTTP status; body: {}",
            self.text()
        );
        self.json()
    }
}

/// A client for one server (`host:port`) with optional credentials.
#[derive(Debug, Clone)]
pub struct Http {
    pub addr: String,
    /// The `Authorization` header value sent with every request, if any.
    pub authorization: Option<String>,
    /// Extra request headers (`Name: value` without line ends).
    pub headers: Vec<String>,
    /// HTTPS with this client configuration (see [`Http::with_tls`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Http {
    /// Without credentials.
    pub fn new(addr: &str) -> Http {
        Http {
            addr: addr.to_string(),
            authorization: None,
            headers: Vec::new(),
            tls: None,
        }
    }

    /// With `Authorization: Basic base64(user:password)`.
    pub fn basic(addr: &str, user: &str, password: &str) -> Http {
        let mut h = Http::new(addr);
        h.authorization = Some(format!(
            "Basic {}",
            crate::server::base64_standard(format!("{user}:{password}").as_bytes())
        ));
        h
    }

    /// With `Authorization: Bearer TOKEN`.
    pub fn bearer(addr: &str, token: &str) -> Http {
        let mut h = Http::new(addr);
        h.authorization = Some(format!("Bearer {token}"));
        h
    }

    /// The same client sending one more header.
    pub fn with_header(mut self, header: &str) -> Http {
        self.headers.push(header.to_string());
        self
    }

    /// The same client over HTTPS, trusting only the CA certificates in `ca_pem`.
    pub fn with_tls(mut self, ca_pem: &str) -> Http {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("PEM CA")).expect("usable CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        self.tls = Some(Arc::new(config));
        self
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(body.to_string().as_bytes()))
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.request("PUT", path, Some(body.to_string().as_bytes()))
    }

    /// `POST` with a raw body (e.g. malformed JSON), as `application/json`.
    pub fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        self.request("POST", path, Some(body))
    }

    /// One exchange on a fresh connection. A body is sent as `application/json`.
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.addr))
    }

    /// [`Http::request`], with a failure to connect, to complete TLS or to read a reply as
    /// an error.
    pub fn try_request(&self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Reply> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(a) = &self.authorization {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        for h in &self.headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let s = TcpStream::connect(&self.addr)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        let mut request = head.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());
        let mut raw = Vec::new();
        match &self.tls {
            None => {
                let mut s = s;
                s.write_all(&request)?;
                s.read_to_end(&mut raw)?;
            }
            Some(config) => {
                let host = self.addr.rsplit_once(':').map_or(&*self.addr, |(h, _)| h);
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let conn = rustls::ClientConnection::new(config.clone(), name)
                    .map_err(io::Error::other)?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                tls.write_all(&request)?;
                match tls.read_to_end(&mut raw) {
                    // A server that closes without close_notify after a whole reply.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
                    r => {
                        r?;
                    }
                }
            }
        }
        if raw.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection without a reply",
            ));
        }
        if !raw.starts_with(b"HTTP/") {
            // e.g. a TLS alert: a plaintext request on a TLS port.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP reply: {:?}", String::from_utf8_lossy(&raw)),
            ));
        }
        Ok(parse_reply(&raw))
    }
}

/// Parses a whole HTTP/1.1 reply (the server closed the connection after it).
pub fn parse_reply(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&data[..eol]).unwrap_or("0");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}
