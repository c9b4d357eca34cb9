//! Test runs: `POST /test-cases/execute` runs test cases across models, `GET /test-runs/{id}`
//! shows a run, `GET /test-runs` lists them (platform admins).
//!
//! `execute` takes `test_case_ids` (any cases) or `prompt_id` (every case of the prompt), the
//! `models` (ids, at most [`MAX_MODELS`]) and optionally `prompt_version` (the prompt's active
//! version, else its latest, when absent). Everything is checked before anything is sent — the
//! cases and models exist, each case's variables fit its version, each model's provider can be
//! reached, at most [`MAX_RUN_CALLS`] calls — and a refusal names the field. The run is then
//! stored and answered (`202`, status `running`), and carried out in the background: every case
//! on every model, [`CONCURRENCY`] calls at a time, each through the prompt-test path
//! ([`crate::prompt_calls::call_and_record`]: 60 s timeout, recorded as a `development` usage
//! event with attributes `source: test-run`, `test_run_id` and `test_case_id`) and graded by
//! the case's check ([`tally_domain::config::grade`]; a failed call fails its check,
//! [`tally_domain::config::failed_call`]). The run is saved as calls complete (at most every
//! second), so `GET /test-runs/{id}` shows it filling in; its numbers per model come from
//! [`TestRun::summaries`], and `GET /test-runs` reads the summaries stored beside the runs
//! (the newest 1,000). At most [`PROCESS_CONCURRENCY`] calls of all runs are in flight.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_domain::config::{
    failed_call, grade, CallOutcome, Model, ModelSummary, Prompt, PromptVersion, RunCall, RunModel,
    RunStatus, TestCase, TestRun, TestRunSummary, MAX_RUN_CALLS,
};
use tally_http::auth::{Access, Caller};
use tally_http::http::{data, invalid, ApiError, Body, Data};
use tally_http::route::{Route, Routes};
use tally_schemas::event::Status;
use tally_schemas::Pico;
use tracing::{info, warn};
use uuid::Uuid;

use crate::listing::{ListQuery, ListSpec, Listing};
use crate::params::parse_id;
use crate::prompt_calls::{
    call, check_variables, choose_version, reach, record, render, CallContext, Reach,
};
use crate::routes::API_BASE;
use crate::state::QueryState;

/// Most models in one run.
pub const MAX_MODELS: usize = 10;

/// Calls of one run in flight at once.
pub const CONCURRENCY: usize = 4;

/// Calls of all runs of this process in flight at once (runs spend money at the providers).
pub const PROCESS_CONCURRENCY: usize = 8;

static IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PROCESS_CONCURRENCY);

/// A running run is saved at most this often (and once more when it finishes).
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The newest runs a listing reads.
const LISTED_RUNS: u32 = 1_000;

pub(super) fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    let runs = format!("{API_BASE}/test-runs");
    r.serve(
        Route::post(
            format!("{API_BASE}/test-cases/execute"),
            Access::Admin,
            "Run test cases on models: every case on every model, each call graded and recorded as a development usage event; answers the run (202), carried out in the background",
            execute,
        )
        .accepts_requiring::<ExecuteBody>(&["models"])
        .returns::<Data<RunView>>(202),
    )
    .serve(
        Route::get(&runs, Access::Admin, "Test runs, newest first (without their calls)", list)
            .query(LIST.params())
            .returns::<Listing<RunView>>(200),
    )
    .serve(
        Route::get(
            format!("{runs}/{{id}}"),
            Access::Admin,
            "A test run: per model its pass rate, latency p50/p95, tokens and exact cost, and each call's output and verdict",
            detail,
        )
        .returns::<Data<RunView>>(200),
    )
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TestRunRequest")]
struct ExecuteBody {
    /// The cases to run; or give `prompt_id` for all of a prompt's cases.
    test_case_ids: Option<Vec<Uuid>>,
    /// Every case of this prompt (with `test_case_ids`: they must all be this prompt's).
    prompt_id: Option<Uuid>,
    /// Model ids, 1 to 10.
    models: Vec<Uuid>,
    /// The version to render (cases of one prompt only); its active version, else its latest,
    /// when absent.
    #[serde(default, deserialize_with = "tally_schemas::whole::whole_opt")]
    #[schemars(range(min = 1, max = 2_147_483_647))]
    prompt_version: Option<i32>,
}

/// One call as shown.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct CallView {
    test_case_id: Uuid,
    test_case: String,
    model_id: Uuid,
    provider: String,
    model: String,
    prompt_id: Uuid,
    prompt_version: i32,
    /// The rendered prompt sent.
    input: String,
    /// `pending` until made, then `success`, `error` or `timeout`.
    status: String,
    output: Option<String>,
    error: Option<String>,
    latency_ms: Option<f64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// Exact, at the model's price in force at the call; absent when unpriced or pending.
    cost_usd: Option<String>,
    /// The check's verdict: `None` while pending and for the `none` check.
    passed: Option<bool>,
    verdict: Option<String>,
    /// The usage event that recorded the call.
    event_id: Option<String>,
}

/// A run as shown: its numbers per model and (in `GET /test-runs/{id}`) its calls.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct RunView {
    id: Uuid,
    /// `running`, `finished` or `interrupted` (the process carrying it out stopped).
    status: RunStatus,
    prompt_id: Option<Uuid>,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    calls_total: usize,
    calls_completed: usize,
    models: Vec<ModelSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calls: Option<Vec<CallView>>,
}

impl RunView {
    /// A listed run: its summary, without calls.
    fn listed(summary: TestRunSummary, now: DateTime<Utc>) -> RunView {
        RunView {
            id: summary.id,
            status: summary.status_at(now),
            prompt_id: summary.prompt_id,
            created_by: summary.created_by,
            created_at: summary.created_at,
            updated_at: summary.updated_at,
            finished_at: summary.finished_at,
            calls_total: summary.calls_total,
            calls_completed: summary.calls_completed,
            models: summary.models,
            calls: None,
        }
    }

    /// A run with its calls.
    fn of(run: &TestRun, now: DateTime<Utc>) -> RunView {
        let models: HashMap<Uuid, &RunModel> = run.models.iter().map(|m| (m.model_id, m)).collect();
        let calls = run
            .calls
            .iter()
            .map(|c| {
                let m = models.get(&c.model_id);
                let o = c.outcome.as_ref();
                CallView {
                    test_case_id: c.test_case_id,
                    test_case: c.test_case.clone(),
                    model_id: c.model_id,
                    provider: m.map(|m| m.provider.clone()).unwrap_or_default(),
                    model: m.map(|m| m.model.clone()).unwrap_or_default(),
                    prompt_id: c.prompt_id,
                    prompt_version: c.prompt_version,
                    input: c.input.clone(),
                    status: o.map_or("pending", |o| o.status.as_str()).to_string(),
                    output: o.and_then(|o| o.output.clone()),
                    error: o.and_then(|o| o.error.clone()),
                    latency_ms: o.map(|o| o.latency_us as f64 / 1000.0),
                    input_tokens: o.map(|o| o.input_tokens),
                    output_tokens: o.map(|o| o.output_tokens),
                    cost_usd: o
                        .and_then(|o| o.cost_pico)
                        .map(|p| Pico(i128::from(p)).to_decimal_string()),
                    passed: o.and_then(|o| o.grade.passed),
                    verdict: o.map(|o| o.grade.reason.clone()),
                    event_id: o.map(|o| o.event_id.clone()).filter(|e| !e.is_empty()),
                }
            })
            .collect();
        RunView {
            calls: Some(calls),
            ..RunView::listed(run.summary(), now)
        }
    }
}

const LIST: ListSpec = ListSpec {
    filters: &[
        ("prompt_id", "prompt_id", &[]),
        ("status", "status", RunStatus::NAMES),
    ],
    sorts: &["-created_at"],
};

async fn list(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    // The prompt is chosen by the store; the rest of the listing's rules apply to what it read.
    let prompt = q.get("prompt_id").map(|p| parse_id(p)).transpose()?;
    let query = ListQuery::parse(q, &LIST)?;
    let now = state.clock.now();
    let runs: Vec<RunView> = state
        .config
        .list_test_runs(prompt, LISTED_RUNS)
        .await?
        .into_iter()
        .map(|r| RunView::listed(r, now))
        .collect();
    Ok(axum::Json(query.apply(&runs)?))
}

async fn detail(
    State(state): State<QueryState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let run = state
        .config
        .test_run(id)
        .await?
        .ok_or_else(|| ApiError::from(tally_domain::rules::missing::test_run(id)))?;
    Ok(data(RunView::of(&run, state.clock.now())))
}

/// One planned call: what to send where.
struct Planned {
    index: usize,
    case: TestCase,
    prompt: Arc<Prompt>,
    version: Arc<PromptVersion>,
    model: Arc<Model>,
    reach: Reach,
    text: String,
}

/// The cases the body names, oldest first.
async fn chosen_cases(state: &QueryState, body: &ExecuteBody) -> Result<Vec<TestCase>, ApiError> {
    let all = state.config.list_test_cases().await?;
    let cases: Vec<TestCase> = match (&body.test_case_ids, body.prompt_id) {
        (Some(ids), prompt) => {
            if ids.is_empty() {
                return Err(invalid("test_case_ids", "must name at least one test case"));
            }
            let wanted: HashSet<&Uuid> = ids.iter().collect();
            if let Some(missing) = ids.iter().find(|id| !all.iter().any(|c| &c.id == *id)) {
                return Err(invalid("test_case_ids", format!("no test case {missing}")));
            }
            let cases: Vec<TestCase> = all.into_iter().filter(|c| wanted.contains(&c.id)).collect();
            if let Some(prompt) = prompt {
                if let Some(other) = cases.iter().find(|c| c.spec.prompt_id != prompt) {
                    return Err(invalid(
                        "test_case_ids",
                        format!(
                            "test case {} belongs to prompt {}, not {prompt}",
                            other.spec.name, other.spec.prompt_id
                        ),
                    ));
                }
            }
            cases
        }
        (None, Some(prompt)) => {
            let cases: Vec<TestCase> = all
                .into_iter()
                .filter(|c| c.spec.prompt_id == prompt)
                .collect();
            if cases.is_empty() {
                return Err(invalid(
                    "prompt_id",
                    format!("prompt {prompt} has no test cases (or does not exist)"),
                ));
            }
            cases
        }
        (None, None) => {
            return Err(invalid(
                "test_case_ids",
                "give test_case_ids, or prompt_id for every case of a prompt",
            ))
        }
    };
    Ok(cases)
}

/// The models the body names, each with how to reach it.
async fn chosen_models(
    state: &QueryState,
    ids: &[Uuid],
) -> Result<Vec<(Arc<Model>, Reach)>, ApiError> {
    if ids.is_empty() || ids.len() > MAX_MODELS {
        return Err(invalid(
            "models",
            format!("must name 1 to {MAX_MODELS} models"),
        ));
    }
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Err(invalid("models", "names a model twice"));
    }
    let all = state.config.list_models().await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let model = all
            .iter()
            .find(|m| &m.id == id)
            .ok_or_else(|| invalid("models", format!("no model with id {id}")))?;
        match reach(state, model).await? {
            Ok(reach) => out.push((Arc::new(model.clone()), reach)),
            Err(why) => {
                return Err(invalid(
                    "models",
                    format!("{}/{} cannot be called: {why}", model.provider, model.name),
                ))
            }
        }
    }
    Ok(out)
}

/// Every case on every model, checked; the calls in plan order.
async fn plan(
    state: &QueryState,
    body: &ExecuteBody,
) -> Result<(Option<Uuid>, Vec<Arc<Model>>, Vec<Planned>), ApiError> {
    let cases = chosen_cases(state, body).await?;
    let models = chosen_models(state, &body.models).await?;
    if cases.len() * models.len() > MAX_RUN_CALLS {
        let field = if body.test_case_ids.is_some() {
            "test_case_ids"
        } else {
            "prompt_id"
        };
        return Err(invalid(
            field,
            format!(
                "{} cases on {} models make {} calls; at most {MAX_RUN_CALLS} per run",
                cases.len(),
                models.len(),
                cases.len() * models.len()
            ),
        ));
    }
    let prompts: Vec<Uuid> = {
        let mut p: Vec<Uuid> = cases.iter().map(|c| c.spec.prompt_id).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    if body.prompt_version.is_some() && prompts.len() > 1 {
        return Err(invalid(
            "prompt_version",
            "applies to the cases of one prompt; these belong to several",
        ));
    }
    let mut versions: BTreeMap<Uuid, (Arc<Prompt>, Arc<PromptVersion>)> = BTreeMap::new();
    let stored = state.config.list_prompts().await?;
    for id in &prompts {
        let prompt = stored
            .iter()
            .find(|p| &p.id == id)
            .cloned()
            .ok_or_else(|| invalid("test_case_ids", format!("prompt {id} does not exist")))?;
        let all = state.config.prompt_versions(*id).await?;
        let version = choose_version(&prompt, &all, body.prompt_version, "prompt_version")?.clone();
        versions.insert(*id, (Arc::new(prompt), Arc::new(version)));
    }
    let mut planned = Vec::with_capacity(cases.len() * models.len());
    for case in &cases {
        let (prompt, version) = &versions[&case.spec.prompt_id];
        if let Some(why) = check_variables(version, case.spec.variables.keys().map(String::as_str))
        {
            return Err(invalid(
                "test_case_ids",
                format!(
                    "test case {}: its variables do not fit version {} ({why})",
                    case.spec.name, version.version
                ),
            ));
        }
        let text = render(&version.content, &case.spec.variables);
        for (model, reach) in &models {
            planned.push(Planned {
                index: planned.len(),
                case: case.clone(),
                prompt: prompt.clone(),
                version: version.clone(),
                model: model.clone(),
                reach: reach.clone(),
                text: text.clone(),
            });
        }
    }
    let prompt = (prompts.len() == 1).then(|| prompts[0]);
    Ok((
        prompt,
        models.into_iter().map(|(m, _)| m).collect(),
        planned,
    ))
}

async fn execute(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<ExecuteBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (prompt_id, models, planned) = plan(&state, &body).await?;
    let now = state.clock.now();
    let run = TestRun {
        id: Uuid::now_v7(),
        prompt_id,
        models: models
            .iter()
            .map(|m| RunModel {
                model_id: m.id,
                provider: m.provider.clone(),
                model: m.name.clone(),
            })
            .collect(),
        calls: planned
            .iter()
            .map(|p| RunCall {
                test_case_id: p.case.id,
                test_case: p.case.spec.name.clone(),
                model_id: p.model.id,
                prompt_id: p.prompt.id,
                prompt_version: p.version.version,
                input: p.text.clone(),
                outcome: None,
            })
            .collect(),
        status: RunStatus::Running,
        created_by: caller.key_name.clone(),
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    state.config.create_test_run(&run).await?;
    info!(run = %run.id, calls = run.calls.len(), "test run started");
    let view = RunView::of(&run, now);
    tokio::spawn(carry_out(state, run, planned, caller.key_name.clone()));
    Ok((StatusCode::ACCEPTED, data(view)))
}

/// Makes every planned call — each in a task of its own, at most [`CONCURRENCY`] of the run
/// and [`PROCESS_CONCURRENCY`] of the process at once, so a call's latency is its own — and
/// saves the run as the outcomes come in (at most every [`SAVE_EVERY`]), then finished.
async fn carry_out(state: QueryState, mut run: TestRun, planned: Vec<Planned>, caller: String) {
    let run_id = run.id;
    let per_run = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    for p in planned {
        let (state, caller, per_run, done) =
            (state.clone(), caller.clone(), per_run.clone(), done.clone());
        tokio::spawn(async move {
            let Ok(_run_slot) = per_run.acquire_owned().await else {
                return;
            };
            let Ok(_process_slot) = IN_FLIGHT.acquire().await else {
                return;
            };
            let index = p.index;
            let _ = done.send((index, one_call(&state, run_id, &caller, p).await));
        });
    }
    drop(done);
    let mut saved = std::time::Instant::now();
    while let Some((index, outcome)) = outcomes.recv().await {
        run.calls[index].outcome = Some(outcome);
        run.updated_at = state.clock.now();
        if saved.elapsed() >= SAVE_EVERY {
            if let Err(err) = state.config.save_test_run(&run).await {
                warn!(run = %run_id, error = %err, "could not save a test run's progress");
            }
            saved = std::time::Instant::now();
        }
    }
    run.status = RunStatus::Finished;
    run.finished_at = Some(state.clock.now());
    run.updated_at = state.clock.now();
    for wait_ms in [0u64, 500, 2_000, 5_000] {
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        match state.config.save_test_run(&run).await {
            Ok(()) => {
                info!(run = %run_id, "test run finished");
                return;
            }
            Err(err) => warn!(run = %run_id, error = %err, "could not save a finished test run"),
        }
    }
}

/// One call made, recorded and graded. A call that was made but could not be recorded keeps
/// what the provider answered, and says it was not recorded.
async fn one_call(state: &QueryState, run: Uuid, caller: &str, p: Planned) -> CallOutcome {
    let context = CallContext {
        prompt: &p.prompt,
        version: &p.version,
        model: &p.model,
        caller,
        attributes: vec![
            ("source".into(), "test-run".into()),
            ("test_case_id".into(), p.case.id.to_string()),
            ("test_run_id".into(), run.to_string()),
        ],
    };
    let check = p.case.spec.check;
    let called = match call(state, &p.reach, context, &p.text).await {
        Ok(called) => called,
        Err(err) => {
            // Pricing needs the configuration store; without it nothing was sent.
            let why = format!("the call could not be made: {}", err.message);
            return CallOutcome {
                status: Status::Error,
                output: None,
                error: Some(why.clone()),
                latency_us: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost_pico: None,
                grade: failed_call(check, &why),
                event_id: String::new(),
            };
        }
    };
    let grade = match called.status {
        Status::Success => grade(
            check,
            p.case.spec.expected.as_ref(),
            called.output.as_deref().unwrap_or(""),
        ),
        _ => failed_call(check, called.error.as_deref().unwrap_or_default()),
    };
    let (error, event_id) = match record(state, &called.event).await {
        Ok(()) => (called.error, called.event.event_id.clone()),
        Err(err) => {
            let note = format!(
                "the call was made but could not be recorded: {}",
                err.message
            );
            (
                Some(match called.error {
                    Some(e) => format!("{e}; {note}"),
                    None => note,
                }),
                String::new(),
            )
        }
    };
    CallOutcome {
        status: called.status,
        output: called.output,
        error,
        latency_us: called.event.latency_us,
        input_tokens: called.event.input_tokens,
        output_tokens: called.event.output_tokens,
        cost_pico: called.event.cost.picos(),
        grade,
        event_id,
    }
}
