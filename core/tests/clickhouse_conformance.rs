//! Service tier: the analytics-store conformance suite against a real ClickHouse.
//! Run with `TALLY_TEST_CLICKHOUSE_URL=http://127.0.0.1:8123 cargo test -- --ignored`.

#[tokio::test]
#[ignore = "service tier: needs TALLY_TEST_CLICKHOUSE_URL"]
async fn clickhouse_analytics_store_conforms() {
    let url = std::env::var("TALLY_TEST_CLICKHOUSE_URL")
        .expect("TALLY_TEST_CLICKHOUSE_URL must point at ClickHouse's HTTP port");
    let database = format!("tally_conformance_{}", uuid::Uuid::new_v4().simple());
    tally_core::clickhouse::migrate(&url, &database)
        .await
        .expect("migrate");
    let store = tally_core::clickhouse::ClickHouseAnalyticsStore::new(
        tally_core::clickhouse::client(&url, &database),
    );
    tally_core::conformance::analytics_store(&store).await;
    let admin = clickhouse::Client::default()
        .with_url(&url)
        .with_compression(clickhouse::Compression::None);
    admin
        .query(&format!("DROP DATABASE {database}"))
        .execute()
        .await
        .expect("drop");
}
