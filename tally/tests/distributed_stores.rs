//! Service tier: with the configuration in Postgres (`TALLY_DATABASE_URL`) and the rollups in
//! ClickHouse (`TALLY_CLICKHOUSE_URL`), the same events give exactly the same answers as the
//! all-embedded default.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tally::settings::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL and TALLY_TEST_CLICKHOUSE_URL"]
async fn distributed_stores_give_the_same_answers_as_embedded() {
    let url = std::env::var("TALLY_TEST_DATABASE_URL")
        .expect("TALLY_TEST_DATABASE_URL must point at a Postgres database");
    let clickhouse_url = std::env::var("TALLY_TEST_CLICKHOUSE_URL")
        .expect("TALLY_TEST_CLICKHOUSE_URL must point at ClickHouse");
    let clickhouse_db = format!("tally_app_{}", uuid::Uuid::new_v4().simple());
    let (pool, schema, scoped_url) = scoped_postgres(&url, "app").await;

    let events = corpus(3000, 9);
    let mut results = Vec::new();
    let distributed = (
        Some(Secret::new(scoped_url.clone())),
        Some(Secret::new(clickhouse_url.clone())),
    );
    for (database_url, clickhouse_url) in [(None, None), distributed] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.database_url = database_url;
        s.clickhouse_url = clickhouse_url;
        s.clickhouse_database = clickhouse_db.clone();
        let app = TestApp::start_with(s).await;
        seed_config(&app.stores).await;
        send_with_duplicates(&app, &events, 500).await;
        app.wait_projected().await;
        results.push(answers(&app).await);
        app.stop().await;
    }
    let (a, b) = (serde_json::json!(results[0]), serde_json::json!(results[1]));
    assert!(
        a == b,
        "answers differ: {}",
        first_difference(&a, &b, String::new())
    );
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'ai_model_prices'")
        .bind(&schema)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tables, 1, "the Postgres run really used Postgres");
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
