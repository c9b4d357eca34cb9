//! Service tier: the config-store conformance suite against a real Postgres.
//! Run with `TALLY_TEST_DATABASE_URL=postgres://… cargo test -- --ignored` (`.ci/run` does).

#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL"]
async fn postgres_config_store_conforms() {
    let url = std::env::var("TALLY_TEST_DATABASE_URL")
        .expect("TALLY_TEST_DATABASE_URL must point at a Postgres database");
    let pool = tally_core::postgres::connect(&url).await.expect("connect");
    // A fresh schema per run, so the suite starts empty and runs can repeat.
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
        tally_core::postgres::migrate(&scoped)
            .await
            .expect("migrate"),
        5,
        "config, api_keys, prompts_budgets_experiments, audit, reprices"
    );
    assert_eq!(
        tally_core::postgres::migrate(&scoped)
            .await
            .expect("migrate again"),
        0,
        "migrations are idempotent"
    );
    let store = tally_core::postgres::PostgresConfigStore::new(scoped.clone());
    tally_core::conformance::config_store(&store).await;
    scoped.close().await;
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .expect("drop");
}
