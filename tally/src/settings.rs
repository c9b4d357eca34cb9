//! Layered configuration: defaults → optional TOML file → `TALLY_*` environment variables →
//! command-line flags. Unknown keys (in the file or as `TALLY_*` variables) are errors, so a
//! misspelt setting never silently keeps its default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// A value that must never appear in logs or answers (its `Debug` prints `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Shortest accepted `bootstrap_admin_key`.
const MIN_BOOTSTRAP_KEY_CHARS: usize = 32;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address the HTTP server binds (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Where the embedded stores keep their files.
    pub data_dir: PathBuf,
    /// Events older than this are rejected at ingest.
    pub retention_days: u32,
    /// Time between retention passes (the first runs one interval after start-up).
    pub retention_interval_secs: u64,
    /// How long an event id is remembered for deduplication (seconds of log time).
    pub dedup_window_secs: u32,
    /// Event ids per log partition the dedup memory keeps exactly in memory before it seals
    /// them into a generation held in the analytics store behind a compact filter.
    pub dedup_open_entries: usize,
    /// Where the projector maps the sealed dedup filters from (files deleted as they are
    /// created; page cache the kernel may reclaim instead of heap). `<data_dir>/dedup-filters`
    /// when absent; when that cannot be used either, the filters stay on the heap.
    pub dedup_filter_dir: Option<PathBuf>,
    /// Most events per ingest request.
    pub max_batch_events: usize,
    /// Largest ingest request body.
    pub max_body_bytes: usize,
    /// Ingest requests processed at once; more get 503 + Retry-After.
    pub max_in_flight: usize,
    /// Projector lag beyond which ingest answers 429 + Retry-After.
    pub max_lag_events: u64,
    /// Most events folded into one projector commit.
    pub projector_batch_events: usize,
    /// Append requests that may wait for the log writer.
    pub log_queue_depth: usize,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Postgres URL of the configuration store; the embedded SQLite store when absent.
    pub database_url: Option<Secret>,
    /// ClickHouse HTTP URL of the analytics store; the embedded SQLite store when absent.
    pub clickhouse_url: Option<Secret>,
    /// ClickHouse database holding Tally's tables.
    pub clickhouse_database: String,
    /// Kafka `bootstrap.servers` of the event log; the embedded SQLite log when absent.
    pub kafka_brokers: Option<String>,
    /// Topic carrying usage events.
    pub kafka_topic: String,
    /// Consumer group of the projectors.
    pub kafka_group: String,
    /// How long ingest waits for the broker's acknowledgement before answering 503.
    pub kafka_produce_timeout_ms: u64,
    /// Partitions `tally migrate` creates the topic with (the most projectors that can share
    /// the work).
    pub kafka_partitions: i32,
    /// Replication factor `tally migrate` creates the topic with.
    pub kafka_replication: i32,
    /// Most messages per produced record batch (librdkafka's default when absent; 1 for
    /// brokers that cannot fetch from inside a batch, such as tansu 0.6).
    pub kafka_batch_messages: Option<u32>,
    /// A `platform_admin` API key created at start-up when no key has this secret yet (at least
    /// 32 characters), so a fresh installation can be administered.
    pub bootstrap_admin_key: Option<Secret>,
    /// Serve `/metrics` without an API key (for scrapers that cannot send one).
    pub metrics_public: bool,
    /// The address people reach the console at, for links in notifications.
    pub public_url: String,
    /// Time between alert evaluation rounds (each also sends the notifications due).
    pub alert_interval_ms: u64,
    /// How long a console session lasts after signing in.
    pub session_minutes: u64,
    /// Attempts per notification (the first included) before it is given up as `failed`.
    pub notification_max_attempts: u32,
    /// The first retry's wait; each further retry doubles it (less up to a fifth at random).
    pub notification_backoff_ms: u64,
    /// The longest wait between two attempts.
    pub notification_backoff_max_ms: u64,
    /// How long a receiver may take to answer one attempt.
    pub notification_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            retention_days: 90,
            retention_interval_secs: 3600,
            dedup_window_secs: 24 * 3600,
            dedup_open_entries: 2_000_000,
            dedup_filter_dir: None,
            max_batch_events: 10_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_in_flight: 32,
            max_lag_events: 5_000_000,
            projector_batch_events: 50_000,
            log_queue_depth: 256,
            log_format: "text".into(),
            database_url: None,
            clickhouse_url: None,
            clickhouse_database: "tally".into(),
            kafka_brokers: None,
            kafka_topic: "tally-usage-events".into(),
            kafka_group: "tally-projector".into(),
            kafka_produce_timeout_ms: 10_000,
            kafka_partitions: 6,
            kafka_replication: 1,
            kafka_batch_messages: None,
            bootstrap_admin_key: None,
            metrics_public: false,
            public_url: "http://127.0.0.1:8080".into(),
            alert_interval_ms: 1_000,
            session_minutes: 720,
            notification_max_attempts: 12,
            notification_backoff_ms: 2_000,
            notification_backoff_max_ms: 600_000,
            notification_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Env { name: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Settings {
    /// Defaults, then `file` (if any), then the `TALLY_*` variables in `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| SettingsError::File {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => Settings::default(),
        };
        for (name, value) in env {
            if let Some(key) = name.strip_prefix("TALLY_") {
                settings.apply_env(&name, key, &value)?;
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    fn apply_env(&mut self, name: &str, key: &str, value: &str) -> Result<(), SettingsError> {
        fn num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, SettingsError> {
            value.trim().parse().map_err(|_| SettingsError::Env {
                name: name.into(),
                message: format!("{value:?} is not a valid number"),
            })
        }
        match key {
            "LISTEN" => self.listen = value.to_string(),
            "DATA_DIR" => self.data_dir = PathBuf::from(value),
            "RETENTION_DAYS" => self.retention_days = num(name, value)?,
            "RETENTION_INTERVAL_SECS" => self.retention_interval_secs = num(name, value)?,
            "DEDUP_WINDOW_SECS" => self.dedup_window_secs = num(name, value)?,
            "DEDUP_OPEN_ENTRIES" => self.dedup_open_entries = num(name, value)?,
            "DEDUP_FILTER_DIR" => {
                self.dedup_filter_dir =
                    Some(PathBuf::from(value)).filter(|d| !d.as_os_str().is_empty())
            }
            "MAX_BATCH_EVENTS" => self.max_batch_events = num(name, value)?,
            "MAX_BODY_BYTES" => self.max_body_bytes = num(name, value)?,
            "MAX_IN_FLIGHT" => self.max_in_flight = num(name, value)?,
            "MAX_LAG_EVENTS" => self.max_lag_events = num(name, value)?,
            "PROJECTOR_BATCH_EVENTS" => self.projector_batch_events = num(name, value)?,
            "LOG_QUEUE_DEPTH" => self.log_queue_depth = num(name, value)?,
            "LOG_FORMAT" => self.log_format = value.to_string(),
            "DATABASE_URL" => {
                self.database_url = Some(Secret::new(value)).filter(|s| !s.0.is_empty())
            }
            "CLICKHOUSE_URL" => {
                self.clickhouse_url = Some(Secret::new(value)).filter(|s| !s.0.is_empty())
            }
            "CLICKHOUSE_DATABASE" => self.clickhouse_database = value.to_string(),
            "KAFKA_BROKERS" => {
                self.kafka_brokers = Some(value.to_string()).filter(|s| !s.is_empty())
            }
            "KAFKA_TOPIC" => self.kafka_topic = value.to_string(),
            "KAFKA_GROUP" => self.kafka_group = value.to_string(),
            "KAFKA_PRODUCE_TIMEOUT_MS" => self.kafka_produce_timeout_ms = num(name, value)?,
            "KAFKA_PARTITIONS" => self.kafka_partitions = num(name, value)?,
            "KAFKA_REPLICATION" => self.kafka_replication = num(name, value)?,
            "KAFKA_BATCH_MESSAGES" => self.kafka_batch_messages = Some(num(name, value)?),
            "METRICS_PUBLIC" => self.metrics_public = num(name, value)?,
            "PUBLIC_URL" => self.public_url = value.to_string(),
            "ALERT_INTERVAL_MS" => self.alert_interval_ms = num(name, value)?,
            "SESSION_MINUTES" => self.session_minutes = num(name, value)?,
            "NOTIFICATION_MAX_ATTEMPTS" => self.notification_max_attempts = num(name, value)?,
            "NOTIFICATION_BACKOFF_MS" => self.notification_backoff_ms = num(name, value)?,
            "NOTIFICATION_BACKOFF_MAX_MS" => self.notification_backoff_max_ms = num(name, value)?,
            "NOTIFICATION_TIMEOUT_MS" => self.notification_timeout_ms = num(name, value)?,
            "BOOTSTRAP_ADMIN_KEY" => {
                self.bootstrap_admin_key = Some(Secret::new(value)).filter(|s| !s.0.is_empty())
            }
            // Read by the config-file lookup, by tracing and by the client commands (`loadgen`,
            // `bench-query`), not by these settings.
            "CONFIG" | "LOG" | "API_KEY" => {}
            _ => {
                return Err(SettingsError::Env {
                    name: name.into(),
                    message: "unknown setting (see README, Configuration)".into(),
                })
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("retention_days", self.retention_days as u64),
            ("retention_interval_secs", self.retention_interval_secs),
            ("max_batch_events", self.max_batch_events as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("projector_batch_events", self.projector_batch_events as u64),
            ("log_queue_depth", self.log_queue_depth as u64),
            ("kafka_produce_timeout_ms", self.kafka_produce_timeout_ms),
            ("kafka_partitions", self.kafka_partitions.max(0) as u64),
            ("kafka_replication", self.kafka_replication.max(0) as u64),
            ("alert_interval_ms", self.alert_interval_ms),
            ("session_minutes", self.session_minutes),
            (
                "notification_max_attempts",
                u64::from(self.notification_max_attempts),
            ),
            ("notification_backoff_ms", self.notification_backoff_ms),
            (
                "notification_backoff_max_ms",
                self.notification_backoff_max_ms,
            ),
            ("notification_timeout_ms", self.notification_timeout_ms),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::Invalid {
                key,
                message: "must be greater than zero".into(),
            });
        }
        if let Some(key) = &self.bootstrap_admin_key {
            if key.0.chars().count() < MIN_BOOTSTRAP_KEY_CHARS {
                return Err(SettingsError::Invalid {
                    key: "bootstrap_admin_key",
                    message: format!(
                        "must be at least {MIN_BOOTSTRAP_KEY_CHARS} characters (use e.g. `openssl rand -hex 32`)"
                    ),
                });
            }
        }
        if tally_domain::config::http_url("public_url", &self.public_url).is_err() {
            return Err(SettingsError::Invalid {
                key: "public_url",
                message: "must be an http:// or https:// URL".into(),
            });
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(SettingsError::Invalid {
                key: "log_format",
                message: "must be text or json".into(),
            });
        }
        Ok(())
    }
}

impl Settings {
    /// How notifications are retried.
    pub fn retry_policy(&self) -> tally_alerting::RetryPolicy {
        let ms = |v: u64| chrono::Duration::milliseconds(i64::try_from(v).unwrap_or(i64::MAX));
        tally_alerting::RetryPolicy {
            max_attempts: self.notification_max_attempts,
            base: ms(self.notification_backoff_ms),
            cap: ms(self.notification_backoff_max_ms),
        }
    }

    /// What sends notifications.
    pub fn notifier(&self) -> tally_alerting::Sender {
        tally_alerting::Sender::new(std::time::Duration::from_millis(
            self.notification_timeout_ms,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nretention_days = 30\n").expect("write");
        let s = Settings::load(
            Some(&file),
            [("TALLY_RETENTION_DAYS".to_string(), "7".to_string())],
        )
        .expect("loads");
        assert_eq!((s.listen.as_str(), s.retention_days), ("0.0.0.0:9000", 7));
        std::fs::write(&file, "listen_addr = \"x\"\n").expect("write");
        assert!(matches!(
            Settings::load(Some(&file), []),
            Err(SettingsError::File { .. })
        ));
        let err = Settings::load(None, [("TALLY_LISTN".to_string(), "x".to_string())])
            .expect_err("unknown");
        assert!(err.to_string().contains("TALLY_LISTN"));
        let err = Settings::load(
            None,
            [("TALLY_MAX_IN_FLIGHT".to_string(), "lots".to_string())],
        )
        .expect_err("bad number");
        assert!(err.to_string().contains("TALLY_MAX_IN_FLIGHT"));
        assert!(
            Settings::load(None, [("TALLY_MAX_IN_FLIGHT".to_string(), "0".to_string())]).is_err()
        );
    }
}
