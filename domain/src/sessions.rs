//! Console sessions: an API key exchanged for a server-side session, so a browser never holds
//! the key itself.
//!
//! A session is named by a random token (256 bits from the operating system) that lives only
//! in the browser's cookie; stores keep its SHA-256, like key secrets ([`crate::access::hash`]).
//! Each session carries its own CSRF token, which every state-changing form sends back.
//! Invariants: a session is valid only before `expires_at` and while the key it was opened
//! with is not revoked ([`Session::check`]) — revoking a key ends its sessions at once, and
//! signing out deletes the session.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use uuid::Uuid;

use crate::access::{hash, ApiKey};

/// A stored session (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The API key it was opened with; the session acts with that key's role.
    pub key_id: Uuid,
    /// Sent back by every form that changes something.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A session being opened: the token for the cookie and what the store keeps.
#[derive(Debug, Clone)]
pub struct Opened {
    pub token: String,
    /// [`hash`] of the token: what the store looks the session up by.
    pub hash: String,
    pub session: Session,
}

/// Why a presented session does not let its holder in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    KeyRevoked,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Expired => "your session expired: sign in again",
            Refusal::KeyRevoked => "the API key of this session was revoked: sign in with another",
        }
    }
}

/// 32 random bytes in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Opens a session for `key` at `now`, valid for `ttl`.
pub fn open(key: &ApiKey, now: DateTime<Utc>, ttl: Duration) -> Opened {
    let token = random_token();
    Opened {
        hash: hash(&token),
        session: Session {
            key_id: key.id,
            csrf: random_token(),
            created_at: now,
            expires_at: now + ttl,
        },
        token,
    }
}

impl Session {
    /// Whether the session lets its holder in at `now`, given the key it was opened with.
    pub fn check(&self, key: &ApiKey, now: DateTime<Utc>) -> Result<(), Refusal> {
        if key.revoked_at.is_some() {
            Err(Refusal::KeyRevoked)
        } else if now >= self.expires_at {
            Err(Refusal::Expired)
        } else {
            Ok(())
        }
    }

    /// Whether a form's `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;
    use chrono::TimeZone;

    fn key(revoked: bool) -> ApiKey {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("time");
        ApiKey {
            id: Uuid::nil(),
            name: "k".into(),
            role: Role::Viewer,
            prefix: "tally_00000000".into(),
            created_at: at,
            revoked_at: revoked.then_some(at),
        }
    }

    #[test]
    fn a_session_holds_until_it_expires_or_its_key_is_revoked() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .expect("time");
        let opened = open(&key(false), now, Duration::hours(12));
        assert_eq!(opened.hash, hash(&opened.token));
        assert_eq!(opened.token.len(), 64);
        assert_ne!(opened.token, opened.session.csrf);
        let s = &opened.session;
        assert_eq!(
            s.check(
                &key(false),
                now + Duration::hours(12) - Duration::seconds(1)
            ),
            Ok(())
        );
        assert_eq!(
            s.check(&key(false), now + Duration::hours(12)),
            Err(Refusal::Expired)
        );
        assert_eq!(s.check(&key(true), now), Err(Refusal::KeyRevoked));
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .expect("time");
        let s = open(&key(false), now, Duration::hours(1)).session;
        assert!(s.csrf_matches(&s.csrf.clone()));
        assert!(!s.csrf_matches(""));
        assert!(!s.csrf_matches(&s.csrf[..63]));
        let mut other = s.csrf.clone().into_bytes();
        other[10] ^= 1;
        assert!(!s.csrf_matches(&String::from_utf8(other).expect("ascii")));
    }
}
