//! Who may call: Basic credentials checked against `kylin.security.users`, and bearer tokens
//! signed with `kylin.security.token-secret` so that every instance sharing the secret (a
//! cluster behind a load balancer) accepts a token issued by any of them.
//!
//! A token is `base64url(payload).base64url(HMAC-SHA256(secret, base64url(payload)))` with a
//! JSON payload `{"v":1,"sub":USER,"exp":UNIX_SECONDS}`. Nothing is stored server-side.
//!
//! Shared by the Flight SQL service (its tonic layer in `qilin-server`) and the HTTP server's
//! [`crate::http::Caller`], so both accept the same users and tokens.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use qilin_engine::config::Config;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The built-in account, accepted only when no users are configured and the server listens
/// on a loopback address (so it can never be reached from another machine).
pub const DEFAULT_USER: &str = "ADMIN";
pub const DEFAULT_PASSWORD: &str = "KYLIN";

/// Standard base64 that accepts missing padding: the Go Flight client (used by the ADBC
/// driver) sends `Basic` credentials without `=` padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const TOKEN_VERSION: u32 = 1;

/// Why a caller was refused (every variant is "unauthenticated" to a client), or why the
/// security configuration does not allow the process to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("no credentials: handshake with Basic auth and send the bearer token")]
    NoCredentials,
    #[error("unsupported authorization header: expected Basic or Bearer")]
    UnsupportedScheme,
    #[error("invalid bearer token; handshake again")]
    InvalidToken,
    #[error("bearer token expired; handshake again")]
    TokenExpired,
    #[error("user {0} is no longer configured")]
    UnknownUser(String),
    /// `kylin.security.*` refuses this setup (e.g. default credentials off loopback).
    #[error("{0}")]
    Config(String),
}

#[derive(Serialize, Deserialize)]
struct TokenPayload {
    v: u32,
    sub: String,
    exp: u64,
}

/// Checks credentials and issues and verifies tokens.
pub struct Authenticator {
    users: Vec<(String, String)>,
    secret: Vec<u8>,
    ttl_seconds: u64,
}

impl std::fmt::Debug for Authenticator {
    // Never print passwords or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "users",
                &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Applies the security rules of the configuration: default credentials and a random
    /// per-process secret are allowed only on a loopback address; anywhere else both users
    /// and the token secret must be configured.
    pub fn from_config(config: &Config) -> Result<Authenticator, AuthError> {
        let loopback = is_loopback_host(&config.cluster.host);
        if !loopback && config.security.users.is_empty() {
            return Err(AuthError::Config(format!(
                "kylin.server.host={} is not a loopback address, so the default ADMIN/KYLIN \
                 credentials are refused: configure kylin.security.users (USER:PASSWORD,...) and \
                 kylin.security.token-secret",
                config.cluster.host
            )));
        }
        if !loopback && config.security.token_secret.is_empty() {
            return Err(AuthError::Config(format!(
                "kylin.server.host={} is not a loopback address: configure \
                 kylin.security.token-secret (the same on every instance of the cluster) to \
                 sign bearer tokens",
                config.cluster.host
            )));
        }
        if config.security.token_ttl_seconds == 0 {
            return Err(AuthError::Config(
                "kylin.security.token-ttl-seconds must be at least 1".into(),
            ));
        }
        let users = if config.security.users.is_empty() {
            vec![(DEFAULT_USER.to_string(), DEFAULT_PASSWORD.to_string())]
        } else {
            config.security.users.clone()
        };
        let secret = if config.security.token_secret.is_empty() {
            // Tokens then die with the process, which is fine for a single local server.
            let mut s = vec![0u8; 32];
            rand::rng().fill_bytes(&mut s);
            s
        } else {
            config.security.token_secret.as_bytes().to_vec()
        };
        Ok(Authenticator {
            users,
            secret,
            ttl_seconds: config.security.token_ttl_seconds,
        })
    }

    /// Checks a user's password (in constant time) and returns a fresh token.
    pub fn login(&self, user: &str, password: &str) -> Result<String, AuthError> {
        let ok = self
            .users
            .iter()
            .any(|(u, p)| u == user && constant_time_eq(p.as_bytes(), password.as_bytes()));
        if !ok {
            log::info!("rejected credentials for user {user:?}");
            return Err(AuthError::BadCredentials);
        }
        Ok(self.issue(user, now_seconds() + self.ttl_seconds))
    }

    /// A fresh token for a user who is already authenticated (a handshake with a token).
    pub fn renew(&self, user: &str) -> String {
        self.issue(user, now_seconds() + self.ttl_seconds)
    }

    pub(crate) fn issue(&self, user: &str, expires: u64) -> String {
        let payload = TokenPayload {
            v: TOKEN_VERSION,
            sub: user.to_string(),
            exp: expires,
        };
        // Serializing a struct of a string and two integers cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let sig = URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()).finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.secret)
            .expect("HMAC accepts keys of any length");
        mac.update(data);
        mac
    }

    /// The user a token was issued to, if its signature is ours, it has not expired and the
    /// user is still configured.
    pub fn verify_token(&self, token: &str) -> Result<String, AuthError> {
        let invalid = || AuthError::InvalidToken;
        let (payload, sig) = token.trim().split_once('.').ok_or_else(invalid)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
        self.mac(payload.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| invalid())?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let payload: TokenPayload = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if payload.v != TOKEN_VERSION {
            return Err(invalid());
        }
        if payload.exp <= now_seconds() {
            return Err(AuthError::TokenExpired);
        }
        if !self.users.iter().any(|(u, _)| *u == payload.sub) {
            return Err(AuthError::UnknownUser(payload.sub));
        }
        Ok(payload.sub)
    }

    /// Authenticates an `authorization` header value: a bearer token, or Basic credentials
    /// for clients that skip the handshake.
    pub fn authenticate(&self, header: Option<&str>) -> Result<String, AuthError> {
        let Some(value) = header.map(str::trim) else {
            return Err(AuthError::NoCredentials);
        };
        if let Some(token) = strip_prefix_ignore_case(value, "Bearer ") {
            return self.verify_token(token);
        }
        if let Some((user, pass)) = parse_basic(value) {
            self.login(&user, &pass)?;
            return Ok(user);
        }
        Err(AuthError::UnsupportedScheme)
    }
}

/// `Basic base64(user:password)` → (user, password); padding optional.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = strip_prefix_ignore_case(header.trim(), "Basic ")?.trim();
    let decoded = LENIENT_BASE64.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Compares digests so that neither the content nor the length of the password leaks
/// through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `127.0.0.0/8`, `::1` or `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(props: &str) -> Config {
        Config::from_parts(props, "test", |_| None).unwrap()
    }

    fn local() -> Authenticator {
        Authenticator::from_config(&config("")).unwrap()
    }

    #[test]
    fn default_credentials_only_on_loopback() {
        let a = local();
        assert!(a.login("ADMIN", "KYLIN").is_ok());
        assert_eq!(
            a.login("ADMIN", "nope").unwrap_err(),
            AuthError::BadCredentials
        );
        let err = Authenticator::from_config(&config("kylin.server.host=0.0.0.0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kylin.security.users"), "{err}");
        let err = Authenticator::from_config(&config(
            "kylin.server.host=10.0.0.1\nkylin.security.users=a:b\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("kylin.security.token-secret"), "{err}");
        assert!(Authenticator::from_config(&config(
            "kylin.server.host=10.0.0.1\nkylin.security.users=a:b\nkylin.security.token-secret=s\n"
        ))
        .is_ok());
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["0.0.0.0", "::", "10.1.1.1", "example.com"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn configured_users_replace_the_default() {
        let a = Authenticator::from_config(&config("kylin.security.users=alice:pw1,bob:pw2\n"))
            .unwrap();
        assert!(a.login("alice", "pw1").is_ok());
        assert!(a.login("bob", "pw2").is_ok());
        assert!(a.login("ADMIN", "KYLIN").is_err());
        assert!(a.login("alice", "pw2").is_err());
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let a = local();
        let t = a.login("ADMIN", "KYLIN").unwrap();
        assert_eq!(a.verify_token(&t).unwrap(), "ADMIN");
        // Another process with its own random secret refuses it.
        assert!(local().verify_token(&t).is_err());
        // Flip one character of the payload and of the signature.
        let (p, s) = t.split_once('.').unwrap();
        let mut p2 = p.as_bytes().to_vec();
        p2[3] = if p2[3] == b'A' { b'B' } else { b'A' };
        let forged = format!("{}.{s}", String::from_utf8(p2).unwrap());
        assert_eq!(
            a.verify_token(&forged).unwrap_err(),
            AuthError::InvalidToken
        );
        let forged = format!("{p}.{}x", &s[..s.len() - 1]);
        assert!(a.verify_token(&forged).is_err());
        assert!(a.verify_token("garbage").is_err());
        assert!(a.verify_token("").is_err());
        assert!(a.verify_token("..").is_err());
    }

    #[test]
    fn shared_secret_tokens_work_across_instances_and_expire() {
        let c = config("kylin.security.token-secret=s3cret\n");
        let (a, b) = (
            Authenticator::from_config(&c).unwrap(),
            Authenticator::from_config(&c).unwrap(),
        );
        let t = a.login("ADMIN", "KYLIN").unwrap();
        assert_eq!(b.verify_token(&t).unwrap(), "ADMIN");
        let expired = a.issue("ADMIN", now_seconds() - 1);
        let err = b.verify_token(&expired).unwrap_err();
        assert_eq!(err, AuthError::TokenExpired);
    }

    #[test]
    fn basic_headers_parse_with_or_without_padding() {
        // "ADMIN:KYLIN" → QURNSU46S1lMSU4= (one padding character).
        assert_eq!(
            parse_basic("Basic QURNSU46S1lMSU4="),
            Some(("ADMIN".into(), "KYLIN".into()))
        );
        assert_eq!(
            parse_basic("basic QURNSU46S1lMSU4"),
            Some(("ADMIN".into(), "KYLIN".into()))
        );
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Bearer x"), None);
        let a = local();
        assert_eq!(
            a.authenticate(Some("Basic QURNSU46S1lMSU4")).unwrap(),
            "ADMIN"
        );
        assert_eq!(a.authenticate(None).unwrap_err(), AuthError::NoCredentials);
        assert!(a.authenticate(Some("Digest x")).is_err());
    }
}
