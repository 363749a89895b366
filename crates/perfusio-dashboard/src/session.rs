//! Login sessions: a random token in an `HttpOnly; SameSite=Strict` cookie, a per-session CSRF
//! token that every form carries, a bounded in-memory store with a lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::users::{constant_time_eq, random_hex};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "perfusio_session";
/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once (the oldest is dropped first).
pub const MAX_SESSIONS: usize = 256;

/// What the dashboard knows about one logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) csrf: String,
    created: Instant,
    /// A message for the next page (`(ok, text)`), shown once.
    pub(crate) flash: Option<(bool, String)>,
}

impl Session {
    /// Whether `token` is this session's CSRF token (constant time).
    pub(crate) fn csrf_matches(&self, token: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), token.as_bytes())
    }
}

/// The sessions of one dashboard.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // a panic while holding the lock cannot leave the map half-updated: recover it
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `user`; returns its cookie token.
    pub(crate) fn create(&self, user: &str) -> Result<String> {
        let token = random_hex(32)?;
        let csrf = random_hex(32)?;
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.created) < SESSION_TTL);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                csrf,
                created: now,
                flash: None,
            },
        );
        Ok(token)
    }

    /// The live session of `token`, if any.
    pub(crate) fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.lock();
        match map.get(token) {
            Some(s) if s.created.elapsed() < SESSION_TTL => Some(s.clone()),
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    /// Sets the message shown on the session's next page.
    pub(crate) fn set_flash(&self, token: &str, ok: bool, text: String) {
        if let Some(s) = self.lock().get_mut(token) {
            s.flash = Some((ok, text));
        }
    }

    /// Takes the session's pending message.
    pub(crate) fn take_flash(&self, token: &str) -> Option<(bool, String)> {
        self.lock().get_mut(token).and_then(|s| s.flash.take())
    }

    /// Ends a session.
    pub(crate) fn remove(&self, token: &str) {
        self.lock().remove(token);
    }
}

/// The session token in a `Cookie` header value, if present.
pub(crate) fn token_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == SESSION_COOKIE && !v.is_empty() && v.len() <= 128).then_some(v)
    })
}

/// The `Set-Cookie` value that opens a session.
pub(crate) fn session_cookie(token: &str) -> String {
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session.
pub(crate) fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_tokens_are_random() {
        let s = Sessions::default();
        let a = s.create("ana").unwrap();
        let b = s.create("ana").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        let sa = s.get(&a).unwrap();
        assert_eq!(sa.user, "ana");
        assert!(sa.csrf_matches(&sa.csrf.clone()));
        assert!(!sa.csrf_matches("nope"));
        for _ in 0..MAX_SESSIONS + 5 {
            s.create("ben").unwrap();
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
        assert!(s.get(&a).is_none(), "the oldest session was dropped");
        s.remove(&b);
        assert!(s.get(&b).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(
            token_from_cookie_header("a=1; perfusio_session=abc; b=2"),
            Some("abc")
        );
        assert_eq!(token_from_cookie_header("a=1"), None);
        assert!(session_cookie("t").contains("HttpOnly; SameSite=Strict"));
    }
}
