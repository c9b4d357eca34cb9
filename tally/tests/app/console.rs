//! The console, through HTTP as a browser uses it: signing in (and being refused), every page
//! for every role, the numbers a page shows against the events sent (costs computed here by
//! hand from the price table) and against the JSON API, CSRF and role refusals that change
//! nothing, forms that change what the API changes, and the CSV export.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;

use chrono::Duration;
use common::*;
use serde_json::{json, Value};
use tally_domain::access::Role;

const BASE: &str = "/platform/ai-management";

/// A cookie-keeping client that does not follow redirects.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.url(""),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, response: reqwest::Response) -> Answer {
        for set in response.headers().get_all("set-cookie") {
            let text = set.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            assert!(attributes.contains("HttpOnly"), "{text}");
            assert!(attributes.contains("SameSite=Strict"), "{text}");
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        Answer {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string()),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(r).await
    }

    /// Signs in with `key` through the form; the answer to the form's POST.
    async fn sign_in(&mut self, key: &str) -> Answer {
        let form = self.get(&format!("{BASE}/sign-in")).await;
        assert_eq!(form.status, 200);
        let token = hidden(&form.body, "csrf");
        self.post(
            &format!("{BASE}/sign-in"),
            &[
                ("csrf", &token),
                ("key", key),
                ("next", &format!("{BASE}/")),
            ],
        )
        .await
    }

    /// The CSRF token of the session (from any page's sign-out form).
    async fn csrf(&mut self) -> String {
        let page = self.get(&format!("{BASE}/budgets")).await;
        hidden(&page.body, "csrf")
    }
}

/// The value of the hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// Hand-made events 30 minutes before the test's now: costs by hand from the price table
/// (gpt-4o from 2026-03-09 18:00: $2 in / $8 out per million; claude-3-5-sonnet $3 / $15).
fn events() -> Vec<Value> {
    let at = (now() - Duration::minutes(30)).to_rfc3339();
    let e = |id: &str,
             feature: &str,
             provider: &str,
             model: &str,
             env: &str,
             status: &str,
             i: u64,
             o: u64| {
        let mut event = json!({"event_id": id, "occurred_at": at, "feature": feature, "provider": provider, "model": model,
               "environment": env, "operation": "chat", "status": status, "latency_ms": 100.0,
               "input_tokens": i, "output_tokens": o, "user_id": format!("u-{id}")});
        if status == "error" {
            event["error_message"] = json!("rate limited by the provider <retry later>");
        }
        event
    };
    vec![
        // 1000 × $2/M + 500 × $8/M = $0.006
        e(
            "c1",
            "chatbot",
            "openai",
            "gpt-4o",
            "production",
            "success",
            1000,
            500,
        ),
        // 2000 × $2/M + 1000 × $8/M = $0.012
        e(
            "c2",
            "chatbot",
            "openai",
            "gpt-4o",
            "production",
            "success",
            2000,
            1000,
        ),
        // 1000 × $3/M + 100 × $15/M = $0.0045
        e(
            "c3",
            "chatbot",
            "anthropic",
            "claude-3-5-sonnet",
            "production",
            "error",
            1000,
            100,
        ),
        // 500 × $2/M = $0.001
        e(
            "p1",
            "photo-tagging",
            "openai",
            "gpt-4o",
            "staging",
            "success",
            500,
            0,
        ),
    ]
}

async fn started(dir: &std::path::Path) -> (TestApp, HashMap<Role, String>) {
    let app = TestApp::start(dir).await;
    seed_config(&app.stores).await;
    let (status, body) = app.post(&events()).await;
    assert_eq!((status, body["data"]["accepted"].clone()), (200, json!(4)));
    app.wait_projected().await;
    let mut keys = HashMap::from([(Role::PlatformAdmin, ADMIN_KEY.to_string())]);
    for role in [Role::Viewer, Role::Finance, Role::Ingest] {
        let created = tally::keys::create(app.stores.config.as_ref(), role.as_str(), role, now())
            .await
            .unwrap();
        keys.insert(role, created.key);
    }
    (app, keys)
}

/// Every console page, and the roles it admits (the API's roles for what it reads).
fn pages() -> Vec<(&'static str, Vec<Role>)> {
    use Role::*;
    let readers = vec![PlatformAdmin, Viewer];
    vec![
        ("/features", readers.clone()),
        ("/features/chatbot", readers.clone()),
        ("/features/chatbot?tab=models", readers.clone()),
        ("/features/chatbot?tab=prompts", readers.clone()),
        ("/features/chatbot?tab=settings", readers.clone()),
        ("/models", readers.clone()),
        ("/spending", vec![PlatformAdmin, Finance]),
        ("/spending?group_by=model", vec![PlatformAdmin, Finance]),
        ("/budgets", vec![PlatformAdmin, Viewer, Finance]),
        ("/experiments", readers.clone()),
        ("/events", readers.clone()),
        ("/events?feature=chatbot&status=failed", readers.clone()),
        ("/api-keys", vec![PlatformAdmin]),
        ("/audit", vec![PlatformAdmin]),
    ]
}

/// Pages carry the security headers and nothing inline a CSP would have to allow.
fn assert_safe(path: &str, answer: &Answer) {
    let csp = answer.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(answer.headers["x-frame-options"], "DENY");
    assert_eq!(answer.headers["cache-control"], "no-store");
    let html = &answer.body;
    assert!(!html.contains("<script>"), "{path}: inline script");
    assert!(!html.contains(" style=\""), "{path}: inline style");
    assert!(!html.contains(" onclick="), "{path}: inline handler");
    assert!(!html.contains(ADMIN_KEY), "{path}: a key secret on a page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_for_the_roles_that_may_see_it_and_refuses_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = started(dir.path()).await;

    // An ingest key only sends events: no console session.
    let mut ingest = Browser::new(&app);
    let refused = ingest.sign_in(&keys[&Role::Ingest]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("only sends events"));
    assert!(!ingest.cookies.contains_key("tally_session"));

    for role in [Role::PlatformAdmin, Role::Viewer, Role::Finance] {
        let mut browser = Browser::new(&app);
        let signed = browser.sign_in(&keys[&role]).await;
        assert_eq!(signed.status, 303, "{}: {}", role.as_str(), signed.body);
        assert!(browser.cookies.contains_key("tally_session"));
        // The overview is the dashboards' page; finance lands on Spending.
        let home = browser.get(&format!("{BASE}/")).await;
        if role == Role::Finance {
            assert_eq!(home.status, 303);
            assert!(home
                .location
                .unwrap()
                .starts_with(&format!("{BASE}/spending")));
        } else {
            assert_eq!(home.status, 200, "{}", home.body);
            assert_safe("/", &home);
        }
        for (path, roles) in pages() {
            let page = browser.get(&format!("{BASE}{path}")).await;
            if roles.contains(&role) {
                assert_eq!(page.status, 200, "{} {path}: {}", role.as_str(), page.body);
                assert_safe(path, &page);
                assert!(
                    page.body.contains(&format!(">{}<", role.as_str())),
                    "{path} names the role"
                );
            } else {
                assert_eq!(page.status, 403, "{} must not see {path}", role.as_str());
                assert!(page.body.contains("Not for this role"));
            }
        }
        // Navigation offers only what the role may open.
        let budgets = browser.get(&format!("{BASE}/budgets")).await;
        assert_eq!(
            budgets.body.contains(">API keys<"),
            role == Role::PlatformAdmin
        );
        assert_eq!(budgets.body.contains(">Spending<"), role != Role::Viewer);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_the_numbers_of_the_events_and_of_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = started(dir.path()).await;
    let mut admin = Browser::new(&app);
    assert_eq!(admin.sign_in(ADMIN_KEY).await.status, 303);

    // Overview: 4 requests, 1 error; cost $0.0235 by hand, shown as $0.024 (two significant
    // digits below a dollar).
    let overview = app.data(&format!("{API}/overview")).await;
    assert_eq!(overview["kpis"]["requests_24h"], 4);
    assert_eq!(overview["kpis"]["cost_24h_usd"], "0.0235");
    let page = admin.get(&format!("{BASE}/")).await.body;
    assert!(
        page.contains("Requests (24 h)</div><div class=\"value\">4<"),
        "{page}"
    );
    assert!(
        page.contains("Cost (24 h)</div><div class=\"value\">$0.024<"),
        "{page}"
    );
    assert!(
        page.contains("Success rate (24 h)</div><div class=\"value\">75.0%<"),
        "{page}"
    );

    // The chatbot's dashboard: 3 requests, 2 succeeded (66.7%), $0.0225.
    let metrics = app
        .data(&format!("{API}/features/chatbot/metrics?time_range=24h"))
        .await;
    assert_eq!(metrics["costs"]["total_cost_usd"], "0.0225");
    let page = admin
        .get(&format!("{BASE}/features/chatbot?time_range=24h"))
        .await
        .body;
    assert!(
        page.contains("Uptime</div><div class=\"value\">66.7%<"),
        "{page}"
    );
    assert!(
        page.contains("Cost</div><div class=\"value\">$0.023<"),
        "{page}"
    );
    assert!(page.contains("3 requests"), "{page}");
    // Cost by model: gpt-4o $0.018 (80%), claude $0.0045 (20%).
    assert!(
        page.contains("openai/gpt-4o</td><td class=\"num\">2</td><td class=\"num\">$0.018"),
        "{page}"
    );
    assert!(
        page.contains("$0.018</td><td class=\"num\">80.0%"),
        "gpt-4o's share: {page}"
    );
    assert!(
        page.contains("$0.0045</td><td class=\"num\">20.0%"),
        "claude's share: {page}"
    );

    // Spending, as finance: per feature, exact amounts on the rows, the API's total.
    let mut finance = Browser::new(&app);
    assert_eq!(finance.sign_in(&keys[&Role::Finance]).await.status, 303);
    let spending = finance
        .get(&format!("{BASE}/spending?time_range=24h&group_by=feature"))
        .await
        .body;
    assert!(spending.contains("data-usd=\"0.0225\""), "{spending}");
    assert!(spending.contains("data-usd=\"0.001\""), "{spending}");
    assert!(
        spending.contains("Spend · last 24h</div><div class=\"value\">$0.024<"),
        "{spending}"
    );

    // CSV: the API's, exactly the hand-computed rows; the console's download is the same file.
    let csv = app
        .client
        .get(app.url(&format!(
            "{API}/analytics/spending?format=csv&group_by=feature&time_range=24h"
        )))
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    assert_eq!(
        csv,
        "feature,cost_usd,requests,unpriced_requests\r\nchatbot,0.0225,3,0\r\nphoto-tagging,0.001,1,0\r\n"
    );
    let download = finance
        .get(&format!(
            "{BASE}/spending.csv?time_range=24h&group_by=feature"
        ))
        .await;
    assert_eq!(download.status, 200);
    assert!(download.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(download.body, csv);
    let usage = app
        .text(&format!(
            "{API}/analytics/usage?format=csv&group_by=environment&time_range=24h"
        ))
        .await;
    let mut lines = usage.split("\r\n");
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "environment");
    let row = |env: &str| -> HashMap<String, String> {
        let line = usage.split("\r\n").find(|l| l.starts_with(env)).unwrap();
        header
            .iter()
            .map(|h| h.to_string())
            .zip(line.split(',').map(str::to_string))
            .collect()
    };
    let production = row("production");
    assert_eq!(production["requests"], "3");
    assert_eq!(production["errors"], "1");
    assert_eq!(production["input_tokens"], "4000");
    assert_eq!(production["output_tokens"], "1600");
    assert_eq!(row("staging")["requests"], "1");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_and_roles_are_enforced_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = started(dir.path()).await;
    let deployments = || async {
        app.data(&format!("{API}/features/chatbot/deployments"))
            .await
            .as_array()
            .unwrap()
            .len()
    };
    let before = deployments().await;

    // No session: pages send to sign-in (keeping where to return), forms are refused.
    let mut nobody = Browser::new(&app);
    let page = nobody.get(&format!("{BASE}/features?time_range=7d")).await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location.unwrap(),
        format!("{BASE}/sign-in?next=%2Fplatform%2Fai-management%2Ffeatures%3Ftime_range%3D7d")
    );
    let form = nobody
        .post(
            &format!("{BASE}/features/chatbot/rollback"),
            &[("environment", "production")],
        )
        .await;
    assert_eq!(form.status, 401);

    // A sign-in form without its token (another site posting a key) is refused.
    let forged = nobody
        .post(
            &format!("{BASE}/sign-in"),
            &[("csrf", "x"), ("key", ADMIN_KEY)],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(!nobody.cookies.contains_key("tally_session"));
    // A sign-in form posted with another browser's token (the cookie is this browser's).
    let mut other = Browser::new(&app);
    other.get(&format!("{BASE}/sign-in")).await;
    let stolen = hidden(&nobody.get(&format!("{BASE}/sign-in")).await.body, "csrf");
    let mixed = other
        .post(
            &format!("{BASE}/sign-in"),
            &[("csrf", &stolen), ("key", ADMIN_KEY)],
        )
        .await;
    assert_eq!(mixed.status, 403);
    assert!(!other.cookies.contains_key("tally_session"));
    // Behind a TLS proxy the session cookie is Secure.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = plain
        .get(app.url(&format!("{BASE}/sign-in")))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let pre = form.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(pre.contains("; Secure"), "{pre}");
    let token = hidden(&form.text().await.unwrap(), "csrf");
    let signed = plain
        .post(app.url(&format!("{BASE}/sign-in")))
        .header("x-forwarded-proto", "https")
        .header("cookie", pre.split(';').next().unwrap())
        .form(&[("csrf", token.as_str()), ("key", ADMIN_KEY)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let session = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("tally_session="))
        .unwrap();
    assert!(
        session.contains("; Secure") && session.contains("HttpOnly"),
        "{session}"
    );
    // Sign-in pages say only what the server chose: a link's own words are not shown.
    let page = nobody
        .get(&format!(
            "{BASE}/sign-in?why=Tally%20moved%2C%20paste%20your%20key%20at%20evil"
        ))
        .await;
    assert!(!page.body.contains("Tally moved"));
    let page = nobody.get(&format!("{BASE}/sign-in?why=signed-out")).await;
    assert!(page.body.contains("You signed out."));

    // Wrong keys.
    let mut wrong = Browser::new(&app);
    let answer = wrong.sign_in("tally_nope").await;
    assert_eq!(answer.status, 401);
    assert!(answer.body.contains("No API key matches"));

    // A session with a wrong CSRF token changes nothing.
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN_KEY).await;
    let claude = app
        .id_where(&format!("{API}/models"), "name", "claude-3-5-sonnet")
        .await;
    let bad = admin
        .post(
            &format!("{BASE}/features/chatbot/deploy"),
            &[
                ("csrf", &"0".repeat(64)),
                ("environment", "production"),
                ("model_id", &claude),
            ],
        )
        .await;
    assert_eq!(bad.status, 403);
    assert!(bad.body.contains("security token"));
    assert_eq!(deployments().await, before);

    // A viewer with a good token may not change anything either.
    let mut viewer = Browser::new(&app);
    viewer.sign_in(&keys[&Role::Viewer]).await;
    let token = viewer.csrf().await;
    let models_page = viewer
        .get(&format!("{BASE}/features/chatbot?tab=models"))
        .await
        .body;
    assert!(
        !models_page.contains("Change model"),
        "no admin control for a viewer"
    );
    assert!(!models_page.contains("Roll back"));
    let refused = viewer
        .post(
            &format!("{BASE}/features/chatbot/deploy"),
            &[
                ("csrf", &token),
                ("environment", "production"),
                ("model_id", &claude),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    let keys_form = viewer
        .post(
            &format!("{BASE}/api-keys"),
            &[("csrf", &token), ("name", "x"), ("role", "platform_admin")],
        )
        .await;
    assert_eq!(keys_form.status, 403);
    assert_eq!(deployments().await, before);
    assert_eq!(
        app.data(&format!("{API}/api-keys"))
            .await
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Signing out ends the session; so does revoking its key.
    let token = admin.csrf().await;
    let old_cookie = admin.cookies["tally_session"].clone();
    let out = admin
        .post(&format!("{BASE}/sign-out"), &[("csrf", &token)])
        .await;
    assert_eq!(out.status, 303);
    admin.cookies.insert("tally_session".into(), old_cookie);
    assert_eq!(
        admin.get(&format!("{BASE}/budgets")).await.status,
        303,
        "the old cookie is dead"
    );
    let viewer_id = app
        .id_where(&format!("{API}/api-keys"), "role", "viewer")
        .await;
    let (status, _) = app
        .send("DELETE", &format!("{API}/api-keys/{viewer_id}"), None)
        .await;
    assert_eq!(status, 200);
    let after = viewer.get(&format!("{BASE}/budgets")).await;
    assert_eq!(after.status, 303);
    // Revoking a key deletes its sessions: the browser is asked to sign in again.
    assert!(after
        .location
        .unwrap()
        .starts_with(&format!("{BASE}/sign-in?next=")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_served_fingerprinted_and_cached() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let mut browser = Browser::new(&app);
    let page = browser.get(&format!("{BASE}/sign-in")).await.body;
    for (name, file) in [
        ("app.css", include_str!("../../../console/assets/app.css")),
        ("app.js", include_str!("../../../console/assets/app.js")),
    ] {
        let url = tally_console::assets::url(name);
        let (stem, ext) = name.split_once('.').unwrap();
        assert!(
            url.starts_with(&format!("{BASE}/assets/{stem}.")) && url.ends_with(ext),
            "{url}"
        );
        assert_ne!(
            url,
            format!("{BASE}/assets/{name}"),
            "named by a fingerprint"
        );
        if name == "app.css" {
            assert!(
                page.contains(&url),
                "the page links the fingerprinted stylesheet"
            );
        }
        let served = browser.get(&url).await;
        assert_eq!(served.status, 200);
        assert_eq!(served.body, file);
        assert_eq!(
            served.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let plain = browser.get(&format!("{BASE}/assets/{name}")).await;
        assert_eq!(plain.status, 404, "only the fingerprinted name is served");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_change_what_the_api_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _keys) = started(dir.path()).await;
    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN_KEY).await;
    let token = admin.csrf().await;
    let models = format!("{API}/models");
    let gpt = app.id_where(&models, "name", "gpt-4o").await;
    let claude = app.id_where(&models, "name", "claude-3-5-sonnet").await;
    let back = format!("{BASE}/features/chatbot?tab=models&environment=production");
    // Deploy gpt-4o, then claude, through the change-model dialog; roll back to gpt-4o.
    for model in [&gpt, &claude] {
        let done = admin
            .post(
                &format!("{BASE}/features/chatbot/deploy"),
                &[
                    ("csrf", &token),
                    ("environment", "production"),
                    ("model_id", model),
                    ("back", &back),
                ],
            )
            .await;
        assert_eq!(
            (done.status, done.location.as_deref()),
            (303, Some(back.as_str()))
        );
    }
    let page = admin.get(&back).await.body;
    assert!(
        page.contains("chatbot in production now uses anthropic/claude-3-5-sonnet"),
        "{page}"
    );
    assert!(page.contains("Roll back to openai/gpt-4o"), "{page}");
    let current = app.data(&format!("{API}/features/chatbot")).await;
    assert_eq!(
        current["current_models"]["production"]["model"],
        "claude-3-5-sonnet"
    );
    admin
        .post(
            &format!("{BASE}/features/chatbot/rollback"),
            &[
                ("csrf", &token),
                ("environment", "production"),
                ("back", &back),
            ],
        )
        .await;
    let current = app.data(&format!("{API}/features/chatbot")).await;
    assert_eq!(current["current_models"]["production"]["model"], "gpt-4o");
    let history = app
        .data(&format!("{API}/features/chatbot/deployments"))
        .await;
    assert_eq!(history.as_array().unwrap().len(), 3);

    // Settings: a partial update; an empty description clears it, the config stays.
    let (status, _) = app
        .send(
            "PUT",
            &format!("{API}/features/chatbot"),
            Some(json!({"description": "old words", "config": {"temperature": 0.2}})),
        )
        .await;
    assert_eq!(status, 200);
    let saved = admin
        .post(
            &format!("{BASE}/features/chatbot/settings"),
            &[
                ("csrf", &token),
                ("display_name", "Chat"),
                ("description", ""),
                ("status", "maintenance"),
            ],
        )
        .await;
    assert_eq!(saved.status, 303);
    let feature = app.data(&format!("{API}/features/chatbot")).await;
    assert_eq!(feature["display_name"], "Chat");
    assert_eq!(feature["status"], "maintenance");
    assert_eq!(feature["description"], Value::Null);
    assert_eq!(feature["config"], json!({"temperature": 0.2}));

    // A price, and a refused one with its field named on the page.
    let added = admin
        .post(
            &format!("{BASE}/models/{claude}/prices"),
            &[
                ("csrf", &token),
                ("effective_from", "2026-04-01T00:00"),
                ("input_usd_per_mtok", "2.5"),
                ("output_usd_per_mtok", "12"),
                ("back", &format!("{BASE}/models")),
            ],
        )
        .await;
    assert_eq!(added.status, 303);
    let prices = app.data(&format!("{API}/models/{claude}/prices")).await;
    let new = prices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["input_usd_per_mtok"] == "2.50")
        .unwrap();
    assert_eq!(new["effective_from"], "2026-04-01T00:00:00Z");
    assert_eq!(new["output_usd_per_mtok"], "12.00");
    let refused = admin
        .post(
            &format!("{BASE}/models/{claude}/prices"),
            &[
                ("csrf", &token),
                ("effective_from", "2026-05-01T00:00"),
                ("input_usd_per_mtok", "-1"),
                ("output_usd_per_mtok", "1"),
                ("back", &format!("{BASE}/models")),
            ],
        )
        .await;
    assert_eq!(refused.status, 303);
    let page = admin.get(&format!("{BASE}/models")).await.body;
    assert!(
        page.contains("<strong>input_usd_per_mtok: </strong>"),
        "{page}"
    );

    // A key: created (its secret shown once, and it works), then revoked.
    let created = admin
        .post(
            &format!("{BASE}/api-keys"),
            &[("csrf", &token), ("name", "grafana"), ("role", "viewer")],
        )
        .await;
    assert_eq!(created.status, 200);
    let secret = {
        let start = created.body.find("id=\"new-secret\">").unwrap() + "id=\"new-secret\">".len();
        created.body[start..start + 70].to_string()
    };
    assert!(secret.starts_with("tally_"), "{secret}");
    let viewer = client_with_key(&secret);
    assert_eq!(
        viewer
            .get(app.url(&format!("{API}/overview")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        !admin
            .get(&format!("{BASE}/api-keys"))
            .await
            .body
            .contains(&secret),
        "shown once"
    );
    let id = app
        .id_where(&format!("{API}/api-keys"), "name", "grafana")
        .await;
    let revoked = admin
        .post(&format!("{BASE}/api-keys/{id}/revoke"), &[("csrf", &token)])
        .await;
    assert_eq!(revoked.status, 303);
    assert_eq!(
        viewer
            .get(app.url(&format!("{API}/overview")))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // The last admin key cannot be revoked: 409 from the API, the reason on the console.
    let admin_id = app
        .id_where(&format!("{API}/api-keys"), "role", "platform_admin")
        .await;
    let (status, body) = app
        .send("DELETE", &format!("{API}/api-keys/{admin_id}"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("last active platform_admin"));
    admin
        .post(
            &format!("{BASE}/api-keys/{admin_id}/revoke"),
            &[("csrf", &token)],
        )
        .await;
    let page = admin.get(&format!("{BASE}/api-keys")).await;
    assert_eq!(page.status, 200, "the session still works");
    assert!(
        page.body.contains("last active platform_admin"),
        "{}",
        page.body
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_down_model_and_experiment_pages_show_what_the_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = started(dir.path()).await;
    let mut admin = Browser::new(&app);
    assert_eq!(admin.sign_in(ADMIN_KEY).await.status, 303);

    // The chatbot's error-rate chart leads to its failing calls: c3 alone, with its message.
    let dashboard = admin.get(&format!("{BASE}/features/chatbot")).await.body;
    let marker = "\">The failing calls of this window";
    let end = dashboard.find(marker).expect("a link to the failing calls");
    let start = dashboard[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let link = dashboard[start..end].replace("&amp;", "&");
    assert!(link.starts_with(&format!("{BASE}/events?")), "{link}");
    assert!(
        link.contains("status=failed") && link.contains("feature=chatbot"),
        "{link}"
    );
    let bars = dashboard
        .matches(&format!("<a href=\"{BASE}/events?"))
        .count();
    assert!(bars > 0, "each error-rate bar links to its step's calls");
    let failing = admin.get(&link).await;
    assert_eq!(failing.status, 200);
    assert_safe(&link, &failing);
    assert!(failing.body.contains(">c3<"), "{}", failing.body);
    assert!(!failing.body.contains(">c1<") && !failing.body.contains(">c2<"));
    assert!(
        failing
            .body
            .contains("rate limited by the provider &lt;retry later&gt;"),
        "the message, escaped"
    );
    // Paging: one event per page, then the next through the cursor link.
    let first = admin.get(&format!("{BASE}/events?limit=1")).await.body;
    let newest = app.get(&format!("{API}/events?limit=2")).await.1;
    assert!(first.contains(&format!(
        ">{}<",
        newest["data"][0]["event_id"].as_str().unwrap()
    )));
    let next = first.split("rel=\"next\"").next().unwrap();
    let href = next[next.rfind("href=\"").unwrap() + 6..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let second = admin.get(&href).await.body;
    assert!(
        second.contains(&format!(
            ">{}<",
            newest["data"][1]["event_id"].as_str().unwrap()
        )),
        "{href}"
    );

    // A model's page shows its performance view: gpt-4o served c1, c2 (chatbot/production) and
    // p1 (photo-tagging/staging).
    let gpt = app
        .id_where(&format!("{API}/models"), "name", "gpt-4o")
        .await;
    let page = admin.get(&format!("{BASE}/models/{gpt}")).await;
    assert_eq!(page.status, 200);
    assert_safe("/models/{id}", &page);
    assert!(
        page.body.contains("Requests</div><div class=\"value\">3<"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("Success rate</div><div class=\"value\">100.0%<"));
    let models = admin.get(&format!("{BASE}/models")).await.body;
    assert!(
        models.contains(&format!("{BASE}/models/{gpt}")),
        "model cards link to it"
    );

    // The seeded experiment's page shows the API's verdicts and split check, and the scores
    // of its events: one graded 2 in the control, one graded 4.5 and thumbed up in b.
    let at = (now() - Duration::minutes(20)).to_rfc3339();
    let scored: Vec<Value> = [("x1", "control"), ("x2", "b")]
        .iter()
        .map(|(id, variant)| {
            json!({"event_id": id, "occurred_at": at, "feature": "chatbot", "provider": "openai",
                   "model": "gpt-4o", "environment": "production", "operation": "chat",
                   "status": "success", "latency_ms": 100.0, "input_tokens": 10, "output_tokens": 5,
                   "experiment_id": EXPERIMENT, "variant": variant})
        })
        .collect();
    let (status, body) = app
        .send(
            "POST",
            "/v1/scores",
            Some(json!([
                {"score_id": "g1", "event_id": "x1", "name": "helpfulness", "value": 2},
                {"score_id": "g2", "event_id": "x2", "name": "helpfulness", "value": 4.5},
                {"score_id": "g3", "event_id": "x2", "name": "thumbs", "label": "up"},
            ])),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.post(&scored).await.0, 200);
    app.wait_projected().await;
    let experiment = app
        .id_where(&format!("{API}/experiments"), "name", EXPERIMENT)
        .await;
    let results = app
        .data(&format!("{API}/experiments/{experiment}/results"))
        .await;
    let page = admin.get(&format!("{BASE}/experiments/{experiment}")).await;
    assert_eq!(page.status, 200);
    assert_safe("/experiments/{id}", &page);
    let verdict = results["sample_ratio"]["verdict"].as_str().unwrap();
    assert!(page.body.contains(verdict), "{verdict}");
    for metric in results["comparisons"][0]["metrics"].as_array().unwrap() {
        let words = metric["verdict"].as_str().unwrap();
        assert!(page.body.contains(words), "{words}");
    }
    let table = &page.body[page.body.find("id=\"scores\"").expect("a scores table")..];
    for shown in ["helpfulness", "2.000", "4.500", "thumbs", "up 100.0%"] {
        assert!(table.contains(shown), "{shown} in the scores table");
    }
    let list = admin.get(&format!("{BASE}/experiments")).await.body;
    assert!(list.contains(&format!("{BASE}/experiments/{experiment}")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompts_test_cases_run_from_its_page_and_the_run_shows_the_apis_numbers() {
    let (base_url, _) = common::standin::stand_in().await;
    std::env::set_var(common::standin::KEY_VAR, common::standin::KEY);
    let dir = tempfile::tempdir().unwrap();
    let (app, keys) = started(dir.path()).await;
    let post = |path: &str, body: Value| {
        let app = &app;
        let path = format!("{API}{path}");
        async move {
            let (status, answer) = app.send("POST", &path, Some(body)).await;
            assert!(status < 300, "{path}: {answer}");
            answer["data"].clone()
        }
    };
    let model = common::standin::register(&app, &base_url, &["standin-1"], None)
        .await
        .remove(0);
    let prompt = post(
        "/prompts",
        json!({"name": "greeter", "feature": "chatbot", "content": "Say hello to {{name}}"}),
    )
    .await;
    let pid = prompt["prompt"]["id"].as_str().unwrap().to_string();
    for (name, who, expected) in [
        ("exact", "Ada", "echo: Say hello to Ada"),
        ("contains", "Bob", "Ada"),
    ] {
        post(
            "/test-cases",
            json!({"name": name, "prompt_id": pid, "variables": {"name": who}, "check": if name == "exact" { "exact" } else { "contains" }, "expected": expected}),
        )
        .await;
    }

    let mut admin = Browser::new(&app);
    admin.sign_in(ADMIN_KEY).await;
    let tab = format!("{BASE}/features/chatbot?tab=prompts");
    let page = admin.get(&tab).await.body;
    assert!(page.contains("Run 2 test cases"), "{page}");
    let checkbox = format!("name=\"model_{model}\"");
    assert!(
        page.contains(&checkbox),
        "a checkbox for the stand-in model"
    );
    let token = admin.csrf().await;
    let action = format!("{BASE}/features/chatbot/prompts/{pid}/test-runs");
    // Nothing checked: the API's refusal comes back to the form, next to the models.
    let refused = admin
        .post(&action, &[("csrf", &token), ("back", &tab)])
        .await;
    assert_eq!(
        (refused.status, refused.location.as_deref()),
        (303, Some(tab.as_str()))
    );
    let page = admin.get(&tab).await.body;
    assert!(
        page.contains("id=\"models-error\""),
        "the refusal is shown by the models"
    );
    assert!(page.contains("must name 1 to 10 models"));
    // The stand-in model checked: the run starts and its page shows it.
    let field = format!("model_{model}");
    let started = admin
        .post(
            &action,
            &[("csrf", &token), (field.as_str(), "on"), ("back", &tab)],
        )
        .await;
    assert_eq!(started.status, 303);
    let location = started.location.unwrap();
    let run = location
        .strip_prefix(&format!("{BASE}/test-runs/"))
        .expect("the run's page")
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        let answer = app.data(&format!("{API}/test-runs/{run}")).await;
        if answer["status"] == "finished" {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let page = admin.get(&location).await;
    assert_eq!(page.status, 200);
    assert_safe("/test-runs/{id}", &page);
    // The exact case passes, the contains case ("Ada" in Bob's greeting) fails: 1 of 2.
    let summary = &answer["models"][0];
    assert_eq!(
        (summary["passed"].as_u64(), summary["graded"].as_u64()),
        (Some(1), Some(2))
    );
    let models_table = &page.body[page.body.find("id=\"run-models\"").unwrap()..];
    assert!(models_table.contains("50.0%"), "the API's pass rate");
    assert!(models_table.contains("1 / 2"));
    let calls_table = &page.body[page.body.find("id=\"run-calls\"").unwrap()..];
    assert!(calls_table.contains("echo: Say hello to Ada"));
    assert!(calls_table.contains("passed") && calls_table.contains("failed"));
    // The prompts tab lists the run; a viewer sees neither the form nor the runs.
    let page = admin.get(&tab).await.body;
    assert!(page.contains(&location), "the recent run links to its page");
    let mut viewer = Browser::new(&app);
    viewer.sign_in(&keys[&Role::Viewer]).await;
    let page = viewer.get(&tab).await.body;
    assert!(!page.contains("Run 2 test cases") && !page.contains(&location));
    assert_eq!(viewer.get(&location).await.status, 403);
    app.stop().await;
}
