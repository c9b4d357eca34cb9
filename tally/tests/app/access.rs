//! Access control, route by route and role by role: every route the application serves is
//! called with no key, a malformed header, an unknown key, a revoked key, and a key of each
//! role. The expected roles per route are written out here, independently of the code; a route
//! served without an entry in this table fails the test.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;
use tally_domain::access::Role;

/// Who may call each route; `None`: anyone, without a key.
fn expected(method: &str, path: &str) -> Option<Option<Vec<Role>>> {
    use Role::*;
    let admin = vec![PlatformAdmin];
    let readers = vec![PlatformAdmin, Viewer];
    let table: Vec<(&str, &str, Vec<Role>)> = vec![
        ("GET", "/metrics", readers.clone()),
        ("POST", "/v1/events", vec![PlatformAdmin, Ingest]),
        ("GET", "/v1/schema/usage-event", Role::ALL.to_vec()),
        ("POST", "/v1/scores", vec![PlatformAdmin, Ingest]),
        ("GET", "/v1/schema/score", Role::ALL.to_vec()),
        ("GET", "/analytics/spending", vec![PlatformAdmin, Finance]),
        ("GET", "/analytics/usage", readers.clone()),
        ("GET", "/analytics/performance", readers.clone()),
        ("GET", "/overview", readers.clone()),
        ("GET", "/events", readers.clone()),
        ("GET", "/api-keys", admin.clone()),
        ("POST", "/api-keys", admin.clone()),
        ("DELETE", "/api-keys/{id}", admin.clone()),
        ("GET", "/audit", admin.clone()),
        // features
        ("GET", "/features", readers.clone()),
        ("POST", "/features", admin.clone()),
        ("GET", "/features/{name}", readers.clone()),
        ("PUT", "/features/{name}", admin.clone()),
        ("DELETE", "/features/{name}", admin.clone()),
        ("GET", "/features/{name}/metrics", readers.clone()),
        ("GET", "/features/{name}/deployments", readers.clone()),
        ("POST", "/features/{name}/rollback", admin.clone()),
        ("GET", "/features/{name}/models", readers.clone()),
        ("POST", "/features/{name}/models", admin.clone()),
        ("GET", "/features/{name}/status", readers.clone()),
        // providers
        ("GET", "/providers", readers.clone()),
        ("POST", "/providers", admin.clone()),
        ("GET", "/providers/{name}", readers.clone()),
        ("PUT", "/providers/{name}", admin.clone()),
        ("DELETE", "/providers/{name}", admin.clone()),
        ("GET", "/providers/{name}/models", readers.clone()),
        ("GET", "/providers/{name}/health", readers.clone()),
        // models, prices, deployments
        ("GET", "/models", readers.clone()),
        ("POST", "/models", admin.clone()),
        ("GET", "/models/{id}", readers.clone()),
        ("PUT", "/models/{id}", admin.clone()),
        ("DELETE", "/models/{id}", admin.clone()),
        ("GET", "/models/{id}/prices", readers.clone()),
        ("POST", "/models/{id}/prices", admin.clone()),
        ("POST", "/models/{id}/deploy", admin.clone()),
        ("GET", "/models/{id}/performance", readers.clone()),
        ("POST", "/models/{id}/reprice", admin.clone()),
        ("GET", "/models/{id}/reprices", readers.clone()),
        ("GET", "/deployments", readers.clone()),
        // prompts
        ("GET", "/prompts", readers.clone()),
        ("POST", "/prompts", admin.clone()),
        ("GET", "/prompts/{id}", readers.clone()),
        ("PUT", "/prompts/{id}", admin.clone()),
        ("GET", "/prompts/{id}/versions", readers.clone()),
        (
            "POST",
            "/prompts/{id}/versions/{version}/status",
            admin.clone(),
        ),
        (
            "POST",
            "/prompts/{id}/versions/{version}/activate",
            admin.clone(),
        ),
        ("POST", "/prompts/{id}/test", admin.clone()),
        ("GET", "/prompts/{id}/metrics", readers.clone()),
        // budgets: finance reads them too
        ("GET", "/budgets", vec![PlatformAdmin, Viewer, Finance]),
        ("POST", "/budgets", admin.clone()),
        ("GET", "/budgets/{id}", vec![PlatformAdmin, Viewer, Finance]),
        ("PUT", "/budgets/{id}", admin.clone()),
        ("DELETE", "/budgets/{id}", admin.clone()),
        (
            "GET",
            "/budgets/{id}/status",
            vec![PlatformAdmin, Viewer, Finance],
        ),
        (
            "GET",
            "/analytics/budgets",
            vec![PlatformAdmin, Viewer, Finance],
        ),
        // alerts: finance reads budget alerts
        (
            "GET",
            "/analytics/alerts",
            vec![PlatformAdmin, Viewer, Finance],
        ),
        ("POST", "/alerts/{id}/acknowledge", admin.clone()),
        ("GET", "/alert-rules", readers.clone()),
        ("POST", "/alert-rules", admin.clone()),
        ("GET", "/alert-rules/{id}", readers.clone()),
        ("PUT", "/alert-rules/{id}", admin.clone()),
        ("DELETE", "/alert-rules/{id}", admin.clone()),
        // channel URLs often carry secrets: admins only
        ("GET", "/notification-channels", admin.clone()),
        ("POST", "/notification-channels", admin.clone()),
        ("DELETE", "/notification-channels/{id}", admin.clone()),
        ("POST", "/notification-channels/{id}/test", admin.clone()),
        // experiments
        ("GET", "/experiments", readers.clone()),
        ("POST", "/experiments", admin.clone()),
        ("GET", "/experiments/{id}", readers.clone()),
        ("POST", "/experiments/{id}/status", admin.clone()),
        ("GET", "/experiments/{id}/results", readers.clone()),
        // test cases: admins only
        ("GET", "/test-cases", admin.clone()),
        ("POST", "/test-cases", admin.clone()),
        ("GET", "/test-cases/{id}", admin.clone()),
        ("PUT", "/test-cases/{id}", admin.clone()),
        ("DELETE", "/test-cases/{id}", admin.clone()),
        ("POST", "/test-cases/execute", admin.clone()),
        ("GET", "/test-runs", admin.clone()),
        ("GET", "/test-runs/{id}", admin.clone()),
        ("GET", "/events/stream", readers.clone()),
    ];
    if method == "GET" && ["/healthz", "/readyz", "/openapi.json"].contains(&path) {
        return Some(None);
    }
    table
        .into_iter()
        .find(|(m, p, _)| *m == method && (path == *p || path == format!("{API}{p}")))
        .map(|(_, _, roles)| Some(roles))
}

async fn call(app: &TestApp, method: &str, path: &str, auth: Option<&str>) -> (u16, Value, bool) {
    let url = app.url(
        &path
            .replace("{name}", "chatbot")
            .replace("{id}", "0193a6f0-0000-7000-8000-000000000000")
            .replace("{version}", "1"),
    );
    let client = reqwest::Client::new();
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url).json(&Vec::<Value>::new()),
        "PUT" => client.put(url).json(&Vec::<Value>::new()),
        "DELETE" => client.delete(url),
        other => panic!("no request for {other}"),
    };
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .is_some_and(|v| v == "Bearer");
    let streaming = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if streaming {
        // An open stream never ends; its status is the answer.
        return (status, Value::Null, challenge);
    }
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_exactly_its_roles() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let config = app.stores.config.as_ref();
    let now = chrono::Utc::now();
    let mut keys = Vec::new();
    for role in Role::ALL {
        let created = tally::keys::create(config, role.as_str(), role, now)
            .await
            .unwrap();
        keys.push((role, created.key));
    }
    let revoked = tally::keys::create(config, "gone", Role::PlatformAdmin, now)
        .await
        .unwrap();
    tally::keys::revoke(config, revoked.api_key.id, now)
        .await
        .unwrap();

    let served: BTreeSet<(String, String)> = app
        .routes
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert!(served.len() >= 15, "{served:?}");
    for (method, path) in &served {
        let Some(expectation) = expected(method, path) else {
            panic!("{method} {path} is served but has no access expectation in this test");
        };
        let anonymous: [(&str, Option<String>); 4] = [
            ("no key", None),
            ("not bearer", Some(format!("Basic {}", keys[0].1))),
            (
                "unknown key",
                Some(format!("Bearer tally_{}", "0".repeat(64))),
            ),
            ("revoked key", Some(format!("Bearer {}", revoked.key))),
        ];
        for (who, header) in &anonymous {
            let (status, body, challenge) = call(&app, method, path, header.as_deref()).await;
            if expectation.is_none() {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} is public: {who} got {status}"
                );
                continue;
            }
            assert_eq!(status, 401, "{method} {path} with {who}: {body}");
            assert_eq!(
                body["error"]["code"], "unauthorized",
                "{method} {path}: {body}"
            );
            assert_eq!(body["error"]["field"], "authorization");
            assert!(
                challenge,
                "{method} {path}: 401 without WWW-Authenticate: Bearer"
            );
        }
        for (role, key) in &keys {
            let (status, body, _) = call(&app, method, path, Some(&format!("Bearer {key}"))).await;
            let allowed = expectation
                .as_ref()
                .is_none_or(|roles| roles.contains(role));
            if allowed {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} must admit {}: {status} {body}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    403,
                    "{method} {path} must refuse {}: {body}",
                    role.as_str()
                );
                assert_eq!(body["error"]["code"], "forbidden");
            }
        }
    }
    // And nothing the table expects is missing from the router.
    for route in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("POST", "/v1/events"),
        ("GET", "/api/platform/ai-management/analytics/spending"),
        ("GET", "/api/platform/ai-management/features/{name}/metrics"),
    ] {
        assert!(
            served.contains(&(route.0.to_string(), route.1.to_string())),
            "{route:?} is not served"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_served_without_a_key_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.metrics_public = true;
    let app = TestApp::start_with(s).await;
    let (status, _, _) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&app, "GET", &format!("{API}/overview"), None).await;
    assert_eq!(status, 401, "only /metrics is opened");
    app.stop().await;
}

/// The console's routes, walked like the API's: with no session, and with a session of each
/// role (an ingest key cannot open one). A page a role may not open is a 403 page; a form it
/// may not send is a 403 even with the session's CSRF token. The roles are written out here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_route_admits_exactly_its_roles() {
    use Role::*;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let config = app.stores.config.as_ref();
    let base = "/platform/ai-management";
    let readers = vec![PlatformAdmin, Viewer];
    let expected = |method: &str, path: &str| -> Option<Vec<Role>> {
        if path == "/" {
            // The site root sends browsers to the console.
            return Some(Vec::new());
        }
        let table: Vec<(&str, &str, Vec<Role>)> = vec![
            ("GET", "/sign-in", vec![]),
            ("POST", "/sign-in", vec![]),
            ("GET", "/assets/{file}", vec![]),
            ("POST", "/sign-out", vec![PlatformAdmin, Viewer, Finance]),
            // Finance is sent on to Spending (a redirect, not a refusal).
            ("GET", "/", vec![PlatformAdmin, Viewer, Finance]),
            ("GET", "/live", readers.clone()),
            ("GET", "/features", readers.clone()),
            ("GET", "/features/{name}", readers.clone()),
            ("GET", "/models", readers.clone()),
            ("GET", "/experiments", readers.clone()),
            ("GET", "/experiments/{id}", readers.clone()),
            ("GET", "/models/{id}", readers.clone()),
            ("GET", "/events", readers.clone()),
            ("GET", "/spending", vec![PlatformAdmin, Finance]),
            ("GET", "/spending.csv", vec![PlatformAdmin, Finance]),
            ("GET", "/budgets", vec![PlatformAdmin, Viewer, Finance]),
            ("GET", "/api-keys", vec![PlatformAdmin]),
            ("GET", "/audit", vec![PlatformAdmin]),
            ("POST", "/features/{name}/deploy", vec![PlatformAdmin]),
            ("POST", "/features/{name}/rollback", vec![PlatformAdmin]),
            ("POST", "/features/{name}/settings", vec![PlatformAdmin]),
            (
                "POST",
                "/features/{name}/prompts/{id}/activate",
                vec![PlatformAdmin],
            ),
            (
                "POST",
                "/features/{name}/prompts/{id}/status",
                vec![PlatformAdmin],
            ),
            (
                "POST",
                "/features/{name}/prompts/{id}/test-runs",
                vec![PlatformAdmin],
            ),
            ("GET", "/test-runs/{id}", vec![PlatformAdmin]),
            ("POST", "/models/{id}/prices", vec![PlatformAdmin]),
            ("POST", "/models/{id}/deploy", vec![PlatformAdmin]),
            ("POST", "/alerts/{id}/acknowledge", vec![PlatformAdmin]),
            ("POST", "/api-keys", vec![PlatformAdmin]),
            ("POST", "/api-keys/{id}/revoke", vec![PlatformAdmin]),
        ];
        table
            .into_iter()
            .find(|(m, p, _)| *m == method && path == format!("{base}{p}"))
            .map(|(_, _, roles)| roles)
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // A session per role, opened through the sign-in form.
    let mut sessions = Vec::new();
    for role in [PlatformAdmin, Viewer, Finance] {
        let key = tally::keys::create(config, role.as_str(), role, chrono::Utc::now())
            .await
            .unwrap()
            .key;
        let form = client
            .get(app.url(&format!("{base}/sign-in")))
            .send()
            .await
            .unwrap();
        let pre = form.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body = form.text().await.unwrap();
        let token = body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let signed = client
            .post(app.url(&format!("{base}/sign-in")))
            .header("cookie", &pre)
            .form(&[("csrf", token.as_str()), ("key", key.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), 303);
        let cookie = signed
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .find(|c| c.starts_with("tally_session="))
            .unwrap();
        let page = client
            .get(app.url(&format!("{base}/budgets")))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        sessions.push((role, cookie, csrf));
    }
    let mut console = tally_console::catalog();
    assert!(console.len() >= 20);
    // Signing out ends the sessions the walk uses: last.
    console.sort_by_key(|r| r.path.ends_with("/sign-out"));
    for route in &console {
        let method = route.method.as_str();
        let path = route.path.as_str();
        let Some(roles) = expected(method, path) else {
            panic!("{method} {path} is served by the console but has no expectation here");
        };
        let url = app.url(
            &path
                .replace("{name}", "chatbot")
                .replace("{id}", "0193a6f0-0000-7000-8000-000000000000")
                .replace(
                    "{file}",
                    tally_console::assets::url("app.css")
                        .rsplit('/')
                        .next()
                        .unwrap(),
                ),
        );
        let call = |cookie: Option<&str>, csrf: Option<&str>| {
            let mut request = match method {
                "GET" => client.get(&url),
                _ => client.post(&url).form(&[("csrf", csrf.unwrap_or(""))]),
            };
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            request.send()
        };
        let anonymous = call(None, None).await.unwrap().status().as_u16();
        if route.access.is_none() {
            // Public: the site root redirects, the sign-in form and the assets answer; the
            // sign-in form's POST refuses (403) a form without its own token.
            let expected: &[u16] = match method {
                "GET" => &[200, 303],
                _ => &[403],
            };
            assert!(
                expected.contains(&anonymous),
                "{method} {path} is public: {anonymous}"
            );
            continue;
        }
        match method {
            "GET" => assert_eq!(anonymous, 303, "{method} {path} without a session"),
            _ => assert_eq!(anonymous, 401, "{method} {path} without a session"),
        }
        for (role, cookie, csrf) in &sessions {
            let status = call(Some(cookie), Some(csrf))
                .await
                .unwrap()
                .status()
                .as_u16();
            if roles.contains(role) {
                // Admitted: a page (or finance's redirect from the overview); a form's
                // redirect back with what the API said, or the keys page answering its
                // refusal of an empty name. Never an error of the console's own.
                let expected: &[u16] = match method {
                    "GET" => &[200, 303],
                    _ => &[200, 303, 422],
                };
                assert!(
                    expected.contains(&status),
                    "{method} {path} must admit {}: {status}",
                    role.as_str()
                );
            } else {
                assert_eq!(status, 403, "{method} {path} must refuse {}", role.as_str());
            }
        }
    }
    app.stop().await;
}
