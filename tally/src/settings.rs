//! Layered configuration: defaults → optional TOML file → `TALLY_*` environment variables →
//! command-line flags. Unknown keys (in the file or as `TALLY_*` variables) are errors, so a
//! misspelt setting never silently keeps its default — except the variables Kubernetes injects
//! for a Service whose name starts with `tally` (`TALLY_SERVICE_HOST`, `TALLY_PORT_8080_TCP`, …),
//! which are recognised by their shape and set aside ([`Settings::ignored_env`]) so a pod next
//! to such a Service starts. A secret may come from a file instead of a variable: `TALLY_<NAME>_FILE`
//! holds the path (Docker and Kubernetes secrets), trailing line breaks dropped; giving both is an
//! error. Secrets are [`Secret`]s: `Debug` prints `***`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use tally_storage::log::kafka::security::KafkaSecurity;

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

/// Further librdkafka properties by name; `Debug` hides the values of names that say they are
/// secret (`ssl.key.password`, `sasl.oauthbearer.client.secret`, …).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let secret = ["password", "secret", "key"].iter().any(|s| k.contains(s));
                (k, if secret { "***" } else { v.as_str() })
            }))
            .finish()
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
    /// Milliseconds the oldest unprojected event may wait before ingest requests wait for the
    /// projector (up to a second, then 429 + Retry-After); 0 turns pacing off.
    pub max_lag_ms: u64,
    /// Most events folded into one projector commit.
    pub projector_batch_events: usize,
    /// MiB of closed buckets' rows the query API keeps between dashboard reads (embedded
    /// store only: it alone tells when rows change); 0 keeps none.
    pub query_cache_mib: u64,
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
    /// ClickHouse user (or `user:password@` in `clickhouse_url`; the server's `default` when
    /// neither).
    pub clickhouse_user: Option<String>,
    /// ClickHouse password.
    pub clickhouse_password: Option<Secret>,
    /// PEM file of CAs to trust for an `https://` `clickhouse_url`, besides the system's roots.
    pub clickhouse_ca_file: Option<PathBuf>,
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
    /// `security.protocol`: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    pub kafka_security_protocol: String,
    /// `sasl.mechanism` with a SASL protocol: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    pub kafka_sasl_username: Option<String>,
    /// SASL password.
    pub kafka_sasl_password: Option<Secret>,
    /// PEM file of CAs to trust for TLS (`ssl.ca.location`).
    pub kafka_ca_file: Option<PathBuf>,
    /// Further librdkafka properties for every Kafka client (`[kafka_properties]` in the file,
    /// `TALLY_KAFKA_PROPERTY_<NAME>` with the name's dots as `_`).
    pub kafka_properties: KafkaProperties,
    /// A `platform_admin` API key created at start-up when no key has this secret yet (at least
    /// 32 characters), so a fresh installation can be administered.
    pub bootstrap_admin_key: Option<Secret>,
    /// Serve `/metrics` without an API key (for scrapers that cannot send one).
    pub metrics_public: bool,
    /// The address people reach the console at, for links in notifications.
    pub public_url: String,
    /// `TALLY_*` variables set aside as Kubernetes service links (not settings; logged once).
    #[serde(skip)]
    pub ignored_env: Vec<String>,
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
            max_lag_ms: 250,
            projector_batch_events: 50_000,
            query_cache_mib: tally_query_api::row_cache::DEFAULT_MIB,
            log_queue_depth: 256,
            log_format: "text".into(),
            database_url: None,
            clickhouse_url: None,
            clickhouse_database: "tally".into(),
            clickhouse_user: None,
            clickhouse_password: None,
            clickhouse_ca_file: None,
            kafka_brokers: None,
            kafka_topic: "tally-usage-events".into(),
            kafka_group: "tally-projector".into(),
            kafka_produce_timeout_ms: 10_000,
            kafka_partitions: 6,
            kafka_replication: 1,
            kafka_batch_messages: None,
            kafka_security_protocol: "PLAINTEXT".into(),
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ca_file: None,
            kafka_properties: Default::default(),
            bootstrap_admin_key: None,
            metrics_public: false,
            public_url: "http://127.0.0.1:8080".into(),
            ignored_env: Vec::new(),
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
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with("TALLY_"))
            .collect();
        for (name, value) in &env {
            let key = &name["TALLY_".len()..];
            if let Some(secret) = secret_file_key(key) {
                if env
                    .iter()
                    .any(|(other, _)| other.strip_prefix("TALLY_") == Some(secret))
                {
                    return Err(SettingsError::Env {
                        name: name.clone(),
                        message: format!("TALLY_{secret} is set too; keep one of the two"),
                    });
                }
                let contents = read_secret_file(name, value)?;
                settings.apply_env(&format!("TALLY_{secret}"), secret, &contents)?;
            } else if is_service_link(key, value) {
                settings.ignored_env.push(name.clone());
            } else {
                settings.apply_env(name, key, value)?;
            }
        }
        settings.ignored_env.sort();
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
            "MAX_LAG_MS" => self.max_lag_ms = num(name, value)?,
            "PROJECTOR_BATCH_EVENTS" => self.projector_batch_events = num(name, value)?,
            "QUERY_CACHE_MIB" => self.query_cache_mib = num(name, value)?,
            "LOG_QUEUE_DEPTH" => self.log_queue_depth = num(name, value)?,
            "LOG_FORMAT" => self.log_format = value.to_string(),
            "DATABASE_URL" => {
                self.database_url = Some(Secret::new(value)).filter(|s| !s.0.is_empty())
            }
            "CLICKHOUSE_URL" => {
                self.clickhouse_url = Some(Secret::new(value)).filter(|s| !s.0.is_empty())
            }
            "CLICKHOUSE_DATABASE" => self.clickhouse_database = value.to_string(),
            "CLICKHOUSE_USER" => {
                self.clickhouse_user = Some(value.to_string()).filter(|s| !s.is_empty())
            }
            "CLICKHOUSE_PASSWORD" => self.clickhouse_password = Some(Secret::new(value)),
            "CLICKHOUSE_CA_FILE" => {
                self.clickhouse_ca_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "KAFKA_BROKERS" => {
                self.kafka_brokers = Some(value.to_string()).filter(|s| !s.is_empty())
            }
            "KAFKA_TOPIC" => self.kafka_topic = value.to_string(),
            "KAFKA_GROUP" => self.kafka_group = value.to_string(),
            "KAFKA_PRODUCE_TIMEOUT_MS" => self.kafka_produce_timeout_ms = num(name, value)?,
            "KAFKA_PARTITIONS" => self.kafka_partitions = num(name, value)?,
            "KAFKA_REPLICATION" => self.kafka_replication = num(name, value)?,
            "KAFKA_BATCH_MESSAGES" => self.kafka_batch_messages = Some(num(name, value)?),
            "KAFKA_SECURITY_PROTOCOL" => self.kafka_security_protocol = value.to_string(),
            "KAFKA_SASL_MECHANISM" => {
                self.kafka_sasl_mechanism = Some(value.to_string()).filter(|s| !s.is_empty())
            }
            "KAFKA_SASL_USERNAME" => {
                self.kafka_sasl_username = Some(value.to_string()).filter(|s| !s.is_empty())
            }
            "KAFKA_SASL_PASSWORD" => self.kafka_sasl_password = Some(Secret::new(value)),
            "KAFKA_CA_FILE" => {
                self.kafka_ca_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            property if property.starts_with("KAFKA_PROPERTY_") => {
                let librdkafka = property["KAFKA_PROPERTY_".len()..]
                    .to_ascii_lowercase()
                    .replace('_', ".");
                if librdkafka.is_empty() {
                    return Err(SettingsError::Env {
                        name: name.into(),
                        message: "names no property (TALLY_KAFKA_PROPERTY_<NAME>, e.g. TALLY_KAFKA_PROPERTY_CLIENT_ID)".into(),
                    });
                }
                self.kafka_properties
                    .0
                    .insert(librdkafka, value.to_string());
            }
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
        if self.kafka_brokers.is_some() {
            self.kafka_security()?;
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

/// The settings whose value may come from a file (`TALLY_<NAME>_FILE`).
const SECRETS: [&str; 5] = [
    "DATABASE_URL",
    "CLICKHOUSE_URL",
    "CLICKHOUSE_PASSWORD",
    "KAFKA_SASL_PASSWORD",
    "BOOTSTRAP_ADMIN_KEY",
];

/// The secret `key` names the file of (`CLICKHOUSE_PASSWORD_FILE` → `CLICKHOUSE_PASSWORD`).
fn secret_file_key(key: &str) -> Option<&'static str> {
    let stem = key.strip_suffix("_FILE")?;
    SECRETS.iter().copied().find(|s| *s == stem)
}

/// A secret's file, as Docker and Kubernetes mount them: its contents without the trailing
/// line break(s) an editor or `echo` adds.
fn read_secret_file(name: &str, path: &str) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Env {
        name: name.into(),
        message: format!("cannot read the secret file {path:?}: {e}"),
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// Whether `TALLY_<key>` has the shape of a variable Kubernetes injects for a Service named
/// `tally…` (service links): `…SERVICE_HOST`, `…SERVICE_PORT`, `…SERVICE_PORT_<port name>`,
/// and `…PORT`, `…PORT_<n>_<PROTO>` with a `tcp://host:port` value, `…PORT_<n>_<PROTO>_PROTO`,
/// `_PORT` and `_ADDR`. No setting of Tally ends or is named like these.
fn is_service_link(key: &str, value: &str) -> bool {
    let url_value = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    // `SERVICE_` at the start or after `_`, wherever the service's name ends (a Service named
    // `tally-web-service` injects `TALLY_WEB_SERVICE_SERVICE_HOST`).
    let service_link = key
        .match_indices("SERVICE_")
        .filter(|(i, _)| *i == 0 || key.as_bytes()[i - 1] == b'_')
        .any(|(i, _)| {
            let rest = &key[i + "SERVICE_".len()..];
            rest == "HOST" || rest == "PORT" || rest.starts_with("PORT_")
        });
    if service_link {
        return true;
    }
    // `PORT` at the start or after `_`, wherever the service's name ends
    // (`INGEST_PORT_8080_TCP_PORT` has two candidates).
    key.match_indices("PORT")
        .filter(|(i, _)| *i == 0 || key.as_bytes()[i - 1] == b'_')
        .any(|(i, _)| port_link(&key[i + "PORT".len()..], url_value))
}

/// Whether what follows `PORT` in a variable's name is a service link's: nothing (with a
/// `tcp://…` value), `_<n>_<PROTO>` (with such a value), or `_<n>_<PROTO>_PROTO|_PORT|_ADDR`.
fn port_link(rest: &str, url_value: bool) -> bool {
    if rest.is_empty() {
        return url_value;
    }
    let Some(rest) = rest.strip_prefix('_') else {
        return false;
    };
    let mut parts = rest.split('_');
    let number = parts
        .next()
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let proto = parts
        .next()
        .is_some_and(|p| matches!(p, "TCP" | "UDP" | "SCTP"));
    match (number, proto, parts.next(), parts.next()) {
        (true, true, None, None) => url_value,
        (true, true, Some("PROTO" | "PORT" | "ADDR"), None) => true,
        _ => false,
    }
}

impl Settings {
    /// What the Kafka clients present to the brokers; a combination that cannot work is
    /// refused naming the setting.
    pub fn kafka_security(&self) -> Result<KafkaSecurity, SettingsError> {
        use tally_storage::log::kafka::security::SecurityError as E;
        let invalid = |key: &'static str, message: String| SettingsError::Invalid { key, message };
        let protocol = self
            .kafka_security_protocol
            .parse()
            .map_err(|m| invalid("kafka_security_protocol", m))?;
        let mechanism = match &self.kafka_sasl_mechanism {
            Some(m) => Some(m.parse().map_err(|m| invalid("kafka_sasl_mechanism", m))?),
            None => None,
        };
        let security = KafkaSecurity {
            protocol,
            mechanism,
            username: self.kafka_sasl_username.clone(),
            password: self
                .kafka_sasl_password
                .as_ref()
                .map(|p| p.expose().to_string()),
            ca_file: self.kafka_ca_file.clone(),
            properties: self.kafka_properties.0.clone(),
        };
        security.check().map_err(|e| {
            let key = match &e {
                E::TlsNotBuilt {
                    protocol: "SASL/SCRAM",
                } => "kafka_sasl_mechanism",
                E::TlsNotBuilt { .. } => "kafka_security_protocol",
                E::MechanismMissing { .. } | E::MechanismWithoutSasl { .. } => {
                    "kafka_sasl_mechanism"
                }
                E::CredentialsMissing { .. } | E::CredentialsWithoutSasl { .. } => {
                    "kafka_sasl_username / kafka_sasl_password"
                }
                E::CaFile { .. } | E::CaFileWithoutTls { .. } => "kafka_ca_file",
                E::Reserved(_) | E::OwnSetting(_) | E::Verification(_) => "kafka_properties",
            };
            invalid(key, e.to_string())
        })?;
        Ok(security)
    }

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

    #[test]
    fn pacing_defaults_to_a_quarter_second_and_can_be_set_or_turned_off() {
        assert_eq!(Settings::load(None, []).expect("defaults").max_lag_ms, 250);
        let off = Settings::load(None, [("TALLY_MAX_LAG_MS".to_string(), "0".to_string())]);
        assert_eq!(off.expect("loads").max_lag_ms, 0);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, "max_lag_ms = 100\n").expect("write");
        assert_eq!(
            Settings::load(Some(&file), []).expect("loads").max_lag_ms,
            100
        );
        let err = Settings::load(None, [("TALLY_MAX_LAG_MS".to_string(), "-1".to_string())])
            .expect_err("negative");
        assert!(err.to_string().contains("TALLY_MAX_LAG_MS"));
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kubernetes_service_links_are_set_aside_and_typos_still_fail() {
        // What Kubernetes injects for Services named `tally` and `tally-ingest` (port 8080).
        let links = [
            ("TALLY_SERVICE_HOST", "10.0.0.11"),
            ("TALLY_SERVICE_PORT", "8080"),
            ("TALLY_SERVICE_PORT_HTTP", "8080"),
            ("TALLY_PORT", "tcp://10.0.0.11:8080"),
            ("TALLY_PORT_8080_TCP", "tcp://10.0.0.11:8080"),
            ("TALLY_PORT_8080_TCP_PROTO", "tcp"),
            ("TALLY_PORT_8080_TCP_PORT", "8080"),
            ("TALLY_PORT_8080_TCP_ADDR", "10.0.0.11"),
            ("TALLY_INGEST_SERVICE_HOST", "10.0.0.12"),
            ("TALLY_INGEST_PORT_8080_TCP_ADDR", "10.0.0.12"),
            ("TALLY_QUERY_API_PORT_8080_TCP_PORT", "8080"),
            ("TALLY_QUERY_API_SERVICE_PORT_HTTP", "8080"),
            ("TALLY_SERVICE_SERVICE_HOST", "10.0.0.13"),
            ("TALLY_SERVICE_SERVICE_PORT_HTTP", "8080"),
            ("TALLY_WEB_SERVICE_SERVICE_PORT", "8080"),
            ("TALLY_SERVICE_PORT_8080_TCP_ADDR", "10.0.0.13"),
            ("TALLY_INGEST_PORT", "tcp://10.0.0.12:8080"),
        ];
        let mut pairs = links.to_vec();
        pairs.push(("TALLY_RETENTION_DAYS", "9"));
        let s = Settings::load(None, env(&pairs)).expect("loads");
        assert_eq!(s.retention_days, 9);
        let mut expected: Vec<String> = links.iter().map(|(k, _)| k.to_string()).collect();
        expected.sort();
        assert_eq!(s.ignored_env, expected);
        // Not shaped like a link: still unknown settings.
        for (name, value) in [
            ("TALLY_PORT", "8080"),
            ("TALLY_INGEST_PORT", "9000"),
            ("TALLY_PORT_8080_TCP", "8080"),
            ("TALLY_PORT_HTTP_TCP_ADDR", "x"),
            ("TALLY_SERVICE", "x"),
            ("TALLY_LISTEN_PORT", "8080"),
        ] {
            let err = Settings::load(None, env(&[(name, value)])).expect_err(name);
            assert!(err.to_string().contains("unknown setting"), "{name}: {err}");
        }
    }

    #[test]
    fn secrets_come_from_files_without_their_line_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path.display().to_string()
        };
        let password = write("ch", "p@ss word\n");
        let db = write("db", "postgres://u:p@h/db\r\n");
        let key = write("key", "k".repeat(40).as_str());
        let s = Settings::load(
            None,
            env(&[
                ("TALLY_CLICKHOUSE_PASSWORD_FILE", &password),
                ("TALLY_DATABASE_URL_FILE", &db),
                ("TALLY_BOOTSTRAP_ADMIN_KEY_FILE", &key),
                ("TALLY_CLICKHOUSE_CA_FILE", "/etc/ssl/ca.pem"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            s.clickhouse_password.as_ref().map(Secret::expose),
            Some("p@ss word")
        );
        assert_eq!(
            s.database_url.as_ref().map(Secret::expose),
            Some("postgres://u:p@h/db")
        );
        assert_eq!(
            s.bootstrap_admin_key.as_ref().map(|k| k.expose().len()),
            Some(40)
        );
        // A CA file is a path setting of its own, not a secret's file.
        assert_eq!(s.clickhouse_ca_file, Some(PathBuf::from("/etc/ssl/ca.pem")));
        assert!(!format!("{s:?}").contains("p@ss"));

        let both = Settings::load(
            None,
            env(&[
                ("TALLY_CLICKHOUSE_PASSWORD", "x"),
                ("TALLY_CLICKHOUSE_PASSWORD_FILE", &password),
            ]),
        )
        .expect_err("both");
        assert!(
            both.to_string()
                .contains("TALLY_CLICKHOUSE_PASSWORD is set too"),
            "{both}"
        );
        let missing = dir.path().join("missing").display().to_string();
        let unreadable = Settings::load(None, env(&[("TALLY_DATABASE_URL_FILE", &missing)]))
            .expect_err("missing file");
        assert!(
            unreadable
                .to_string()
                .starts_with("TALLY_DATABASE_URL_FILE: cannot read"),
            "{unreadable}"
        );
        // A short key from a file is checked like one from a variable.
        let short = write("short", "abc\n");
        let err = Settings::load(None, env(&[("TALLY_BOOTSTRAP_ADMIN_KEY_FILE", &short)]))
            .expect_err("short key");
        assert!(err.to_string().contains("at least 32"), "{err}");
    }

    #[test]
    fn kafka_security_settings_are_checked_and_properties_pass_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tally.toml");
        std::fs::write(
            &file,
            "kafka_brokers = \"b:9092\"\nkafka_security_protocol = \"sasl_plaintext\"\n\
             kafka_sasl_mechanism = \"PLAIN\"\nkafka_sasl_username = \"tally\"\n\
             [kafka_properties]\n\"socket.keepalive.enable\" = \"true\"\n",
        )
        .expect("write");
        let s = Settings::load(
            Some(&file),
            env(&[
                ("TALLY_KAFKA_SASL_PASSWORD", "pw"),
                ("TALLY_KAFKA_PROPERTY_CLIENT_ID", "tally-eu"),
            ]),
        )
        .expect("loads");
        let security = s.kafka_security().expect("security");
        assert_eq!(security.password.as_deref(), Some("pw"));
        assert_eq!(
            security.properties.get("client.id").map(String::as_str),
            Some("tally-eu")
        );
        assert_eq!(
            security
                .properties
                .get("socket.keepalive.enable")
                .map(String::as_str),
            Some("true")
        );
        let refused = |pairs: &[(&str, &str)]| {
            let mut all = vec![("TALLY_KAFKA_BROKERS", "b:9092")];
            all.extend_from_slice(pairs);
            Settings::load(None, env(&all))
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(&[("TALLY_KAFKA_SECURITY_PROTOCOL", "TLS")])
            .starts_with("kafka_security_protocol:"));
        assert!(
            refused(&[("TALLY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")])
                .starts_with("kafka_sasl_mechanism:")
        );
        assert!(refused(&[
            ("TALLY_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("TALLY_KAFKA_SASL_MECHANISM", "PLAIN"),
        ])
        .starts_with("kafka_sasl_username / kafka_sasl_password:"));
        assert!(refused(&[("TALLY_KAFKA_PROPERTY_ACKS", "1")]).starts_with("kafka_properties:"));
        let keyed = Settings::load(
            None,
            env(&[("TALLY_KAFKA_PROPERTY_SSL_KEY_PASSWORD", "hunter2")]),
        )
        .expect("loads");
        assert!(!format!("{keyed:?}").contains("hunter2"));
        assert!(refused(&[("TALLY_KAFKA_PROPERTY_SASL_PASSWORD", "x")])
            .starts_with("kafka_properties:"));
        assert!(
            refused(&[("TALLY_KAFKA_CA_FILE", "/etc/ssl/ca.pem")]).starts_with("kafka_ca_file:")
        );
        // Without brokers the Kafka settings are not used, so not checked.
        assert!(Settings::load(None, env(&[("TALLY_KAFKA_SECURITY_PROTOCOL", "SSL")])).is_ok());
    }

    proptest::proptest! {
        /// Every variable Kubernetes injects for a Service named `tally` or `tally-<anything>`
        /// (the name upper-cased, `-` as `_`), whatever its port, protocol and port name.
        #[test]
        fn every_service_link_of_a_tally_service_is_set_aside(
            suffix in "(-[a-z][a-z0-9-]{0,10}[a-z0-9])?(-service|-port|-port-8080-tcp)?",
            port in 1u16..,
            proto in proptest::sample::select(vec!["TCP", "UDP", "SCTP"]),
            port_name in "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        ) {
            let service = format!("TALLY{}", suffix.to_uppercase().replace('-', "_"));
            let ip = "10.96.0.7";
            let url = format!("{}://{ip}:{port}", proto.to_lowercase());
            let name = port_name.to_uppercase().replace('-', "_");
            let injected = [
                (format!("{service}_SERVICE_HOST"), ip.to_string()),
                (format!("{service}_SERVICE_PORT"), port.to_string()),
                (format!("{service}_SERVICE_PORT_{name}"), port.to_string()),
                (format!("{service}_PORT"), url.clone()),
                (format!("{service}_PORT_{port}_{proto}"), url),
                (format!("{service}_PORT_{port}_{proto}_PROTO"), proto.to_lowercase()),
                (format!("{service}_PORT_{port}_{proto}_PORT"), port.to_string()),
                (format!("{service}_PORT_{port}_{proto}_ADDR"), ip.to_string()),
            ];
            let s = Settings::load(None, injected.to_vec()).expect("service links load");
            proptest::prop_assert_eq!(s.ignored_env.len(), injected.len());
        }
    }
}
