//! The web console: `/` (the page) and `/console/{file}` (its script and style sheet), all
//! compiled into the binary with `include_str!` so that a release needs no files beside it
//! and the console works offline (no CDN, no fonts from elsewhere). The assets are
//! hand-written (`flight-server/console/`): no Node toolchain is needed to build.
//!
//! Caching: every answer carries a strong `ETag` (a hash of the asset, computed at compile
//! time) and `Cache-Control: no-cache`, so a browser revalidates each load with a cheap
//! `304 Not Modified` and never runs a stale script after an upgrade.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One static file of the console.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: &'static str,
}

macro_rules! asset {
    ($file:literal, $type:literal) => {{
        const BODY: &str = include_str!(concat!("../../console/", $file));
        const TAG: [u8; 18] = etag(BODY);
        Asset {
            body: BODY,
            content_type: $type,
            // Hex digits and quotes only: always valid UTF-8.
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => panic!("ETag is ASCII"),
            },
        }
    }};
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
static SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
static STYLE: Asset = asset!("app.css", "text/css; charset=utf-8");

/// The page may load scripts, styles and data only from this server (inline `style`
/// attributes are allowed: progress bars set their width that way).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `/` and `/console/{file}`; GET and HEAD (axum answers HEAD from the GET route).
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route("/console/{file}", get(console_file))
}

async fn console_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match lookup(&file) {
        Some(asset) => serve(asset, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no console file {file}\n"),
        )
            .into_response(),
    }
}

fn lookup(file: &str) -> Option<&'static Asset> {
    match file {
        "index.html" => Some(&INDEX),
        "app.js" => Some(&SCRIPT),
        "app.css" => Some(&STYLE),
        _ => None,
    }
}

fn serve(asset: &'static Asset, headers: &HeaderMap) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let common = [
        (header::ETAG, HeaderValue::from_static(asset.etag)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// `"` + 16 hex digits of the FNV-1a hash of `body` + `"`, at compile time.
const fn etag(body: &str) -> [u8; 18] {
    let bytes = body.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    let mut out = [b'"'; 18];
    let digits = b"0123456789abcdef";
    let mut k = 0;
    while k < 16 {
        out[1 + k] = digits[((hash >> (60 - 4 * k)) & 0xf) as usize];
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Status line + headers (lower-cased names) and body of one request over a real socket.
    async fn get(path: &str, if_none_match: Option<&str>) -> (u16, Vec<(String, String)>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router()).await });
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let extra = if_none_match
            .map(|t| format!("If-None-Match: {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.unwrap();
        server.abort();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        (status, headers, body.to_string())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
    }

    #[tokio::test]
    async fn serves_each_asset_with_its_type_and_revalidates() {
        for (path, ty, needle) in [
            ("/", "text/html", "/console/app.js"),
            ("/console/app.js", "text/javascript", "X-Requested-With"),
            ("/console/app.css", "text/css", "--accent"),
        ] {
            let (status, headers, body) = get(path, None).await;
            assert_eq!(status, 200, "{path}");
            assert!(header(&headers, "content-type").starts_with(ty), "{path}");
            assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
            let tag = header(&headers, "etag").to_string();
            assert!(tag.len() == 18 && tag.starts_with('"'), "{path}: {tag}");
            assert!(body.contains(needle), "{path}");
            let (again, _, body) = get(path, Some(&tag)).await;
            assert_eq!(again, 304, "{path}");
            assert!(body.is_empty(), "{path}");
        }
        assert_ne!(SCRIPT.etag, STYLE.etag);
        assert_eq!(get("/console/nope.js", None).await.0, 404);
    }

    #[test]
    fn assets_are_self_contained() {
        // Offline: nothing is fetched from another origin.
        for asset in [&INDEX, &SCRIPT, &STYLE] {
            for bad in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<&str> = asset
                    .body
                    .lines()
                    .filter(|l| l.contains(bad) && !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{bad} in {}: {hits:?}", asset.content_type);
            }
        }
    }
}
