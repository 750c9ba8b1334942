//! A minimal HTTP/1.1 endpoint for load balancers and Prometheus: `GET /health` (200, or 503
//! when the instance is not healthy, with a JSON body) and `GET /metrics` (the
//! [`crate::metrics::global`] registry). `HEAD` of either sends the headers only.
//!
//! One request per connection (`Connection: close`), one task per connection; the request
//! head is capped at [`MAX_HEAD_BYTES`] and must arrive within [`HEAD_TIMEOUT`]. Request
//! bodies are never read. Anything that is not a well-formed request line gets 400.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head (request line and headers) accepted; more gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request head; slower ones get 408.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// After answering, how long unread request bytes are drained before closing (so the
/// client sees the response rather than a reset).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

/// What `/health` reports.
pub struct Health {
    /// false: 503 Service Unavailable.
    pub ok: bool,
    /// The body: a JSON object, e.g. `{"status":"ok","mode":"query","store_version":12}`.
    pub detail: String,
}

/// Called for every `/health` request, on a blocking-pool thread.
pub type HealthFn = Arc<dyn Fn() -> Health + Send + Sync>;

/// Serves `/health` and `/metrics` on `listener` until the returned future is dropped (or
/// its task aborted). Accept errors (e.g. out of file descriptors) are logged and retried
/// after a short pause, so it does not return in practice.
pub async fn serve_http(
    listener: TcpListener,
    health: Arc<dyn Fn() -> Health + Send + Sync>,
) -> io::Result<()> {
    serve_with(listener, health, HEAD_TIMEOUT).await
}

async fn serve_with(
    listener: TcpListener,
    health: HealthFn,
    head_timeout: Duration,
) -> io::Result<()> {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let health = health.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, health, head_timeout).await {
                        log::debug!("http: connection ended with {e}");
                    }
                });
            }
            Err(e) => {
                log::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A response about to be written.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    extra_headers: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra_headers: "",
            body: format!("{body}\n").into_bytes(),
        }
    }
}

enum Head {
    /// The complete head (without the empty line that ends it).
    Complete(Vec<u8>),
    /// The client closed the connection before sending anything.
    Empty,
    /// The client closed the connection mid-head.
    Truncated,
    TooLarge,
    TimedOut,
}

async fn handle(mut stream: TcpStream, health: HealthFn, head_timeout: Duration) -> io::Result<()> {
    let head = match tokio::time::timeout(head_timeout, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => Head::TimedOut,
    };
    let (response, head_only) = match head {
        Head::Empty => return Ok(()),
        Head::Truncated => (Response::text(400, "Bad Request", "bad request"), false),
        Head::TooLarge => (
            Response::text(
                431,
                "Request Header Fields Too Large",
                "request head too large",
            ),
            false,
        ),
        Head::TimedOut => (
            Response::text(408, "Request Timeout", "request timeout"),
            false,
        ),
        Head::Complete(bytes) => match parse_request_line(&bytes) {
            None => (Response::text(400, "Bad Request", "bad request"), false),
            Some((method, path)) => {
                let head_only = method == "HEAD";
                (route(method, path, &health).await, head_only)
            }
        },
    };
    write_response(&mut stream, &response, head_only).await?;
    linger(stream).await;
    Ok(())
}

/// Reads until the blank line that ends the head (CRLF CRLF, or bare LF LF), at most
/// [`MAX_HEAD_BYTES`].
async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_HEAD_BYTES - buf.len();
        if room == 0 {
            return Ok(Head::TooLarge);
        }
        let want = room.min(chunk.len());
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Head::Empty
            } else {
                Head::Truncated
            });
        }
        // Search from a little before the new bytes: the terminator may straddle reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf[from..]) {
            buf.truncate(from + end);
            return Ok(Head::Complete(buf));
        }
    }
}

/// Where the head ends in `buf` (the offset of its terminating blank line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find(|&i| buf[i..].starts_with(b"\r\n\r\n") || buf[i..].starts_with(b"\n\n"))
}

/// `METHOD SP TARGET SP HTTP/1.x`, with well-formed header lines after it; returns the
/// method and the target's path (without a query string).
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(is_tchar)
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return None;
    }
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.is_empty()
            || !name.bytes().all(is_tchar)
            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
        {
            return None;
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Some((method, path))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

async fn route(method: &str, path: &str, health: &HealthFn) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response {
            extra_headers: "Allow: GET, HEAD\r\n",
            ..Response::text(405, "Method Not Allowed", "method not allowed")
        };
    }
    match path {
        "/health" => {
            let health = health.clone();
            // The callback may block (e.g. look at the store) or panic: keep it off the
            // async workers and answer 503 if it fails.
            match tokio::task::spawn_blocking(move || health()).await {
                Ok(h) => Response {
                    status: if h.ok { 200 } else { 503 },
                    reason: if h.ok { "OK" } else { "Service Unavailable" },
                    content_type: "application/json",
                    extra_headers: "Cache-Control: no-store\r\n",
                    body: h.detail.into_bytes(),
                },
                Err(e) => {
                    log::warn!("http: health check failed: {e}");
                    Response {
                        status: 503,
                        reason: "Service Unavailable",
                        content_type: "application/json",
                        extra_headers: "Cache-Control: no-store\r\n",
                        body: br#"{"status":"error","detail":"health check failed"}"#.to_vec(),
                    }
                }
            }
        }
        "/metrics" => Response {
            status: 200,
            reason: "OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            extra_headers: "Cache-Control: no-store\r\n",
            body: crate::metrics::global().render().into_bytes(),
        },
        _ => Response::text(404, "Not Found", "not found"),
    }
}

async fn write_response(stream: &mut TcpStream, r: &Response, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        r.status,
        r.reason,
        r.content_type,
        r.body.len(),
        r.extra_headers
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Half-closes and drains what the client still sends (briefly, boundedly), so closing with
/// unread bytes does not reset the connection before the client has read the response.
async fn linger(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Server {
        addr: std::net::SocketAddr,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(health: HealthFn, head_timeout: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_with(listener, health, head_timeout));
        Server { addr, task }
    }

    fn healthy(flag: Arc<AtomicBool>) -> HealthFn {
        Arc::new(move || {
            let ok = flag.load(Ordering::SeqCst);
            Health {
                ok,
                detail: format!(
                    r#"{{"status":"{}","mode":"query","store_version":12}}"#,
                    if ok { "ok" } else { "down" }
                ),
            }
        })
    }

    /// Status code, headers (lower-cased names) and body of a raw exchange.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
        fn body(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Reply {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .expect("server closes the connection")
            .unwrap();
        parse_reply(&raw)
    }

    fn parse_reply(raw: &[u8]) -> Reply {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
        let head = std::str::from_utf8(&raw[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"));
        let status = parts.next().unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let reply = Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        };
        assert_eq!(reply.header("connection"), Some("close"));
        reply
    }

    fn get(path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n").into_bytes()
    }

    #[tokio::test]
    async fn health_ok_then_unavailable() {
        let flag = Arc::new(AtomicBool::new(true));
        let server = start(healthy(flag.clone()), HEAD_TIMEOUT).await;
        let r = exchange(server.addr, &get("/health")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.body(),
            r#"{"status":"ok","mode":"query","store_version":12}"#
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["store_version"], 12);

        flag.store(false, Ordering::SeqCst);
        let r = exchange(server.addr, &get("/health?verbose=1")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.body().contains(r#""status":"down""#));
    }

    #[tokio::test]
    async fn health_callback_panic_is_503() {
        let server = start(Arc::new(|| panic!("boom")), HEAD_TIMEOUT).await;
        let r = exchange(server.addr, &get("/health")).await;
        assert_eq!(r.status, 503);
        // The server keeps serving.
        let r = exchange(server.addr, &get("/nope")).await;
        assert_eq!(r.status, 404);
    }

    #[tokio::test]
    async fn metrics_body_and_content_type() {
        crate::metrics::global().cache_hit();
        let server = start(healthy(Arc::new(AtomicBool::new(true))), HEAD_TIMEOUT).await;
        let r = exchange(server.addr, &get("/metrics")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert!(r.body().contains("# TYPE qilin_queries_total counter\n"));
        assert!(r.body().contains("qilin_query_cache_hits_total "));
    }

    #[tokio::test]
    async fn head_sends_headers_only() {
        let server = start(healthy(Arc::new(AtomicBool::new(true))), HEAD_TIMEOUT).await;
        let r = exchange(server.addr, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        let full = r#"{"status":"ok","mode":"query","store_version":12}"#.len();
        assert_eq!(r.header("content-length"), Some(full.to_string().as_str()));

        let r = exchange(server.addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert!(
            r.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap()
                > 100
        );
    }

    #[tokio::test]
    async fn not_found_and_method_not_allowed() {
        let server = start(healthy(Arc::new(AtomicBool::new(true))), HEAD_TIMEOUT).await;
        let r = exchange(server.addr, &get("/")).await;
        assert_eq!(r.status, 404);
        let r = exchange(server.addr, &get("/healthz")).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-length"), Some("10"));
        assert_eq!(r.body(), "not found\n");

        let r = exchange(
            server.addr,
            b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        let r = exchange(server.addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(r.status, 405);
    }

    #[tokio::test]
    async fn garbage_is_bad_request() {
        let server = start(healthy(Arc::new(AtomicBool::new(true))), HEAD_TIMEOUT).await;
        for garbage in [
            &b"\x00\x01\x02garbage\xff\xfe\r\n\r\n"[..],
            b"hello\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /health\r\n\r\n",
            b"GET /health HTTP/2.0\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET health HTTP/1.1\r\n\r\n",
            b"GET /health HTTP/1.1 extra\r\n\r\n",
            b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
            b"G@T /health HTTP/1.1\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x", // then EOF: truncated head
        ] {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(garbage).await.unwrap();
            s.shutdown().await.unwrap();
            let mut raw = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
                .await
                .unwrap()
                .unwrap();
            let r = parse_reply(&raw);
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(garbage));
        }
        // A connection closed without a byte gets no answer, and the server lives on.
        drop(TcpStream::connect(server.addr).await.unwrap());
        let r = exchange(server.addr, &get("/health")).await;
        assert_eq!(r.status, 200);
    }

    #[tokio::test]
    async fn oversized_head_is_rejected() {
        let server = start(healthy(Arc::new(AtomicBool::new(true))), HEAD_TIMEOUT).await;
        let mut req = b"GET /health HTTP/1.1\r\n".to_vec();
        while req.len() < 3 * MAX_HEAD_BYTES {
            req.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        req.extend_from_slice(b"\r\n");
        let r = exchange(server.addr, &req).await;
        assert_eq!(r.status, 431);

        // Just under the cap is fine.
        let mut req = b"GET /health HTTP/1.1\r\n".to_vec();
        let filler = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        while req.len() + filler.len() + 2 < MAX_HEAD_BYTES {
            req.extend_from_slice(filler);
        }
        req.extend_from_slice(b"\r\n");
        let r = exchange(server.addr, &req).await;
        assert_eq!(r.status, 200);
    }

    #[tokio::test]
    async fn head_split_across_writes_and_slow_client() {
        let server = start(
            healthy(Arc::new(AtomicBool::new(true))),
            Duration::from_millis(300),
        )
        .await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        for piece in [
            &b"GET /hea"[..],
            b"lth HTTP/1.1\r",
            b"\nHost: x\r\n\r",
            b"\n",
        ] {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        assert_eq!(parse_reply(&raw).status, 200);

        // A client that never finishes its head is answered 408 after the timeout.
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(parse_reply(&raw).status, 408);
    }

    #[test]
    fn request_line_parsing() {
        assert_eq!(
            parse_request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a:1"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"HEAD /health HTTP/1.0"),
            Some(("HEAD", "/health"))
        );
        assert_eq!(parse_request_line(b""), None);
        assert_eq!(parse_request_line(b"GET  /health HTTP/1.1"), None);
        assert_eq!(parse_request_line(b"GET /\x01 HTTP/1.1"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
