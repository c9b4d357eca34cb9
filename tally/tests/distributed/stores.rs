//! Service tier: with the configuration in Postgres (`TALLY_DATABASE_URL`) and the rollups in
//! ClickHouse (`TALLY_CLICKHOUSE_URL`), the same events give exactly the same answers as the
//! all-embedded default.
#![allow(clippy::unwrap_used)]

use crate::common;

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
    let embedded = answers_after(settings, &events).await;
    let distributed = answers_after(
        |dir| {
            let mut s = settings(dir);
            s.database_url = Some(Secret::new(scoped_url.clone()));
            s.clickhouse_url = Some(Secret::new(clickhouse_url.clone()));
            s.clickhouse_database = clickhouse_db.clone();
            s
        },
        &events,
    )
    .await;
    assert_same_answers(&embedded, &distributed);
    assert!(
        holds_configuration(&pool, &schema).await,
        "the Postgres run really used Postgres"
    );
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
