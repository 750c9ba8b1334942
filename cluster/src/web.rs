//! What every REST handler of the HTTP server shares: errors as Kylin-style JSON with the one
//! engine-error → HTTP status mapping ([`http_status`]), the authenticated [`Caller`], a JSON
//! body that refuses malformed input with 400 ([`JsonBody`]), JSON replies ([`Json`]) and
//! query-string [`Params`].
//!
//! The composing binary adds the [`Authenticator`] as a request extension
//! (`router.layer(axum::Extension(Arc<Authenticator>))`); [`Caller`] finds it there.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use qilin_engine::error::ErrorKind;
use qilin_engine::security::audit::Outcome;
use qilin_engine::security::{Access, ProjectRole};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{AuthError, Authenticator};

/// The HTTP status of an engine error, decided by its kind: the one mapping every REST
/// module uses (the gRPC one is `qilin-server`'s `status.rs`).
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::User => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Corrupt | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refused REST request: its status and a message that says what to fix. Answered as
/// Kylin's error JSON `{"code":"999","data":null,"msg":M,"stacktrace":"","exception":M,"url":""}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Ask the browser for Basic credentials (401 only; not for the console's XHR calls, which
    /// would otherwise pop up the browser's own login dialog).
    challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            challenge: status == StatusCode::UNAUTHORIZED,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 401 for a request with `headers`: with a `WWW-Authenticate` challenge unless the request
    /// comes from script (`X-Requested-With: XMLHttpRequest`).
    pub fn unauthorized(message: impl Into<String>, headers: &HeaderMap) -> ApiError {
        let xhr = headers
            .get("x-requested-with")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("XMLHttpRequest"));
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            challenge: !xhr,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl From<qilin_engine::Error> for ApiError {
    fn from(e: qilin_engine::Error) -> ApiError {
        ApiError::new(http_status(e.kind()), e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            log::warn!("http: {}", self.message);
        }
        let body = serde_json::json!({
            "code": "999",
            "data": null,
            "msg": self.message,
            "stacktrace": "",
            "exception": self.message,
            "url": "",
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED && self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Qilin\""),
            );
        }
        response
    }
}

/// A JSON response body (200 unless paired with a status: `(StatusCode, Json(v))`). Ours
/// rather than axum's `Json`, whose feature would turn on serde_json's `raw_value` and so
/// rebuild everything that depends on serde_json (the whole Arrow/DataFusion stack).
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serializing the response: {e}"),
            )
                .into_response(),
        }
    }
}

/// The user a request is authenticated as: `Authorization: Basic …` (checked against
/// `kylin.security.users`) or `Bearer <token>` (issued by Flight's handshake or
/// `POST /kylin/api/user/authentication`). Missing or wrong credentials → 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let auth = authenticator(parts)?;
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        auth.authenticate(header)
            .map(Caller)
            .map_err(|e| ApiError::unauthorized(e.to_string(), &parts.headers))
    }
}

/// The authenticated caller with what it may see and do ([`Access`], resolved from the
/// security rules of the metadata store at each request) and the [`Authenticator`] (for the
/// audit log and reloading the rules after a change). Handlers check roles through
/// [`CallerAccess::require`], which audits refusals.
#[derive(Clone)]
pub struct CallerAccess {
    pub access: Access,
    pub auth: Arc<Authenticator>,
}

impl std::fmt::Debug for CallerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerAccess")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CallerAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let auth = authenticator(parts)?;
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // Checking a password (Argon2) and loading the rules may block: off the workers.
        let resolver = auth.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            let user = resolver.authenticate(header.as_deref())?;
            resolver.access(&user)
        })
        .await
        .map_err(|e| ApiError::internal(format!("authenticating the request: {e}")))?;
        match resolved {
            Ok(access) => Ok(CallerAccess { access, auth }),
            Err(e) => Err(ApiError::unauthorized(e.to_string(), &parts.headers)),
        }
    }
}

impl CallerAccess {
    pub fn user(&self) -> &str {
        &self.access.user
    }

    /// Checks that the caller holds `role` (or higher) in `project` for `action` on `target`
    /// (`"cube.build"`, `"cube ssb_sales"`): a project it does not see is 404, a lower role
    /// 403 naming the role needed; both are audited as refused.
    pub fn require(
        &self,
        project: &str,
        role: ProjectRole,
        action: &str,
        target: &str,
    ) -> Result<(), ApiError> {
        self.access
            .require(project, role, &format!("{action} on {target}"))
            .map_err(|e| self.refused(action, target, e))
    }

    /// [`CallerAccess::require`] for `action` on one object (`kind` `name`, e.g. cube
    /// ssb_sales) of `project`: when the caller does not see the project the object is 404
    /// itself (naming the object, never the project it would reveal).
    pub fn require_object(
        &self,
        project: &str,
        role: ProjectRole,
        action: &str,
        kind: &'static str,
        name: &str,
    ) -> Result<(), ApiError> {
        let target = format!("{kind} {name}");
        if !self.access.sees_project(project) {
            let e = qilin_engine::Error::NotFound {
                kind,
                name: name.to_string(),
            };
            return Err(self.refused(action, &target, e));
        }
        self.require(project, role, action, &target)
    }

    /// Checks that the caller is a global admin; a refusal is audited.
    pub fn require_admin(&self, action: &str, target: &str) -> Result<(), ApiError> {
        self.access
            .require_admin(&format!("{action} on {target}"))
            .map_err(|e| self.refused(action, target, e))
    }

    /// Audits `e` as a refusal of `action` on `target` and turns it into the reply.
    pub fn refused(&self, action: &str, target: &str, e: qilin_engine::Error) -> ApiError {
        self.audit(action, target, Outcome::Denied, e.to_string());
        e.into()
    }

    /// Records an event of this caller in the audit log.
    pub fn audit(&self, action: &str, target: &str, outcome: Outcome, detail: impl Into<String>) {
        self.auth
            .audit()
            .record(self.user(), action, target, outcome, detail);
    }

    /// Audits the outcome of a change: Ok, or Failed/Denied (by the error's kind) with the
    /// error; passes `result` on.
    pub fn audited<T>(
        &self,
        action: &str,
        target: &str,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match &result {
            Ok(_) => self.audit(action, target, Outcome::Ok, ""),
            Err(e) => {
                let outcome = if e.status == StatusCode::FORBIDDEN {
                    Outcome::Denied
                } else {
                    Outcome::Failed
                };
                self.audit(action, target, outcome, e.message.clone());
            }
        }
        result
    }
}

/// The [`Authenticator`] the composing binary attached to every request.
pub fn authenticator(parts: &Parts) -> Result<Arc<Authenticator>, ApiError> {
    parts
        .extensions
        .get::<Arc<Authenticator>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no authenticator attached to the HTTP router"))
}

/// A JSON request body of type `T`. Empty or malformed bodies (bad JSON, a missing or
/// mistyped field) → 400 naming the problem and the field path. The content type is not
/// checked: Kylin's clients do not all send `application/json`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("reading the request body: {e}")))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// `bytes` as JSON `T`, or 400 with the field path and position of the problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed request body: empty, expected a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("malformed request body: {inner}"))
        } else {
            ApiError::bad_request(format!("malformed request body: {path}: {inner}"))
        }
    })
}

/// The query string's parameters (the last value wins when one repeats).
#[derive(Debug, Clone, Default)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A non-negative integer parameter, or 400 naming it.
    pub fn usize(&self, name: &str) -> Result<Option<usize>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "query parameter {name}={v:?}: expected a non-negative integer"
                    ))
                })
            })
            .transpose()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use axum::{Extension, Router};
    use qilin_engine::config::Config;
    use serde::Deserialize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Deserialize)]
    struct Body {
        sql: String,
        #[serde(default)]
        limit: Option<u32>,
    }

    async fn serve() -> std::net::SocketAddr {
        // The store lives as long as the test process (the server task outlives this call).
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let meta = qilin_engine::metadata::managers::Metadata::new(
            qilin_engine::metadata::open_store(dir.path().to_str().unwrap()).unwrap(),
        );
        let auth = Arc::new(
            Authenticator::from_config(
                &Config::from_parts("", "test", |_| None).unwrap(),
                meta,
                "test",
            )
            .unwrap(),
        );
        let router = Router::new()
            .route(
                "/who",
                get(|Caller(user): Caller, p: Params| async move {
                    format!("{user} {}", p.get("x").unwrap_or("-"))
                }),
            )
            .route(
                "/body",
                post(
                    |JsonBody(b): JsonBody<Body>| async move { format!("{} {:?}", b.sql, b.limit) },
                ),
            )
            .route(
                "/missing",
                get(|| async {
                    Err::<(), ApiError>(
                        qilin_engine::Error::NotFound {
                            kind: "cube",
                            name: "X".into(),
                        }
                        .into(),
                    )
                }),
            )
            .layer(Extension(auth));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    async fn exchange(addr: std::net::SocketAddr, request: String) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    fn req(method: &str, path: &str, headers: &str, body: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[test]
    fn statuses_by_kind() {
        assert_eq!(http_status(ErrorKind::User), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(ErrorKind::Conflict), StatusCode::CONFLICT);
        assert_eq!(http_status(ErrorKind::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            http_status(ErrorKind::Overloaded),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            http_status(ErrorKind::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(ErrorKind::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn caller_params_body_and_errors() {
        let addr = serve().await;
        // "ADMIN:KYLIN"
        let basic = "Authorization: Basic QURNSU46S1lMSU4=\r\n";
        let (s, _, body) = exchange(addr, req("GET", "/who?x=a%20b", basic, "")).await;
        assert_eq!((s, body.as_str()), (200, "ADMIN a b"));

        let (s, head, body) = exchange(addr, req("GET", "/who", "", "")).await;
        assert_eq!(s, 401);
        assert!(
            head.contains("www-authenticate: basic realm=\"qilin\""),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "999");
        assert!(v["msg"].as_str().unwrap().contains("no credentials"), "{v}");
        assert_eq!(v["exception"], v["msg"]);

        let xhr = "X-Requested-With: XMLHttpRequest\r\nAuthorization: Basic QURNSU46eA==\r\n";
        let (s, head, body) = exchange(addr, req("GET", "/who", xhr, "")).await;
        assert_eq!(s, 401);
        assert!(!head.contains("www-authenticate"), "{head}");
        assert!(body.contains("invalid user name or password"), "{body}");

        let (s, _, body) = exchange(
            addr,
            req("POST", "/body", "", r#"{"sql":"select 1","limit":5}"#),
        )
        .await;
        assert_eq!((s, body.as_str()), (200, "select 1 Some(5)"));
        for (bad, says) in [
            ("", "empty"),
            ("{not json", "key must be a string"),
            (r#"{"limit":5}"#, "missing field `sql`"),
            (r#"{"sql":"x","limit":"many"}"#, "limit: invalid type"),
        ] {
            let (s, _, body) = exchange(addr, req("POST", "/body", "", bad)).await;
            assert_eq!(s, 400, "{bad}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let msg = v["msg"].as_str().unwrap();
            assert!(msg.starts_with("malformed request body"), "{msg}");
            assert!(msg.contains(says), "{bad}: {msg}");
        }

        let (s, _, body) = exchange(addr, req("GET", "/missing", "", "")).await;
        assert_eq!(s, 404);
        assert!(body.contains("cube X not found"), "{body}");
    }
}
