//! Progress of the long operator commands (`tally rebuild`, `tally loadgen`, the demo's
//! backfill): a bar with the count done, the rate and the time left when standard error is a
//! terminal (drawn by `indicatif`), and otherwise one plain line every ten seconds, so logs
//! captured by a supervisor or CI stay readable.
//!
//! Invariant: progress goes to standard error only; standard output keeps the commands' reports
//! (loadgen's JSON is read by scripts).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// How often a plain (non-terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// One command's progress towards a known total.
pub struct Progress {
    what: &'static str,
    unit: &'static str,
    total: u64,
    started: Instant,
    shown: Shown,
}

enum Shown {
    Bar(ProgressBar),
    Plain { next: Instant },
}

impl Progress {
    /// Starts reporting `what` (e.g. "rebuild"), counted in `unit` (e.g. "events") towards
    /// `total`.
    pub fn new(what: &'static str, unit: &'static str, total: u64) -> Progress {
        let shown = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!(
                "{what} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} · {{rate}}/s · ETA {{eta}} {{msg}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                let style = style
                    .with_key(
                        "rate",
                        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{}", grouped(state.per_sec().round() as u64));
                        },
                    )
                    .progress_chars("=> ");
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            Shown::Bar(bar)
        } else {
            Shown::Plain {
                next: Instant::now() + PLAIN_EVERY,
            }
        };
        Progress {
            what,
            unit,
            total,
            started: Instant::now(),
            shown,
        }
    }

    /// Reports `done` units so far, with an optional note (e.g. the duplicates dropped).
    pub fn set(&mut self, done: u64, note: &str) {
        match &mut self.shown {
            Shown::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(note.to_string());
            }
            Shown::Plain { next } => {
                if Instant::now() >= *next {
                    *next = Instant::now() + PLAIN_EVERY;
                    let elapsed = self.started.elapsed();
                    crate::telemetry::say_err(&line(
                        self.what, self.unit, done, self.total, elapsed, note,
                    ));
                }
            }
        }
    }

    /// Ends the report at `done` (the bar stays where it got to), a plain report with a last
    /// line.
    pub fn finish(self, done: u64, note: &str) {
        match self.shown {
            Shown::Bar(bar) => {
                bar.set_position(done);
                bar.abandon_with_message(note.to_string());
            }
            Shown::Plain { .. } => {
                let elapsed = self.started.elapsed();
                crate::telemetry::say_err(&line(
                    self.what, self.unit, done, self.total, elapsed, note,
                ));
            }
        }
    }
}

/// A plain progress line: `rebuild: 1,200,000/3,000,000 events (40.0%) · 120,000/s · ETA 15s`.
pub fn line(
    what: &str,
    unit: &str,
    done: u64,
    total: u64,
    elapsed: Duration,
    note: &str,
) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    };
    let percent = if total > 0 {
        100.0 * done.min(total) as f64 / total as f64
    } else {
        100.0
    };
    let eta = if done >= total {
        "done".to_string()
    } else if rate > 0.0 {
        format!("ETA {}s", ((total - done) as f64 / rate).ceil() as u64)
    } else {
        "ETA unknown".to_string()
    };
    let mut out = format!(
        "{what}: {}/{} {unit} ({percent:.1}%) · {}/s · {eta}",
        grouped(done),
        grouped(total),
        grouped(rate.round() as u64)
    );
    if !note.is_empty() {
        out.push_str(" · ");
        out.push_str(note);
    }
    out
}

/// `1234567` → `1,234,567` (the console's number format).
pub fn grouped(n: u64) -> String {
    tally_console::format::grouped(u128::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_line_says_count_share_rate_and_time_left() {
        // 1.2 M of 3 M in 10 s: 120,000/s, 1.8 M left → 15 s.
        let l = line(
            "rebuild",
            "events",
            1_200_000,
            3_000_000,
            Duration::from_secs(10),
            "",
        );
        assert_eq!(
            l,
            "rebuild: 1,200,000/3,000,000 events (40.0%) · 120,000/s · ETA 15s"
        );
    }

    #[test]
    fn a_finished_line_says_done_and_carries_the_note() {
        let l = line(
            "loadgen",
            "events",
            500,
            500,
            Duration::from_millis(250),
            "0 failed",
        );
        assert_eq!(
            l,
            "loadgen: 500/500 events (100.0%) · 2,000/s · done · 0 failed"
        );
    }

    #[test]
    fn nothing_done_yet_has_no_estimate() {
        let l = line("backfill", "events", 0, 7, Duration::ZERO, "");
        assert_eq!(l, "backfill: 0/7 events (0.0%) · 0/s · ETA unknown");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
    }
}
