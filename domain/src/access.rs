//! Access control: the roles an API key can carry, what each kind of route needs ([`Access`]),
//! the authenticated [`Caller`], and API key secrets.
//!
//! A secret is `tally_` followed by 64 hex digits (256 random bits from the operating system).
//! It is shown once, when the key is created; stores keep only its SHA-256 (a fast hash is
//! enough for secrets of this entropy: there is nothing to guess) and a short prefix to tell
//! keys apart in listings. A revoked key stays listed, with the time it was revoked. Creating
//! and revoking keys is audited by the store, like every configuration change.

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What a key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    PlatformAdmin,
    /// Read metrics and configuration.
    Viewer,
    /// Read spending and budgets.
    Finance,
    /// Send usage events only.
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::PlatformAdmin,
        Role::Viewer,
        Role::Finance,
        Role::Ingest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Viewer => "viewer",
            Role::Finance => "finance",
            Role::Ingest => "ingest",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A stored API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    /// The first characters of the secret, to recognise a key in a listing.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a store keeps of a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeySpec {
    pub name: String,
    pub role: Role,
    /// [`hash`] of the secret.
    pub hash: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
}

const SECRET_PREFIX: &str = "tally_";
/// Characters of the secret kept as its visible prefix (`tally_` and 8 hex digits).
const SHOWN: usize = SECRET_PREFIX.len() + 8;

/// A fresh secret and what to store of it.
pub fn new_key(name: &str, role: Role, now: DateTime<Utc>) -> (String, ApiKeySpec) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{SECRET_PREFIX}{}", hex(&bytes));
    let spec = spec_for(&secret, name, role, now);
    (secret, spec)
}

/// What to store of a secret chosen elsewhere (`TALLY_BOOTSTRAP_ADMIN_KEY`).
pub fn spec_for(secret: &str, name: &str, role: Role, now: DateTime<Utc>) -> ApiKeySpec {
    ApiKeySpec {
        name: name.to_string(),
        role,
        hash: hash(secret),
        prefix: secret.chars().take(SHOWN).collect(),
        created_at: now,
    }
}

/// The SHA-256 of a secret, in lowercase hex: what stores look keys up by.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key (health checks; `/metrics` when configured public).
    Public,
    /// Any valid key.
    AnyKey,
    /// Sending usage events: `ingest`, `platform_admin`.
    Ingest,
    /// Dashboards and metrics: `viewer`, `platform_admin`.
    ReadMetrics,
    /// Spending and budgets: `finance`, `platform_admin`.
    ReadSpending,
    /// Reading configuration: `viewer`, `platform_admin`.
    ReadConfig,
    /// Reading budgets (configuration finance needs too): `viewer`, `finance`,
    /// `platform_admin`.
    ReadBudgets,
    /// Changing anything: `platform_admin`.
    Admin,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        use Role::*;
        match self {
            Access::Public | Access::AnyKey => true,
            Access::Ingest => matches!(role, PlatformAdmin | Ingest),
            Access::ReadMetrics | Access::ReadConfig => matches!(role, PlatformAdmin | Viewer),
            Access::ReadSpending => matches!(role, PlatformAdmin | Finance),
            Access::ReadBudgets => matches!(role, PlatformAdmin | Viewer | Finance),
            Access::Admin => role == PlatformAdmin,
        }
    }

    /// The roles allowed, for error messages.
    pub fn roles(self) -> Vec<&'static str> {
        Role::ALL
            .into_iter()
            .filter(|r| self.allows(*r))
            .map(Role::as_str)
            .collect()
    }
}

/// The authenticated caller of a request (in its extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: Uuid,
    pub key_name: String,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_only_their_hash_is_kept() {
        let now = Utc::now();
        let (a, spec_a) = new_key("a", Role::Viewer, now);
        let (b, _) = new_key("b", Role::Viewer, now);
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
        assert!(a.starts_with("tally_") && a[6..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(spec_a.prefix, a[..14]);
        assert!(!spec_a.hash.contains(&a[6..]));
        // SHA-256 of "abc" (FIPS 180-2, appendix B.1).
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(spec_a.hash, hash(&a));
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_value(role).expect("serializes"),
                serde_json::json!(role.as_str())
            );
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
