//! Logging (tracing) and the Prometheus recorder, installed once per process, and the gauge of
//! SQLite's heap, read at each scrape ([`record_sqlite_heap`]).
//!
//! Invariant: writing a log line never fails a caller. Lines go to standard output; when it
//! cannot take them (a full disk, a closed pipe) the line is dropped and counted in
//! `tally_log_lines_lost_total`, and nothing else happens — no retry, no report on standard
//! error (which is usually the same full file), and above all no panic in the thread that
//! logged, be it the event log's writer or a request.

use std::io::{self, Write};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Log lines standard output did not take.
pub const LOG_LINES_LOST: &str = "tally_log_lines_lost_total";

/// What SQLite holds on the heap.
pub const SQLITE_HEAP_BYTES: &str = "tally_sqlite_heap_bytes";

/// Starts log output (`TALLY_LOG` or `RUST_LOG` filter, default `info`, in the settings'
/// `log_format`), and says which `TALLY_*` variables were set aside as Kubernetes service links.
pub fn init_logging(settings: &crate::settings::Settings) {
    init_log_output(&settings.log_format);
    if !settings.ignored_env.is_empty() {
        tracing::info!(
            variables = %settings.ignored_env.join(","),
            "ignoring TALLY_* variables shaped like Kubernetes service links (not settings)"
        );
    }
}

fn init_log_output(format: &str) {
    let filter = std::env::var("TALLY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,tower_http=warn".to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(Output)
        .log_internal_errors(false);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Standard output for log lines, as [`LineOutput`]s.
#[derive(Debug, Clone, Copy)]
struct Output;

impl<'a> MakeWriter<'a> for Output {
    type Writer = LineOutput;

    fn make_writer(&'a self) -> LineOutput {
        LineOutput { failed: false }
    }
}

/// One log line on its way to standard output. The first failed write drops the rest of the
/// line (counted once when the line ends) and reports success, so that the subscriber has
/// nothing to report.
struct LineOutput {
    failed: bool,
}

impl Write for LineOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.failed && io::stdout().lock().write_all(buf).is_err() {
            self.failed = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.failed && io::stdout().lock().flush().is_err() {
            self.failed = true;
        }
        Ok(())
    }
}

impl Drop for LineOutput {
    fn drop(&mut self) {
        if self.failed {
            metrics::counter!(LOG_LINES_LOST).increment(1);
        }
    }
}

/// Writes a line to standard output for a person watching a long-running process (a banner, a
/// progress line); like a log line, it is dropped when standard output cannot take it.
pub fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// [`say`] on standard error.
pub fn say_err(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// The process-wide Prometheus handle (installing the recorder on first use).
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?
                .install_recorder()
                .ok()
                .inspect(|_| {
                    metrics::describe_gauge!(
                        SQLITE_HEAP_BYTES,
                        "Heap memory SQLite holds: the page caches of every connection, statements and schemas."
                    );
                    metrics::describe_counter!(
                        LOG_LINES_LOST,
                        "Log lines dropped because standard output did not take them (a full disk, a closed pipe)."
                    );
                })
        })
        .clone()
}

/// Sets [`SQLITE_HEAP_BYTES`] by part: `page_cache`, the page caches of the embedded stores'
/// connections, which fill as they read and write (one pool, bounded by their `cache_size`s in
/// pages; a reader's is dropped whenever a commit changed its file), and `other`.
pub fn record_sqlite_heap() {
    let heap = tally_storage::sqlite_heap_use();
    metrics::gauge!(SQLITE_HEAP_BYTES, "part" => "page_cache").set(heap.page_cache as f64);
    metrics::gauge!(SQLITE_HEAP_BYTES, "part" => "other").set(heap.other as f64);
}
