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
                .context("connecting to Postgres (TALLY_DATABASE_URL)")?;
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
        let analytics: Arc<dyn AnalyticsStore> = match &settings.clickhouse_url {
            Some(url) => {
                let db = &settings.clickhouse_database;
                tally_storage::analytics::clickhouse::migrate(url.expose(), db)
                    .await
                    .context("migrating ClickHouse (TALLY_CLICKHOUSE_URL)")?;
                info!(database = %db, "analytics store: clickhouse");
                Arc::new(tally_storage::ClickHouseAnalyticsStore::new(
                    tally_storage::analytics::clickhouse::client(url.expose(), db),
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

/// The Kafka client settings of `settings`.
pub fn kafka_settings(settings: &Settings, brokers: &str) -> tally_storage::KafkaSettings {
    let mut k = tally_storage::KafkaSettings::new(brokers, &settings.kafka_topic);
    k.group_id = settings.kafka_group.clone();
    k.produce_timeout = Duration::from_millis(settings.kafka_produce_timeout_ms);
    k.limits = limits(settings);
    k.batch_messages = settings.kafka_batch_messages;
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
