//! Secrets at rest: Argon2id password hashes (PHC strings) and API keys, of which only a
//! SHA-256 of the random secret is stored (a key is random enough that a slow hash buys
//! nothing, and checking one per call must stay cheap).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Longest accepted password; longer input is refused before any hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// API keys look like `qk_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "qk_";
const KEY_ID_BYTES: usize = 8;
const KEY_SECRET_BYTES: usize = 32;

pub fn validate_password(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::invalid("password", "must not be empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(
            "password",
            format!(
                "is {} bytes long; at most {MAX_PASSWORD_BYTES} allowed",
                password.len()
            ),
        ));
    }
    Ok(())
}

/// A fresh Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String> {
    validate_password(password)?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::invalid("password salt", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::invalid("password", e.to_string()))
}

/// Whether `password` matches the PHC string; a malformed hash or an oversized password is
/// never a match.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

/// A random id for rules and keys: `prefix` + 16 lowercase hex digits (a valid name and path
/// segment when the prefix is a letter).
pub fn random_id(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(KEY_ID_BYTES))
}

/// A new key: (id, full key `qk_<id>_<secret>`, sha256 hex of the secret).
pub fn new_api_key() -> (String, String, String) {
    let id = random_id("k");
    let secret = random_hex(KEY_SECRET_BYTES);
    let key = format!("{API_KEY_PREFIX}{id}_{secret}");
    let digest = sha256_hex(secret.as_bytes());
    (id, key, digest)
}

/// Whether `s` looks like an API key (`qk_…`), well-formed or not.
pub fn looks_like_api_key(s: &str) -> bool {
    s.trim().starts_with(API_KEY_PREFIX)
}

/// `qk_<id>_<secret>` → (id, secret), if it has that shape.
pub fn split_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.trim().strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    (ok(id, 64) && ok(secret, 256)).then_some((id, secret))
}

/// Compares two digests without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash_password("s3cret").unwrap();
        let b = hash_password("s3cret").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b);
        assert!(verify_password(&a, "s3cret"));
        assert!(!verify_password(&a, "s3cret "));
        assert!(!verify_password("garbage", "s3cret"));
        assert!(hash_password("").is_err());
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        let err = hash_password(&long).unwrap_err().to_string();
        assert!(err.contains("at most 1024"), "{err}");
        assert!(!verify_password(&a, &long));
    }

    #[test]
    fn keys_split_only_when_well_formed() {
        let (id, key, digest) = new_api_key();
        let (i, s) = split_api_key(&key).unwrap();
        assert_eq!(i, id);
        assert_eq!(sha256_hex(s.as_bytes()), digest);
        for bad in [
            "", "qk_", "qk_abc", "qk__x", "qk_a_", "xx_a_b", "qk_a/b_c", "qk_a_b c",
        ] {
            assert!(split_api_key(bad).is_none(), "{bad}");
        }
    }
}
