//! The HTTP server of an instance (`kylin.server.http-port`). Its base, for load balancers
//! and Prometheus: `GET /health` (200, or 503 when the instance is not healthy, with a JSON body)
//! and `GET /metrics` (the [`crate::metrics::global`] registry in the Prometheus text format).
//! `HEAD` of either sends the headers only; another method gets 405, another path 404.
//!
//! [`router`] returns an `axum` [`Router`] so that more routes (a console, a REST API) can be
//! added to the same port; [`serve`] runs a router on a listener until a shutdown signal.
//! HTTP itself (parsing, keep-alive, limits on request heads) is hyper's, through axum.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// Content type of `/metrics`: the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/health` reports.
pub struct Health {
    /// false: 503 Service Unavailable.
    pub ok: bool,
    /// The body: a JSON object, e.g. `{"status":"ok","mode":"query","store_version":12}`.
    pub detail: String,
}

/// Called for every `/health` request, on a blocking-pool thread (it may look at the store).
pub type HealthFn = Arc<dyn Fn() -> Health + Send + Sync>;

/// `/health` (answered by `health`) and `/metrics`; 404 for any other path.
pub fn router(health: HealthFn) -> Router {
    Router::new()
        .route("/health", get(move || health_response(health.clone())))
        .route("/metrics", get(metrics_response))
        .fallback(not_found)
}

/// Serves `router` on `listener` until `shutdown` completes (then lets open requests
/// finish). Accept errors (e.g. out of file descriptors) are retried after a short pause, so
/// it returns only after the shutdown signal.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Like [`serve`], over TLS when `tls` is given (`kylin.server.tls.*`): every connection
/// must complete a TLS handshake before it is served; a plaintext request gets no answer.
pub async fn serve_with(
    listener: TcpListener,
    tls: Option<Arc<crate::tls::Tls>>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls.http_acceptor())?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => serve(listener, router, shutdown).await,
    }
}

/// `host:port` to bind, with brackets around an IPv6 literal.
pub fn bind_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn health_response(health: HealthFn) -> Response {
    // The callback may block (e.g. look at the store) or panic: keep it off the async
    // workers, and answer 503 if it fails.
    let (status, body) = match tokio::task::spawn_blocking(move || health()).await {
        Ok(h) => (
            if h.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            },
            h.detail,
        ),
        Err(e) => {
            log::warn!("http: health check failed: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"status":"error","detail":"health check failed"}"#.to_string(),
            )
        }
    };
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn metrics_response() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        crate::metrics::global().render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    struct Server {
        addr: std::net::SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<io::Result<()>>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(health: HealthFn) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router(health), async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
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

    /// Sends `request` raw (it should ask for `Connection: close`) and reads the reply.
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
        assert!(parts.next().unwrap().starts_with("HTTP/1."));
        let status = parts.next().unwrap().parse().unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    }

    fn request(method: &str, path: &str) -> Vec<u8> {
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .into_bytes()
    }

    fn get(path: &str) -> Vec<u8> {
        request("GET", path)
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(bind_address("127.0.0.1", 7070), "127.0.0.1:7070");
        assert_eq!(bind_address("::1", 0), "[::1]:0");
        assert_eq!(bind_address("[::1]", 1), "[::1]:1");
        assert_eq!(bind_address("localhost", 2), "localhost:2");
    }

    #[tokio::test]
    async fn health_ok_then_unavailable() {
        let flag = Arc::new(AtomicBool::new(true));
        let server = start(healthy(flag.clone())).await;
        let r = exchange(server.addr, &get("/health")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
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
        let server = start(Arc::new(|| panic!("boom"))).await;
        let r = exchange(server.addr, &get("/health")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The server keeps serving.
        let r = exchange(server.addr, &get("/nope")).await;
        assert_eq!(r.status, 404);
    }

    #[tokio::test]
    async fn metrics_body_and_content_type() {
        crate::metrics::global().cache_hit();
        let server = start(healthy(Arc::new(AtomicBool::new(true)))).await;
        let r = exchange(server.addr, &get("/metrics")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(METRICS_CONTENT_TYPE));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        assert!(r.body().contains("# TYPE qilin_queries_total counter\n"));
        assert!(r.body().contains("qilin_query_cache_hits_total "));
    }

    #[tokio::test]
    async fn head_sends_headers_only() {
        let server = start(healthy(Arc::new(AtomicBool::new(true)))).await;
        let r = exchange(server.addr, &request("HEAD", "/health")).await;
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
        let server = start(healthy(Arc::new(AtomicBool::new(true)))).await;
        let r = exchange(server.addr, &get("/")).await;
        assert_eq!(r.status, 404);
        let r = exchange(server.addr, &get("/healthz")).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-length"), Some("10"));
        assert_eq!(r.body(), "not found\n");

        let r = exchange(
            server.addr,
            b"POST /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert_eq!(r.status, 405);
        let allow = r.header("allow").unwrap().replace(' ', "");
        assert_eq!(allow, "GET,HEAD");
        let r = exchange(server.addr, &request("DELETE", "/metrics")).await;
        assert_eq!(r.status, 405);
    }

    #[tokio::test]
    async fn garbage_is_bad_request() {
        let server = start(healthy(Arc::new(AtomicBool::new(true)))).await;
        for garbage in [
            &b"\x00\x01\x02garbage\xff\xfe\r\n\r\n"[..],
            b"hello\r\n\r\n",
            b"GET /health HTTP/1.1 extra\r\n\r\n",
            b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
        ] {
            let mut s = TcpStream::connect(server.addr).await.unwrap();
            s.write_all(garbage).await.unwrap();
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
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let server = start(healthy(Arc::new(AtomicBool::new(true)))).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    }

    #[tokio::test]
    async fn serve_returns_after_shutdown() {
        let mut server = start(healthy(Arc::new(AtomicBool::new(true)))).await;
        assert_eq!(exchange(server.addr, &get("/health")).await.status, 200);
        server.stop.take().unwrap().send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), &mut server.task)
            .await
            .expect("serve returns after the shutdown signal")
            .unwrap();
        assert!(result.is_ok());
        assert!(TcpStream::connect(server.addr).await.is_err());
    }
}
