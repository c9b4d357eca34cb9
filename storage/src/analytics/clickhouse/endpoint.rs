//! How the ClickHouse adapter reaches its server: the URL (`http://` or `https://`), the
//! credentials and the certificates it trusts.
//!
//! - Credentials come from the caller's settings or from the URL's user info (`user:pass@`,
//!   percent-decoded), never both; they travel as ClickHouse's `X-ClickHouse-User` /
//!   `X-ClickHouse-Key` headers (understood from 18.16 to current releases), never in the URL,
//!   and neither `Debug` nor [`ClickHouseEndpoint::url`] shows the password.
//! - `https://` trusts the system's roots (as `rustls-native-certs` finds them: `SSL_CERT_FILE`,
//!   the distribution's bundle) plus an optional PEM file of further CAs, for servers with a
//!   private CA. Certificates are always verified; there is no switch to turn that off.
//! - [`ClickHouseEndpoint::check`] asks the server for its version and classifies a failure
//!   ([`ConnectError`]): credentials refused, certificate not trusted, TLS spoken to a plain
//!   port or plain HTTP to a TLS port, nobody listening. The binary turns each into a start-up
//!   error that names the setting to change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use percent_encoding::percent_decode_str;

use crate::failure::causes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Keep-alive probes on idle pooled connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Pooled connections are dropped before ClickHouse's own keep-alive timeout (3 s) closes them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for a TCP connection (an address that drops packets would otherwise take the
/// operating system's two minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one [`ClickHouseEndpoint::check`] attempt.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts before a connection that fails below HTTP is blamed on the URL's scheme.
const CHECK_ATTEMPTS: usize = 3;
const CHECK_PAUSE: Duration = Duration::from_millis(500);

/// Where and as whom the ClickHouse adapter connects.
#[derive(Clone)]
pub struct ClickHouseEndpoint {
    /// The URL without user info.
    url: url::Url,
    user: Option<String>,
    password: Option<String>,
    /// The verifier's roots for `https://` (none for `http://`).
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The further CAs' file, for messages.
    ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClickHouseEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseEndpoint")
            .field("url", &self.url.as_str())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A setting of the endpoint that cannot work, before any connection is tried.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("not a URL ({0}); expected e.g. http://127.0.0.1:8123 or https://host:8443")]
    Url(String),
    #[error("the scheme must be http or https, not {0:?}")]
    Scheme(String),
    #[error("the URL must name a host")]
    NoHost,
    #[error("the {0} is given twice: in the URL's user info and as a setting; keep one")]
    GivenTwice(&'static str),
    #[error("a password needs a user")]
    PasswordWithoutUser,
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("a CA file is only used with an https:// URL")]
    CaFileWithoutTls,
    #[error("TLS set-up: {0}")]
    Tls(String),
}

/// Why a first request to the server failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// The server refused the user or password (or the user from this address).
    #[error("ClickHouse refused the credentials: {0}")]
    Credentials(String),
    /// The server's certificate is not trusted or does not name the host.
    #[error("ClickHouse's certificate is not trusted: {0}")]
    Certificate(String),
    /// `https://` to a port that does not speak TLS.
    #[error("no TLS at this address ({0})")]
    NotTls(String),
    /// `http://` to a port that answers with something other than HTTP (a TLS port, most
    /// likely), or closes the connection.
    #[error("the server did not answer plain HTTP ({0})")]
    NotHttp(String),
    /// Nothing listening, DNS, timeouts: worth waiting for.
    #[error("ClickHouse is unreachable: {0}")]
    Unreachable(String),
    /// Anything else the server answered.
    #[error("ClickHouse answered with an error: {0}")]
    Other(String),
}

impl ClickHouseEndpoint {
    /// Reads `url`, taking a user and password from its user info if it has one.
    pub fn parse(url: &str) -> Result<ClickHouseEndpoint, EndpointError> {
        let mut parsed =
            url::Url::parse(url.trim()).map_err(|e| EndpointError::Url(e.to_string()))?;
        let secure = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(EndpointError::Scheme(other.to_string())),
        };
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(EndpointError::NoHost);
        }
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let mut user = Some(decode(parsed.username())).filter(|u| !u.is_empty());
        let mut password = parsed.password().map(decode);
        // ClickHouse also takes `?user=…&password=…`: moved to the headers like user info,
        // so the URL shown in messages never carries them.
        let query: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (key, value) in &query {
            let slot = match key.as_str() {
                "user" => &mut user,
                "password" => &mut password,
                _ => continue,
            };
            if slot.is_some() {
                return Err(EndpointError::GivenTwice(if key == "user" {
                    "user"
                } else {
                    "password"
                }));
            }
            *slot = Some(value.clone());
        }
        let rest: Vec<&(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "user" && k != "password")
            .collect();
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        if password.is_some() && user.is_none() {
            return Err(EndpointError::PasswordWithoutUser);
        }
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let tls = if secure {
            Some(tls_config(None)?)
        } else {
            None
        };
        Ok(ClickHouseEndpoint {
            url: parsed,
            user,
            password,
            tls,
            ca_file: None,
        })
    }

    /// Sets the user and password of the settings; either may be given in the URL instead,
    /// not in both places.
    pub fn with_credentials(
        mut self,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<ClickHouseEndpoint, EndpointError> {
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            if self.user.is_some() {
                return Err(EndpointError::GivenTwice("user"));
            }
            self.user = Some(user.to_string());
        }
        if let Some(password) = password {
            if self.password.is_some() {
                return Err(EndpointError::GivenTwice("password"));
            }
            self.password = Some(password.to_string());
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(EndpointError::PasswordWithoutUser);
        }
        Ok(self)
    }

    /// Trusts the CAs in the PEM file at `path` besides the system's roots.
    pub fn with_ca_file(mut self, path: &Path) -> Result<ClickHouseEndpoint, EndpointError> {
        if self.tls.is_none() {
            return Err(EndpointError::CaFileWithoutTls);
        }
        self.tls = Some(tls_config(Some(path))?);
        self.ca_file = Some(path.to_path_buf());
        Ok(self)
    }

    /// The URL without credentials (for logs and messages).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The user the endpoint connects as, if any (`default` on the server otherwise).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// A client of `database`, with the settings that work on every supported server version:
    /// RowBinary without compression (18.16 mis-answers LZ4-compressed selects), no schema
    /// validation.
    pub fn client(&self, database: &str) -> Client {
        self.server_client().with_database(database)
    }

    /// A client of the server's default database (to create Tally's, or ask the version).
    pub fn server_client(&self) -> Client {
        let mut http = HttpConnector::new();
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let builder = {
            let mut b = HyperClient::builder(TokioExecutor::new());
            b.pool_idle_timeout(POOL_IDLE_TIMEOUT);
            b
        };
        let mut client = match &self.tls {
            Some(tls) => {
                http.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls.as_ref().clone())
                    .https_only()
                    .enable_http1()
                    .wrap_connector(http);
                Client::with_http_client(builder.build(https))
            }
            None => Client::with_http_client(builder.build(http)),
        }
        .with_url(self.url.as_str())
        .with_compression(clickhouse::Compression::None)
        .with_validation(false);
        if let Some(user) = &self.user {
            client = client.with_user(user);
        }
        if let Some(password) = &self.password {
            client = client.with_password(password);
        }
        client
    }

    /// Asks the server for its version: the first round trip, whose failure says which setting
    /// is wrong.
    ///
    /// Each attempt is bounded by [`CHECK_TIMEOUT`]; one that takes longer is `Unreachable`. A
    /// connection that fails below TLS or HTTP (reset, closed) is only blamed on the URL's
    /// scheme when [`CHECK_ATTEMPTS`] attempts in a row fail the same way — a server that is
    /// restarting resets connections too.
    pub async fn check(&self) -> Result<String, ConnectError> {
        self.check_within(CHECK_TIMEOUT).await
    }

    /// [`ClickHouseEndpoint::check`] with each attempt bounded by `bound`.
    async fn check_within(&self, bound: Duration) -> Result<String, ConnectError> {
        let mut last = None;
        for attempt in 0..CHECK_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(CHECK_PAUSE).await;
            }
            let outcome = tokio::time::timeout(
                bound,
                self.server_client()
                    .query("SELECT version()")
                    .fetch_one::<String>(),
            )
            .await;
            let error = match outcome {
                Ok(Ok(version)) => return Ok(version),
                Ok(Err(e)) => classify(&e, self.tls.is_some()),
                Err(_) => {
                    ConnectError::Unreachable(format!("no answer within {} ms", bound.as_millis()))
                }
            };
            match error {
                ConnectError::NotTls(_) | ConnectError::NotHttp(_) => last = Some(error),
                // Refusals are final at once; nobody answering is for the caller to wait on.
                other => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::Unreachable("no attempt made".into())))
    }
}

/// The TLS client configuration: ring's algorithms, TLS 1.2 and 1.3, the system's roots and
/// the CAs of `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, EndpointError> {
    let mut roots = rustls::RootCertStore::empty();
    // A system without a CA bundle still works with a CA file; a bundle's unreadable entries
    // are skipped (`check` reports an untrusted certificate if that matters).
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let ca_error = |reason: String| EndpointError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EndpointError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// ClickHouse's error codes that mean the credentials were refused: `UNKNOWN_USER`,
/// `WRONG_PASSWORD`, `REQUIRED_PASSWORD`, `IP_ADDRESS_NOT_ALLOWED` (18.16 and later) and
/// `AUTHENTICATION_FAILED` (current releases, which no longer say which part was wrong).
const CREDENTIAL_CODES: [u32; 5] = [192, 193, 194, 195, 516];

/// The code of a ClickHouse exception text (`Code: 193, e.displayText() = …` on 18.16,
/// `Code: 516. DB::Exception: …` on current releases).
fn exception_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// What a failed first request says about the endpoint's settings.
fn classify(error: &clickhouse::error::Error, secure: bool) -> ConnectError {
    let text = error.to_string();
    match error {
        clickhouse::error::Error::BadResponse(body) => {
            match exception_code(body) {
                Some(code) if CREDENTIAL_CODES.contains(&code) => {
                    ConnectError::Credentials(first_line(body))
                }
                // A proxy in front that refuses without an exception text.
                None if body.starts_with("401 ") || body.starts_with("403 ") => {
                    ConnectError::Credentials(first_line(body))
                }
                _ => ConnectError::Other(first_line(body)),
            }
        }
        clickhouse::error::Error::TimedOut => ConnectError::Unreachable(text),
        clickhouse::error::Error::Network(_) => {
            let chain = causes(error);
            if let Some(tls) = chain.iter().find_map(|e| e.downcast_ref::<rustls::Error>()) {
                return match tls {
                    rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType => {
                        ConnectError::Certificate(tls.to_string())
                    }
                    _ => ConnectError::NotTls(tls.to_string()),
                };
            }
            let refused = chain.iter().any(|e| {
                e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                    matches!(
                        io.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::HostUnreachable
                            | std::io::ErrorKind::NetworkUnreachable
                            | std::io::ErrorKind::AddrNotAvailable
                    )
                })
            });
            let resolve = chain.iter().any(|e| {
                let s = e.to_string();
                s.contains("dns error") || s.contains("failed to lookup address")
            });
            if refused || resolve {
                return ConnectError::Unreachable(describe(&chain));
            }
            if secure {
                // A handshake that ends before a certificate arrives (the peer closed on it).
                ConnectError::NotTls(describe(&chain))
            } else {
                // A TLS port answers a plain request with a TLS alert or closes it.
                ConnectError::NotHttp(describe(&chain))
            }
        }
        _ => ConnectError::Other(text),
    }
}

/// The causes' messages, outermost first, without repeats.
fn describe(chain: &[&(dyn std::error::Error + 'static)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_url_and_leave_it() {
        let e =
            ClickHouseEndpoint::parse("http://tally:p%40ss%3Aw0rd@ch.internal:8123").expect("ok");
        assert_eq!(e.url(), "http://ch.internal:8123/");
        assert_eq!(e.user(), Some("tally"));
        assert_eq!(e.password.as_deref(), Some("p@ss:w0rd"));
        let debug = format!("{e:?}");
        assert!(!debug.contains("p@ss"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }

    #[test]
    fn credentials_in_the_query_leave_it_too() {
        let e = ClickHouseEndpoint::parse(
            "https://ch:8443/?user=tally&password=s%3Dcret&max_execution_time=5",
        )
        .expect("ok");
        assert_eq!(e.url(), "https://ch:8443/?max_execution_time=5");
        assert_eq!(e.user(), Some("tally"));
        assert_eq!(e.password.as_deref(), Some("s=cret"));
        let bare = ClickHouseEndpoint::parse("http://ch:8123?password=x&user=u").expect("ok");
        assert_eq!(bare.url(), "http://ch:8123/");
        assert_eq!(
            ClickHouseEndpoint::parse("http://u:p@ch:8123/?password=x")
                .map(|_| ())
                .expect_err("twice"),
            EndpointError::GivenTwice("password")
        );
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_unreachable_within_the_bound() {
        // Accepts connections and reads, never writes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let e = ClickHouseEndpoint::parse(&format!("http://127.0.0.1:{port}")).expect("ok");
        let outcome = e.check_within(Duration::from_millis(300)).await;
        assert!(
            matches!(outcome, Err(ConnectError::Unreachable(_))),
            "{outcome:?}"
        );
    }

    #[test]
    fn credentials_from_settings_join_a_bare_url() {
        let e = ClickHouseEndpoint::parse("https://ch.example.com:8443")
            .expect("ok")
            .with_credentials(Some("tally"), Some("s3cret"))
            .expect("ok");
        assert_eq!(e.user(), Some("tally"));
        assert_eq!(e.password.as_deref(), Some("s3cret"));
        assert!(e.tls.is_some());
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let parse = |u: &str| {
            ClickHouseEndpoint::parse(u)
                .map(|_| ())
                .expect_err("refused")
        };
        assert_eq!(parse("ftp://h:1"), EndpointError::Scheme("ftp".into()));
        assert!(matches!(parse("not a url"), EndpointError::Url(_)));
        assert_eq!(
            parse("http://:pw@h:8123"),
            EndpointError::PasswordWithoutUser
        );
        let twice = ClickHouseEndpoint::parse("http://a:b@h:8123")
            .expect("ok")
            .with_credentials(Some("c"), None)
            .expect_err("refused");
        assert_eq!(twice, EndpointError::GivenTwice("user"));
        let twice = ClickHouseEndpoint::parse("http://a:b@h:8123")
            .expect("ok")
            .with_credentials(None, Some("d"))
            .expect_err("refused");
        assert_eq!(twice, EndpointError::GivenTwice("password"));
        let alone = ClickHouseEndpoint::parse("http://h:8123")
            .expect("ok")
            .with_credentials(None, Some("d"))
            .expect_err("refused");
        assert_eq!(alone, EndpointError::PasswordWithoutUser);
        let plain_ca = ClickHouseEndpoint::parse("http://h:8123")
            .expect("ok")
            .with_ca_file(Path::new("/nonexistent.pem"))
            .expect_err("refused");
        assert_eq!(plain_ca, EndpointError::CaFileWithoutTls);
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().expect("ok");
        let https = || ClickHouseEndpoint::parse("https://h:8443").expect("ok");
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            https().with_ca_file(&missing).expect_err("refused"),
            EndpointError::CaFile { path, .. } if path == missing
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("ok");
        assert!(matches!(
            https().with_ca_file(&empty).expect_err("refused"),
            EndpointError::CaFile { reason, .. } if reason.contains("no PEM certificate")
        ));
    }

    #[test]
    fn exception_codes_are_read_from_both_generations_of_text() {
        assert_eq!(
            exception_code(
                "Code: 193, e.displayText() = DB::Exception: Wrong password for user tally"
            ),
            Some(193)
        );
        assert_eq!(
            exception_code("Code: 516. DB::Exception: tally: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)"),
            Some(516)
        );
        assert_eq!(exception_code("no code here"), None);
        let refused = classify(
            &clickhouse::error::Error::BadResponse(
                "Code: 194, e.displayText() = DB::Exception: Password required for user default"
                    .into(),
            ),
            false,
        );
        assert!(matches!(refused, ConnectError::Credentials(m) if m.contains("Password required")));
        let other = classify(
            &clickhouse::error::Error::BadResponse(
                "Code: 60, e.displayText() = DB::Exception: Table x doesn't exist".into(),
            ),
            false,
        );
        assert!(matches!(other, ConnectError::Other(_)));
    }

    #[tokio::test]
    async fn nobody_listening_is_unreachable() {
        // A port just released: connecting is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("ok")
            .local_addr()
            .expect("ok")
            .port();
        let e = ClickHouseEndpoint::parse(&format!("http://127.0.0.1:{port}")).expect("ok");
        assert!(matches!(e.check().await, Err(ConnectError::Unreachable(_))));
    }

    #[tokio::test]
    async fn plain_http_to_a_port_that_closes_is_not_http_and_tls_to_it_is_not_tls() {
        // A listener that accepts and closes at once, like a TLS port refusing a plain request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("ok");
        let port = listener.local_addr().expect("ok").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = socket.write_all(b"\x15\x03\x03\x00\x02\x02\x46").await;
                drop(socket);
            }
        });
        let plain = ClickHouseEndpoint::parse(&format!("http://127.0.0.1:{port}")).expect("ok");
        assert!(
            matches!(plain.check().await, Err(ConnectError::NotHttp(_))),
            "{:?}",
            plain.check().await
        );
        let tls = ClickHouseEndpoint::parse(&format!("https://127.0.0.1:{port}")).expect("ok");
        assert!(
            matches!(tls.check().await, Err(ConnectError::NotTls(_))),
            "{:?}",
            tls.check().await
        );
    }
}
