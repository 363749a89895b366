//! The users file: who may act on the dashboard.
//!
//! A TOML file with one table, `[users]`, mapping a user name to a password hash:
//!
//! ```toml
//! [users]
//! ana = "sha256:100000:9f2c…(32 hex digits of salt):4be1…(64 hex digits of hash)"
//! ```
//!
//! The hash is `sha256:<rounds>:<salt>:<digest>`: `h₁ = SHA-256(salt ‖ password)`,
//! `hᵢ₊₁ = SHA-256(hᵢ ‖ salt ‖ password)`, and the digest is `h_rounds` in lower-case hex.
//! The salt is 16 random bytes from the operating system; [`DEFAULT_ROUNDS`] makes one guess
//! cost about as much as a login. `perfusio dashboard hash-password` prints a line for the file
//! (it reads the password from stdin, never from the command line). Passwords are compared in
//! constant time, and an unknown user costs the same work as a known one.
//!
//! The plain password exists only in the request that carries it; it is never stored, logged
//! or shown. User names are 1–64 characters of `A–Z a–z 0–9 _ . -`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use perfusio_core::Secret;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::DashboardError;

/// Rounds of SHA-256 written by [`hash_password`].
pub const DEFAULT_ROUNDS: u32 = 100_000;
/// The most rounds a users file may ask for (bounds the work of one login).
pub const MAX_ROUNDS: u32 = 10_000_000;
/// The most users a file may hold.
pub const MAX_USERS: usize = 1_000;
/// The largest users file read (bytes).
pub const MAX_USERS_FILE_BYTES: u64 = 1 << 20;
const SALT_BYTES: usize = 16;

/// A salted, iterated SHA-256 password hash (its `Debug` shows no bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    rounds: u32,
    salt: Vec<u8>,
    digest: [u8; 32],
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash(sha256, {} rounds)", self.rounds)
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sha256:{}:{}:{}",
            self.rounds,
            hex(&self.salt),
            hex(&self.digest)
        )
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt and [`DEFAULT_ROUNDS`].
    pub fn new(password: &Secret) -> Result<Self, DashboardError> {
        let mut salt = vec![0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|e| DashboardError::Random(e.to_string()))?;
        Ok(Self::with_salt(password, salt, DEFAULT_ROUNDS))
    }

    /// Hashes `password` with the given salt and number of rounds (at least one).
    pub fn with_salt(password: &Secret, salt: Vec<u8>, rounds: u32) -> Self {
        let rounds = rounds.max(1);
        let digest = derive(password.expose().as_bytes(), &salt, rounds);
        Self {
            rounds,
            salt,
            digest,
        }
    }

    /// Parses `sha256:<rounds>:<salt hex>:<digest hex>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.trim().split(':');
        let (Some(scheme), Some(rounds), Some(salt), Some(digest), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err("expected sha256:<rounds>:<salt hex>:<digest hex>".into());
        };
        if scheme != "sha256" {
            return Err(format!("unknown scheme {scheme:?} (expected sha256)"));
        }
        let rounds: u32 = rounds
            .parse()
            .map_err(|_| format!("rounds {rounds:?} is not a whole number"))?;
        if rounds == 0 || rounds > MAX_ROUNDS {
            return Err(format!("rounds must be 1 to {MAX_ROUNDS}, not {rounds}"));
        }
        let salt = unhex(salt).ok_or("the salt is not hex")?;
        if salt.is_empty() || salt.len() > 64 {
            return Err("the salt must be 1 to 64 bytes".into());
        }
        let digest: [u8; 32] = unhex(digest)
            .and_then(|d| d.try_into().ok())
            .ok_or("the digest is not 64 hex digits")?;
        Ok(Self {
            rounds,
            salt,
            digest,
        })
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &Secret) -> bool {
        let got = derive(password.expose().as_bytes(), &self.salt, self.rounds);
        constant_time_eq(&got, &self.digest)
    }
}

/// Hashes a password for the users file (random salt, [`DEFAULT_ROUNDS`]); the returned
/// string is the value to write after `name = `.
pub fn hash_password(password: &Secret) -> Result<String, DashboardError> {
    Ok(PasswordHash::new(password)?.to_string())
}

fn derive(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    let mut h: [u8; 32] = Sha256::new()
        .chain_update(salt)
        .chain_update(password)
        .finalize()
        .into();
    for _ in 1..rounds {
        h = Sha256::new()
            .chain_update(h)
            .chain_update(salt)
            .chain_update(password)
            .finalize()
            .into();
    }
    h
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `count` random bytes from the operating system, as hex.
pub(crate) fn random_hex(count: usize) -> Result<String, DashboardError> {
    let mut b = vec![0u8; count];
    getrandom::fill(&mut b).map_err(|e| DashboardError::Random(e.to_string()))?;
    Ok(hex(&b))
}

/// Whether `name` is a valid user name.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The users allowed to act, with their password hashes.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: BTreeMap<String, PasswordHash>,
    /// Verified against when the user is unknown, so that costs the same.
    dummy: Option<PasswordHash>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: BTreeMap<String, String>,
}

impl Users {
    /// No users: the dashboard is read-only.
    pub fn none() -> Self {
        Self::default()
    }

    /// Users from `(name, hash)` pairs.
    pub fn from_hashes(
        pairs: impl IntoIterator<Item = (String, PasswordHash)>,
    ) -> Result<Self, DashboardError> {
        let mut users = BTreeMap::new();
        for (name, hash) in pairs {
            if !valid_user_name(&name) {
                return Err(DashboardError::Users(format!(
                    "user name {name:?} is not 1-64 characters of A-Z a-z 0-9 _ . -"
                )));
            }
            users.insert(name, hash);
        }
        if users.len() > MAX_USERS {
            return Err(DashboardError::Users(format!(
                "{} users; at most {MAX_USERS}",
                users.len()
            )));
        }
        let dummy = users.values().next().map(|h| PasswordHash {
            rounds: h.rounds,
            salt: vec![0; SALT_BYTES],
            digest: [0; 32],
        });
        Ok(Self { users, dummy })
    }

    /// Parses the TOML text of a users file (see the module docs).
    pub fn from_toml_str(text: &str) -> Result<Self, DashboardError> {
        let file: UsersFile =
            toml::from_str(text).map_err(|e| DashboardError::Users(e.message().to_string()))?;
        let mut pairs = Vec::with_capacity(file.users.len());
        for (name, hash) in file.users {
            let hash = PasswordHash::parse(&hash)
                .map_err(|e| DashboardError::Users(format!("user {name:?}: {e}")))?;
            pairs.push((name, hash));
        }
        Self::from_hashes(pairs)
    }

    /// Reads a users file.
    pub fn load(path: &Path) -> Result<Self, DashboardError> {
        let io = |source| DashboardError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_USERS_FILE_BYTES {
            return Err(DashboardError::Users(format!(
                "{}: {len} bytes; at most {MAX_USERS_FILE_BYTES}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_toml_str(&text).map_err(|e| match e {
            DashboardError::Users(m) => DashboardError::Users(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Whether nobody may act.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether `name` is a known user.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Whether `name` is a user and `password` is theirs. An unknown user costs the same work.
    pub fn verify(&self, name: &str, password: &Secret) -> bool {
        match (self.users.get(name), &self.dummy) {
            (Some(h), _) => h.verify(password),
            (None, Some(d)) => {
                let _ = d.verify(password);
                false
            }
            (None, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_round_trips() {
        let pw = Secret::new("correct horse");
        let h = PasswordHash::with_salt(&pw, vec![1, 2, 3, 4], 50);
        assert!(h.verify(&pw));
        assert!(!h.verify(&Secret::new("correct hors")));
        let text = h.to_string();
        assert!(text.starts_with("sha256:50:01020304:"), "{text}");
        assert!(!text.contains("correct"));
        assert_eq!(PasswordHash::parse(&text), Ok(h.clone()));
        assert!(!format!("{h:?}").contains("0102"));
    }

    #[test]
    fn a_fresh_hash_has_a_random_salt() {
        let pw = Secret::new("pw");
        let (a, b) = (
            PasswordHash::new(&pw).unwrap(),
            PasswordHash::new(&pw).unwrap(),
        );
        assert_ne!(a.to_string(), b.to_string());
        assert!(a.verify(&pw) && b.verify(&pw));
    }

    #[test]
    fn users_file_parses_and_rejects_bad_entries() {
        let h = PasswordHash::with_salt(&Secret::new("s3cret"), vec![7; 16], 10);
        let users = Users::from_toml_str(&format!("[users]\nana = \"{h}\"\n")).unwrap();
        assert_eq!(users.len(), 1);
        assert!(users.verify("ana", &Secret::new("s3cret")));
        assert!(!users.verify("ana", &Secret::new("S3cret")));
        assert!(!users.verify("bob", &Secret::new("s3cret")));
        for bad in [
            "[users]\nana = \"md5:1:00:00\"\n",
            "[users]\nana = \"sha256:0:00:00\"\n",
            "[users]\n\"a b\" = \"sha256:1:00:0000000000000000000000000000000000000000000000000000000000000000\"\n",
            "[people]\n",
        ] {
            assert!(Users::from_toml_str(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
