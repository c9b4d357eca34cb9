//! Service tier: Kafka clients with TLS and SASL against real brokers, as `.ci/secure-services.sh`
//! sets them up — tansu demanding SASL authentication, and tansu behind a TLS listener (socat
//! terminates TLS in front of it: tansu 0.6 parses `--cert` but never uses it), with and without
//! SASL. Through TLS, events are acknowledged and counted exactly as sent; with a piece
//! missing, start-up is refused with an error that names the setting.
//!
//! A *successful* SASL login needs `.ci/kafka-sasl-gate.py` in front of tansu: tansu 0.6 is
//! built without SASL/PLAIN, and its SCRAM users can only be created through a connection that
//! has already authenticated, so every SCRAM login is refused (which the refusal test uses:
//! tansu really runs the SCRAM exchange and answers `unknown-user`). The gate answers the
//! PLAIN handshake itself, checking user and password, then passes the connection through.
//! Not covered: a successful SCRAM login.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use tally::settings::Settings;

/// The brokers' addresses and the CA (`.ci/secure-services.sh` exports them).
struct Brokers {
    ca: String,
    /// SASL_PLAINTEXT (tansu --authentication).
    sasl: String,
    /// SSL (TLS in front of tansu).
    tls: String,
    /// SASL_SSL.
    sasl_tls: String,
    /// SASL_PLAINTEXT with PLAIN that can succeed (the gate), and its password for `tally`.
    plain: String,
    /// SASL_SSL with PLAIN that can succeed (TLS, then the gate).
    plain_tls: String,
    plain_password: String,
}

fn brokers() -> Brokers {
    let var = service_var;
    Brokers {
        ca: var("TALLY_TEST_TLS_CA"),
        sasl: var("TALLY_TEST_KAFKA_SASL_BROKERS"),
        tls: var("TALLY_TEST_KAFKA_TLS_BROKERS"),
        sasl_tls: var("TALLY_TEST_KAFKA_SASL_TLS_BROKERS"),
        plain: var("TALLY_TEST_KAFKA_PLAIN_BROKERS"),
        plain_tls: var("TALLY_TEST_KAFKA_PLAIN_TLS_BROKERS"),
        plain_password: var("TALLY_TEST_KAFKA_PLAIN_PASSWORD"),
    }
}

/// Settings loaded from `env` (plus a fresh topic and group) the way the binary loads them.
fn loaded(dir: &std::path::Path, env: &[(&str, String)]) -> Settings {
    let mut env = env.to_vec();
    env.push((
        "TALLY_KAFKA_TOPIC",
        format!("tally-sec-{}", uuid::Uuid::new_v4().simple()),
    ));
    env.push((
        "TALLY_KAFKA_GROUP",
        format!("g-{}", uuid::Uuid::new_v4().simple()),
    ));
    // tansu 0.6 cannot fetch from inside a record batch.
    env.push(("TALLY_KAFKA_BATCH_MESSAGES", "1".into()));
    env.push(("TALLY_KAFKA_PRODUCE_TIMEOUT_MS", "5000".into()));
    loaded_settings(dir, &env)
}

/// SASL/PLAIN credentials.
fn sasl_plain(user: &str, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TALLY_KAFKA_SASL_MECHANISM", "PLAIN".into()),
        ("TALLY_KAFKA_SASL_USERNAME", user.into()),
        ("TALLY_KAFKA_SASL_PASSWORD", password.into()),
    ]
}

/// Produces `events` through an app configured with `env`, then checks every distinct event
/// was read back and projected.
async fn round_trip(env: &[(&str, String)], brokers: &str) {
    let dir = tempfile::tempdir().unwrap();
    let settings = loaded(dir.path(), env);
    // The topic, created through the same listener (`tally migrate` does this).
    let k = tally::stores::kafka_settings(&settings, brokers);
    tally_storage::log::kafka::create_topic(&k, 2, 1)
        .await
        .unwrap();
    let app = TestApp::start_with(settings).await;
    let events = corpus(300, 23);
    let sent: Vec<serde_json::Value> = events.iter().map(|e| e.json()).collect();
    let (status, body) = app.post(&sent).await;
    assert_eq!(status, 200, "{env:?}: {body}");
    assert_eq!(body["data"]["accepted"], sent.len(), "{body}");
    app.wait_projected().await;
    let (_, ready) = app.get("/readyz").await;
    let distinct: std::collections::BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ready["pipeline"]["events_projected"],
        distinct.len(),
        "every event read back through {env:?}: {ready}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs .ci/secure-services.sh's brokers"]
async fn events_travel_through_sasl_and_tls_listeners() {
    let b = brokers();
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("kafka_password");
    // As a Kubernetes or Docker secret: the value and a line break.
    std::fs::write(&password_file, format!("{}\n", b.plain_password)).unwrap();
    let plain = |brokers: &str, protocol: &str| {
        vec![
            ("TALLY_KAFKA_BROKERS", brokers.to_string()),
            ("TALLY_KAFKA_SECURITY_PROTOCOL", protocol.to_string()),
            ("TALLY_KAFKA_SASL_MECHANISM", "PLAIN".to_string()),
            ("TALLY_KAFKA_SASL_USERNAME", "tally".to_string()),
            (
                "TALLY_KAFKA_SASL_PASSWORD_FILE",
                password_file.display().to_string(),
            ),
        ]
    };
    round_trip(&plain(&b.plain, "SASL_PLAINTEXT"), &b.plain).await;
    if !tally_storage::log::kafka::security::TLS_BUILT_IN {
        eprintln!("built without the kafka-tls feature: .ci/run runs the TLS round trips with it");
        return;
    }
    let tls = vec![
        ("TALLY_KAFKA_BROKERS", b.tls.clone()),
        ("TALLY_KAFKA_SECURITY_PROTOCOL", "ssl".into()),
        ("TALLY_KAFKA_CA_FILE", b.ca.clone()),
        // A further property, passed through to librdkafka.
        ("TALLY_KAFKA_PROPERTY_CLIENT_ID", "tally-tls-test".into()),
    ];
    round_trip(&tls, &b.tls).await;
    let mut both = plain(&b.plain_tls, "SASL_SSL");
    both.push(("TALLY_KAFKA_CA_FILE", b.ca.clone()));
    round_trip(&both, &b.plain_tls).await;
}

/// Variables to start with, and what the start-up error must say.
type Case<'a> = (Vec<(&'a str, String)>, Vec<&'a str>);

/// The start-up error of an app configured with `env` (it must not start).
async fn refusal(env: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match tally::Application::build(loaded(dir.path(), env)).await {
        Ok(_) => panic!("started with {env:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
#[ignore = "service tier: needs .ci/secure-services.sh's brokers"]
async fn a_missing_credential_or_protocol_is_refused_naming_the_setting() {
    let b = brokers();
    let brokers = |addr: &str| ("TALLY_KAFKA_BROKERS", addr.to_string());
    let protocol = |p: &str| ("TALLY_KAFKA_SECURITY_PROTOCOL", p.to_string());
    let scram = |user: &str| {
        vec![
            ("TALLY_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_string()),
            ("TALLY_KAFKA_SASL_USERNAME", user.to_string()),
            (
                "TALLY_KAFKA_SASL_PASSWORD",
                "not-a-known-password".to_string(),
            ),
        ]
    };
    let mut cases: Vec<Case> = vec![
        // No SASL against brokers that demand it: they close the connection after the handshake.
        (
            vec![brokers(&b.sasl)],
            vec!["demands SASL authentication", "to SASL_PLAINTEXT"],
        ),
        // Plaintext against a TLS listener: it cuts the first request off.
        (
            vec![brokers(&b.tls)],
            vec!["speaks TLS", "kafka_security_protocol", "to SSL"],
        ),
        // PLAIN with a wrong password (the gate checks it).
        (
            vec![
                brokers(&b.plain),
                protocol("SASL_PLAINTEXT"),
                ("TALLY_KAFKA_SASL_MECHANISM", "PLAIN".into()),
                ("TALLY_KAFKA_SASL_USERNAME", "tally".into()),
                ("TALLY_KAFKA_SASL_PASSWORD", "not-the-password".into()),
            ],
            vec![
                "refused the SASL credentials",
                "Invalid username or password",
                "kafka_sasl_password",
            ],
        ),
    ];
    if tally_storage::log::kafka::security::TLS_BUILT_IN {
        // TLS without the private CA.
        cases.push((
            vec![brokers(&b.tls), protocol("SSL")],
            vec!["not trusted", "kafka_ca_file"],
        ));
        // TLS against a plaintext listener: the handshake never completes.
        cases.push((
            vec![brokers(&b.sasl), protocol("SSL")],
            vec!["does not speak TLS", "to PLAINTEXT or SASL_PLAINTEXT"],
        ));
        // TLS, but no SASL where the listener demands it.
        cases.push((
            vec![
                brokers(&b.sasl_tls),
                protocol("SSL"),
                ("TALLY_KAFKA_CA_FILE", b.ca.clone()),
            ],
            vec!["demands SASL authentication", "to SASL_SSL"],
        ));
        // SASL/SCRAM with a user the brokers do not know, in plaintext and inside TLS.
        let mut plain = vec![brokers(&b.sasl), protocol("SASL_PLAINTEXT")];
        plain.extend(scram("nobody"));
        cases.push((
            plain,
            vec![
                "refused the SASL credentials",
                "kafka_sasl_username",
                "kafka_sasl_password",
            ],
        ));
        let mut tls = vec![
            brokers(&b.sasl_tls),
            protocol("SASL_SSL"),
            ("TALLY_KAFKA_CA_FILE", b.ca.clone()),
        ];
        tls.extend(scram("nobody"));
        cases.push((
            tls,
            vec!["refused the SASL credentials", "kafka_sasl_password"],
        ));
    } else {
        // The build says what it lacks instead of trying.
        let err = Settings::load(
            None,
            [
                ("TALLY_KAFKA_BROKERS".to_string(), b.tls.clone()),
                (
                    "TALLY_KAFKA_SECURITY_PROTOCOL".to_string(),
                    "SSL".to_string(),
                ),
            ],
        )
        .expect_err("SSL without the feature");
        assert!(err.to_string().contains("--features kafka-tls"), "{err}");
    }
    let mut sasl = vec![brokers(&b.sasl), protocol("SASL_PLAINTEXT")];
    sasl.extend(sasl_plain("tally", "broker-secret"));
    sasl.retain(|(k, _)| *k != "TALLY_KAFKA_SASL_PASSWORD");
    for (env, expected) in cases {
        let error = refusal(&env).await;
        for part in expected {
            assert!(error.contains(part), "{env:?}: {part:?} not in: {error}");
        }
        for secret in [
            "not-the-password",
            "not-a-known-password",
            &b.plain_password,
        ] {
            assert!(!error.contains(secret), "a password leaked: {error}");
        }
    }
    // A mechanism without its password is refused before any connection.
    let err = Settings::load(None, sasl.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .expect_err("no password");
    assert!(
        err.to_string()
            .contains("kafka_sasl_username / kafka_sasl_password"),
        "{err}"
    );
}
