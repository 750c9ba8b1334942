//! Cluster notifications: after a metadata change (a segment turned READY, a model or cube
//! changed) the writer tells every instance in `kylin.rest.servers` except itself, with a
//! Flight `DoAction` of type [`NOTIFY_ACTION`] whose body is a JSON [`Notification`] signed
//! with HMAC-SHA256 under the cluster secret (`kylin.security.token-secret`) in the
//! [`SIGNATURE_HEADER`] metadata entry. Receivers refuse unsigned or forged ones.
//!
//! Unlike Kylin's broadcast, delivery is retried with backoff, in the background: a dead peer
//! never blocks a build, and a peer that misses every attempt still catches up through its
//! store-version polling.
//!
//! The signing is hand-written on purpose (a few lines over `hmac`/`sha2`): the format — hex
//! HMAC-SHA256 of the exact action body, in one gRPC metadata entry, with the timestamp inside
//! the signed body — is the wire contract between instances (possibly of different versions)
//! and the same key signs bearer tokens; a token or mTLS framework would change that contract
//! and add a dependency for twenty lines. Sending reuses the Flight client (tonic).
//!
//! With `kylin.server.tls.*` set, peers are called over TLS (`https://`), their certificates
//! verified and this node's certificate presented as its identity (see [`crate::tls`]); a
//! receiver with `kylin.server.tls.client-ca` refuses notifications without one.

use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Action;
use hmac::{Hmac, Mac};
use qilin_engine::config::Config;
use qilin_engine::model::now_ms;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::metrics;
use crate::tls::Tls;
use tonic::transport::ClientTlsConfig;

/// The `DoAction` type of a notification.
pub const NOTIFY_ACTION: &str = "qilin.notify";
/// gRPC metadata entry carrying the hex HMAC-SHA256 of the action body.
pub const SIGNATURE_HEADER: &str = "x-qilin-signature";
/// Notifications older (or newer) than this by the receiver's clock are refused as replays.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// Delivery attempts per peer, and the first backoff (doubling).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The sender (`host:port`, or `job@host` for a job daemon).
    pub from: String,
    /// e.g. `segment READY ssb_cube/5f0c…`.
    pub what: String,
    /// The sender's store version after the change.
    pub store_version: u64,
    pub sent_ms: i64,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    HmacSha256::new_from_slice(secret).expect("HMAC takes any key length")
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a notification was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("unsigned notification (no {SIGNATURE_HEADER})")]
    Unsigned,
    #[error("notification signature does not match the cluster secret")]
    Forged,
    #[error("malformed notification: {0}")]
    Malformed(String),
    #[error("stale notification (sent {0} ms away from this server's clock)")]
    Stale(i64),
    #[error(
        "this server has no cluster secret (kylin.security.token-secret) to check notifications"
    )]
    NoSecret,
}

/// Checks a received notification: signature (constant time), then content and freshness.
pub fn verify(
    secret: &[u8],
    body: &[u8],
    signature: Option<&str>,
) -> Result<Notification, Refusal> {
    if secret.is_empty() {
        return Err(Refusal::NoSecret);
    }
    let signature = signature.ok_or(Refusal::Unsigned)?;
    let bytes = decode_hex(signature).ok_or(Refusal::Forged)?;
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&bytes).map_err(|_| Refusal::Forged)?;
    let n: Notification =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let skew = now_ms() - n.sent_ms;
    if skew.abs() > MAX_SKEW_MS {
        return Err(Refusal::Stale(skew));
    }
    Ok(n)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Sends notifications to the peers of `kylin.rest.servers`.
#[derive(Debug, Clone)]
pub struct Notifier {
    peers: Vec<String>,
    secret: Arc<Vec<u8>>,
    from: String,
    /// `Ok(None)`: plaintext; `Err`: TLS is configured but its files are unusable (every
    /// delivery fails with that message: never a silent fall-back to plaintext).
    tls: Result<Option<ClientTlsConfig>, String>,
}

impl Notifier {
    /// `own_addr` is this instance's own `host:port` (skipped among the peers); `None` for a
    /// process without a Flight port (the job daemon). `None` when there is nobody to tell.
    pub fn from_config(config: &Config, own_addr: Option<&str>) -> Option<Notifier> {
        let peers: Vec<String> = config
            .cluster
            .rest_servers
            .iter()
            .filter(|p| Some(p.as_str()) != own_addr)
            .cloned()
            .collect();
        if peers.is_empty() {
            return None;
        }
        Some(Notifier {
            peers,
            secret: Arc::new(config.security.token_secret.clone().into_bytes()),
            from: own_addr
                .map(str::to_string)
                .unwrap_or_else(|| format!("job@{}", crate::liveness::hostname())),
            tls: Tls::from_config(config)
                .map(|t| t.map(|t| t.peer_client()))
                .map_err(|e| {
                    log::error!("notifications cannot use TLS: {e}");
                    e.to_string()
                }),
        })
    }

    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// Tells every peer, in the background (needs a Tokio runtime): a dead peer never
    /// blocks the caller.
    pub fn notify(&self, what: &str, store_version: u64) {
        let this = self.clone();
        let what = what.to_string();
        tokio::spawn(async move {
            this.notify_all(&what, store_version).await;
        });
    }

    /// Tells every peer concurrently, each with retries and backoff; returns the peers that
    /// could not be reached, with the last error.
    pub async fn notify_all(&self, what: &str, store_version: u64) -> Vec<(String, String)> {
        let n = Notification {
            from: self.from.clone(),
            what: what.to_string(),
            store_version,
            sent_ms: now_ms(),
        };
        let body = serde_json::to_vec(&n).expect("notification serializes");
        let signature = sign(&self.secret, &body);
        let deliveries = self.peers.iter().map(|peer| {
            let (body, signature) = (&body, &signature);
            async move {
                let mut backoff = FIRST_BACKOFF;
                let mut attempt = 1;
                loop {
                    match send(peer, &self.tls, body, signature).await {
                        Ok(()) => {
                            metrics::global().notification_sent();
                            return None;
                        }
                        Err(e) if attempt == ATTEMPTS => {
                            metrics::global().notification_failed();
                            log::warn!(
                                "could not notify {peer} after {ATTEMPTS} attempts ({e}); \
                                 it catches up by polling the store version"
                            );
                            return Some((peer.clone(), e));
                        }
                        Err(e) => {
                            log::debug!("notifying {peer} (attempt {attempt}): {e}");
                            tokio::time::sleep(backoff).await;
                            backoff *= 2;
                            attempt += 1;
                        }
                    }
                }
            }
        });
        futures::future::join_all(deliveries)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

async fn send(
    peer: &str,
    tls: &Result<Option<ClientTlsConfig>, String>,
    body: &[u8],
    signature: &str,
) -> Result<(), String> {
    let tls = tls.as_ref().map_err(Clone::clone)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{peer}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS: {e}"))?;
    }
    let channel = endpoint.connect().await.map_err(|e| error_chain(&e))?;
    let mut client = FlightServiceClient::new(channel);
    let mut request = tonic::Request::new(Action {
        r#type: NOTIFY_ACTION.into(),
        body: body.to_vec().into(),
    });
    request.metadata_mut().insert(
        SIGNATURE_HEADER,
        signature
            .parse()
            .map_err(|_| "bad signature header".to_string())?,
    );
    let mut results = client
        .do_action(request)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    // Drain the (empty) result stream so the call completes.
    while results
        .message()
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .is_some()
    {}
    Ok(())
}

/// An error with its causes ("transport error: …: invalid peer certificate: UnknownIssuer").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let n = Notification {
            from: "a:1".into(),
            what: "segment READY c/s".into(),
            store_version: 7,
            sent_ms: now_ms(),
        };
        let body = serde_json::to_vec(&n).unwrap();
        let sig = sign(b"secret", &body);
        assert_eq!(verify(b"secret", &body, Some(&sig)).unwrap(), n);
        assert_eq!(verify(b"secret", &body, None), Err(Refusal::Unsigned));
        assert_eq!(verify(b"other", &body, Some(&sig)), Err(Refusal::Forged));
        assert_eq!(verify(b"secret", &body, Some("zz")), Err(Refusal::Forged));
        let mut tampered = body.clone();
        tampered[5] ^= 1;
        assert_eq!(
            verify(b"secret", &tampered, Some(&sig)),
            Err(Refusal::Forged)
        );
        assert_eq!(verify(b"", &body, Some(&sig)), Err(Refusal::NoSecret));
        let old = Notification {
            sent_ms: now_ms() - 2 * MAX_SKEW_MS,
            ..n
        };
        let body = serde_json::to_vec(&old).unwrap();
        let sig = sign(b"secret", &body);
        assert!(matches!(
            verify(b"secret", &body, Some(&sig)),
            Err(Refusal::Stale(_))
        ));
    }
}
