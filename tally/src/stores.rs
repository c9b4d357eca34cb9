//! Which adapters a process opens: each store is the distributed one when its URL is set
//! (Kafka, ClickHouse, Postgres, migrated on the way) and the embedded SQLite one in the data
//! directory otherwise — the one place where `tally-storage` meets the services. The data
//! directory is locked while any embedded store is open, so two processes never project into
//! the same files.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tally_domain::clock::{Clock, SystemClock};
use tally_domain::pricing::{PriceCache, RepriceCache};
use tally_domain::store::{AnalyticsStore, ConfigStore, EventLog};
use tally_schemas::validate::Limits;
use tally_storage::analytics::clickhouse::{ClickHouseEndpoint, ConnectError, EndpointError};
use tally_storage::log::kafka::security::{probe, Listener, ProbeError};
use tally_storage::{SqliteAnalyticsStore, SqliteConfigStore, SqliteEventLog};
use tracing::info;

use crate::settings::Settings;

/// The stores and shared state of a running application (what demo traffic and tests use).
#[derive(Clone)]
pub struct Stores {
    pub log: Arc<dyn EventLog>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub config: Arc<dyn ConfigStore>,
    pub prices: Arc<PriceCache>,
    /// Reprice requests, for the projector.
    pub reprices: Arc<RepriceCache>,
    /// Held for as long as any clone lives: one process per data directory (only taken when
    /// an embedded store is in use).
    _lock: Option<Arc<std::fs::File>>,
}

/// The configuration store alone: Postgres when `database_url` is set (migrated), else the
/// SQLite store in the data directory. Takes no data-directory lock (SQLite serialises writers
/// across processes), so `tally keys` works next to a running server.
pub async fn open_config_store(settings: &Settings) -> anyhow::Result<Arc<dyn ConfigStore>> {
    Ok(match &settings.database_url {
        Some(url) => {
            let pool = tally_storage::config::postgres::connect(url.expose())
                .await
                .map_err(postgres_hint)?;
            tally_storage::config::postgres::migrate(&pool)
                .await
                .context("migrating Postgres")?;
            info!("configuration store: postgres");
            Arc::new(tally_storage::PostgresConfigStore::new(pool))
        }
        None => {
            let dir = &settings.data_dir;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data dir {}", dir.display()))?;
            Arc::new(SqliteConfigStore::open(dir).context("opening the config store")?)
        }
    })
}

/// How long [`lock_data_dir`] waits for a lock that is held. A process that just stopped can
/// hold it a moment longer: a child being spawned at that instant (any `Command`, before its
/// `exec` closes the inherited descriptors) shares the lock's open file description.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes the data directory's lock file, so two processes (say a server and a rebuild) never
/// project into the same stores at once. The OS releases it when the process dies. A lock held
/// by another process is waited for up to [`LOCK_WAIT`], then refused.
async fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "data directory {} is in use by another tally process (stop it first)",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

impl Stores {
    /// Opens the stores the settings choose: each is the distributed one when its URL is set,
    /// the embedded one in `settings.data_dir` otherwise (the directory is only created and
    /// locked when some store is embedded). Postgres and ClickHouse are migrated on the way.
    pub async fn open(settings: &Settings) -> anyhow::Result<Stores> {
        Self::open_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Stores::open`], with the clock that stamps appended events.
    pub async fn open_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Stores> {
        let all_distributed = settings.database_url.is_some()
            && settings.clickhouse_url.is_some()
            && settings.kafka_brokers.is_some();
        let dir = &settings.data_dir;
        let lock = if all_distributed {
            None
        } else {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data dir {}", dir.display()))?;
            Some(Arc::new(lock_data_dir(dir).await?))
        };
        // The embedded log, when it is the log: the embedded analytics store points into it.
        let mut embedded_log = None;
        let log: Arc<dyn EventLog> = match &settings.kafka_brokers {
            Some(brokers) => {
                let k = kafka_settings(settings, brokers);
                match probe_kafka(&k, KAFKA_PROBE_TIMEOUT).await {
                    Ok(()) => {}
                    // Brokers that are down may come up: the clients reconnect by themselves.
                    Err(ProbeError::Unreachable(reason)) => {
                        tracing::warn!(brokers = %brokers, %reason, "no Kafka broker answered yet; starting anyway")
                    }
                    Err(e) => return Err(kafka_hint(settings, e)),
                }
                info!(brokers = %brokers, topic = %settings.kafka_topic, "event log: kafka");
                Arc::new(
                    tally_storage::KafkaLog::new(k, clock).context("creating the Kafka client")?,
                )
            }
            None => {
                let log = Arc::new(
                    SqliteEventLog::open(dir, settings.log_queue_depth)
                        .context("opening the event log")?,
                );
                embedded_log = Some(log.clone());
                log
            }
        };
        let config = open_config_store(settings).await?;
        let analytics: Arc<dyn AnalyticsStore> = match clickhouse_endpoint(settings)? {
            Some(endpoint) => {
                let db = &settings.clickhouse_database;
                check_clickhouse(&endpoint).await?;
                tally_storage::analytics::clickhouse::migrate(&endpoint, db)
                    .await
                    .context("migrating ClickHouse (TALLY_CLICKHOUSE_URL)")?;
                info!(database = %db, "analytics store: clickhouse");
                Arc::new(tally_storage::ClickHouseAnalyticsStore::new(
                    endpoint.client(db),
                ))
            }
            // Beside the embedded log, the drill-down points into it instead of copying events.
            None => Arc::new(
                match &embedded_log {
                    Some(log) => SqliteAnalyticsStore::open_beside_log(dir, log),
                    None => SqliteAnalyticsStore::open(dir),
                }
                .context("opening the analytics store")?,
            ),
        };
        Ok(Stores {
            log,
            analytics,
            config,
            prices: Arc::new(PriceCache::default()),
            reprices: Arc::new(RepriceCache::default()),
            _lock: lock,
        })
    }
}

/// The ClickHouse endpoint the settings describe (URL, credentials, CAs), when
/// `clickhouse_url` is set; a setting that cannot work is named with its fix.
pub fn clickhouse_endpoint(settings: &Settings) -> anyhow::Result<Option<ClickHouseEndpoint>> {
    let Some(url) = &settings.clickhouse_url else {
        return Ok(None);
    };
    let named = |e: EndpointError| {
        let setting = match e {
            EndpointError::GivenTwice(_) | EndpointError::PasswordWithoutUser => {
                "clickhouse_user / clickhouse_password (TALLY_CLICKHOUSE_USER, TALLY_CLICKHOUSE_PASSWORD)"
            }
            EndpointError::CaFile { .. } | EndpointError::CaFileWithoutTls => {
                "clickhouse_ca_file (TALLY_CLICKHOUSE_CA_FILE)"
            }
            _ => "clickhouse_url (TALLY_CLICKHOUSE_URL)",
        };
        anyhow::anyhow!("{setting}: {e}")
    };
    let mut endpoint = ClickHouseEndpoint::parse(url.expose())
        .map_err(named)?
        .with_credentials(
            settings.clickhouse_user.as_deref(),
            settings.clickhouse_password.as_ref().map(|p| p.expose()),
        )
        .map_err(named)?;
    if let Some(ca) = &settings.clickhouse_ca_file {
        endpoint = endpoint.with_ca_file(ca).map_err(named)?;
    }
    Ok(Some(endpoint))
}

/// The first round trip to ClickHouse; a refusal is explained by the setting to change.
pub async fn check_clickhouse(endpoint: &ClickHouseEndpoint) -> anyhow::Result<String> {
    endpoint
        .check()
        .await
        .map_err(|e| clickhouse_hint(endpoint, e))
}

/// `e` with the setting that fixes it.
pub fn clickhouse_hint(endpoint: &ClickHouseEndpoint, e: ConnectError) -> anyhow::Error {
    let url = endpoint.url();
    let hint = match &e {
        ConnectError::Credentials(_) => format!(
            "connecting as {:?}: set clickhouse_user and clickhouse_password (TALLY_CLICKHOUSE_USER, \
             TALLY_CLICKHOUSE_PASSWORD or TALLY_CLICKHOUSE_PASSWORD_FILE), or user:password@ in \
             clickhouse_url, to a user the server accepts from this address",
            endpoint.user().unwrap_or("default")
        ),
        ConnectError::Certificate(_) => format!(
            "set clickhouse_ca_file (TALLY_CLICKHOUSE_CA_FILE) to the PEM file of the CA that \
             signed the certificate of {url}, and use a host name the certificate names"
        ),
        ConnectError::NotTls(_) => format!(
            "clickhouse_url (TALLY_CLICKHOUSE_URL) is https:// but {url} does not speak TLS: use \
             ClickHouse's https_port (8443 by default), or http:// for a plain port"
        ),
        ConnectError::NotHttp(_) => format!(
            "clickhouse_url (TALLY_CLICKHOUSE_URL) is http:// but {url} did not answer plain HTTP: \
             if it is ClickHouse's https_port (8443 by default) or the server refuses plaintext, \
             use https://"
        ),
        ConnectError::Unreachable(_) => format!(
            "check clickhouse_url (TALLY_CLICKHOUSE_URL, now {url}) and that ClickHouse is running"
        ),
        ConnectError::Other(_) => format!("clickhouse_url (TALLY_CLICKHOUSE_URL) is {url}"),
    };
    anyhow::anyhow!("{e}; {hint}")
}

/// A failure to connect to Postgres, with the part of `database_url` that fixes it.
pub fn postgres_hint(e: tally_domain::store::StoreError) -> anyhow::Error {
    let text = e.to_string();
    let hint = if text.contains("no encryption") {
        "the server accepts only TLS connections: add sslmode=verify-full&sslrootcert=<the CA's \
         PEM file> to database_url (TALLY_DATABASE_URL or TALLY_DATABASE_URL_FILE)"
    } else if text.contains("certificate") || text.contains("UnknownIssuer") {
        "the server's certificate is not trusted: add sslrootcert=<the PEM file of the CA that \
         signed it> to database_url (TALLY_DATABASE_URL), with sslmode=verify-full and the host \
         name the certificate names"
    } else if text.contains("does not support TLS") || text.contains("not support SSL") {
        "the server does not offer TLS: turn ssl on in postgresql.conf, or relax sslmode in \
         database_url (TALLY_DATABASE_URL)"
    } else if text.contains("password authentication failed") || text.contains("no password") {
        "check the user and password in database_url (TALLY_DATABASE_URL or \
         TALLY_DATABASE_URL_FILE)"
    } else {
        "check database_url (TALLY_DATABASE_URL) and that Postgres is running"
    };
    anyhow::anyhow!("connecting to Postgres: {text}; {hint}")
}

/// How long `tally migrate` waits for a service that is not reachable yet (Compose and
/// Kubernetes start it beside the services it migrates).
pub const MIGRATE_WAIT: Duration = Duration::from_secs(120);

/// Time between two attempts to reach a service that is not up yet.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Runs `attempt` until it succeeds, fails for good (`transient` says no), or `wait` has
/// passed; each transient failure is logged. The last error comes back `explain`ed, with how
/// long was waited.
async fn patiently<T, E: std::fmt::Display>(
    what: &str,
    wait: Duration,
    transient: impl Fn(&E) -> bool,
    explain: impl Fn(E) -> anyhow::Error,
    mut attempt: impl AsyncFnMut() -> Result<T, E>,
) -> anyhow::Result<T> {
    let started = std::time::Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if transient(&e) && started.elapsed() + RETRY_EVERY < wait => {
                tracing::warn!(service = what, error = %e, "not reachable yet; retrying");
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(e) if transient(&e) => {
                let waited = started.elapsed().as_secs();
                return Err(explain(e).context(format!("{what}: gave up after {waited} s")));
            }
            Err(e) => return Err(explain(e).context(what.to_string())),
        }
    }
}

/// Applies the Postgres and ClickHouse schemas and creates the Kafka topic, for the services
/// the settings name, waiting up to `wait` for each to be reachable; returns what was done,
/// a line per service.
pub async fn migrate(settings: &Settings, wait: Duration) -> anyhow::Result<Vec<String>> {
    use tally_domain::store::StoreError;
    let unavailable = |e: &StoreError| matches!(e, StoreError::Unavailable(_));
    let mut done = Vec::new();
    if let Some(url) = &settings.database_url {
        let pool = patiently(
            "Postgres (TALLY_DATABASE_URL)",
            wait,
            unavailable,
            postgres_hint,
            async || tally_storage::config::postgres::connect(url.expose()).await,
        )
        .await?;
        let applied = tally_storage::config::postgres::migrate(&pool)
            .await
            .context("migrating Postgres")?;
        done.push(format!("postgres: {applied} migration(s) applied"));
    }
    if let Some(endpoint) = clickhouse_endpoint(settings)? {
        patiently(
            "ClickHouse",
            wait,
            |e: &ConnectError| matches!(e, ConnectError::Unreachable(_)),
            |e| clickhouse_hint(&endpoint, e),
            async || endpoint.check().await,
        )
        .await?;
        let db = &settings.clickhouse_database;
        tally_storage::analytics::clickhouse::migrate(&endpoint, db)
            .await
            .context("migrating ClickHouse")?;
        done.push(format!("clickhouse: schema applied to database {db}"));
    }
    if let Some(brokers) = &settings.kafka_brokers {
        let k = kafka_settings(settings, brokers);
        patiently(
            "Kafka (TALLY_KAFKA_BROKERS)",
            wait,
            |e: &ProbeError| matches!(e, ProbeError::Unreachable(_)),
            |e| kafka_hint(settings, e),
            async || probe_kafka(&k, KAFKA_PROBE_TIMEOUT).await,
        )
        .await?;
        let created = patiently(
            "Kafka (TALLY_KAFKA_BROKERS)",
            wait,
            unavailable,
            anyhow::Error::from,
            async || {
                tally_storage::log::kafka::create_topic(
                    &k,
                    settings.kafka_partitions,
                    settings.kafka_replication,
                )
                .await
            },
        )
        .await
        .context("creating the Kafka topic")?;
        done.push(format!(
            "kafka: topic {} {}",
            settings.kafka_topic,
            if created {
                format!("created with {} partitions", settings.kafka_partitions)
            } else {
                "already exists".to_string()
            }
        ));
    }
    Ok(done)
}

/// How long start-up waits for the brokers' first answer.
const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One metadata round trip to the brokers with the clients' security (off the runtime).
async fn probe_kafka(
    k: &tally_storage::KafkaSettings,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let (brokers, security) = (k.brokers.clone(), k.security.clone());
    tokio::task::spawn_blocking(move || probe(&brokers, &security, timeout))
        .await
        .map_err(|e| ProbeError::Client(e.to_string()))?
}

/// `e` with the setting that fixes it.
pub fn kafka_hint(settings: &Settings, e: ProbeError) -> anyhow::Error {
    let protocol = &settings.kafka_security_protocol;
    let hint = match &e {
        ProbeError::Credentials(_) => "set kafka_sasl_username and kafka_sasl_password \
            (TALLY_KAFKA_SASL_USERNAME, TALLY_KAFKA_SASL_PASSWORD or TALLY_KAFKA_SASL_PASSWORD_FILE) \
            and kafka_sasl_mechanism (TALLY_KAFKA_SASL_MECHANISM) to what the brokers accept"
            .to_string(),
        ProbeError::Certificate(_) => "set kafka_ca_file (TALLY_KAFKA_CA_FILE) to the PEM file \
            of the CA that signed the brokers' certificates, and name the brokers as their \
            certificates do in kafka_brokers"
            .to_string(),
        ProbeError::Protocol { listener, .. } => {
            let want = match listener {
                Listener::Tls => "SSL (or SASL_SSL if it also demands authentication)",
                Listener::Plaintext => "PLAINTEXT or SASL_PLAINTEXT",
                Listener::Sasl if protocol.eq_ignore_ascii_case("SSL") => {
                    "SASL_SSL, with kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password"
                }
                Listener::Sasl => {
                    "SASL_PLAINTEXT (SASL_SSL over TLS), with kafka_sasl_mechanism, kafka_sasl_username and kafka_sasl_password"
                }
            };
            format!(
                "set kafka_security_protocol (TALLY_KAFKA_SECURITY_PROTOCOL, now {protocol}) to {want}"
            )
        }
        ProbeError::Unreachable(_) | ProbeError::Client(_) => format!(
            "check kafka_brokers (TALLY_KAFKA_BROKERS, now {}) and that the brokers are running",
            settings.kafka_brokers.as_deref().unwrap_or_default()
        ),
    };
    anyhow::anyhow!("{e}; {hint}")
}

/// The Kafka client settings of `settings`.
pub fn kafka_settings(settings: &Settings, brokers: &str) -> tally_storage::KafkaSettings {
    let mut k = tally_storage::KafkaSettings::new(brokers, &settings.kafka_topic);
    k.group_id = settings.kafka_group.clone();
    k.produce_timeout = Duration::from_millis(settings.kafka_produce_timeout_ms);
    k.limits = limits(settings);
    k.batch_messages = settings.kafka_batch_messages;
    // Checked when the settings were loaded.
    k.security = settings.kafka_security().unwrap_or_default();
    k
}

/// The event rules ingest applies (the Kafka log applies the same to messages).
pub fn limits(settings: &Settings) -> Limits {
    Limits {
        max_events: settings.max_batch_events,
        retention: chrono::Duration::days(i64::from(settings.retention_days)),
        ..Limits::default()
    }
}

impl Stores {
    /// Loads prices and reprice requests from the config store (again).
    pub async fn refresh_pricing(&self) -> Result<(), tally_domain::store::StoreError> {
        self.prices.refresh(self.config.as_ref()).await?;
        self.reprices.refresh(self.config.as_ref()).await
    }
}
