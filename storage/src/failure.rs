//! How the drivers' errors become the domain's [`StoreError`].
//!
//! `StoreError` belongs to `tally-domain` and the drivers' error types to their crates, and
//! Rust lets no third crate convert one into the other. So adapter code works in [`Result`],
//! whose error, a [`Failure`] (the same cases as `StoreError`), both a driver error and a
//! `StoreError` turn into with `?`; a trait method hands the outcome back across the seam as a
//! `StoreError` ([`seam`], [`seam_sync`]). Each driver's errors are classified here, once: what
//! the caller may retry ([`Failure::Unavailable`]: busy, locked, disk full, network, pool),
//! what is missing or already taken, and everything else as a backend error.

use tally_domain::store::StoreError;

/// A [`StoreError`] on its way out of an adapter: the same cases, in a type of this crate.
#[derive(Debug, Clone)]
pub enum Failure {
    NotFound { what: String },
    Conflict(String),
    Invalid { field: String, reason: String },
    Unavailable(String),
    Corrupt(String),
    Backend(String),
}

impl Failure {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Failure {
        StoreError::invalid(field, reason).into()
    }
}

/// What adapter code returns inside the storage crate.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        match e {
            StoreError::NotFound { what } => Failure::NotFound { what },
            StoreError::Conflict(m) => Failure::Conflict(m),
            StoreError::Invalid { field, reason } => Failure::Invalid { field, reason },
            StoreError::Unavailable(m) => Failure::Unavailable(m),
            StoreError::Corrupt(m) => Failure::Corrupt(m),
            StoreError::Backend(m) => Failure::Backend(m),
        }
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        match f {
            Failure::NotFound { what } => StoreError::NotFound { what },
            Failure::Conflict(m) => StoreError::Conflict(m),
            Failure::Invalid { field, reason } => StoreError::Invalid { field, reason },
            Failure::Unavailable(m) => StoreError::Unavailable(m),
            Failure::Corrupt(m) => StoreError::Corrupt(m),
            Failure::Backend(m) => StoreError::Backend(m),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        StoreError::from(self.clone()).fmt(f)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        Failure::from({
            match e {
                rusqlite::Error::QueryReturnedNoRows => StoreError::not_found("row"),
                rusqlite::Error::SqliteFailure(code, _)
                    if code.code == rusqlite::ErrorCode::DatabaseBusy
                        || code.code == rusqlite::ErrorCode::DatabaseLocked =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                rusqlite::Error::SqliteFailure(code, _)
                    if code.code == rusqlite::ErrorCode::DiskFull =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                other => StoreError::Backend(other.to_string()),
            }
        })
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Failure {
        Failure::from({
            match &e {
                sqlx::Error::RowNotFound => StoreError::not_found("row"),
                sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
                    StoreError::Conflict(db.message().to_string())
                }
                sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
                    StoreError::not_found(db.message().to_string())
                }
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Backend(e.to_string()),
            }
        })
    }
}

impl From<clickhouse::error::Error> for Failure {
    fn from(e: clickhouse::error::Error) -> Failure {
        Failure::from({
            match e {
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut => {
                    StoreError::Unavailable(e.to_string())
                }
                other => StoreError::Backend(other.to_string()),
            }
        })
    }
}

/// `error` and its causes, looking inside `io::Error`s too (whose `source` skips the error
/// they wrap; hyper-rustls wraps tokio-rustls' `io::Error` around the `rustls::Error` in one
/// more).
pub(crate) fn causes<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut pending = vec![error];
    while let Some(e) = pending.pop() {
        out.push(e);
        if let Some(source) = e.source() {
            pending.push(source);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(inner);
        }
    }
    out
}

/// Runs adapter code that works in [`Result`] and hands its outcome back across the seam, as
/// a [`StoreError`].
pub(crate) async fn seam<T>(
    work: impl AsyncFnOnce() -> Result<T>,
) -> std::result::Result<T, StoreError> {
    work().await.map_err(StoreError::from)
}

/// [`seam`] for synchronous adapter code.
pub(crate) fn seam_sync<T>(work: impl FnOnce() -> Result<T>) -> std::result::Result<T, StoreError> {
    work().map_err(StoreError::from)
}
