//! The `tally` command line: `demo`, `serve`, `ingest`, `projector`, `query-api`, `rebuild`,
//! `adopt-topic`, `migrate`, `keys`, `loadgen`, `bench-query`, `bench-alerts`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;

use tally::startup::Role as ProcessRole;
use tally::{demo, loadgen, stores, telemetry, Application, Settings};
use tally_domain::access::Role;
use tally_domain::clock::SystemClock;

mod allocator;

#[derive(Parser)]
#[command(name = "tally", version, about = "Event-sourced AI usage analytics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, clap::Args)]
struct ServerArgs {
    /// Address to listen on [env: TALLY_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// Data directory [env: TALLY_DATA_DIR] [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML config file [env: TALLY_CONFIG]
    #[arg(long, env = "TALLY_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with seeded configuration and synthetic traffic.
    Demo {
        #[command(flatten)]
        server: ServerArgs,
        /// Days of history to backfill.
        #[arg(long, default_value_t = 14)]
        history_days: i64,
        /// Live events per second at the daily peak (the backfilled history has 40 a minute
        /// there: live traffic of the same order keeps today's numbers comparable with it).
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
    },
    /// Serve ingest, projector and query API in one process.
    Serve {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Serve only the ingest API (POST /v1/events → event log), plus health and metrics.
    Ingest {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run only the projector (event log → analytics store), with health and metrics over HTTP.
    Projector {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Serve only the query API (dashboards, spending, model comparison), plus health and metrics.
    QueryApi {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Drop all projections and replay the event log (run while the server or the projectors
    /// are stopped). Refused when the analytics store's checkpoints belong to another topic or
    /// it also holds retired topics' counts, unless --start-clean.
    Rebuild {
        #[command(flatten)]
        server: ServerArgs,
        /// Also drop what other topics counted, and project the configured topic alone.
        #[arg(long)]
        start_clean: bool,
    },
    /// When the projector refuses a new or recreated topic: project it from its beginning into
    /// the same rollups, keeping what the previous topic counted (ids seen in both count once
    /// within the dedup window). Waiting projectors start within 10 s.
    AdoptTopic {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Apply migrations to Postgres (TALLY_DATABASE_URL) and ClickHouse (TALLY_CLICKHOUSE_URL) and create the Kafka topic (TALLY_KAFKA_BROKERS), then exit.
    Migrate {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create, list or revoke API keys (in the configuration store: the data directory's, or
    /// Postgres with TALLY_DATABASE_URL). Works while a server runs.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Measure ingest throughput, ack latency and freshness against a running server.
    Loadgen(loadgen::LoadgenArgs),
    /// Measure the latency of one GET against a running server.
    BenchQuery(loadgen::BenchQueryArgs),
    /// Measure how soon a budget alert reaches its webhook after its event is acknowledged.
    BenchAlerts(tally::bench_alerts::BenchAlertsArgs),
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it once, as JSON with the secret in `key`.
    Create {
        /// What the key is for (shown in listings).
        #[arg(long)]
        name: String,
        /// platform_admin | viewer | finance | ingest
        #[arg(long, value_parser = parse_role)]
        role: tally_domain::access::Role,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List every key (never a secret), revoked ones included, as JSON.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Revoke a key by id.
    Revoke {
        id: uuid::Uuid,
        #[command(flatten)]
        server: ServerArgs,
    },
}

fn parse_role(s: &str) -> Result<tally_domain::access::Role, String> {
    tally_domain::access::Role::parse(s)
        .ok_or_else(|| "must be one of platform_admin, viewer, finance, ingest".to_string())
}

async fn keys(action: KeysAction) -> anyhow::Result<()> {
    let server = match &action {
        KeysAction::Create { server, .. }
        | KeysAction::List { server }
        | KeysAction::Revoke { server, .. } => server,
    };
    let config = stores::open_config_store(&settings(server)?).await?;
    let now = chrono::Utc::now();
    let out = match action {
        KeysAction::Create { name, role, .. } => {
            let created = tally::keys::create(config.as_ref(), &name, role, now).await?;
            eprintln!("the secret in \"key\" is shown this once: store it now");
            serde_json::to_string_pretty(&created)?
        }
        KeysAction::List { .. } => serde_json::to_string_pretty(&config.list_api_keys().await?)?,
        KeysAction::Revoke { id, .. } => {
            serde_json::to_string_pretty(&tally::keys::revoke(config.as_ref(), id, now).await?)?
        }
    };
    println!("{out}");
    Ok(())
}

fn settings(args: &ServerArgs) -> anyhow::Result<Settings> {
    let mut s = Settings::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = &args.listen {
        s.listen = listen.clone();
    }
    if let Some(dir) = &args.data_dir {
        s.data_dir = dir.clone();
    }
    Ok(s)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts: this may start the binary again (`tally::host`).
    tally::host::tune_string_functions();
    allocator::configure().context("configuring the allocators")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { server } => serve(&server, ProcessRole::All).await,
        Command::Ingest { server } => serve(&server, ProcessRole::Ingest).await,
        Command::Projector { server } => serve(&server, ProcessRole::Projector).await,
        Command::QueryApi { server } => serve(&server, ProcessRole::QueryApi).await,
        Command::Demo {
            server,
            history_days,
            rate,
        } => {
            let s = settings(&server)?;
            telemetry::init_logging(&s);
            let app = Application::build(s).await?;
            let base = format!("http://{}", app.local_addr());
            let stores = app.stores();
            let now = chrono::Utc::now();
            demo::seed(&stores, now)
                .await
                .context("seeding demo configuration")?;
            let config = stores.config.as_ref();
            let admin = tally::keys::create(config, "demo admin", Role::PlatformAdmin, now).await?;
            let traffic_key =
                tally::keys::create(config, "demo traffic", Role::Ingest, now).await?;
            print_demo_banner(&base, &admin.key);
            let traffic =
                tokio::spawn(demo::drive(base, traffic_key.key, history_days, 40.0, rate));
            let result = app.run_until_stopped(shutdown_signal()).await;
            traffic.abort();
            result
        }
        Command::Rebuild {
            server,
            start_clean,
        } => {
            let s = settings(&server)?;
            telemetry::init_logging(&s);
            let stores = stores::Stores::open(&s).await?;
            let report = tally::projection::rebuild(&stores, &s, start_clean).await?;
            println!(
                "rebuilt: {} events applied, {} duplicates dropped, in {:.1} s",
                report.events_applied,
                report.duplicates_dropped,
                report.elapsed.as_secs_f64()
            );
            Ok(())
        }
        Command::AdoptTopic { server } => {
            let s = settings(&server)?;
            telemetry::init_logging(&s);
            let stores = stores::Stores::open(&s).await?;
            let plan = tally::projection::adopt_topic(&stores, &s).await?;
            println!(
                "adopted log {} as epoch {} with {} partition(s), each projected from its beginning; log {} (epoch {}) is retired and what it counted stays",
                plan.adopted.log,
                plan.adopted.epoch,
                plan.dedup_from.len(),
                plan.retired_log,
                plan.retired_epoch
            );
            Ok(())
        }
        Command::Migrate { server } => {
            let s = settings(&server)?;
            telemetry::init_logging(&s);
            for line in stores::migrate(&s, stores::MIGRATE_WAIT).await? {
                println!("{line}");
            }
            if s.database_url.is_none() && s.clickhouse_url.is_none() && s.kafka_brokers.is_none() {
                println!("no TALLY_DATABASE_URL, TALLY_CLICKHOUSE_URL or TALLY_KAFKA_BROKERS: the embedded stores create their schema on open; nothing to migrate");
            }
            Ok(())
        }
        Command::Keys { action } => keys(action).await,
        Command::Loadgen(args) => {
            let report = loadgen::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::BenchQuery(args) => {
            let report = loadgen::bench_query(args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::BenchAlerts(args) => {
            let report = tally::bench_alerts::run(args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

async fn serve(server: &ServerArgs, role: ProcessRole) -> anyhow::Result<()> {
    let s = settings(server)?;
    telemetry::init_logging(&s);
    tally::host::log_tuning();
    let app = Application::build_role(s, role, Arc::new(SystemClock)).await?;
    telemetry::say(&format!(
        "tally ({role:?}) serving on http://{}",
        app.local_addr()
    ));
    app.run_until_stopped(shutdown_signal()).await
}

fn print_demo_banner(base: &str, admin_key: &str) {
    let api = format!("{base}/api/platform/ai-management");
    telemetry::say(&format!(
        "tally demo running on {base} (synthetic traffic; history is being backfilled)
  console:          {base}/  (sign in with the admin API key)
  admin API key:    {admin_key}
  (send it as `Authorization: Bearer <key>`, e.g. curl -H \"Authorization: Bearer {admin_key}\" {api}/overview)
  overview:         {api}/overview
  features:         {api}/features
  chatbot metrics:  {api}/features/chatbot/metrics?time_range=24h
  spending:         {api}/analytics/spending?group_by=feature,model
  model comparison: {api}/analytics/performance
  prometheus:       {base}/metrics
  event schema:     {base}/v1/schema/usage-event"
    ));
}
