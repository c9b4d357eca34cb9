//! How Tally's Kafka clients (producer, consumers, admin) reach brokers that demand TLS or
//! SASL, and what a refused first connection means.
//!
//! - [`KafkaSecurity`] becomes librdkafka properties on every client Tally makes:
//!   `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`,
//!   `ssl.ca.location`, then the operator's further properties. Those may not replace a
//!   property Tally sets for its guarantees ([`RESERVED`]: the idempotent producer, manual
//!   offsets) nor one of the settings above; [`KafkaSecurity::check`] refuses them by name.
//! - TLS (`SSL`, `SASL_SSL`) and SCRAM need librdkafka built with OpenSSL: the `kafka-tls`
//!   cargo feature ([`TLS_BUILT_IN`]). Without it such a configuration is refused before any
//!   client is made, saying how to build it.
//! - [`probe`] makes one metadata round trip with the configured security and collects what
//!   librdkafka reported on the way, so a refusal (authentication failed, certificate not
//!   trusted, TLS spoken to a plaintext listener or the reverse) is named at start-up instead
//!   of surfacing as endless reconnects.
//!
//! `Debug` never shows the password nor the value of a property whose name says it is secret.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

/// Whether this build's librdkafka has OpenSSL (TLS and SCRAM): the `kafka-tls` feature.
pub const TLS_BUILT_IN: bool = cfg!(feature = "kafka-tls");

/// Properties Tally sets itself on its clients (and their librdkafka aliases), or that would
/// break its guarantees when every replica gets the same value: further properties may not set
/// them.
pub const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "group.instance.id",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "batch.num.messages",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "allow.auto.create.topics",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "statistics.interval.ms",
];

/// Properties that would turn certificate verification off: refused, as for ClickHouse (give
/// the CA with `kafka_ca_file` instead).
const VERIFICATION: &[&str] = &[
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
];

/// Properties the security settings set (a further property may not set them too).
const SECURITY_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
];

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return Err("must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL".into()),
        })
    }
}

/// `sasl.mechanism` (the ones whose credentials are a user and a password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => SaslMechanism::Plain,
            "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
            "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
            _ => return Err("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into()),
        })
    }
}

/// What Tally's Kafka clients present to the brokers.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// Required with a SASL protocol.
    pub mechanism: Option<SaslMechanism>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of CAs to trust (TLS); librdkafka's default roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Further librdkafka properties, by their librdkafka names.
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = secret_property(k);
                (k.as_str(), if secret { "***" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("properties", &properties)
            .finish()
    }
}

/// Whether a property's value should never be shown (`ssl.key.password`,
/// `sasl.oauthbearer.config`, `ssl.keystore.password`, …).
pub fn secret_property(name: &str) -> bool {
    [
        "password",
        "secret",
        "key",
        "oauthbearer",
        "token",
        "credential",
        "jaas",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// A librdkafka error as text that never quotes a property's value (a refused value may be a
/// secret): a configuration error names only the property.
pub fn describe_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, _, key, _) => {
            format!("librdkafka refused the value of property {key:?}")
        }
        other => other.to_string(),
    }
}

/// A security configuration that cannot work, found before any connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("{protocol} needs librdkafka with OpenSSL, which this build of tally lacks: build it with `cargo build --release --features kafka-tls` (needs OpenSSL's headers, e.g. Debian's libssl-dev), or use the Docker image")]
    TlsNotBuilt { protocol: &'static str },
    #[error("{protocol} needs a SASL mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")]
    MechanismMissing { protocol: &'static str },
    #[error("a SASL mechanism is only used with SASL_PLAINTEXT or SASL_SSL, not {protocol}")]
    MechanismWithoutSasl { protocol: &'static str },
    #[error("{mechanism} needs a user name and a password")]
    CredentialsMissing { mechanism: &'static str },
    #[error(
        "a user name and password are only sent with SASL_PLAINTEXT or SASL_SSL, not {protocol}"
    )]
    CredentialsWithoutSasl { protocol: &'static str },
    #[error("a CA file is only used with SSL or SASL_SSL, not {protocol}")]
    CaFileWithoutTls { protocol: &'static str },
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("property {0:?} is set by Tally itself (or would be the same on every replica) and cannot be replaced")]
    Reserved(String),
    #[error("property {0:?} would turn certificate verification off; give the CA with kafka_ca_file instead")]
    Verification(String),
    #[error("property {0:?} has a setting of its own (kafka_security_protocol, kafka_sasl_mechanism, kafka_sasl_username, kafka_sasl_password, kafka_ca_file)")]
    OwnSetting(String),
}

impl KafkaSecurity {
    /// Refuses what cannot work: a protocol this build cannot speak, SASL without a mechanism
    /// or credentials (or the reverse), a CA file without TLS or that cannot be read, further
    /// properties that would replace Tally's own.
    pub fn check(&self) -> Result<(), SecurityError> {
        let protocol = self.protocol.as_str();
        let scram = matches!(
            self.mechanism,
            Some(SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)
        );
        if (self.protocol.tls() || scram) && !TLS_BUILT_IN {
            return Err(SecurityError::TlsNotBuilt {
                protocol: if scram && !self.protocol.tls() {
                    "SASL/SCRAM"
                } else {
                    protocol
                },
            });
        }
        match (self.protocol.sasl(), self.mechanism) {
            (true, None) => return Err(SecurityError::MechanismMissing { protocol }),
            (false, Some(_)) => return Err(SecurityError::MechanismWithoutSasl { protocol }),
            (true, Some(m)) if self.username.is_none() || self.password.is_none() => {
                return Err(SecurityError::CredentialsMissing {
                    mechanism: m.as_str(),
                })
            }
            (false, None) if self.username.is_some() || self.password.is_some() => {
                return Err(SecurityError::CredentialsWithoutSasl { protocol })
            }
            _ => {}
        }
        if let Some(path) = &self.ca_file {
            if !self.protocol.tls() {
                return Err(SecurityError::CaFileWithoutTls { protocol });
            }
            std::fs::File::open(path).map_err(|e| SecurityError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
        for name in self.properties.keys() {
            if RESERVED.contains(&name.as_str()) {
                return Err(SecurityError::Reserved(name.clone()));
            }
            if SECURITY_PROPERTIES.contains(&name.as_str()) {
                return Err(SecurityError::OwnSetting(name.clone()));
            }
            if VERIFICATION.contains(&name.as_str()) {
                return Err(SecurityError::Verification(name.clone()));
            }
        }
        Ok(())
    }

    /// Sets the security properties, then the further ones, on `config`.
    pub fn apply<'a>(&self, config: &'a mut ClientConfig) -> &'a mut ClientConfig {
        config.set("security.protocol", self.protocol.as_str());
        if let Some(m) = self.mechanism {
            config.set("sasl.mechanism", m.as_str());
        }
        if let Some(user) = &self.username {
            config.set("sasl.username", user);
        }
        if let Some(password) = &self.password {
            config.set("sasl.password", password);
        }
        if let Some(ca) = &self.ca_file {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }
}

/// Why the first round trip to the brokers failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// SASL authentication failed (user, password or mechanism).
    #[error("the brokers refused the SASL credentials: {0}")]
    Credentials(String),
    /// The brokers' certificate is not trusted or does not name the host.
    #[error("the brokers' certificate is not trusted: {0}")]
    Certificate(String),
    /// The listener speaks another protocol than the one configured.
    #[error("the brokers' listener {listener}: {reason}")]
    Protocol { listener: Listener, reason: String },
    /// No answer (down, DNS, network): worth waiting for.
    #[error("no broker answered: {0}")]
    Unreachable(String),
    /// The client could not even be made.
    #[error("the Kafka client could not be made: {0}")]
    Client(String),
}

/// What a listener that refused the configured protocol seems to want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// It speaks TLS (plaintext was sent: the first request was cut off).
    Tls,
    /// It does not speak TLS (a TLS handshake never completed).
    Plaintext,
    /// It demands SASL authentication (requests after the handshake were cut off).
    Sasl,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listener::Tls => "speaks TLS",
            Listener::Plaintext => "does not speak TLS",
            Listener::Sasl => "demands SASL authentication",
        })
    }
}

/// Collects the errors librdkafka reports while a probe runs.
#[derive(Default)]
struct Collector {
    reports: Mutex<Vec<String>>,
}

impl ClientContext for Collector {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut reports) = self.reports.lock() {
            reports.push(format!("{error}: {reason}"));
        }
    }
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        // The probe's client logs its connections in detail (`debug=broker,security`): the
        // states a connection reached say more than the final error.
        let telling = ["FAIL", "ERROR", "SASL", "SSL", "SECURITY", "AUTH"]
            .iter()
            .any(|f| facility.contains(f))
            || ["Disconnected", "failed", "timed out", "error"]
                .iter()
                .any(|m| message.contains(m));
        if telling {
            if let Ok(mut reports) = self.reports.lock() {
                if reports.len() < 500 {
                    reports.push(format!("{facility}: {message}"));
                }
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Collector {}

/// One metadata round trip to `brokers` with `security`, within `timeout`; a failure is
/// classified by what librdkafka reported meanwhile.
pub fn probe(brokers: &str, security: &KafkaSecurity, timeout: Duration) -> Result<(), ProbeError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", "tally-probe");
    security.apply(&mut config);
    // The probe's own, after the operator's properties so they cannot change how it reads the
    // connection. librdkafka's log level otherwise follows the `log` crate's, which may be off.
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    config
        .set("reconnect.backoff.ms", "200")
        .set("reconnect.backoff.max.ms", "1000")
        // A TLS handshake with a plaintext listener never ends by itself: bound it so the
        // probe sees why.
        .set(
            "socket.connection.setup.timeout.ms",
            (timeout.as_millis() / 2).max(1000).to_string(),
        )
        .set("debug", "broker,security");
    let client: BaseConsumer<Collector> = config
        .create_with_context(Collector::default())
        .map_err(|e| ProbeError::Client(describe_error(&e)))?;
    let started = std::time::Instant::now();
    loop {
        let step = timeout.saturating_sub(started.elapsed()).min(PROBE_STEP);
        let outcome = client.fetch_metadata(None, step);
        let Err(e) = outcome else { return Ok(()) };
        // Error events wait in the client's queue until it is polled.
        for _ in 0..100 {
            match client.poll(Duration::from_millis(10)) {
                Some(Err(e)) => client.context().error(e, ""),
                Some(Ok(_)) => {}
                None => break,
            }
        }
        let reports = client
            .context()
            .reports
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let verdict = classify(&describe_error(&e), &reports);
        // Nobody answering may change within the timeout; a refusal will not.
        if !matches!(verdict, ProbeError::Unreachable(_)) || started.elapsed() >= timeout {
            return Err(verdict);
        }
    }
}

/// How long one metadata request of a probe may take before its reports are read.
const PROBE_STEP: Duration = Duration::from_millis(1500);

/// Connection failures below the Kafka protocol that a broker which is merely restarting also
/// causes: they count against the configured protocol only when they repeat.
const REPEATS_NEEDED: usize = 2;

/// What librdkafka's reports say about a failed round trip (first match wins, most specific
/// first).
fn classify(outcome: &str, reports: &[String]) -> ProbeError {
    let said = |needles: &[&str]| {
        reports
            .iter()
            .find(|r| needles.iter().any(|n| r.contains(n)))
            .cloned()
    };
    if let Some(r) = said(&[
        "SASL authentication error",
        "SASL SCRAM authentication failed",
        "Authentication failed",
    ]) {
        return ProbeError::Credentials(r);
    }
    if let Some(r) = said(&[
        "certificate verify failed",
        "certificate could not be verified",
    ]) {
        return ProbeError::Certificate(r);
    }
    if let Some(r) = said(&[
        "SASL PLAIN mechanism handshake failed",
        "SASL SCRAM-SHA-256 mechanism handshake failed",
        "SASL SCRAM-SHA-512 mechanism handshake failed",
        "Unsupported SASL mechanism",
    ]) {
        return ProbeError::Credentials(r);
    }
    // A TLS handshake that a plaintext listener cannot finish.
    if let Some(r) = said(&[
        "wrong version number",
        "packet length too long",
        "record layer failure",
        "in state SSL_HANDSHAKE",
    ]) {
        return ProbeError::Protocol {
            listener: Listener::Plaintext,
            reason: r,
        };
    }
    // Connections cut off: right after connecting (the first request, ApiVersion: a TLS
    // listener reading plaintext), or after it (a listener that wants SASL first). A restarting
    // broker does this too, so only when it happened on several connections.
    let repeated = |needles: &[&str]| {
        let lines: Vec<&String> = reports
            .iter()
            .filter(|r| r.starts_with("FAIL") && needles.iter().any(|n| r.contains(n)))
            .collect();
        let suppressed: usize = lines
            .iter()
            .filter_map(|l| {
                let at = l.find(" identical error(s) suppressed")?;
                l[..at]
                    .rsplit([' ', ',', '('])
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        (lines.len() + suppressed >= REPEATS_NEEDED).then(|| lines[0].clone())
    };
    if let Some(r) = repeated(&[
        "Disconnected while requesting ApiVersion",
        "in state APIVERSION_QUERY",
    ]) {
        return ProbeError::Protocol {
            listener: Listener::Tls,
            reason: r,
        };
    }
    if let Some(r) = repeated(&["in state UP"]) {
        return ProbeError::Protocol {
            listener: Listener::Sasl,
            reason: r,
        };
    }
    let failures: Vec<&String> = reports
        .iter()
        .filter(|r| r.contains("FAIL") || r.contains("error"))
        .take(3)
        .collect();
    if failures.is_empty() {
        ProbeError::Unreachable(outcome.to_string())
    } else {
        ProbeError::Unreachable(format!(
            "{outcome} ({})",
            failures
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: SaslMechanism) -> KafkaSecurity {
        KafkaSecurity {
            protocol: SecurityProtocol::SaslPlaintext,
            mechanism: Some(mechanism),
            username: Some("tally".into()),
            password: Some("s3cret".into()),
            ..KafkaSecurity::default()
        }
    }

    #[test]
    fn names_read_as_librdkafka_writes_them() {
        for p in ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] {
            let parsed: SecurityProtocol = p.to_lowercase().parse().expect("protocol");
            assert_eq!(parsed.as_str(), p);
        }
        for m in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let parsed: SaslMechanism = m.to_lowercase().parse().expect("mechanism");
            assert_eq!(parsed.as_str(), m);
        }
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn configurations_that_cannot_work_are_refused() {
        assert_eq!(sasl(SaslMechanism::Plain).check(), Ok(()));
        let no_mechanism = KafkaSecurity {
            mechanism: None,
            ..sasl(SaslMechanism::Plain)
        };
        assert!(matches!(
            no_mechanism.check(),
            Err(SecurityError::MechanismMissing { .. })
        ));
        let no_password = KafkaSecurity {
            password: None,
            ..sasl(SaslMechanism::Plain)
        };
        assert!(matches!(
            no_password.check(),
            Err(SecurityError::CredentialsMissing { mechanism: "PLAIN" })
        ));
        let stray_user = KafkaSecurity {
            username: Some("u".into()),
            ..KafkaSecurity::default()
        };
        assert!(matches!(
            stray_user.check(),
            Err(SecurityError::CredentialsWithoutSasl { .. })
        ));
        let plain_ca = KafkaSecurity {
            ca_file: Some("/etc/ssl/ca.pem".into()),
            ..KafkaSecurity::default()
        };
        assert!(matches!(
            plain_ca.check(),
            Err(SecurityError::CaFileWithoutTls { .. })
        ));
        for (name, reserved) in [
            ("acks", true),
            ("enable.idempotence", true),
            ("sasl.password", false),
        ] {
            let mut s = KafkaSecurity::default();
            s.properties.insert(name.into(), "1".into());
            let err = s.check().expect_err(name);
            assert_eq!(
                matches!(err, SecurityError::Reserved(_)),
                reserved,
                "{name}: {err}"
            );
        }
        let mut no_check = KafkaSecurity::default();
        no_check.properties.insert(
            "ssl.endpoint.identification.algorithm".into(),
            "none".into(),
        );
        assert!(matches!(
            no_check.check(),
            Err(SecurityError::Verification(_))
        ));
        for alias in [
            "request.required.acks",
            "delivery.timeout.ms",
            "group.instance.id",
        ] {
            let mut s = KafkaSecurity::default();
            s.properties.insert(alias.into(), "1".into());
            assert!(
                matches!(s.check(), Err(SecurityError::Reserved(_))),
                "{alias}"
            );
        }
        let mut fine = KafkaSecurity::default();
        fine.properties
            .insert("socket.keepalive.enable".into(), "true".into());
        assert_eq!(fine.check(), Ok(()));
    }

    #[test]
    fn tls_and_scram_need_the_feature_that_builds_them() {
        let tls = KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ..KafkaSecurity::default()
        };
        let scram = sasl(SaslMechanism::ScramSha512);
        assert_eq!(tls.check().is_ok(), TLS_BUILT_IN);
        assert_eq!(scram.check().is_ok(), TLS_BUILT_IN);
        if !TLS_BUILT_IN {
            let err = scram.check().expect_err("scram").to_string();
            assert!(err.contains("--features kafka-tls"), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_secrets() {
        let mut s = sasl(SaslMechanism::Plain);
        s.properties
            .insert("ssl.key.password".into(), "keypass".into());
        s.properties.insert(
            "sasl.oauthbearer.config".into(),
            "principal=x secret=oauthpass".into(),
        );
        s.properties.insert("client.id".into(), "tally-1".into());
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("keypass"),
            "{debug}"
        );
        assert!(debug.contains("tally-1"), "{debug}");
    }

    /// Lines librdkafka 2.12 logged in the service tier's refusals (tansu with SASL, socat's
    /// TLS listener in front of tansu, a closed port), each read as the setting to fix.
    #[test]
    fn librdkafka_reports_are_read_as_the_setting_to_fix() {
        let kind = |e: ProbeError| match e {
            ProbeError::Credentials(_) => "credentials",
            ProbeError::Certificate(_) => "certificate",
            ProbeError::Protocol {
                listener: Listener::Tls,
                ..
            } => "listener speaks TLS",
            ProbeError::Protocol {
                listener: Listener::Plaintext,
                ..
            } => "listener has no TLS",
            ProbeError::Protocol {
                listener: Listener::Sasl,
                ..
            } => "listener wants SASL",
            ProbeError::Unreachable(_) => "unreachable",
            ProbeError::Client(_) => "client",
        };
        // (line, times seen, verdict)
        let cases = [
            ("FAIL: [thrd:sasl_plaintext://127.0.0.1:19193/bootstrap]: sasl_plaintext://127.0.0.1:19193/bootstrap: SASL authentication error: SASL SCRAM authentication failed: broker responded with unknown-user (after 59ms in state AUTH_REQ)", 1, "credentials"),
            ("FAIL: [thrd:sasl_plaintext://127.0.0.1:19198/bootstrap]: sasl_plaintext://127.0.0.1:19198/bootstrap: SASL authentication error: Invalid username or password (after 0ms in state AUTH_REQ)", 1, "credentials"),
            ("FAIL: [thrd:ssl://localhost:19194/bootstrap]: ssl://localhost:19194/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 5ms in state SSL_HANDSHAKE)", 1, "certificate"),
            ("FAIL: [thrd:ssl://127.0.0.1:19092/bootstrap]: ssl://127.0.0.1:19092/bootstrap: Connection setup timed out in state SSL_HANDSHAKE (after 5005ms in state SSL_HANDSHAKE)", 1, "listener has no TLS"),
            ("FAIL: [thrd:localhost:19194/bootstrap]: localhost:19194/bootstrap: Disconnected: connection reset by peer (after 0ms in state APIVERSION_QUERY)", 2, "listener speaks TLS"),
            ("FAIL: [thrd:127.0.0.1:19193/bootstrap]: 127.0.0.1:19193/bootstrap: Disconnected: connection reset by peer (after 0ms in state UP)", 2, "listener wants SASL"),
            ("FAIL: [thrd:ssl://localhost:19195/bootstrap]: ssl://localhost:19195/bootstrap: Disconnected: SSL connection closed by peer (after 2ms in state UP)", 2, "listener wants SASL"),
            // Once only: a broker that restarts does this too.
            ("FAIL: [thrd:127.0.0.1:19193/bootstrap]: 127.0.0.1:19193/bootstrap: Disconnected: connection reset by peer (after 0ms in state UP)", 1, "unreachable"),
            ("FAIL: [thrd:localhost:19194/bootstrap]: localhost:19194/bootstrap: Disconnected: connection reset by peer (after 0ms in state APIVERSION_QUERY)", 1, "unreachable"),
            ("FAIL: [thrd:127.0.0.1:19999/bootstrap]: 127.0.0.1:19999/bootstrap: Connect to ipv4#127.0.0.1:19999 failed: Connection refused (after 0ms in state CONNECT)", 3, "unreachable"),
        ];
        for (line, times, expected) in cases {
            let mut reports = vec![
                "Global error: AllBrokersDown (Local: All broker connections are down): 1/1 brokers are down".to_string(),
            ];
            reports.extend(std::iter::repeat_n(line.to_string(), times));
            let got = classify("Meta data fetch error: BrokerTransportFailure", &reports);
            assert_eq!(kind(got), expected, "{line} ×{times}");
        }
        // librdkafka folds repeats into one line with a count.
        let folded = "FAIL: [thrd:127.0.0.1:19193/bootstrap]: 127.0.0.1:19193/bootstrap: Disconnected: connection reset by peer (after 0ms in state UP, 1 identical error(s) suppressed)";
        assert_eq!(
            kind(classify("x", &[folded.to_string()])),
            "listener wants SASL"
        );
        assert_eq!(kind(classify("timed out", &[])), "unreachable");
    }

    #[test]
    fn a_probe_of_nothing_listening_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let outcome = probe(
            &format!("127.0.0.1:{port}"),
            &KafkaSecurity::default(),
            Duration::from_millis(1500),
        );
        assert!(
            matches!(outcome, Err(ProbeError::Unreachable(_))),
            "{outcome:?}"
        );
    }
}
