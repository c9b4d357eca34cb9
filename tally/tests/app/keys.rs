//! API keys: `tally keys create|list|revoke` against a data directory, and the bootstrap admin
//! key created at start-up from `TALLY_BOOTSTRAP_ADMIN_KEY`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Output;

use common::*;
use serde_json::Value;
use tally::settings::Secret;
use tally_domain::access::{hash, Role};
use tally_domain::store::KeyStore;
use tally_storage::SqliteConfigStore;

fn tally(dir: &std::path::Path, args: &[&str]) -> Output {
    common::tally_command()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("TALLY_LOG", "warn")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn keys_are_created_shown_once_listed_without_secrets_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let created = json(&tally(
        dir.path(),
        &["keys", "create", "--name", "dashboards", "--role", "viewer"],
    ));
    let secret = created["key"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("tally_") && secret.len() == 70,
        "{secret}"
    );
    assert_eq!(created["role"], "viewer");
    assert_eq!(created["name"], "dashboards");
    assert_eq!(created["prefix"], secret[..14]);
    assert_eq!(created["revoked_at"], Value::Null);
    let second = json(&tally(
        dir.path(),
        &["keys", "create", "--name", "ci", "--role", "ingest"],
    ));
    assert_ne!(second["key"], created["key"], "every secret is fresh");

    let listing = tally(dir.path(), &["keys", "list"]);
    let text = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(
        !text.contains(&secret[14..]),
        "a listing never shows a secret"
    );
    let listed = json(&listing);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(listed[0].get("key").is_none());

    // The store keeps the SHA-256 of the secret: the key is found by it, and only by it.
    let store = SqliteConfigStore::open(dir.path()).unwrap();
    let found = store
        .api_key_by_hash(&hash(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id.to_string(), created["id"].as_str().unwrap());
    assert_eq!(found.role, Role::Viewer);
    assert!(store
        .api_key_by_hash(&hash(&format!("{secret}x")))
        .await
        .unwrap()
        .is_none());

    let id = created["id"].as_str().unwrap();
    let revoked = json(&tally(dir.path(), &["keys", "revoke", id]));
    assert!(revoked["revoked_at"].is_string());
    let found = store
        .api_key_by_hash(&hash(&secret))
        .await
        .unwrap()
        .unwrap();
    assert!(found.revoked_at.is_some());

    let bad = tally(
        dir.path(),
        &["keys", "create", "--name", "x", "--role", "admin"],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("platform_admin, viewer, finance, ingest"),
        "{stderr}"
    );
    let unknown = tally(
        dir.path(),
        &["keys", "revoke", "00000000-0000-0000-0000-000000000000"],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_admin_key_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "bootstrap-secret-0123456789abcdef0123456789";
    let mut s = settings(dir.path());
    s.bootstrap_admin_key = Some(Secret::new(secret));
    for _ in 0..2 {
        let app = TestApp::start_with(s.clone()).await;
        let keys = app.stores.config.list_api_keys().await.unwrap();
        assert_eq!(keys.len(), 1, "created once, kept across restarts");
        assert_eq!(keys[0].role, Role::PlatformAdmin);
        assert_eq!(keys[0].prefix, secret[..14]);
        let found = app
            .stores
            .config
            .api_key_by_hash(&hash(secret))
            .await
            .unwrap();
        assert_eq!(found.as_ref(), Some(&keys[0]));
        app.stop().await;
    }
    let short = tally::Settings::load(
        None,
        [(
            "TALLY_BOOTSTRAP_ADMIN_KEY".to_string(),
            "too-short".to_string(),
        )],
    );
    assert!(short
        .unwrap_err()
        .to_string()
        .contains("bootstrap_admin_key: must be at least 32 characters"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_keys_over_http_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let keys = format!("{API}/api-keys");

    let created = app
        .client
        .post(app.url(&keys))
        .json(&serde_json::json!({"name": "finance team", "role": "finance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let secret = created["data"]["key"].as_str().unwrap().to_string();
    let id = created["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["data"]["role"], "finance");

    // The new key works for what finance may do, and only that.
    let finance = client_with_key(&secret);
    let status = |r: reqwest::Response| r.status().as_u16();
    let spending = app.url(&format!("{API}/analytics/spending"));
    assert_eq!(status(finance.get(&spending).send().await.unwrap()), 200);
    let overview = app.url(&format!("{API}/overview"));
    assert_eq!(status(finance.get(&overview).send().await.unwrap()), 403);
    assert_eq!(
        status(finance.get(app.url(&keys)).send().await.unwrap()),
        403
    );

    let (code, listed) = app.get(&keys).await;
    assert_eq!(code, 200);
    assert!(!listed.to_string().contains(&secret[6..]), "no secrets");
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        2,
        "bootstrap + finance"
    );

    for (body, field) in [
        (serde_json::json!({"name": "x", "role": "admin"}), "role"),
        (serde_json::json!({"role": "viewer"}), "name"),
        (serde_json::json!({"name": "", "role": "viewer"}), "name"),
        (
            serde_json::json!({"name": "x", "role": "viewer", "scopes": []}),
            "scopes",
        ),
    ] {
        let r = app
            .client
            .post(app.url(&keys))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }

    let revoke = |id: &str| app.client.delete(app.url(&format!("{keys}/{id}"))).send();
    let revoked: Value = revoke(&id).await.unwrap().json().await.unwrap();
    assert!(revoked["data"]["revoked_at"].is_string());
    assert_eq!(status(finance.get(&spending).send().await.unwrap()), 401);
    assert_eq!(status(revoke("not-a-uuid").await.unwrap()), 400);
    assert_eq!(
        status(
            revoke("0193a6f0-0000-7000-8000-000000000000")
                .await
                .unwrap()
        ),
        404
    );
    // Revoking again changes nothing and records nothing.
    assert_eq!(status(revoke(&id).await.unwrap()), 200);

    let (code, audit) = app.get(&format!("{API}/audit?limit=10")).await;
    assert_eq!(code, 200);
    let entries = audit["data"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["api_key.revoke", "api_key.create", "api_key.create"],
        "newest first: the revoke, the finance key, the bootstrap key"
    );
    assert_eq!(entries[0]["actor"], "bootstrap admin");
    assert_eq!(entries[0]["resource"], format!("api_key:{id}"));
    assert_eq!(entries[0]["before"]["revoked_at"], Value::Null);
    assert!(entries[0]["after"]["revoked_at"].is_string());
    assert_eq!(entries[1]["before"], Value::Null);
    assert_eq!(entries[1]["after"]["name"], "finance team");
    assert!(
        !audit.to_string().contains(&secret[6..]),
        "no secrets in the audit log"
    );
    assert_eq!(entries[2]["actor"], "bootstrap");
    let (code, err) = app.get(&format!("{API}/audit?before=yesterday")).await;
    assert_eq!(
        (code, err["error"]["field"].clone()),
        (400, "before".into())
    );
    app.stop().await;
}
