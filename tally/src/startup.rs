//! Building and running the all-in-one application: event log, projector, analytics and config
//! stores, ingest and query routes behind one HTTP listener.
//!
//! `Application::build` opens the stores, starts the projector and binds the listener (port 0
//! picks a free port, which is how tests run it); `run_until_stopped` serves until the shutdown
//! future resolves, then stops taking requests, lets in-flight appends finish and stops the
//! projector after its current commit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tally_core::clock::{Clock, SystemClock};
use tally_core::embedded::{SqliteAnalyticsStore, SqliteConfigStore, SqliteEventLog};
use tally_core::pricing::PriceCache;
use tally_core::store::{AnalyticsStore, ConfigStore, EventLog};
use tally_ingest::{IngestConfig, IngestState};
use tally_projector::{Projector, ProjectorConfig, ProjectorStatus};
use tally_query_api::{PipelineProbe, PipelineStatus, QueryState};
use tally_schemas::validate::Limits;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::settings::Settings;
use crate::telemetry;

/// The stores and shared state of a running application (what demo traffic and tests use).
#[derive(Clone)]
pub struct Stores {
    pub log: Arc<dyn EventLog>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub config: Arc<dyn ConfigStore>,
    pub prices: Arc<PriceCache>,
    /// Held for as long as any clone lives: one process per data directory.
    _lock: Arc<std::fs::File>,
}

/// Takes the data directory's lock file, so two processes (say a server and a rebuild) never
/// project into the same stores at once. The OS releases it when the process dies.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another tally process (stop it first)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

impl Stores {
    /// Opens the stores the settings choose: each is the distributed one when its URL is set,
    /// the embedded one in `settings.data_dir` otherwise. Postgres is migrated on the way.
    pub async fn open(settings: &Settings) -> anyhow::Result<Stores> {
        let mut stores = Self::open_embedded(settings)?;
        if let Some(url) = &settings.database_url {
            let pool = tally_core::postgres::connect(url.expose())
                .await
                .context("connecting to Postgres (TALLY_DATABASE_URL)")?;
            tally_core::postgres::migrate(&pool)
                .await
                .context("migrating Postgres")?;
            stores.config = Arc::new(tally_core::postgres::PostgresConfigStore::new(pool));
            info!("configuration store: postgres");
        }
        if let Some(url) = &settings.clickhouse_url {
            let db = &settings.clickhouse_database;
            tally_core::clickhouse::migrate(url.expose(), db)
                .await
                .context("migrating ClickHouse (TALLY_CLICKHOUSE_URL)")?;
            let client = tally_core::clickhouse::client(url.expose(), db);
            stores.analytics = Arc::new(tally_core::clickhouse::ClickHouseAnalyticsStore::new(
                client,
            ));
            info!(database = %db, "analytics store: clickhouse");
        }
        Ok(stores)
    }

    /// Opens the embedded stores in `settings.data_dir`.
    pub fn open_embedded(settings: &Settings) -> anyhow::Result<Stores> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
        let dir = &settings.data_dir;
        let lock = lock_data_dir(dir)?;
        Ok(Stores {
            log: Arc::new(
                SqliteEventLog::open(dir, settings.log_queue_depth)
                    .context("opening the event log")?,
            ),
            analytics: Arc::new(
                SqliteAnalyticsStore::open(dir).context("opening the analytics store")?,
            ),
            config: Arc::new(SqliteConfigStore::open(dir).context("opening the config store")?),
            prices: Arc::new(PriceCache::default()),
            _lock: Arc::new(lock),
        })
    }
}

pub fn projector_config(settings: &Settings) -> ProjectorConfig {
    ProjectorConfig {
        dedup_window_s: settings.dedup_window_secs,
        max_batch_events: settings.projector_batch_events,
        ..ProjectorConfig::default()
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    stores: Stores,
    stop: watch::Sender<bool>,
    projector: JoinHandle<()>,
    /// Tasks that hold the stores (and so the data-dir lock) and end on `stop`.
    background: Vec<JoinHandle<()>>,
    status: watch::Receiver<ProjectorStatus>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let _ = telemetry::prometheus();
        let stores = Stores::open(&settings).await?;
        stores
            .prices
            .refresh(stores.config.as_ref())
            .await
            .context("loading prices")?;
        let (stop, stop_rx) = watch::channel(false);
        let (projector, status) = Projector::new(
            stores.log.clone(),
            stores.analytics.clone(),
            projector_config(&settings),
        );
        let projector = tokio::spawn(projector.run(stop_rx.clone()));
        let price_refresh = tokio::spawn(refresh_prices(stores.clone(), stop_rx.clone()));
        let retention = chrono::Duration::days(i64::from(settings.retention_days));
        let retention_task = tokio::spawn(crate::retention::run(
            stores.clone(),
            clock.clone(),
            retention,
            status.clone(),
            Duration::from_secs(3600),
            stop_rx,
        ));
        let router = build_router(&settings, &stores, clock, status.clone());
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Application {
            listener,
            router,
            stores,
            stop,
            projector,
            background: vec![price_refresh, retention_task],
            status,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn stores(&self) -> Stores {
        self.stores.clone()
    }

    pub fn projector_status(&self) -> watch::Receiver<ProjectorStatus> {
        self.status.clone()
    }

    /// Serves until `shutdown` resolves, then drains and stops the projector.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        info!(addr = %self.local_addr(), "tally listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("http server")?;
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(30), self.projector)
            .await
            .is_err()
        {
            warn!("projector did not stop within 30 s");
        }
        for task in self.background {
            let _ = task.await;
        }
        info!("tally stopped");
        Ok(())
    }
}

fn pipeline_probe(
    log: Arc<dyn EventLog>,
    status: watch::Receiver<ProjectorStatus>,
) -> PipelineProbe {
    Arc::new(move || {
        let s = status.borrow().clone();
        let in_log = log.appended_events();
        PipelineStatus {
            ready: s.started,
            events_in_log: in_log,
            events_projected: s.events_applied,
            duplicates_dropped: s.duplicates_dropped,
            lag_events: in_log.saturating_sub(s.events_consumed()),
            last_error: s.last_error,
        }
    })
}

fn build_router(
    settings: &Settings,
    stores: &Stores,
    clock: Arc<dyn Clock>,
    status: watch::Receiver<ProjectorStatus>,
) -> Router {
    let probe = pipeline_probe(stores.log.clone(), status);
    let lag_probe = probe.clone();
    let ingest = IngestState::new(
        stores.log.clone(),
        stores.prices.clone(),
        clock.clone(),
        IngestConfig {
            limits: Limits {
                max_events: settings.max_batch_events,
                retention: chrono::Duration::days(i64::from(settings.retention_days)),
                ..Limits::default()
            },
            max_body_bytes: settings.max_body_bytes,
            max_in_flight: settings.max_in_flight,
            max_lag_events: settings.max_lag_events,
        },
        Arc::new(move || lag_probe().lag_events),
    );
    let query = QueryState {
        analytics: stores.analytics.clone(),
        config: stores.config.clone(),
        clock,
        pipeline: probe,
    };
    Router::new()
        .merge(tally_ingest::router(ingest))
        .merge(tally_query_api::router(query))
        .route("/metrics", get(metrics))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn metrics() -> impl IntoResponse {
    match telemetry::prometheus() {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => tally_core::http::ApiError::unavailable("metrics recorder is not installed", 5)
            .into_response(),
    }
}

/// Reloads the price book every few seconds so price changes reach ingest.
async fn refresh_prices(stores: Stores, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = stores.prices.refresh(stores.config.as_ref()).await {
            warn!(error = %err, "failed to reload prices");
        }
    }
}
