//! The configuration seams, one trait per resource group, and [`ConfigStore`], all of them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tally_schemas::Environment;
use uuid::Uuid;

use crate::access::{ApiKey, ApiKeySpec};
use crate::audit::Change;
use crate::config::{
    Alert, AlertKind, AlertRule, AlertRuleSpec, AlertState, Assignment, Attempt, AuditEntry,
    AuditSpec, Budget, BudgetSpec, Channel, ChannelSpec, Delivery, DeliveryStatus, DeploySpec,
    Experiment, ExperimentSpec, ExperimentStatus, Feature, FeatureSpec, Model, ModelPrice,
    ModelSpec, PriceSpec, Prompt, PromptContent, PromptSpec, PromptStatus, PromptVersion, Provider,
    ProviderSpec, Reprice, RepriceSpec, Severity, TestCase, TestCaseSpec, TestRun, TestRunSummary,
    Transition,
};
use crate::error::StoreResult;
use crate::sessions::Session;

/// The catalog: features, providers, models, their effective-dated prices and reprice requests.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// By name.
    async fn list_features(&self) -> StoreResult<Vec<Feature>>;
    /// Creates the feature, or updates every field but its name and id. An upsert that changes
    /// nothing is not written (nor audited) and returns the feature as it was.
    async fn upsert_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature>;
    /// `Conflict` when the name is taken.
    async fn create_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature>;
    /// Deletes a feature nothing refers to, returning it: `Conflict` while any assignment
    /// (current or past), prompt or experiment refers to it (history is never cascaded away),
    /// `NotFound` when there is none.
    async fn delete_feature(&self, name: &str, change: &Change) -> StoreResult<Feature>;
    /// By name.
    async fn list_providers(&self) -> StoreResult<Vec<Provider>>;
    /// Like [`upsert_feature`](Self::upsert_feature).
    async fn upsert_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider>;
    /// `Conflict` when the name is taken.
    async fn create_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider>;
    /// Deletes a provider without models, returning it; `Conflict` while it has models.
    async fn delete_provider(&self, name: &str, change: &Change) -> StoreResult<Provider>;
    /// By provider, then name.
    async fn list_models(&self) -> StoreResult<Vec<Model>>;
    /// Like [`upsert_feature`](Self::upsert_feature).
    async fn upsert_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model>;
    /// `Conflict` when the provider already has a model of that name, `NotFound` for an
    /// unknown provider.
    async fn create_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model>;
    /// Deletes a model that was never deployed (with its prices), returning it; `Conflict`
    /// when an assignment, current or past, names it.
    async fn delete_model(&self, id: Uuid, change: &Change) -> StoreResult<Model>;
    /// `Conflict` when the model has a price effective from the same instant.
    async fn add_price(&self, spec: PriceSpec, change: &Change) -> StoreResult<ModelPrice>;
    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>>;
    /// Records a reprice request (`Invalid` when `from` is not before `requested_at`).
    async fn add_reprice(&self, spec: RepriceSpec, change: &Change) -> StoreResult<Reprice>;
    /// Every reprice request, oldest first.
    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>>;
}

/// Which model serves each feature in each environment, with the history of assignments.
#[async_trait]
pub trait DeploymentStore: Send + Sync + 'static {
    /// Makes the model the active one for (feature, environment), deactivating the previous
    /// assignment in the same transaction. The assignment is made at `change.at`, by
    /// `change.actor`.
    async fn deploy(&self, spec: DeploySpec, change: &Change) -> StoreResult<Assignment>;
    /// Restores, as a new assignment, the model that served (feature, environment) before the
    /// current one: the newest earlier assignment of another model, in one transaction.
    /// `Conflict` when nothing is deployed or no other model ever was.
    async fn rollback(
        &self,
        feature: &str,
        environment: Environment,
        change: &Change,
    ) -> StoreResult<Assignment>;
    async fn active_assignments(&self) -> StoreResult<Vec<Assignment>>;
    /// Every assignment of `feature` (of every feature when `None`), newest first.
    async fn assignment_history(
        &self,
        feature: Option<&str>,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>>;
}

/// Prompts and their immutable versions, through review to the active one.
#[async_trait]
pub trait PromptStore: Send + Sync + 'static {
    /// Creates a prompt with its first version (a draft). `Conflict` when the name is taken,
    /// `NotFound` for an unknown feature.
    async fn create_prompt(
        &self,
        spec: PromptSpec,
        change: &Change,
    ) -> StoreResult<(Prompt, PromptVersion)>;
    /// By name.
    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>>;
    /// Versions are immutable: a content or variable list that differs from the latest version
    /// makes a new version (a draft, `true`); the same again returns the latest (`false`).
    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
        change: &Change,
    ) -> StoreResult<(PromptVersion, bool)>;
    /// Oldest first.
    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>>;
    /// Moves a version through review; the active version must stay `approved` (`Conflict`).
    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
        change: &Change,
    ) -> StoreResult<PromptVersion>;
    /// Makes an `approved` version the active one of its prompt's feature, deactivating the
    /// feature's previously active version (of any prompt) in the same transaction.
    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
        change: &Change,
    ) -> StoreResult<PromptVersion>;
}

/// Spending budgets.
#[async_trait]
pub trait BudgetStore: Send + Sync + 'static {
    /// `Invalid` when [`BudgetSpec::validate`] fails or a channel does not exist.
    async fn create_budget(&self, spec: BudgetSpec, change: &Change) -> StoreResult<Budget>;
    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        change: &Change,
    ) -> StoreResult<Budget>;
    /// Deletes the budget, returning it.
    async fn delete_budget(&self, id: Uuid, change: &Change) -> StoreResult<Budget>;
    /// By name, then creation.
    async fn list_budgets(&self) -> StoreResult<Vec<Budget>>;
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertQuery {
    /// Only this alert.
    pub id: Option<Uuid>,
    /// Alerts in any of these states (all when empty).
    pub states: Vec<AlertState>,
    pub severity: Option<Severity>,
    pub kind: Option<AlertKind>,
    /// Alerts updated at or after this instant.
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// Notification channels, alert rules, the alerts they raise and the deliveries of their
/// transitions.
#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    /// By name, then creation.
    async fn list_channels(&self) -> StoreResult<Vec<Channel>>;
    /// `Invalid` when [`ChannelSpec::validate`] fails.
    async fn create_channel(&self, spec: ChannelSpec, change: &Change) -> StoreResult<Channel>;
    /// Deletes the channel, returning it; `Conflict` while a rule or budget names it.
    async fn delete_channel(&self, id: Uuid, change: &Change) -> StoreResult<Channel>;
    /// By name, then creation.
    async fn list_alert_rules(&self) -> StoreResult<Vec<AlertRule>>;
    /// `Invalid` when [`AlertRuleSpec::validate`] fails or a channel does not exist.
    async fn create_alert_rule(
        &self,
        spec: AlertRuleSpec,
        change: &Change,
    ) -> StoreResult<AlertRule>;
    async fn update_alert_rule(
        &self,
        id: Uuid,
        spec: AlertRuleSpec,
        change: &Change,
    ) -> StoreResult<AlertRule>;
    /// Deletes the rule, returning it; its alerts stay (the evaluator resolves open ones).
    async fn delete_alert_rule(&self, id: Uuid, change: &Change) -> StoreResult<AlertRule>;
    /// Records `t` in one transaction: the alert row, the transition, and one pending delivery
    /// per channel (due at once). `false`, with nothing written, when the alert is no longer in
    /// `t.from` (another evaluator recorded a transition first).
    async fn record_transition(&self, t: &Transition) -> StoreResult<bool>;
    /// Newest (`updated_at`) first, each with its deliveries.
    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Vec<Alert>>;
    /// Records who acknowledged the alert and when (the first acknowledgement stays).
    async fn acknowledge_alert(&self, id: Uuid, change: &Change) -> StoreResult<Alert>;
    /// Pending deliveries due at `now`, the earliest due first.
    async fn due_deliveries(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Delivery>>;
    /// Appends `attempt` to a pending delivery and moves it to `status` (`Pending`: due again
    /// at `next_attempt_at`). Nothing happens to a delivery that is no longer pending.
    async fn record_attempt(
        &self,
        id: Uuid,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()>;
    /// Whether this process is the one that evaluates alerts and delivers notifications.
    /// A store several processes share elects one holder, which keeps the role until it dies
    /// (its lease lapses and another process takes over); a store only one process opens
    /// always answers `true`.
    async fn hold_evaluator_lease(&self) -> StoreResult<bool>;
}

/// Experiments and their transitions.
#[async_trait]
pub trait ExperimentStore: Send + Sync + 'static {
    /// A draft experiment. `Invalid` when [`ExperimentSpec::validate`] fails, `NotFound` for
    /// an unknown feature.
    async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        change: &Change,
    ) -> StoreResult<Experiment>;
    /// Newest first.
    async fn list_experiments(&self) -> StoreResult<Vec<Experiment>>;
    /// Only [`ExperimentStatus::can_become`] transitions (`Conflict` otherwise); entering
    /// `running` sets `started_at`, leaving it sets `ended_at` (both `change.at`).
    async fn transition_experiment(
        &self,
        id: Uuid,
        to: ExperimentStatus,
        change: &Change,
    ) -> StoreResult<Experiment>;
}

/// Test cases of prompts (their runs are not stored here yet).
#[async_trait]
pub trait TestCaseStore: Send + Sync + 'static {
    /// Oldest first.
    async fn list_test_cases(&self) -> StoreResult<Vec<TestCase>>;
    /// `Invalid` when [`TestCaseSpec::validate`] fails, `NotFound` for an unknown prompt.
    async fn create_test_case(&self, spec: TestCaseSpec, change: &Change) -> StoreResult<TestCase>;
    /// Replaces every field (as [`create_test_case`](Self::create_test_case) checks them);
    /// `NotFound` for an unknown case or prompt.
    async fn update_test_case(
        &self,
        id: Uuid,
        spec: TestCaseSpec,
        change: &Change,
    ) -> StoreResult<TestCase>;
    /// Deletes the case, returning it; `NotFound` when there is none.
    async fn delete_test_case(&self, id: Uuid, change: &Change) -> StoreResult<TestCase>;
}

/// Test runs ([`crate::config::TestRun`]): operations, not configuration, so not audited
/// (the usage events each call records are their trace).
#[async_trait]
pub trait TestRunStore: Send + Sync + 'static {
    /// Stores a new run; `Conflict` when its id is taken.
    async fn create_test_run(&self, run: &TestRun) -> StoreResult<()>;
    /// Replaces a stored run with `run`; `NotFound` when there is none.
    async fn save_test_run(&self, run: &TestRun) -> StoreResult<()>;
    async fn test_run(&self, id: Uuid) -> StoreResult<Option<TestRun>>;
    /// The summaries of the newest runs, newest first, at most `limit`, only those of
    /// `prompt_id` when given.
    async fn list_test_runs(
        &self,
        prompt_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<TestRunSummary>>;
}

/// The audit trail: every change, and operations on what this store does not hold.
#[async_trait]
pub trait AuditTrail: Send + Sync + 'static {
    /// Records an operation on something this store does not hold (the analytics store's log
    /// bindings: an adoption, a start from scratch), which cannot share its transaction. The
    /// caller writes the entry first and then carries the operation out, so nothing is done
    /// unaudited; an operation that then fails says so, and repeating it completes it.
    async fn record_operation(&self, entry: AuditSpec) -> StoreResult<()>;
    /// Newest first: at most `query.limit` entries older than `query.before` (all when
    /// absent) that match its filters.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub limit: u32,
    /// Only entries made before this instant.
    pub before: Option<DateTime<Utc>>,
    /// Only entries older than this entry: earlier, or as early and written before it (a
    /// cursor that pages through entries sharing a timestamp without skipping any).
    pub before_entry: Option<Uuid>,
    /// Only entries by this actor (the key's name, `cli`, …), exactly.
    pub actor: Option<String>,
    /// Only this action (`feature.update`), exactly.
    pub action: Option<String>,
    /// Only this resource and what lies under it: `feature` matches every feature's entries,
    /// `feature:chatbot` the chatbot's (and its assignments', `feature:chatbot:staging`);
    /// whole segments only (`feat` matches nothing).
    pub resource: Option<String>,
}

impl AuditQuery {
    /// The newest `limit` entries, unfiltered.
    pub fn newest(limit: u32) -> AuditQuery {
        AuditQuery {
            limit,
            ..AuditQuery::default()
        }
    }
}

/// API keys (hashes only).
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new API key: its hash, never the secret. `Conflict` when the hash exists.
    async fn create_api_key(&self, spec: ApiKeySpec, change: &Change) -> StoreResult<ApiKey>;
    /// Every key, revoked ones included, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;
    /// The key whose secret hashes to `hash`, revoked or not.
    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Revokes a key at `change.at`; revoking it again keeps the first time (and is not
    /// audited). Returns the key and whether this call revoked it. `NotFound` for an unknown
    /// id.
    async fn revoke_api_key(&self, id: Uuid, change: &Change) -> StoreResult<(ApiKey, bool)>;
}

/// Console sessions ([`crate::sessions`]), by the hash of their token. Sessions are not
/// configuration: they are not audited.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Keeps a new session under `hash`. `NotFound` when its key does not exist.
    async fn create_session(&self, hash: &str, session: &Session) -> StoreResult<()>;
    /// The session stored under `hash` and the key it was opened with, expired or not.
    async fn session_by_hash(&self, hash: &str) -> StoreResult<Option<(Session, ApiKey)>>;
    /// Ends the session stored under `hash` (signing out); ending it again is no error.
    async fn delete_session(&self, hash: &str) -> StoreResult<()>;
    /// Forgets sessions that expired before `now`; returns how many.
    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}

/// The configuration store. Every method that changes something takes the [`Change`] (who,
/// when) and writes its audit entry in the same transaction (see [`crate::audit`]): the change
/// and its entry commit together or not at all.
///
/// One trait per resource group, so each adapter keeps each group in a file of its own; every
/// configuration store implements them all, and `dyn ConfigStore` offers every method.
pub trait ConfigStore:
    CatalogStore
    + DeploymentStore
    + PromptStore
    + BudgetStore
    + AlertStore
    + ExperimentStore
    + TestCaseStore
    + TestRunStore
    + AuditTrail
    + KeyStore
    + SessionStore
{
}

impl<
        T: CatalogStore
            + DeploymentStore
            + PromptStore
            + BudgetStore
            + AlertStore
            + ExperimentStore
            + TestCaseStore
            + TestRunStore
            + AuditTrail
            + KeyStore
            + SessionStore,
    > ConfigStore for T
{
}
