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

    // Raw events: a re-insert (crash between the raw insert and the projection commit)
    // collapses; retention drops whole days.
    use tally_core::store::{AnalyticsStore, RawEvent};
    let client = tally_core::clickhouse::client(&url, &database);
    let day = 86_400_000_000i64;
    let base = 20_454 * day; // 2026-01-01
    let raw: Vec<RawEvent> = (0..10)
        .map(|i| RawEvent {
            event: tally_schemas::UsageEvent {
                event_id: format!("raw-{i}"),
                occurred_at_us: base + (i % 2) * day + i * 1_000_000,
                ..tally_schemas::UsageEvent::example()
            },
            offset: i,
            received_at_ms: 0,
        })
        .collect();
    for _ in 0..2 {
        tally_core::clickhouse::events::insert(&client, 0, &raw)
            .await
            .expect("insert");
    }
    assert_eq!(
        tally_core::clickhouse::events::count(&client)
            .await
            .expect("count"),
        10
    );
    store.prune((base + day) / 1_000_000).await.expect("prune");
    assert_eq!(
        tally_core::clickhouse::events::count(&client)
            .await
            .expect("count"),
        5,
        "the first day's partition is dropped, the second kept"
    );
    let admin = clickhouse::Client::default()
        .with_url(&url)
        .with_compression(clickhouse::Compression::None);
    admin
        .query(&format!("DROP DATABASE {database}"))
        .execute()
        .await
        .expect("drop");
}
