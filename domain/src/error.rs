//! The one error type of the storage seams and of the domain's rules: what was not found, what
//! conflicts with what is there, which field is invalid and why — and, from adapters, whether
//! the backend is unavailable (the caller may retry), corrupt or failing otherwise. `tally-http`
//! maps it to an HTTP answer in one place.

/// Storage failures, shared by every adapter.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The backend cannot take the request right now (full, down); the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
