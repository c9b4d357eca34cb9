//! Test runs: every chosen test case tried on every chosen model (`POST /test-cases/execute`),
//! each call's output graded by the case's check, and the run's numbers per model
//! (`GET /test-runs/{id}`).
//!
//! A run is one document: its plan (cases × models, fixed when it starts) and, per call, the
//! outcome once known. The numbers per model ([`TestRun::summaries`]) are computed from the
//! calls every time they are shown, never stored: pass rate over graded calls, exact latency
//! percentiles (nearest rank over the calls' measured latencies), tokens and exact cost.
//! A run that stopped hearing from its runner (the process ended) for [`STALE_AFTER_S`] is
//! reported as `interrupted`. A listing reads the run's [`TestRunSummary`], stored beside it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tally_schemas::event::Status;
use tally_schemas::Pico;
use uuid::Uuid;

use super::Grade;

/// Most calls (cases × models) in one run.
pub const MAX_RUN_CALLS: usize = 500;

/// A running run not updated for this long is reported as `interrupted`: no single call may
/// take longer (the provider call times out after 60 s).
pub const STALE_AFTER_S: i64 = 180;

named_enum!(
    /// Where a run stands: `running`, `finished`, or `interrupted` (its runner stopped).
    RunStatus { Running => "running", Finished => "finished", Interrupted => "interrupted" }
);

/// A model a run calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunModel {
    pub model_id: Uuid,
    pub provider: String,
    pub model: String,
}

/// One call: a case on a model, and once made, its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunCall {
    pub test_case_id: Uuid,
    pub test_case: String,
    pub model_id: Uuid,
    pub prompt_id: Uuid,
    pub prompt_version: i32,
    /// The rendered prompt sent.
    pub input: String,
    /// Absent until the call is made.
    pub outcome: Option<CallOutcome>,
}

/// What a call gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallOutcome {
    pub status: Status,
    pub output: Option<String>,
    pub error: Option<String>,
    pub latency_us: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Exact pico-dollars at the model's price in force at the call; absent when unpriced.
    pub cost_pico: Option<i64>,
    /// The check's verdict on the output (a failed call fails its check).
    pub grade: Grade,
    /// The usage event that recorded the call.
    pub event_id: String,
}

/// A run, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestRun {
    pub id: Uuid,
    /// The prompt of the run's cases, when they share one.
    pub prompt_id: Option<Uuid>,
    pub models: Vec<RunModel>,
    pub calls: Vec<RunCall>,
    pub status: RunStatus,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The last call recorded (or the start).
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run without its calls, with its numbers per model: what a listing shows. Stored beside
/// the run at every save, computed by [`TestRun::summary`] (the same numbers as the run's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestRunSummary {
    pub id: Uuid,
    pub prompt_id: Option<Uuid>,
    pub status: RunStatus,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub calls_total: usize,
    pub calls_completed: usize,
    pub models: Vec<ModelSummary>,
}

impl TestRunSummary {
    /// The status as of `now` (see [`TestRun::status_at`]).
    pub fn status_at(&self, now: DateTime<Utc>) -> RunStatus {
        status_at(self.status, self.updated_at, now)
    }
}

/// A stored status as of `now`: running but not updated for [`STALE_AFTER_S`] is
/// `interrupted`.
fn status_at(status: RunStatus, updated_at: DateTime<Utc>, now: DateTime<Utc>) -> RunStatus {
    match status {
        RunStatus::Running if (now - updated_at).num_seconds() >= STALE_AFTER_S => {
            RunStatus::Interrupted
        }
        status => status,
    }
}

/// One model's numbers in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelSummary {
    pub model_id: Uuid,
    pub provider: String,
    pub model: String,
    pub calls: usize,
    /// Calls made so far.
    pub completed: usize,
    /// Calls whose check passed, and those graded (the `none` check grades nothing).
    pub passed: usize,
    pub graded: usize,
    /// `passed / graded`, 0–100 (`None` before anything was graded).
    pub pass_rate: Option<f64>,
    /// Calls that failed (error or timeout).
    pub failures: usize,
    /// Nearest-rank percentiles of the calls' latencies, ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Exact cost of the priced calls, decimal US dollars.
    pub cost_usd: String,
    pub unpriced_calls: usize,
}

/// Nearest-rank quantile `q` of `sorted` (ascending), in ms.
fn nearest_rank_ms(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64 / 1000.0)
}

impl TestRun {
    /// The status as of `now`: a running run not updated for [`STALE_AFTER_S`] is
    /// `interrupted`.
    pub fn status_at(&self, now: DateTime<Utc>) -> RunStatus {
        status_at(self.status, self.updated_at, now)
    }

    /// The run without its calls, with its numbers per model.
    pub fn summary(&self) -> TestRunSummary {
        TestRunSummary {
            id: self.id,
            prompt_id: self.prompt_id,
            status: self.status,
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            calls_total: self.calls.len(),
            calls_completed: self.calls.iter().filter(|c| c.outcome.is_some()).count(),
            models: self.summaries(),
        }
    }

    /// Each model's numbers, in the run's model order.
    pub fn summaries(&self) -> Vec<ModelSummary> {
        self.models
            .iter()
            .map(|m| {
                let calls: Vec<&RunCall> = self
                    .calls
                    .iter()
                    .filter(|c| c.model_id == m.model_id)
                    .collect();
                let done: Vec<&CallOutcome> =
                    calls.iter().filter_map(|c| c.outcome.as_ref()).collect();
                let graded = done.iter().filter(|o| o.grade.passed.is_some()).count();
                let passed = done.iter().filter(|o| o.grade.passed == Some(true)).count();
                let mut latencies: Vec<u64> = done.iter().map(|o| o.latency_us).collect();
                latencies.sort_unstable();
                let cost: i128 = done
                    .iter()
                    .filter_map(|o| o.cost_pico)
                    .map(i128::from)
                    .sum();
                ModelSummary {
                    model_id: m.model_id,
                    provider: m.provider.clone(),
                    model: m.model.clone(),
                    calls: calls.len(),
                    completed: done.len(),
                    passed,
                    graded,
                    pass_rate: (graded > 0).then(|| passed as f64 * 100.0 / graded as f64),
                    failures: done.iter().filter(|o| o.status != Status::Success).count(),
                    latency_p50_ms: nearest_rank_ms(&latencies, 0.50),
                    latency_p95_ms: nearest_rank_ms(&latencies, 0.95),
                    input_tokens: done.iter().map(|o| o.input_tokens).sum(),
                    output_tokens: done.iter().map(|o| o.output_tokens).sum(),
                    cost_usd: Pico(cost).to_decimal_string(),
                    unpriced_calls: done.iter().filter(|o| o.cost_pico.is_none()).count(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_767_225_600 + s, 0)
            .single()
            .expect("a time")
    }

    fn call(model: Uuid, outcome: Option<(u64, Option<bool>, Option<i64>, Status)>) -> RunCall {
        RunCall {
            test_case_id: Uuid::nil(),
            test_case: "case".into(),
            model_id: model,
            prompt_id: Uuid::nil(),
            prompt_version: 1,
            input: "hi".into(),
            outcome: outcome.map(|(ms, passed, cost, status)| CallOutcome {
                status,
                output: Some("out".into()),
                error: None,
                latency_us: ms * 1000,
                input_tokens: 10,
                output_tokens: 3,
                cost_pico: cost,
                grade: Grade {
                    passed,
                    reason: String::new(),
                },
                event_id: "e".into(),
            }),
        }
    }

    #[test]
    fn numbers_per_model_come_from_the_calls() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let model = |id, name: &str| RunModel {
            model_id: id,
            provider: "p".into(),
            model: name.into(),
        };
        // Model a: latencies 100, 300, 200, 400 ms; 2 of 3 graded passed (one `none`);
        // costs 1.5 µ$ + 2.5 µ$, one unpriced; one error. Model b: one call still pending.
        let run = TestRun {
            id: Uuid::nil(),
            prompt_id: None,
            models: vec![model(a, "a"), model(b, "b")],
            calls: vec![
                call(a, Some((100, Some(true), Some(1_500_000), Status::Success))),
                call(a, Some((300, Some(false), Some(2_500_000), Status::Error))),
                call(a, Some((200, None, None, Status::Success))),
                call(a, Some((400, Some(true), Some(0), Status::Success))),
                call(b, None),
            ],
            status: RunStatus::Running,
            created_by: "admin".into(),
            created_at: at(0),
            updated_at: at(10),
            finished_at: None,
        };
        let [sa, sb] = &run.summaries()[..] else {
            panic!("two models")
        };
        // Nearest rank over 100, 200, 300, 400: p50 is the 2nd (200), p95 the 4th (400).
        assert_eq!(
            (sa.latency_p50_ms, sa.latency_p95_ms),
            (Some(200.0), Some(400.0))
        );
        assert_eq!((sa.passed, sa.graded, sa.failures), (2, 3, 1));
        assert!((sa.pass_rate.expect("rate") - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(sa.cost_usd, "0.000004");
        assert_eq!(
            (sa.unpriced_calls, sa.input_tokens, sa.output_tokens),
            (1, 40, 12)
        );
        assert_eq!((sb.calls, sb.completed, sb.pass_rate), (1, 0, None));
        // Running, until nothing was heard for three minutes.
        assert_eq!(run.status_at(at(10 + 179)), RunStatus::Running);
        assert_eq!(run.status_at(at(10 + 180)), RunStatus::Interrupted);
    }
}
