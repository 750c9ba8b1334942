//! Who may call: users of the metadata store (Argon2id password hashes, shared by the cluster;
//! `kylin.security.users` entries are imported into it on start), API keys (`qk_<id>_<secret>`
//! as the Basic password or as a bearer token), and bearer tokens signed with
//! `kylin.security.token-secret` so that every instance sharing the secret (a cluster behind a
//! load balancer) accepts a token issued by any of them.
//!
//! A token is `base64url(payload).base64url(HMAC-SHA256(secret, base64url(payload)))` with a
//! JSON payload `{"v":1,"sub":USER,"exp":UNIX_SECONDS}`. Nothing is stored server-side, but a
//! token's user must still exist and be enabled.
//!
//! The security rules ([`SecurityState`]) are reloaded when the store-wide version moved,
//! checked at most once a second (and at once on [`Authenticator::refresh`]), so a change made
//! on one instance (a revoked key, a disabled user) applies on every instance within a second
//! of that instance seeing the version move.
//!
//! Shared by the Flight SQL service (its tonic layer in `qilin-server`) and the HTTP server's
//! [`crate::web::Caller`], so both accept the same users, keys and tokens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use qilin_engine::config::Config;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::security::audit::{AuditLog, Outcome};
use qilin_engine::security::secret;
use qilin_engine::security::store::{SecurityState, SecurityStore};
use qilin_engine::security::Access;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The built-in account, accepted only when no users are configured, the store holds no user
/// named ADMIN and the server listens on a loopback address (so it can never be reached from
/// another machine). It is a global admin.
pub const DEFAULT_USER: &str = "ADMIN";
pub const DEFAULT_PASSWORD: &str = "KYLIN";

/// Longest accepted `authorization` header, and user + password together: anything longer is
/// refused before it is decoded or hashed.
pub const MAX_CREDENTIALS_BYTES: usize = 8 * 1024;

/// How often at most the store-wide version is checked for changed users, grants and keys.
const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// Cached successful password checks; the cache is cleared when it grows past this.
const MAX_CACHED_VERIFICATIONS: usize = 10_000;

/// Standard base64 that accepts missing padding: the Go Flight client (used by the ADBC
/// driver) sends `Basic` credentials without `=` padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const TOKEN_VERSION: u32 = 1;

/// Why a caller was refused (every variant but `Config` is "unauthenticated" to a client), or
/// why the security configuration does not allow the process to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid user name or password")]
    BadCredentials,
    #[error("no credentials: handshake with Basic auth and send the bearer token")]
    NoCredentials,
    #[error("unsupported authorization header: expected Basic or Bearer")]
    UnsupportedScheme,
    #[error("malformed Basic credentials: expected base64 of USER:PASSWORD")]
    MalformedBasic,
    #[error("credentials longer than {MAX_CREDENTIALS_BYTES} bytes refused")]
    Oversized,
    #[error("invalid bearer token; handshake again")]
    InvalidToken,
    #[error("bearer token expired; handshake again")]
    TokenExpired,
    #[error("invalid, expired or revoked API key")]
    InvalidApiKey,
    #[error("user {0} is no longer configured")]
    UnknownUser(String),
    #[error("user {0} is disabled")]
    Disabled(String),
    /// `kylin.security.*` refuses this setup (e.g. default credentials off loopback), or the
    /// users cannot be loaded from the metadata store.
    #[error("{0}")]
    Config(String),
}

#[derive(Serialize, Deserialize)]
struct TokenPayload {
    v: u32,
    sub: String,
    exp: u64,
}

/// Checks credentials, issues and verifies tokens, and resolves what a user may see.
pub struct Authenticator {
    store: SecurityStore,
    audit: Arc<AuditLog>,
    secret: Vec<u8>,
    ttl_seconds: u64,
    /// Loopback and no `kylin.security.users`: ADMIN/KYLIN works unless the store has an ADMIN.
    default_allowed: bool,
    state: RwLock<Arc<SecurityState>>,
    /// When the store version was last compared with the state's.
    last_check: Mutex<Instant>,
    /// (user, sha256(password)) → the stamp of the stored hash it was verified against.
    verified: Mutex<HashMap<(String, [u8; 32]), String>>,
}

impl std::fmt::Debug for Authenticator {
    // Never print passwords, hashes or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("default_allowed", &self.default_allowed)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Imports the users of `kylin.security.users` into the store (when absent: the store
    /// wins afterwards), loads the security rules and applies the security rules of the
    /// configuration: default credentials and a random per-process secret are allowed only on
    /// a loopback address; anywhere else users (configured or in the store) and the token
    /// secret must be set. `instance` names this process in the audit log.
    pub fn from_config(
        config: &Config,
        meta: Metadata,
        instance: &str,
    ) -> Result<Authenticator, AuthError> {
        let loopback = is_loopback_host(&config.cluster.host);
        if config.security.token_ttl_seconds == 0 {
            return Err(AuthError::Config(
                "kylin.security.token-ttl-seconds must be at least 1".into(),
            ));
        }
        let store = SecurityStore::new(meta.clone());
        let load = |store: &SecurityStore| {
            store.load().map_err(|e| {
                AuthError::Config(format!(
                    "cannot load users from the metadata store {}: {e}",
                    meta.store().describe()
                ))
            })
        };
        let mut state = load(&store)?;
        if !loopback && config.security.users.is_empty() && !state.has_users() {
            return Err(AuthError::Config(format!(
                "kylin.server.host={} is not a loopback address, so the default ADMIN/KYLIN \
                 credentials are refused: create users (`qilin-jobs user add NAME --admin`) or \
                 configure kylin.security.users (USER:PASSWORD,...), and \
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
        // Only once the configuration is accepted: a refused start changes nothing.
        if import_configured_users(&store, &state, &config.security.users)? {
            state = load(&store)?;
        }
        let secret = if config.security.token_secret.is_empty() {
            // Tokens then die with the process, which is fine for a single local server.
            let mut s = vec![0u8; 32];
            rand::rng().fill_bytes(&mut s);
            s
        } else {
            config.security.token_secret.as_bytes().to_vec()
        };
        Ok(Authenticator {
            store,
            audit: AuditLog::new(meta, instance, config),
            secret,
            ttl_seconds: config.security.token_ttl_seconds,
            default_allowed: loopback && config.security.users.is_empty(),
            state: RwLock::new(Arc::new(state)),
            last_check: Mutex::new(Instant::now()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The store the users, grants, rules and keys live in.
    pub fn security(&self) -> &SecurityStore {
        &self.store
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The security rules, reloaded first if the store version moved (checked at most once a
    /// second; a failed reload keeps the previous rules and is logged).
    pub fn state(&self) -> Arc<SecurityState> {
        let current = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
        // One caller checks at a time; the others go on with the current rules.
        let Ok(mut last) = self.last_check.try_lock() else {
            return current;
        };
        if last.elapsed() < RELOAD_CHECK {
            return current;
        }
        *last = Instant::now();
        match self.store.metadata().store().store_version() {
            Ok(v) if v == current.version => current,
            Ok(_) => self.reload().unwrap_or(current),
            Err(e) => {
                log::warn!("security: cannot check the metadata store version: {e}");
                current
            }
        }
    }

    /// Reloads the rules now (after a change made through this process).
    pub fn refresh(&self) {
        if let Ok(mut last) = self.last_check.lock() {
            *last = Instant::now();
        }
        self.reload();
    }

    fn reload(&self) -> Option<Arc<SecurityState>> {
        match self.store.load() {
            Ok(s) => {
                let s = Arc::new(s);
                *self.state.write().unwrap_or_else(|p| p.into_inner()) = s.clone();
                Some(s)
            }
            Err(e) => {
                log::warn!("security: cannot reload users and grants: {e}");
                None
            }
        }
    }

    fn default_admin_active(&self, state: &SecurityState) -> bool {
        self.default_allowed && state.user(DEFAULT_USER).is_none()
    }

    /// Checks a user's password or API key without auditing; returns how it was checked.
    fn check_credentials(&self, user: &str, password: &str) -> Result<&'static str, AuthError> {
        if user.len() + password.len() > MAX_CREDENTIALS_BYTES {
            return Err(AuthError::Oversized);
        }
        if user.is_empty() || password.is_empty() {
            return Err(AuthError::BadCredentials);
        }
        let state = self.state();
        if secret::looks_like_api_key(password) {
            match state.verify_api_key(password) {
                Some(owner) if owner == user => return Ok("api key"),
                Some(_) => return Err(AuthError::BadCredentials),
                // Not a key after all: maybe a password that starts like one.
                None if state.verify_password(user, password) => return Ok("password"),
                None => return Err(AuthError::InvalidApiKey),
            }
        }
        if self.default_admin_active(&state) && user == DEFAULT_USER {
            return if constant_time_eq(password.as_bytes(), DEFAULT_PASSWORD.as_bytes()) {
                Ok("password")
            } else {
                Err(AuthError::BadCredentials)
            };
        }
        let Some(info) = state.user(user) else {
            return Err(AuthError::BadCredentials);
        };
        let stamp = state.password_stamp(user).unwrap_or_default();
        let key = (user.to_string(), Sha256::digest(password.as_bytes()).into());
        let cached = self
            .verified
            .lock()
            .map(|c| c.get(&key) == Some(&stamp))
            .unwrap_or(false);
        if !cached {
            // Argon2id on the stored hash; only successes are cached.
            if !state.password_matches(user, password) {
                return Err(AuthError::BadCredentials);
            }
            if let Ok(mut c) = self.verified.lock() {
                if c.len() >= MAX_CACHED_VERIFICATIONS {
                    c.clear();
                }
                c.insert(key, stamp);
            }
        }
        if info.disabled {
            return Err(AuthError::Disabled(user.to_string()));
        }
        Ok("password")
    }

    /// Checks a user's password (or one of its API keys) and returns a fresh token; the
    /// sign-in is audited either way.
    pub fn login(&self, user: &str, password_or_key: &str) -> Result<String, AuthError> {
        match self.check_credentials(user, password_or_key) {
            Ok(how) => {
                self.audit
                    .record(user, "sign-in", "", Outcome::Ok, format!("with {how}"));
                Ok(self.issue(user, now_seconds() + self.ttl_seconds))
            }
            Err(e) => {
                log::info!("rejected credentials for user {:?}", clip(user));
                self.audit
                    .record(user, "sign-in", "", Outcome::Denied, e.to_string());
                Err(e)
            }
        }
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

    /// Whether `user` may still act: the default admin while it is active, or a known enabled
    /// user of the store.
    fn check_user(&self, state: &SecurityState, user: &str) -> Result<(), AuthError> {
        if self.default_admin_active(state) && user == DEFAULT_USER {
            return Ok(());
        }
        match state.user(user) {
            None => Err(AuthError::UnknownUser(user.to_string())),
            Some(u) if u.disabled => Err(AuthError::Disabled(user.to_string())),
            Some(_) => Ok(()),
        }
    }

    /// The user a token was issued to, if its signature is ours, it has not expired and the
    /// user still exists and is enabled.
    pub fn verify_token(&self, token: &str) -> Result<String, AuthError> {
        let invalid = || AuthError::InvalidToken;
        if token.len() > MAX_CREDENTIALS_BYTES {
            return Err(AuthError::Oversized);
        }
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
        self.check_user(&self.state(), &payload.sub)?;
        Ok(payload.sub)
    }

    /// Authenticates an `authorization` header value: a bearer token or API key, or Basic
    /// credentials (password or API key) for clients that skip the handshake. Refusals are
    /// audited; successes are not (that would be every call).
    pub fn authenticate(&self, header: Option<&str>) -> Result<String, AuthError> {
        let (claimed, result) = self.authenticate_inner(header);
        if let Err(e) = &result {
            if !matches!(e, AuthError::NoCredentials) {
                self.audit
                    .record(&claimed, "authenticate", "", Outcome::Denied, e.to_string());
            }
        }
        result
    }

    fn authenticate_inner(&self, header: Option<&str>) -> (String, Result<String, AuthError>) {
        let unknown = || "-".to_string();
        let Some(value) = header.map(str::trim) else {
            return (unknown(), Err(AuthError::NoCredentials));
        };
        if value.len() > MAX_CREDENTIALS_BYTES {
            return (unknown(), Err(AuthError::Oversized));
        }
        if let Some(token) = strip_prefix_ignore_case(value, "Bearer ") {
            let token = token.trim();
            if secret::looks_like_api_key(token) {
                return match self.state().verify_api_key(token) {
                    Some(user) => (user.clone(), Ok(user)),
                    None => (unknown(), Err(AuthError::InvalidApiKey)),
                };
            }
            return match self.verify_token(token) {
                Ok(user) => (user.clone(), Ok(user)),
                Err(e) => (unknown(), Err(e)),
            };
        }
        if strip_prefix_ignore_case(value, "Basic ").is_some() {
            let Some((user, pass)) = parse_basic(value) else {
                return (unknown(), Err(AuthError::MalformedBasic));
            };
            let result = self.check_credentials(&user, &pass).map(|_| user.clone());
            return (user, result);
        }
        (unknown(), Err(AuthError::UnsupportedScheme))
    }

    /// What `user` may see and do: the default admin and global admins are unrestricted;
    /// others get their grants and rules. An unknown or disabled user is refused.
    pub fn access(&self, user: &str) -> Result<Access, AuthError> {
        let state = self.state();
        self.check_user(&state, user)?;
        if self.default_admin_active(&state) && user == DEFAULT_USER {
            return Ok(Access::unrestricted(user));
        }
        Ok(state.access(user))
    }
}

/// Creates the `kylin.security.users` entries missing from the store (hashed, global admins).
/// A user the store has already keeps its stored password. Whether any was created.
fn import_configured_users(
    store: &SecurityStore,
    state: &SecurityState,
    users: &[(String, String)],
) -> Result<bool, AuthError> {
    use qilin_engine::error::Error;
    let mut created = false;
    for (name, password) in users {
        if state.user(name).is_some() {
            continue;
        }
        match store.create_user(name, password, true) {
            Ok(_) => {
                log::info!("imported user {name} from kylin.security.users");
                created = true;
            }
            // Another instance imported it first.
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => {
                return Err(AuthError::Config(format!(
                    "kylin.security.users: user {}: {e}",
                    clip(name)
                )))
            }
        }
    }
    Ok(created)
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
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
    use qilin_engine::model::ProjectDesc;
    use qilin_engine::security::{Principal, ProjectRole};

    fn config(props: &str) -> Config {
        Config::from_parts(props, "test", |_| None).unwrap()
    }

    fn store() -> (Metadata, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::new(
            qilin_engine::metadata::open_store(dir.path().to_str().unwrap()).unwrap(),
        );
        (meta, dir)
    }

    fn with(props: &str, meta: &Metadata) -> Result<Authenticator, AuthError> {
        Authenticator::from_config(&config(props), meta.clone(), "test")
    }

    fn local() -> (Authenticator, tempfile::TempDir) {
        let (meta, dir) = store();
        (with("", &meta).unwrap(), dir)
    }

    fn basic(user: &str, pass: &str) -> String {
        format!("Basic {}", LENIENT_BASE64.encode(format!("{user}:{pass}")))
    }

    #[test]
    fn default_credentials_only_on_loopback() {
        let (a, _d) = local();
        assert!(a.login("ADMIN", "KYLIN").is_ok());
        assert_eq!(
            a.login("ADMIN", "nope").unwrap_err(),
            AuthError::BadCredentials
        );
        assert!(a.access("ADMIN").unwrap().admin);
        let (meta, _d2) = store();
        let err = with("kylin.server.host=0.0.0.0\n", &meta)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kylin.security.users"), "{err}");
        let err = with(
            "kylin.server.host=10.0.0.1\nkylin.security.users=a:b\n",
            &meta,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kylin.security.token-secret"), "{err}");
        // Refused starts imported nobody.
        assert!(SecurityStore::new(meta.clone()).users().unwrap().is_empty());
        assert!(with(
            "kylin.server.host=10.0.0.1\nkylin.security.users=a:b\nkylin.security.token-secret=s\n",
            &meta
        )
        .is_ok());
        // Users in the store are enough off loopback.
        let (meta, _d3) = store();
        SecurityStore::new(meta.clone())
            .create_user("carol", "pw", true)
            .unwrap();
        let a = with(
            "kylin.server.host=10.0.0.1\nkylin.security.token-secret=s\n",
            &meta,
        )
        .unwrap();
        assert!(a.login("carol", "pw").is_ok());
        // ... and there the default admin never works.
        assert!(a.login("ADMIN", "KYLIN").is_err());
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
    fn configured_users_are_imported_hashed_and_replace_the_default() {
        let (meta, _d) = store();
        let a = with("kylin.security.users=alice:pw1,bob:pw2\n", &meta).unwrap();
        assert!(a.login("alice", "pw1").is_ok());
        assert!(a.login("bob", "pw2").is_ok());
        assert!(a.login("ADMIN", "KYLIN").is_err());
        assert!(a.login("alice", "pw2").is_err());
        let users = a.security().users().unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.iter().all(|u| u.admin));
        // Hashed at rest: the password is nowhere in the stored bytes.
        let raw = meta.store().get("/user/alice.json").unwrap().unwrap().data;
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.contains("$argon2id$") && !raw.contains("pw1"), "{raw}");
        // The store wins afterwards: a changed password survives a restart.
        a.security().set_password("alice", "new").unwrap();
        let b = with("kylin.security.users=alice:pw1,bob:pw2\n", &meta).unwrap();
        assert!(b.login("alice", "new").is_ok());
        assert!(b.login("alice", "pw1").is_err());
        // A store user named ADMIN turns the default off even on loopback.
        let (meta, _d) = store();
        SecurityStore::new(meta.clone())
            .create_user("ADMIN", "other", false)
            .unwrap();
        let c = with("", &meta).unwrap();
        assert!(c.login("ADMIN", "KYLIN").is_err());
        assert!(c.login("ADMIN", "other").is_ok());
        assert!(!c.access("ADMIN").unwrap().admin);
    }

    #[test]
    fn tokens_round_trip_and_resist_tampering() {
        let (a, _d) = local();
        let t = a.login("ADMIN", "KYLIN").unwrap();
        assert_eq!(a.verify_token(&t).unwrap(), "ADMIN");
        // Another process with its own random secret refuses it.
        assert!(local().0.verify_token(&t).is_err());
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
        let (meta, _d) = store();
        let props = "kylin.security.token-secret=s3cret\n";
        let (a, b) = (with(props, &meta).unwrap(), with(props, &meta).unwrap());
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
        let (a, _d) = local();
        assert_eq!(
            a.authenticate(Some("Basic QURNSU46S1lMSU4")).unwrap(),
            "ADMIN"
        );
        assert_eq!(a.authenticate(None).unwrap_err(), AuthError::NoCredentials);
        assert!(a.authenticate(Some("Digest x")).is_err());
    }

    #[test]
    fn hostile_headers_are_refused_without_hashing_and_audited() {
        let (a, _d) = local();
        a.security().create_user("alice", "pw", false).unwrap();
        a.refresh();
        let huge = format!("Basic {}", "A".repeat(MAX_CREDENTIALS_BYTES));
        assert_eq!(
            a.authenticate(Some(&huge)).unwrap_err(),
            AuthError::Oversized
        );
        let long_pw = "p".repeat(MAX_CREDENTIALS_BYTES);
        assert_eq!(
            a.login("alice", &long_pw).unwrap_err(),
            AuthError::Oversized
        );
        assert_eq!(
            a.authenticate(Some("Basic !!!not-base64")).unwrap_err(),
            AuthError::MalformedBasic
        );
        // Valid base64 without a colon, and invalid UTF-8.
        assert_eq!(
            a.authenticate(Some("Basic YWxpY2U=")).unwrap_err(),
            AuthError::MalformedBasic
        );
        assert_eq!(
            a.authenticate(Some("Basic //79")).unwrap_err(),
            AuthError::MalformedBasic
        );
        assert_eq!(
            a.authenticate(Some(&basic("alice", ""))).unwrap_err(),
            AuthError::BadCredentials
        );
        let events = a.audit().read(100, None).unwrap();
        assert_eq!(events.len(), 6, "{events:?}");
        assert!(events.iter().all(|e| e.outcome == Outcome::Denied));
        assert!(events
            .iter()
            .any(|e| e.user == "alice" && e.action == "sign-in"));
    }

    #[test]
    fn api_keys_as_basic_password_and_bearer_until_revoked() {
        let (meta, _d) = store();
        let a = with("kylin.security.token-ttl-seconds=1\n", &meta).unwrap();
        a.security().create_user("bob", "pw", false).unwrap();
        a.security().create_user("eve", "pw", false).unwrap();
        let (info, key) = a.security().create_api_key("bob", None).unwrap();
        a.refresh();
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {key}"))).unwrap(),
            "bob"
        );
        assert_eq!(a.authenticate(Some(&basic("bob", &key))).unwrap(), "bob");
        let token = a.login("bob", &key).unwrap();
        assert_eq!(a.verify_token(&token).unwrap(), "bob");
        // Another user's name with bob's key, and a forged key.
        assert!(a.authenticate(Some(&basic("eve", &key))).is_err());
        let forged = format!("{}0", &key[..key.len() - 1]);
        let forged = if forged == key {
            format!("{}1", &key[..key.len() - 1])
        } else {
            forged
        };
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {forged}")))
                .unwrap_err(),
            AuthError::InvalidApiKey
        );
        assert!(a.authenticate(Some("Bearer qk_nothing_here")).is_err());
        // Revoked on another instance: this one notices after its next check (<= 1 s).
        let b = with("", &meta).unwrap();
        b.security().revoke_api_key(&info.id).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.authenticate(Some(&format!("Bearer {key}"))).is_ok() {
            assert!(Instant::now() < deadline, "revocation not seen");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(a.authenticate(Some(&basic("bob", &key))).is_err());
        // An expired key.
        let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
        let (_, short) = a.security().create_api_key("bob", Some(soon)).unwrap();
        a.refresh();
        assert!(a.authenticate(Some(&format!("Bearer {short}"))).is_ok());
        std::thread::sleep(Duration::from_millis(1600));
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {short}")))
                .unwrap_err(),
            AuthError::InvalidApiKey
        );
    }

    #[test]
    fn disabled_and_deleted_users_lose_tokens_and_access() {
        let (a, _d) = local();
        a.security().create_user("dan", "pw", false).unwrap();
        a.refresh();
        let t = a.login("dan", "pw").unwrap();
        assert!(a.verify_token(&t).is_ok());
        a.security().set_disabled("dan", true).unwrap();
        a.refresh();
        assert_eq!(
            a.verify_token(&t).unwrap_err(),
            AuthError::Disabled("dan".into())
        );
        assert_eq!(
            a.login("dan", "pw").unwrap_err(),
            AuthError::Disabled("dan".into())
        );
        // The wrong password does not even learn that.
        assert_eq!(a.login("dan", "x").unwrap_err(), AuthError::BadCredentials);
        assert!(a.access("dan").is_err());
        assert_eq!(
            a.access("nobody").unwrap_err(),
            AuthError::UnknownUser("nobody".into())
        );
    }

    #[test]
    fn password_checks_are_cached_until_the_password_changes() {
        let (a, _d) = local();
        a.security().create_user("fay", "pw", false).unwrap();
        a.refresh();
        let h = basic("fay", "pw");
        let t0 = Instant::now();
        a.authenticate(Some(&h)).unwrap();
        let first = t0.elapsed();
        let t1 = Instant::now();
        for _ in 0..20 {
            a.authenticate(Some(&h)).unwrap();
        }
        let cached = t1.elapsed();
        assert!(cached < first * 5, "first {first:?}, 20 cached {cached:?}");
        a.security().set_password("fay", "pw2").unwrap();
        a.refresh();
        assert_eq!(
            a.authenticate(Some(&h)).unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(a.authenticate(Some(&basic("fay", "pw2"))).unwrap(), "fay");
    }

    #[test]
    fn access_follows_grants_and_audit_records_sign_ins() {
        let (a, _d) = local();
        let meta = a.security().metadata().clone();
        meta.save_project(&ProjectDesc {
            name: "ssb".into(),
            description: String::new(),
        })
        .unwrap();
        a.security().create_user("gus", "pw", false).unwrap();
        a.security()
            .grant(
                "ssb",
                &Principal::User("gus".into()),
                ProjectRole::Operation,
            )
            .unwrap();
        a.refresh();
        let acc = a.access("gus").unwrap();
        assert!(!acc.admin);
        assert_eq!(acc.role("ssb"), Some(ProjectRole::Operation));
        a.login("gus", "pw").unwrap();
        assert!(a.login("gus", "bad").is_err());
        let events = a.audit().read(10, Some("gus")).unwrap();
        let outcomes: Vec<_> = events
            .iter()
            .map(|e| (e.action.as_str(), e.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [("sign-in", Outcome::Ok), ("sign-in", Outcome::Denied)]
        );
        assert_eq!(events[0].instance, "test");
    }
}
