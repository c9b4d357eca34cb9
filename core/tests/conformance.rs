//! The config-store conformance suite against the embedded (SQLite) store.

#[tokio::test]
async fn sqlite_config_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_core::embedded::SqliteConfigStore::open(dir.path()).expect("open");
    tally_core::conformance::config_store(&store).await;
}

#[tokio::test]
async fn sqlite_analytics_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tally_core::embedded::SqliteAnalyticsStore::open(dir.path()).expect("open");
    tally_core::conformance::analytics_store(&store).await;
}
