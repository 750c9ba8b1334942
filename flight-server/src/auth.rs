//! The Flight service's authentication layer: every RPC but Handshake is checked by
//! [`RequireAuth`] with the shared [`Authenticator`] (users and tokens: `qilin_cluster::auth`).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
pub use qilin_cluster::auth::{parse_basic, AuthError, Authenticator};
use qilin_cluster::notify::NOTIFY_ACTION;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// The one RPC that may be called without credentials of the bearer kind: it issues them.
const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";
const DO_ACTION_PATH: &str = "/arrow.flight.protocol.FlightService/DoAction";

/// The user a request was authenticated as (a request extension set by [`RequireAuth`]).
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub String);

/// Every refusal is UNAUTHENTICATED to a Flight client, with the reason as message.
pub fn unauthenticated(e: AuthError) -> Status {
    Status::unauthenticated(e.to_string())
}

/// Wraps the Flight service so that every RPC but Handshake is authenticated in one place,
/// before any handler runs; handlers then cannot forget the check.
#[derive(Clone)]
pub struct RequireAuth<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> RequireAuth<S> {
    pub fn new(inner: S, auth: Arc<Authenticator>) -> Self {
        RequireAuth { inner, auth }
    }
}

impl<S> Service<http::Request<Body>> for RequireAuth<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if req.uri().path() == DO_ACTION_PATH {
            // Cluster notifications carry an HMAC signature instead of a bearer token (the
            // handler checks it and answers PermissionDenied); every other action needs a
            // token like any other call. The action type is in the body, so read it first.
            let auth = self.auth.clone();
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            return Box::pin(async move {
                let (parts, body) = req.into_parts();
                let bytes = match Limited::new(body, crate::wire::MAX_MESSAGE_BYTES)
                    .collect()
                    .await
                {
                    Ok(c) => c.to_bytes(),
                    Err(e) => {
                        return Ok(
                            Status::invalid_argument(format!("reading DoAction: {e}")).into_http()
                        )
                    }
                };
                let notify = action_type(&bytes).as_deref() == Some(NOTIFY_ACTION);
                let mut req = http::Request::from_parts(parts, Body::new(Full::new(bytes)));
                if !notify {
                    let header = req
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    match auth.authenticate(header) {
                        Ok(user) => {
                            req.extensions_mut().insert(AuthenticatedUser(user));
                        }
                        Err(e) => return Ok(unauthenticated(e).into_http()),
                    }
                }
                inner.call(req).await
            });
        }
        if req.uri().path() != HANDSHAKE_PATH {
            let header = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match self.auth.authenticate(header) {
                Ok(user) => {
                    req.extensions_mut().insert(AuthenticatedUser(user));
                }
                Err(e) => {
                    let status = unauthenticated(e);
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        // The usual tower dance: call the instance that was polled ready, keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

/// The type of the `Action` in a DoAction request body (one uncompressed gRPC frame).
fn action_type(frame: &[u8]) -> Option<String> {
    if frame.len() < 5 || frame[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes(frame[1..5].try_into().ok()?) as usize;
    let message = frame.get(5..5 + len)?;
    arrow_flight::Action::decode(message).ok().map(|a| a.r#type)
}

impl<S: NamedService> NamedService for RequireAuth<S> {
    const NAME: &'static str = S::NAME;
}
