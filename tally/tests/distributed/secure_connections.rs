//! Service tier: distributed mode's stores on servers that demand credentials and TLS, as
//! `.ci/secure-services.sh` sets them up — ClickHouse 18.16 serving HTTPS only with a
//! certificate from a private CA and a password-protected user; Postgres requiring TLS for
//! the database `tally_tls`. Configured fully (the password read from a secret file), the app
//! gives exactly the answers of the all-embedded default for the same events; configured with
//! a piece missing, it refuses to start with an error that names the setting to fix.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;

/// The secure servers' coordinates (`.ci/secure-services.sh` exports them).
struct Secure {
    ca: String,
    clickhouse_url: String,
    clickhouse_user: String,
    clickhouse_password: String,
    postgres_url: String,
}

fn secure() -> Secure {
    let var = service_var;
    Secure {
        ca: var("TALLY_TEST_TLS_CA"),
        clickhouse_url: var("TALLY_TEST_CLICKHOUSE_TLS_URL"),
        clickhouse_user: var("TALLY_TEST_CLICKHOUSE_TLS_USER"),
        clickhouse_password: var("TALLY_TEST_CLICKHOUSE_TLS_PASSWORD"),
        postgres_url: var("TALLY_TEST_POSTGRES_TLS_URL"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs .ci/secure-services.sh's servers"]
async fn stores_behind_passwords_and_tls_give_the_same_answers_as_embedded() {
    let secure = secure();
    let (pool, schema, scoped_url) = scoped_postgres(
        &format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            secure.postgres_url, secure.ca
        ),
        "tls",
    )
    .await;
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("clickhouse_password");
    // As a Kubernetes or Docker secret: the value and a line break.
    std::fs::write(&password_file, format!("{}\n", secure.clickhouse_password)).unwrap();
    let database = format!("tally_tls_{}", uuid::Uuid::new_v4().simple());

    let events = corpus(3000, 9);
    let embedded = answers_after(settings, &events).await;
    let secured_env = [
        ("TALLY_DATABASE_URL", scoped_url.clone()),
        ("TALLY_CLICKHOUSE_URL", secure.clickhouse_url.clone()),
        ("TALLY_CLICKHOUSE_USER", secure.clickhouse_user.clone()),
        (
            "TALLY_CLICKHOUSE_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        ("TALLY_CLICKHOUSE_CA_FILE", secure.ca.clone()),
        ("TALLY_CLICKHOUSE_DATABASE", database.clone()),
    ];
    let secured = answers_after(|dir| loaded_settings(dir, &secured_env), &events).await;
    assert_same_answers(&embedded, &secured);
    assert!(
        holds_configuration(&pool, &schema).await,
        "the secured run kept its configuration in Postgres"
    );
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ssl, "the connection to tally_tls is encrypted");
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}

/// Variables to start with, and what the start-up error must say.
type Case<'a> = (Vec<(&'a str, String)>, &'a [&'a str]);

/// The start-up error of an app configured with `env` (it must not start).
async fn refusal(env: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match tally::Application::build(loaded_settings(dir.path(), env)).await {
        Ok(_) => panic!(
            "started with {:?}",
            env.iter().map(|(k, _)| k).collect::<Vec<_>>()
        ),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
#[ignore = "service tier: needs .ci/secure-services.sh's servers"]
async fn a_missing_credential_or_certificate_is_refused_naming_the_setting() {
    let secure = secure();
    let url = || ("TALLY_CLICKHOUSE_URL", secure.clickhouse_url.clone());
    let user = || ("TALLY_CLICKHOUSE_USER", secure.clickhouse_user.clone());
    let password = || {
        (
            "TALLY_CLICKHOUSE_PASSWORD",
            secure.clickhouse_password.clone(),
        )
    };
    let ca = || ("TALLY_CLICKHOUSE_CA_FILE", secure.ca.clone());
    let cases: Vec<Case> = vec![
        // No credentials: the server's `default` user has a password nobody was told.
        (
            vec![url(), ca()],
            &["refused the credentials", "clickhouse_password"],
        ),
        (
            vec![
                url(),
                user(),
                ("TALLY_CLICKHOUSE_PASSWORD", "wrong".into()),
                ca(),
            ],
            &[
                "refused the credentials",
                "clickhouse_user",
                "clickhouse_password",
            ],
        ),
        // The private CA not given: the certificate cannot be verified.
        (
            vec![url(), user(), password()],
            &["not trusted", "clickhouse_ca_file"],
        ),
        // Plain HTTP to the HTTPS-only port.
        (
            vec![
                (
                    "TALLY_CLICKHOUSE_URL",
                    secure.clickhouse_url.replace("https://", "http://"),
                ),
                user(),
                password(),
            ],
            &["did not answer plain HTTP", "use https://"],
        ),
        // Postgres: TLS refused by the server's rules, then a certificate from an unknown CA.
        (
            vec![(
                "TALLY_DATABASE_URL",
                format!("{}?sslmode=disable", secure.postgres_url),
            )],
            &["no encryption", "sslmode=verify-full", "database_url"],
        ),
        (
            vec![(
                "TALLY_DATABASE_URL",
                format!("{}?sslmode=verify-full", secure.postgres_url),
            )],
            &["not trusted", "sslrootcert", "database_url"],
        ),
    ];
    for (env, expected) in cases {
        let error = refusal(&env).await;
        for part in expected {
            assert!(error.contains(part), "{part:?} not in: {error}");
        }
        assert!(
            !error.contains(&secure.clickhouse_password),
            "the password leaked: {error}"
        );
    }
}
