//! The console in a real browser (Debian's Chromium, driven over chromedriver from Rust with
//! fantoccini, headless) against the app with demo data: signing in, every screen at 1280 px and
//! at 390 px (a screenshot of each, in the folder the test prints), numbers on the pages against
//! the API's, switching feature and time range, changing a model through the dialog and seeing
//! the history and the per-model split change, rolling back, exporting CSV, adding a price,
//! creating and revoking a key, a viewer who sees no admin control and is refused when posting
//! anyway — and no page logging a console error or a failed request.
//!
//! Service tier (`.ci/run` installs chromium and chromium-driver):
//! `cargo test -p tally --test app browser:: -- --ignored`. `TALLY_TEST_CHROMEDRIVER` and
//! `TALLY_TEST_CHROMIUM` override `/usr/bin/chromedriver` and `/usr/bin/chromium`;
//! `TALLY_SCREENSHOTS` chooses the screenshot folder.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tally::demo::{seed, TrafficGenerator};
use tally_domain::access::Role;

const BASE: &str = "/platform/ai-management";

/// A chromedriver process on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let binary = std::env::var("TALLY_TEST_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        // Dropping the driver kills and reaps the process, on every path.
        let driver = Driver { child, port };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not listen on {port}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let chromium =
        std::env::var("TALLY_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": [
            "--headless=new", "--no-sandbox", "--disable-background-networking",
            "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    // chromedriver listens on loopback: plain HTTP, no TLS.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap()
}

/// Chromedriver's browser log since the last call (console messages and failed loads).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// Console errors and failed requests since the last call.
async fn problems(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.unwrap();
    let mut found: Vec<String> = log
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    // Requests the page made that failed (Chromium reports each response's status).
    let failed = c
        .execute(
            "return performance.getEntriesByType('resource')
                .filter(e => e.responseStatus >= 400)
                .map(e => e.name + ' ' + e.responseStatus);",
            vec![],
        )
        .await
        .unwrap();
    for f in failed.as_array().cloned().unwrap_or_default() {
        found.push(format!(
            "failed request: {}",
            f.as_str().unwrap_or_default()
        ));
    }
    found
}

/// The text of the first element matching `css`, once there is one (pages load after clicks;
/// a live refresh may replace the element between finding and reading it: then again).
async fn text(c: &Client, css: &str) -> String {
    let mut last = None;
    for _ in 0..20 {
        let element = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        match element.text().await {
            Ok(text) => return text,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css}: {last:?}");
}

/// Waits until the page shows a success flash containing `expected` (after a form's redirect).
async fn flash(c: &Client, expected: &str) {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(element) = c.find(Locator::Css(".flash")).await {
            last = element.text().await.unwrap_or_default();
            if last.contains(expected) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no flash with {expected:?}; last seen {last:?}");
}

/// Waits until the page's URL contains `part`.
async fn wait_url(c: &Client, part: &str) {
    for _ in 0..100 {
        if c.current_url().await.unwrap().as_str().contains(part) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the browser never reached {part}: {}",
        c.current_url().await.unwrap()
    );
}

/// Clicks the element `locator` finds.
async fn click(c: &Client, locator: Locator<'_>) {
    c.find(locator)
        .await
        .unwrap_or_else(|e| panic!("{locator:?}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn sign_in(c: &Client, app: &TestApp, key: &str) {
    c.goto(&app.url(&format!("{BASE}/sign-in"))).await.unwrap();
    c.find(Locator::Id("key"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
    click(c, Locator::Css("button[type=submit]")).await;
    // The sign-in page's own URL contains `{BASE}/` too: wait until the browser has left it,
    // or the next navigation can abort the sign-in answer before its cookie is stored.
    for _ in 0..100 {
        let url = c.current_url().await.unwrap();
        if url.path().starts_with(BASE) && !url.path().ends_with("/sign-in") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the sign-in never finished: {}",
        c.current_url().await.unwrap()
    );
}

/// WCAG checks on the page as rendered: every text's contrast against its background
/// (≥ 4.5:1), every form control labelled. Returns what fails.
const A11Y: &str = r#"
const rgb = s => { const m = s.match(/[\d.]+/g) || []; return m.map(Number); };
const lum = ([r, g, b]) => { const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const background = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
  if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c.slice(0, 3); } return [255, 255, 255]; };
const bad = [];
for (const el of document.querySelectorAll('body *')) {
  if (el.closest('svg') || el.closest('details:not([open]) > :not(summary)')) continue;
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  const style = getComputedStyle(el);
  if (!own || style.visibility === 'hidden' || style.display === 'none' || el.getClientRects().length === 0) continue;
  const fg = rgb(style.color).slice(0, 3), bg = background(el);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  if (ratio < 4.5) bad.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 40)}"`);
}
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest('label') || el.getAttribute('aria-label');
  if (!labelled) bad.push(`unlabelled ${el.tagName} ${el.name}`);
}
return bad;
"#;

/// The page at `width` px scrolls sideways nowhere (wide tables scroll inside their cards) and
/// the accessibility checks find nothing.
async fn fits_and_reads(c: &Client, page: &str, width: u32) {
    let overflow: bool = c
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap();
    assert!(!overflow, "{page} scrolls sideways at {width} px");
    let a11y = c.execute(A11Y, vec![]).await.unwrap();
    assert_eq!(a11y, json!([]), "{page} at {width} px");
}

async fn shoot(c: &Client, dir: &std::path::Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Demo configuration and two days of demo traffic before the test's now.
async fn demo_app(dir: &std::path::Path) -> TestApp {
    let app = TestApp::start(dir).await;
    seed(&app.stores, now() - chrono::Duration::days(2))
        .await
        .unwrap();
    let mut generator = TrafficGenerator::new(now() - chrono::Duration::days(2));
    let mut batch = Vec::new();
    let mut t = now() - chrono::Duration::hours(48);
    while t < now() - chrono::Duration::minutes(1) {
        for k in 0..4 {
            batch.push(generator.event(t + chrono::Duration::seconds(k * 15)));
        }
        if batch.len() >= 1000 {
            post_with_scores(&app, &mut generator, &batch).await;
            batch.clear();
        }
        t += chrono::Duration::minutes(1);
    }
    post_with_scores(&app, &mut generator, &batch).await;
    app.wait_projected().await;
    app
}

/// Posts `events`, then the demo's scores for them.
async fn post_with_scores(app: &TestApp, generator: &mut TrafficGenerator, events: &[Value]) {
    assert_eq!(app.post(events).await.0, 200);
    let scores = generator.scores(events);
    if !scores.is_empty() {
        let (status, body) = app.send("POST", "/v1/scores", Some(json!(scores))).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (the service tier installs them)"]
async fn the_console_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let app = demo_app(dir.path()).await;
    let shots = std::env::var("TALLY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("tally-console-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    println!("screenshots: {}", shots.display());
    let driver = Driver::start().await;
    let c = browser(&driver).await;
    let mut seen = Vec::new();

    sign_in(&c, &app, ADMIN_KEY).await;
    seen.extend(problems(&c).await);

    // Every screen, wide and narrow.
    let experiment = app
        .id_where(
            &format!("{API}/experiments"),
            "name",
            tally::demo::DEMO_EXPERIMENT,
        )
        .await;
    let gpt = app
        .id_where(&format!("{API}/models"), "name", "gpt-4o")
        .await;
    let experiment_page = format!("/experiments/{experiment}");
    let model_page = format!("/models/{gpt}");
    let screens = [
        ("overview", "/"),
        ("features", "/features"),
        ("feature-overview", "/features/chatbot"),
        ("feature-models", "/features/chatbot?tab=models"),
        ("feature-prompts", "/features/chatbot?tab=prompts"),
        ("feature-settings", "/features/chatbot?tab=settings"),
        ("models", "/models"),
        ("spending", "/spending?time_range=7d"),
        ("budgets", "/budgets"),
        ("experiments", "/experiments"),
        ("experiment-results", experiment_page.as_str()),
        ("model-performance", model_page.as_str()),
        ("events", "/events?feature=chatbot&status=failed"),
        ("api-keys", "/api-keys"),
        ("audit", "/audit"),
    ];
    for (width, height) in [(1280u32, 900u32), (390, 844)] {
        c.set_window_size(width, height).await.unwrap();
        for (name, path) in screens {
            c.goto(&app.url(&format!("{BASE}{path}"))).await.unwrap();
            let body = text(&c, "main").await;
            assert!(!body.contains("could not be loaded"), "{path}: {body}");
            // Nothing scrolls sideways but wide tables inside their cards.
            fits_and_reads(&c, path, width).await;
            shoot(&c, &shots, &format!("{name}-{width}")).await;
            let found = problems(&c).await;
            assert!(found.is_empty(), "{path} at {width} px: {found:?}");
        }
    }
    c.set_window_size(1280, 900).await.unwrap();

    // The chatbot's error-rate chart leads to its failing calls, newest first with their
    // messages: the same newest failure the API answers.
    c.goto(&app.url(&format!("{BASE}/features/chatbot")))
        .await
        .unwrap();
    click(&c, Locator::LinkText("The failing calls of this window →")).await;
    wait_url(&c, "/events?").await;
    let newest = app
        .get(&format!(
            "{API}/events?feature=chatbot&status=failed&time_range=24h&limit=1"
        ))
        .await
        .1;
    let newest = &newest["data"][0];
    let row = text(&c, "#events tbody tr").await;
    assert!(
        row.contains(newest["event_id"].as_str().unwrap())
            && row.contains(newest["error_message"].as_str().unwrap()),
        "{row} / {newest}"
    );
    // The experiment's page shows the API's numbers and verdicts.
    let results = app
        .data(&format!("{API}/experiments/{experiment}/results"))
        .await;
    c.goto(&app.url(&format!("{BASE}{experiment_page}")))
        .await
        .unwrap();
    let table = text(&c, "#variants").await;
    for v in results["variants"].as_array().unwrap() {
        let requests = tally_console::format::count(&v["requests"]);
        assert!(
            table.contains(v["variant"].as_str().unwrap()) && table.contains(&requests),
            "{table} / {v}"
        );
    }
    let body = text(&c, "main").await;
    for m in results["comparisons"][0]["metrics"].as_array().unwrap() {
        assert!(body.contains(m["verdict"].as_str().unwrap()), "{m}");
    }
    // Its scores too: each variant's helpfulness mean as the API answers it.
    let scores = text(&c, "#scores").await;
    for v in results["variants"].as_array().unwrap() {
        for score in v["scores"].as_array().unwrap() {
            if let Some(mean) = score["mean"].as_f64() {
                assert!(scores.contains(&format!("{mean:.3}")), "{scores} / {score}");
            }
        }
    }
    assert!(
        scores.contains("helpfulness") && scores.contains("thumbs"),
        "{scores}"
    );
    seen.extend(problems(&c).await);

    // A prompt's test cases run from its page on a stand-in provider; the run's page shows
    // the API's numbers per model, wide and narrow.
    let (standin_url, _) = common::standin::stand_in().await;
    std::env::set_var(common::standin::KEY_VAR, common::standin::KEY);
    let make = |path: &'static str, body: Value| {
        let app = &app;
        async move {
            let (status, answer) = app.send("POST", &format!("{API}{path}"), Some(body)).await;
            assert!(status < 300, "{path}: {answer}");
            answer["data"].clone()
        }
    };
    let standin = common::standin::register(&app, &standin_url, &["standin-1"], None)
        .await
        .remove(0);
    let greeter = make(
        "/prompts",
        json!({"name": "greeter", "feature": "chatbot", "content": "Say hello to {{name}}"}),
    )
    .await;
    let greeter = greeter["prompt"]["id"].as_str().unwrap().to_string();
    for (name, who, check, expected) in [
        ("greets Ada", "Ada", "exact", "echo: Say hello to Ada"),
        ("names Bob", "Bob", "contains", "Bob"),
        ("shouts", "Cy", "regex", "^[A-Z ]+$"),
    ] {
        make(
            "/test-cases",
            json!({"name": name, "prompt_id": greeter, "variables": {"name": who}, "check": check, "expected": expected}),
        )
        .await;
    }
    c.goto(&app.url(&format!("{BASE}/features/chatbot?tab=prompts")))
        .await
        .unwrap();
    click(&c, Locator::Css(&format!("input[name='model_{standin}']"))).await;
    click(
        &c,
        Locator::Css(&format!(
            "form[action$='/prompts/{greeter}/test-runs'] button[type=submit]"
        )),
    )
    .await;
    wait_url(&c, "/test-runs/").await;
    flash(&c, "test run started: 3 calls").await;
    let run_page = c.current_url().await.unwrap().path().to_string();
    let run_id = run_page.rsplit('/').next().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let run = loop {
        let run = app.data(&format!("{API}/test-runs/{run_id}")).await;
        if run["status"] == "finished" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.refresh().await.unwrap();
    let models = text(&c, "#run-models").await;
    let expected = tally_console::format::percent(&run["models"][0]["pass_rate"]);
    assert!(models.contains(&expected), "{models} / {expected}");
    assert!(text(&c, "#run-calls")
        .await
        .contains("echo: Say hello to Ada"));
    for (width, height) in [(1280u32, 900u32), (390, 844)] {
        c.set_window_size(width, height).await.unwrap();
        c.refresh().await.unwrap();
        fits_and_reads(&c, "the run's page", width).await;
        shoot(&c, &shots, &format!("test-run-{width}")).await;
    }
    c.set_window_size(1280, 900).await.unwrap();
    seen.extend(problems(&c).await);

    // The overview's numbers are the API's.
    let overview = app.data(&format!("{API}/overview")).await;
    c.goto(&app.url(&format!("{BASE}/"))).await.unwrap();
    {
        let expected = tally_console::format::count(&overview["kpis"]["requests_24h"]);
        assert_ne!(
            expected, "—",
            "the API answered a number for #kpi-requests .value"
        );
        assert_eq!(text(&c, "#kpi-requests .value").await, expected);
    }
    {
        let expected = tally_console::format::money_of(
            &overview["spending"]["last_30_days"]["total_cost_usd"],
        );
        assert_ne!(
            expected, "—",
            "the API answered a number for #spend-30d .value"
        );
        assert_eq!(text(&c, "#spend-30d .value").await, expected);
    }

    // Live: the stream says the numbers changed, the page updates them in place (no reload:
    // a marker set on the document survives), and the indicator says it is connected.
    c.execute("window.__same_page = true;", vec![])
        .await
        .unwrap();
    let before = overview["kpis"]["requests_24h"].as_u64().unwrap();
    let at = (now() - chrono::Duration::seconds(30)).to_rfc3339();
    let fresh: Vec<Value> = (0..5)
        .map(|i| {
            json!({"event_id": format!("live-{i}"), "occurred_at": at, "feature": "chatbot",
            "provider": "anthropic", "model": "claude-3-5-sonnet", "environment": "production",
            "operation": "chat", "status": "success", "latency_ms": 500.0,
            "input_tokens": 100, "output_tokens": 50})
        })
        .collect();
    assert_eq!(app.post(&fresh).await.0, 200);
    app.wait_projected().await;
    let expected = tally_console::format::grouped(u128::from(before + 5));
    let mut shown = String::new();
    for _ in 0..300 {
        shown = text(&c, "#kpi-requests .value").await;
        if shown == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, expected, "the KPI updated live within 30 s");
    assert_eq!(text(&c, "#live").await, "live");
    let same = c
        .execute("return window.__same_page === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same, json!(true), "updated in place, not reloaded");
    seen.extend(problems(&c).await);

    // Switch feature and time range.
    c.goto(&app.url(&format!("{BASE}/features"))).await.unwrap();
    click(&c, Locator::LinkText("Chatbot")).await;
    wait_url(&c, "/features/chatbot").await;
    click(
        &c,
        Locator::Css("nav[aria-label='Time range'] a:nth-child(3)"),
    )
    .await;
    wait_url(&c, "time_range=7d").await;
    let metrics = app
        .data(&format!("{API}/features/chatbot/metrics?time_range=7d"))
        .await;
    {
        let expected = tally_console::format::money_of(&metrics["costs"]["total_cost_usd"]);
        assert_ne!(
            expected, "—",
            "the API answered a number for #f-cost .value"
        );
        assert_eq!(text(&c, "#f-cost .value").await, expected);
    }
    {
        let expected = tally_console::format::percent(&metrics["realtime"]["success_rate"]);
        assert_ne!(
            expected, "—",
            "the API answered a number for #f-success .value"
        );
        assert_eq!(text(&c, "#f-success .value").await, expected);
    }

    // Change the model in staging through the dialog; the history grows; traffic on the new
    // model shows in the per-model split; roll back.
    let staging = format!("{BASE}/features/chatbot?tab=models&environment=staging&time_range=1h");
    c.goto(&app.url(&staging)).await.unwrap();
    let rows_before = c
        .find_all(Locator::Css("#history tbody tr"))
        .await
        .unwrap()
        .len();
    let gpt = app
        .id_where(&format!("{API}/models"), "name", "gpt-4o")
        .await;
    click(&c, Locator::Css("details.dialog > summary")).await;
    click(
        &c,
        Locator::Css(&format!("input[name=model_id][value='{gpt}']")),
    )
    .await;
    click(&c, Locator::Css("details.dialog button[type=submit]")).await;
    wait_url(&c, "tab=models").await;
    flash(&c, "now uses openai/gpt-4o").await;
    let rows_after = c
        .find_all(Locator::Css("#history tbody tr"))
        .await
        .unwrap()
        .len();
    assert_eq!(rows_after, rows_before + 1);
    let current = app.data(&format!("{API}/features/chatbot")).await;
    assert_eq!(current["current_models"]["staging"]["model"], "gpt-4o");
    let split_before = text(&c, "#model-split").await;
    let at = (now() - chrono::Duration::seconds(20)).to_rfc3339();
    let events: Vec<Value> = (0..7)
        .map(|i| {
            json!({"event_id": format!("browser-{i}"), "occurred_at": at, "feature": "chatbot",
            "provider": "openai", "model": "gpt-4o", "environment": "staging", "operation": "chat",
            "status": "success", "latency_ms": 300.0, "input_tokens": 100, "output_tokens": 50})
        })
        .collect();
    assert_eq!(app.post(&events).await.0, 200);
    app.wait_projected().await;
    c.refresh().await.unwrap();
    let split_after = text(&c, "#model-split").await;
    assert_ne!(split_before, split_after);
    let perf = app
        .data(&format!(
            "{API}/analytics/performance?time_range=1h&feature=chatbot&environment=staging"
        ))
        .await;
    let gpt_row = perf["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "gpt-4o")
        .unwrap()
        .clone();
    assert!(
        split_after.contains(&format!(
            "openai/gpt-4o {}",
            tally_console::format::count(&gpt_row["usage_count"])
        )),
        "{split_after}"
    );
    click(&c, Locator::Css("form[action$='/rollback'] button")).await;
    c.accept_alert().await.unwrap();
    wait_url(&c, "tab=models").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    flash(&c, "rolled back chatbot in staging").await;
    let current = app.data(&format!("{API}/features/chatbot")).await;
    assert_ne!(current["current_models"]["staging"]["model"], "gpt-4o");
    seen.extend(problems(&c).await);

    // Export CSV: the link's file is the API's.
    c.goto(&app.url(&format!("{BASE}/spending?time_range=7d&group_by=model")))
        .await
        .unwrap();
    let href = c
        .find(Locator::LinkText("Export CSV"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let downloaded = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);",
            vec![json!(href)],
        )
        .await
        .unwrap();
    let api_csv = app
        .text(&format!(
            "{API}/analytics/spending?format=csv&group_by=model&time_range=7d"
        ))
        .await;
    assert_eq!(downloaded.as_str().unwrap(), api_csv);
    assert!(api_csv.starts_with("model,cost_usd,requests,unpriced_requests\r\n"));

    // Add a price from a model's card.
    c.goto(&app.url(&format!("{BASE}/models?q=gemini")))
        .await
        .unwrap();
    click(&c, Locator::XPath("//summary[contains(., 'Add a price')]")).await;
    let form = c
        .form(Locator::Css("form[action$='/prices']"))
        .await
        .unwrap();
    form.set_by_name("effective_from", "2026-04-01T00:00")
        .await
        .unwrap();
    form.set_by_name("input_usd_per_mtok", "0.10")
        .await
        .unwrap();
    form.set_by_name("output_usd_per_mtok", "0.40")
        .await
        .unwrap();
    form.submit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    flash(&c, "added a price for google/gemini").await;

    // Create a key (its secret shown once) and revoke it.
    c.goto(&app.url(&format!("{BASE}/api-keys"))).await.unwrap();
    let form = c
        .form(Locator::Css("form[action$='/api-keys']"))
        .await
        .unwrap();
    form.set_by_name("name", "browser test").await.unwrap();
    form.set_by_name("role", "viewer").await.unwrap();
    form.submit().await.unwrap();
    let secret = text(&c, "#new-secret").await;
    assert!(secret.starts_with("tally_"));
    let with_secret = client_with_key(&secret);
    let status = with_secret
        .get(app.url(&format!("{API}/overview")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    click(
        &c,
        Locator::XPath(
            "//tr[td[starts-with(., 'browser test')]]//form[contains(@action, '/revoke')]//button",
        ),
    )
    .await;
    c.accept_alert().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    flash(&c, "revoked the key browser test").await;
    let status = with_secret
        .get(app.url(&format!("{API}/overview")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    seen.extend(problems(&c).await);

    // A viewer sees no admin control, and a form posted anyway is refused.
    click(&c, Locator::Css(".who button")).await;
    wait_url(&c, "/sign-in").await;
    let viewer = tally::keys::create(app.stores.config.as_ref(), "viewer", Role::Viewer, now())
        .await
        .unwrap();
    sign_in(&c, &app, &viewer.key).await;
    for path in [
        "/features/chatbot?tab=models",
        "/models",
        "/budgets",
        "/features/chatbot?tab=settings",
    ] {
        c.goto(&app.url(&format!("{BASE}{path}"))).await.unwrap();
        let at = c.current_url().await.unwrap();
        assert_eq!(
            at.path(),
            format!("{BASE}{path}").split('?').next().unwrap(),
            "the viewer stays signed in on {path}"
        );
        let html = c.source().await.unwrap();
        for control in [
            "Change model",
            "Roll back",
            "Add a price",
            "Deploy…",
            ">Acknowledge<",
            "Save settings",
            ">API keys<",
        ] {
            assert!(!html.contains(control), "a viewer sees {control} on {path}");
        }
    }
    seen.extend(problems(&c).await);
    let before = app
        .data(&format!("{API}/features/chatbot/deployments"))
        .await;
    c.execute(
        "const f = document.createElement('form');
         f.method = 'post'; f.action = arguments[0];
         for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value],
                               ['environment', 'production'], ['model_id', arguments[1]]]) {
           const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
         }
         document.body.appendChild(f); f.submit();",
        vec![json!(format!("{BASE}/features/chatbot/deploy")), json!(gpt)],
    )
    .await
    .unwrap();
    let mut heading = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        heading = text(&c, "h1").await;
        if heading.contains("Not for this role") {
            break;
        }
    }
    assert!(
        heading.contains("Not for this role"),
        "{heading} at {}",
        c.current_url().await.unwrap()
    );
    assert_eq!(
        app.data(&format!("{API}/features/chatbot/deployments"))
            .await,
        before,
        "the refused form changed nothing"
    );
    // The refusal's 403 is the only failure the browser saw.
    let refused = problems(&c).await;
    assert!(refused.iter().all(|p| p.contains("403")), "{refused:?}");
    assert!(
        seen.is_empty(),
        "console errors or failed requests: {seen:?}"
    );
    c.close().await.unwrap();
    app.stop().await;
}
