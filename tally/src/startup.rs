//! Building and running the application: event log, projector, analytics and config stores,
//! ingest and query routes behind one HTTP listener — all of them (`tally serve`), or one
//! [`Role`] per process (`tally ingest`, `tally projector`, `tally query-api`).
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
use axum::Router;
use tally_alerting::{Deliverer, Evaluator};
use tally_domain::clock::{Clock, SystemClock};
use tally_domain::recording::Recorder;
use tally_domain::store::EventLog;
use tally_http::auth::{Access, Gate};
use tally_http::route::{Route, RouteInfo, Routes};
use tally_ingest::{Backlog, IngestConfig, IngestState};
use tally_projector::{FilterFiles, Projector, ProjectorConfig, ProjectorStatus, ReplayHandle};
use tally_query_api::{PipelineProbe, PipelineStatus, QueryState};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::settings::Settings;
use crate::stores::{limits, Stores};
use crate::telemetry;

/// What one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ingest, projector and query API (`tally serve`, `tally demo`).
    All,
    /// `POST /v1/events` → event log.
    Ingest,
    /// Event log → analytics store (HTTP: health and metrics only).
    Projector,
    /// Analytics and config stores → dashboards.
    QueryApi,
}

impl Role {
    fn ingests(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }
    fn projects(self) -> bool {
        matches!(self, Role::All | Role::Projector)
    }
    fn queries(self) -> bool {
        matches!(self, Role::All | Role::QueryApi)
    }
}

/// The alert evaluator of a projecting process (one per deployment evaluates at a time: the
/// evaluator's lease, see `tally_alerting::evaluator`).
fn evaluator(settings: &Settings, stores: &Stores, clock: Arc<dyn Clock>) -> Evaluator {
    Evaluator {
        config: stores.config.clone(),
        analytics: stores.analytics.clone(),
        clock: clock.clone(),
        deliverer: Deliverer {
            config: stores.config.clone(),
            clock,
            sender: settings.notifier(),
            retry: settings.retry_policy(),
            public_url: settings.public_url.clone(),
        },
        interval: Duration::from_millis(settings.alert_interval_ms),
    }
}

/// Where the projector maps its sealed dedup filters from: `dedup_filter_dir` (an error naming
/// it when it cannot be used), or `<data_dir>/dedup-filters` (the heap, with a warning, when
/// that cannot be used).
pub fn dedup_filter_files(settings: &Settings) -> anyhow::Result<Option<FilterFiles>> {
    match &settings.dedup_filter_dir {
        Some(dir) => FilterFiles::new(dir).map(Some).with_context(|| {
            format!(
                "dedup_filter_dir (TALLY_DEDUP_FILTER_DIR) {}: cannot create and map files there; \
                 point it at a writable directory on a disk",
                dir.display()
            )
        }),
        None => {
            let dir = settings.data_dir.join("dedup-filters");
            match FilterFiles::new(&dir) {
                Ok(files) => Ok(Some(files)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e,
                        "cannot map dedup filters from files here; they stay in memory \
                         (set dedup_filter_dir / TALLY_DEDUP_FILTER_DIR to a writable directory)");
                    Ok(None)
                }
            }
        }
    }
}

pub fn projector_config(settings: &Settings, stores: &Stores) -> ProjectorConfig {
    ProjectorConfig {
        dedup_window_s: settings.dedup_window_secs,
        dedup_open_entries: settings.dedup_open_entries,
        max_batch_events: settings.projector_batch_events,
        prices: Some(stores.prices.clone()),
        reprices: Some(stores.reprices.clone()),
        ..ProjectorConfig::default()
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    routes: Vec<RouteInfo>,
    stores: Stores,
    stop: watch::Sender<bool>,
    /// Turns true when the server begins shutting down, so long-lived answers (event streams)
    /// end and the graceful shutdown can complete.
    closing: watch::Sender<bool>,
    projector: Option<JoinHandle<()>>,
    /// Tasks that hold the stores (and so the data-dir lock) and end on `stop`.
    background: Vec<JoinHandle<()>>,
    status: watch::Receiver<ProjectorStatus>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_role(settings, Role::All, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        Self::build_role(settings, Role::All, clock).await
    }

    pub async fn build_role(
        settings: Settings,
        role: Role,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let _ = telemetry::prometheus();
        let stores = Stores::open_with_clock(&settings, clock.clone()).await?;
        if let Some(secret) = &settings.bootstrap_admin_key {
            crate::keys::ensure_bootstrap_admin(
                stores.config.as_ref(),
                secret.expose(),
                clock.now(),
            )
            .await
            .context("creating the bootstrap admin key")?;
        }
        stores.refresh_pricing().await.context("loading prices")?;
        let (stop, stop_rx) = watch::channel(false);
        let mut config = projector_config(&settings, &stores);
        if role.projects() {
            config.dedup_files = dedup_filter_files(&settings)?;
        }
        let (projector, status) =
            Projector::new(stores.log.clone(), stores.analytics.clone(), config);
        let mut background = vec![tokio::spawn(refresh_prices(
            stores.clone(),
            stop_rx.clone(),
        ))];
        let mut replay = None;
        let projector = if role.projects() {
            let retention = chrono::Duration::days(i64::from(settings.retention_days));
            background.push(tokio::spawn(crate::retention::run(
                stores.clone(),
                clock.clone(),
                retention,
                status.clone(),
                Duration::from_secs(settings.retention_interval_secs),
                stop_rx.clone(),
            )));
            background.push(tokio::spawn(
                evaluator(&settings, &stores, clock.clone()).run(stop_rx.clone()),
            ));
            if settings.kafka_brokers.is_none() {
                // The embedded log has one projector, this one: it may start over on request.
                let (handle, requests) = ReplayHandle::new();
                replay = Some(handle);
                Some(tokio::spawn(projector.run_replayable(stop_rx, requests)))
            } else {
                Some(tokio::spawn(projector.run(stop_rx)))
            }
        } else {
            None
        };
        let (closing, closing_rx) = watch::channel(false);
        let (router, routes) = build_router(
            &settings,
            role,
            &stores,
            clock,
            status.clone(),
            closing_rx,
            replay,
        );
        let listener = TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(Application {
            listener,
            router,
            routes,
            stores,
            stop,
            closing,
            projector,
            background,
            status,
        })
    }

    /// Every route served, with the access it needs (the route-by-role test walks these).
    pub fn routes(&self) -> &[RouteInfo] {
        &self.routes
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
        let closing = self.closing;
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = closing.send(true);
            })
            .await
            .context("http server")?;
        let _ = self.stop.send(true);
        if let Some(projector) = self.projector {
            if tokio::time::timeout(Duration::from_secs(30), projector)
                .await
                .is_err()
            {
                warn!("projector did not stop within 30 s");
            }
        }
        for task in self.background {
            let _ = task.await;
        }
        info!("tally stopped");
        Ok(())
    }
}

/// The pipeline as this process sees it. A process without a projector (ingest, query-api)
/// is ready once it runs; lag is then the projectors' business (their `/metrics`).
fn pipeline_probe(
    log: Arc<dyn EventLog>,
    status: watch::Receiver<ProjectorStatus>,
    projects: bool,
) -> PipelineProbe {
    Arc::new(move || {
        let s = status.borrow().clone();
        let consumed = s.events_consumed();
        let lag = log.backlog(&s.position, consumed);
        PipelineStatus {
            ready: (s.started && s.checkpoint_mismatch.is_none()) || !projects,
            checkpoint_mismatch: s.checkpoint_mismatch,
            events_in_log: consumed + lag,
            events_projected: s.events_applied,
            duplicates_dropped: s.duplicates_dropped,
            lag_events: if projects { lag } else { 0 },
            last_error: s.last_error,
        }
    })
}

fn build_router(
    settings: &Settings,
    role: Role,
    stores: &Stores,
    clock: Arc<dyn Clock>,
    status: watch::Receiver<ProjectorStatus>,
    closing: watch::Receiver<bool>,
    replay: Option<ReplayHandle>,
) -> (Router, Vec<RouteInfo>) {
    let probe = pipeline_probe(stores.log.clone(), status, role.projects());
    let lag_probe = probe.clone();
    let recorder = Recorder::new(stores.log.clone(), stores.prices.clone());
    let ingest = IngestState::new(
        recorder.clone(),
        clock.clone(),
        IngestConfig {
            limits: limits(settings),
            max_body_bytes: settings.max_body_bytes,
            max_in_flight: settings.max_in_flight,
            max_lag_events: settings.max_lag_events,
            // Pacing needs exact counts: the embedded log's. A broker log's size comes from
            // watermarks sampled every few seconds, in messages; there the backlog waits in the
            // topic and `max_lag_events` governs.
            max_lag: match settings.kafka_brokers {
                None => Duration::from_millis(settings.max_lag_ms),
                Some(_) => Duration::ZERO,
            },
            ..IngestConfig::default()
        },
        Arc::new(move || {
            let pipeline = lag_probe();
            Backlog {
                in_log: pipeline.events_in_log,
                unprojected: pipeline.lag_events,
                projecting: role.projects() && pipeline.ready && pipeline.last_error.is_none(),
            }
        }),
    );
    let query = QueryState {
        analytics: stores.analytics.clone(),
        config: stores.config.clone(),
        recorder,
        clock,
        pipeline: probe,
        closing,
        reprices: stores.reprices.clone(),
        replay: replay.map(|handle| -> tally_query_api::Replayer {
            Arc::new(move || {
                let handle = handle.clone();
                Box::pin(async move { handle.replay().await })
            })
        }),
        notifier: settings.notifier(),
        public_url: settings.public_url.clone(),
        row_cache: Arc::new(tally_query_api::row_cache::RowCache::new(
            settings.query_cache_mib,
        )),
    };
    let gate = Gate::new(stores.config.clone());
    let metrics_access = if settings.metrics_public {
        Access::Public
    } else {
        Access::ReadMetrics
    };
    // The contract documents every route served, itself included, so it is written once the
    // catalog is complete.
    let contract: Arc<std::sync::OnceLock<serde_json::Value>> = Arc::default();
    let served = contract.clone();
    // Business metrics are served where the dashboards are (query-api roles): every replica
    // serves the same values from the stores, and ingest or projector processes do not repeat
    // them under other instance labels.
    let business = role.queries().then(|| query.clone());
    let (mut router, mut routes) = Routes::new(gate.clone())
        .serve(
            Route::get(
                "/metrics",
                metrics_access,
                "Prometheus metrics: the pipeline's own and, on query-api processes, the business's",
                move || metrics(business.clone()),
            )
            .media("text/plain; version=0.0.4"),
        )
        .serve(
            Route::get(
                "/openapi.json",
                Access::Public,
                "This API's contract (OpenAPI 3.1)",
                move || {
                    let served = served.clone();
                    async move { axum::Json(served.get().cloned().unwrap_or_default()) }
                },
            )
            .returns::<serde_json::Value>(200),
        )
        .finish(());
    let mut add = |(r, catalog): (Router, Vec<RouteInfo>)| {
        router = std::mem::take(&mut router).merge(r);
        routes.extend(catalog);
    };
    if role.ingests() {
        add(tally_ingest::router(ingest, gate));
    }
    if role.queries() {
        let (api, catalog) = tally_query_api::router(query.clone());
        // The console calls the API's own routes in-process, for its signed-in sessions.
        let console = tally_console::Console {
            api: tally_console::api::Api::new(api.clone()),
            config: query.config.clone(),
            clock: query.clock.clone(),
            session_ttl: chrono::Duration::minutes(
                i64::try_from(settings.session_minutes).unwrap_or(i64::MAX / 60_000),
            ),
            secure_cookies: settings.public_url.starts_with("https://"),
        };
        add((api, catalog));
        router = std::mem::take(&mut router).merge(tally_console::router(console));
    } else {
        add(tally_query_api::health_router(query));
    }
    let _ = contract.set(tally_http::openapi::document(
        &routes,
        env!("CARGO_PKG_VERSION"),
    ));
    (
        router.layer(tower_http::trace::TraceLayer::new_for_http()),
        routes,
    )
}

async fn metrics(business: Option<QueryState>) -> axum::response::Response {
    let Some(handle) = telemetry::prometheus() else {
        return tally_http::http::ApiError::unavailable("metrics recorder is not installed", 5)
            .into_response();
    };
    telemetry::record_sqlite_heap();
    let mut text = handle.render();
    if let Some(state) = business {
        match tally_query_api::exposition::render(&state).await {
            Ok(more) => text.push_str(&more),
            Err(e) => return tally_http::http::ApiError::from(e).into_response(),
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// Reloads the price book and reprice requests every few seconds so price changes reach
/// ingest and new requests reach the projector.
async fn refresh_prices(stores: Stores, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        if let Err(err) = stores.refresh_pricing().await {
            warn!(error = %err, "failed to reload prices");
        }
    }
}
