//! Service tier: the config-store conformance suite against a real Postgres.
//! Run with `TALLY_TEST_DATABASE_URL=postgres://… cargo test -- --ignored` (`.ci/run` does).

use sqlx::PgPool;

/// A migrated, empty schema of its own (so that runs can repeat), and a pool on the database
/// to drop it with.
async fn fresh_schema() -> (PgPool, PgPool, String) {
    let url = std::env::var("TALLY_TEST_DATABASE_URL")
        .expect("TALLY_TEST_DATABASE_URL must point at a Postgres database");
    let pool = tally_storage::config::postgres::connect(&url)
        .await
        .expect("connect");
    let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("schema");
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
    let scoped = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .expect("connect scoped");
    assert_eq!(
        tally_storage::config::postgres::migrate(&scoped)
            .await
            .expect("migrate"),
        9,
        "config, api_keys, prompts_budgets_experiments, audit, reprices, alerting, console_sessions, test_cases, test_runs"
    );
    assert_eq!(
        tally_storage::config::postgres::migrate(&scoped)
            .await
            .expect("migrate again"),
        0,
        "migrations are idempotent"
    );
    (pool, scoped, schema)
}

async fn drop_schema(pool: PgPool, scoped: PgPool, schema: String) {
    scoped.close().await;
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .expect("drop");
}

#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL"]
async fn postgres_config_store_conforms() {
    let (pool, scoped, schema) = fresh_schema().await;
    let store = tally_storage::PostgresConfigStore::new(scoped.clone());
    tally_conformance::config_store(&store).await;
    drop_schema(pool, scoped, schema).await;
}

/// A trigger makes `audit_log` refuse inserts: every change must then fail and leave nothing.
#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL"]
async fn postgres_changes_fail_without_their_audit_entry() {
    let (pool, scoped, schema) = fresh_schema().await;
    let store = tally_storage::PostgresConfigStore::new(scoped.clone());
    let refuse = async {
        sqlx::raw_sql(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'audit log refused'; END $$;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
                 FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        )
        .execute(&scoped)
        .await
        .expect("trigger");
    };
    tally_conformance::changes_fail_without_their_audit_entry(&store, refuse).await;
    drop_schema(pool, scoped, schema).await;
}

/// Two processes sharing one Postgres: one holds the evaluator's lease, the other does not;
/// when the holder dies (its connection closes), the other takes over.
#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL"]
async fn postgres_elects_one_evaluator_and_fails_over() {
    use tally_domain::store::AlertStore;
    let (pool, scoped, schema) = fresh_schema().await;
    let url = std::env::var("TALLY_TEST_DATABASE_URL").expect("url");
    let first_pool = tally_storage::config::postgres::connect(&url)
        .await
        .expect("connect");
    let first = tally_storage::PostgresConfigStore::new(first_pool.clone());
    let second = tally_storage::PostgresConfigStore::new(scoped.clone());
    assert!(first.hold_evaluator_lease().await.expect("lease"));
    assert!(first.hold_evaluator_lease().await.expect("lease"), "kept");
    assert!(!second.hold_evaluator_lease().await.expect("lease"));
    // The holder dies: its sessions end and the lock with them.
    drop(first);
    first_pool.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !second.hold_evaluator_lease().await.expect("lease") {
        assert!(std::time::Instant::now() < deadline, "no fail-over");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(second);
    drop_schema(pool, scoped, schema).await;
}

/// Two admins revoking each other's keys at the same moment, twenty times: each time exactly
/// one revocation lands and the other is refused, so an active admin key always remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL"]
async fn postgres_keeps_an_admin_when_admins_revoke_each_other_at_once() {
    use std::sync::Arc;
    use tally_domain::access::{new_key, Role};
    use tally_domain::audit::Change;
    use tally_domain::store::{ConfigStore, StoreError};
    let (pool, scoped, schema) = fresh_schema().await;
    let store: Arc<dyn ConfigStore> =
        Arc::new(tally_storage::PostgresConfigStore::new(scoped.clone()));
    let now = chrono::Utc::now();
    let change = Change::local("tester", now);
    let (_, spec) = new_key("admin 0", Role::PlatformAdmin, now);
    let mut survivor = store.create_api_key(spec, &change).await.expect("create");
    for round in 1..=20 {
        let (_, spec) = new_key(&format!("admin {round}"), Role::PlatformAdmin, now);
        let other = store.create_api_key(spec, &change).await.expect("create");
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let revoke = |id| {
            let (store, start, change) = (store.clone(), start.clone(), change.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.revoke_api_key(id, &change).await
            })
        };
        let (a, b) = (revoke(survivor.id), revoke(other.id));
        let (a, b) = (a.await.expect("task"), b.await.expect("task"));
        let landed = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(landed, 1, "round {round}: {a:?} {b:?}");
        for refused in [&a, &b].into_iter().filter_map(|r| r.as_ref().err()) {
            assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
        }
        survivor = if a.is_err() { survivor } else { other };
        let active = store
            .list_api_keys()
            .await
            .expect("list")
            .into_iter()
            .filter(|k| k.role == Role::PlatformAdmin && k.revoked_at.is_none())
            .count();
        assert_eq!(active, 1, "round {round}");
    }
    drop_schema(pool, scoped, schema).await;
}
