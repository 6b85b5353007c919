//! Settings: defaults in code -> optional TOML file (`--config` / `INLET_CONFIG`) -> environment.
//!
//! The environment always wins. Every variable Inlet reads is listed in [`ENV_VARS`], so the
//! list is greppable and unknown `INLET_*` variables can be warned about. Loading never writes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::IpPrivacy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: &'static str, message: String },
    #[error("setting {setting}: {message}")]
    Invalid { setting: String, message: String },
}

impl ConfigError {
    pub fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub mail: MailSettings,
    pub admin: AdminSettings,
    pub privacy: PrivacySettings,
    pub rate_limit: RateLimitSettings,
    pub spam: SpamSettings,
    pub outbox: OutboxSettings,
    pub writer: WriterSettings,
    pub consent: ConsentSettings,
    pub retention: RetentionSettings,
    pub log: LogSettings,
    /// The forms this instance serves. Absent: the three demo forms.
    #[serde(default = "crate::forms::demo_forms")]
    pub forms: Vec<FormConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub bind: String,
    /// Public base URL used in links (emails, redirects). Default: `http://{bind}`.
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// HTTP worker threads; default: one per core.
    pub workers: Option<usize>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".into(),
            public_url: None,
            body_limit_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            workers: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://…`.
    #[serde(serialize_with = "redact_url")]
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a connection (or SQLite's lock) before answering 503.
    pub acquire_timeout_ms: u64,
    /// SQLite `synchronous`: `normal` (default; WAL survives a process crash, may lose the last
    /// transactions on power loss) or `full` (survives power loss, slower).
    pub sqlite_synchronous: String,
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SecretString::from("sqlite://inlet.db"),
            max_connections: 8,
            acquire_timeout_ms: 3000,
            sqlite_synchronous: "normal".into(),
            migrate_on_start: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// lettre's URL form, e.g. `smtp://user:pass@host:587?tls=required`. Absent: `.eml` files.
    #[serde(serialize_with = "redact_opt_url")]
    pub smtp_url: Option<SecretString>,
    /// Where `.eml` files go when no SMTP server is configured.
    pub mail_dir: PathBuf,
    /// Default `From:` for every form.
    pub from: String,
    pub timeout_secs: u64,
    /// Optional DKIM signing of every message.
    pub dkim: Option<DkimSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    /// RSA key as PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`).
    #[default]
    Rsa,
    /// Ed25519 key as the base64 of its 32-byte seed.
    Ed25519,
}

/// DKIM: the DNS record lives at `{selector}._domainkey.{domain}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSettings {
    pub selector: String,
    pub domain: String,
    /// File holding the private key (never the key itself in the config).
    pub private_key_file: PathBuf,
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
}

impl Default for MailSettings {
    fn default() -> Self {
        MailSettings {
            smtp_url: None,
            mail_dir: PathBuf::from("mail"),
            from: "Inlet <inlet@localhost.localdomain>".into(),
            timeout_secs: 10,
            dkim: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token for `/v1/admin/*`. Absent: the admin API answers 401 to everyone.
    #[serde(serialize_with = "redact_opt")]
    pub token: Option<SecretString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    pub ip: IpPrivacy,
    /// Key for `ip = "hash"`; required in that mode.
    #[serde(serialize_with = "redact_opt")]
    pub ip_hash_key: Option<SecretString>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Sustained submissions per client IP per minute, and the burst on top.
    pub per_ip_per_minute: u32,
    pub per_ip_burst: u32,
    /// Sustained submissions per form per second, and the burst on top.
    pub per_form_per_second: u32,
    pub per_form_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            enabled: true,
            per_ip_per_minute: 30,
            per_ip_burst: 10,
            per_form_per_second: 500,
            per_form_burst: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamSettings {
    /// A submission sent sooner than this after page load (as the client reports it) is spam.
    pub min_submit_ms: u64,
}

impl Default for SpamSettings {
    fn default() -> Self {
        SpamSettings {
            min_submit_ms: 1500,
        }
    }
}

/// The group-commit writer in front of the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterSettings {
    /// Most submissions committed in one transaction.
    pub max_batch: usize,
    /// How long a writer may wait for more submissions before committing (0: commit whatever
    /// has arrived at once; batches still form naturally under load).
    pub max_wait_us: u64,
    /// Submissions waiting for a writer; past this, requests get 503 with Retry-After.
    pub queue_capacity: usize,
    /// Parallel writer tasks on PostgreSQL (SQLite always uses one).
    pub postgres_writers: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            max_batch: 256,
            max_wait_us: 0,
            queue_capacity: 4096,
            postgres_writers: 4,
        }
    }
}

/// The outbox worker: retries, backoff, leases, and per-recipient protection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxSettings {
    /// Run the background worker in this process (several instances may all run one).
    pub worker_enabled: bool,
    /// Attempts before a message is marked dead.
    pub max_attempts: u32,
    /// Backoff after the first failure; doubles each attempt (with jitter) up to the maximum.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long a claimed message is reserved for its worker. A worker that dies mid-send
    /// releases its messages when the lease expires (the one in flight may be sent twice).
    pub lease_ms: u64,
    /// Fallback polling when no wake-up arrives (other instances' submissions, retries).
    pub poll_interval_ms: u64,
    /// Messages claimed per round, and sent concurrently.
    pub batch_size: u32,
    pub concurrency: usize,
    /// A person who submits the same form again within this window gets one follow-up.
    pub follow_up_window_secs: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            worker_enabled: true,
            max_attempts: 8,
            backoff_base_ms: 30_000,
            backoff_max_ms: 3_600_000,
            lease_ms: 120_000,
            poll_interval_ms: 1000,
            batch_size: 256,
            concurrency: 32,
            follow_up_window_secs: 600,
        }
    }
}

/// Double opt-in, signed links (confirmation, download, unsubscribe) and where downloads live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSettings {
    /// HMAC keys for signed links, newest first: the first signs, every one verifies (key
    /// rotation: put the new key first, keep the old one until its links have expired). Empty:
    /// a key is generated once and kept in the database, so every instance shares it.
    #[serde(serialize_with = "redact_list")]
    pub signing_keys: Vec<SecretString>,
    /// How long a double opt-in confirmation link works; pending entries expire with it.
    pub confirm_ttl_secs: u64,
    /// Re-submitting while pending re-sends the confirmation at most once per this window.
    pub confirm_resend_window_secs: u64,
    /// How long a download link works.
    pub download_ttl_secs: u64,
    /// Folder holding the files named by forms' `download_file` (also Inlet's built-in demo
    /// files are found by name when this folder does not have them).
    pub downloads_dir: Option<PathBuf>,
    /// The `mailto:` half of `List-Unsubscribe`. Default: `unsubscribe@` the `mail.from` domain.
    /// Inlet does not read mail: route this mailbox to someone who runs `inlet leads unsubscribe`.
    pub unsubscribe_mailto: Option<String>,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        ConsentSettings {
            signing_keys: Vec::new(),
            confirm_ttl_secs: 30 * 86_400,
            confirm_resend_window_secs: 3_600,
            download_ttl_secs: 7 * 86_400,
            downloads_dir: None,
            unsubscribe_mailto: None,
        }
    }
}

/// What the retention job deletes, and how often it runs. 0 days keeps forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Spam-flagged submissions are deleted after this many days.
    pub spam_days: u32,
    /// Unconfirmed (double opt-in) submissions are deleted this many days after their
    /// confirmation link expired.
    pub unconfirmed_days: u32,
    /// Stored client IPs (and consent records' IPs) are cleared after this many days.
    pub ip_days: u32,
    /// How often the job runs in each instance (it is idempotent; several may run).
    pub interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            spam_days: 30,
            unconfirmed_days: 0,
            ip_days: 90,
            interval_secs: 3_600,
        }
    }
}

fn redact_list<S: Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|_| "[redacted]"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `inlet=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormKind {
    Inline,
    Popup,
    Download,
    Newsletter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Email,
    Text,
    Textarea,
    Tel,
    Url,
    Checkbox,
    Select,
    Hidden,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtraFields {
    /// Unknown fields are kept under `extra`, up to `max_extra_fields`.
    #[default]
    Keep,
    /// Unknown fields make the submission fail with 422.
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Human label (used in emails and the demo page).
    #[serde(default)]
    pub label: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplateConfig {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormConfig {
    pub id: String,
    pub kind: FormKind,
    pub fields: Vec<FieldConfig>,
    /// Origins (`https://example.com`) allowed to submit; `"*"` allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Where a no-JavaScript post lands after success. Default: Inlet's own thank-you page.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Shown by the thank-you page and the embed script.
    #[serde(default)]
    pub success_message: Option<String>,
    /// The follow-up email to the person; defaults read well when absent.
    #[serde(default)]
    pub follow_up: EmailTemplateConfig,
    /// Owners notified of each submission.
    #[serde(default)]
    pub notify: Vec<String>,
    /// For `download` forms: the asset the lead gets, as a URL (or a path under Inlet's
    /// public URL) that the signed link redirects to...
    #[serde(default)]
    pub download_url: Option<String>,
    /// ...or as a file name in `consent.downloads_dir` (or a built-in demo file), streamed by
    /// the signed link itself.
    #[serde(default)]
    pub download_file: Option<String>,
    /// Store submissions as pending and send only a confirmation link; the follow-up (and any
    /// download) goes out once the person confirms.
    #[serde(default)]
    pub double_opt_in: bool,
    /// The honeypot field's name: filled in means spam.
    #[serde(default = "default_honeypot")]
    pub honeypot: String,
    #[serde(default)]
    pub min_submit_ms: Option<u64>,
    #[serde(default)]
    pub extra_fields: ExtraFields,
    #[serde(default = "default_max_extra")]
    pub max_extra_fields: usize,
    /// `From:` for this form's mail; default `mail.from`.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

fn default_honeypot() -> String {
    "_gotcha".into()
}

fn default_max_extra() -> usize {
    20
}

/// Every environment variable Inlet reads, and the setting it sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("INLET_CONFIG", "(config file path)"),
    ("INLET_BIND", "server.bind"),
    ("INLET_PUBLIC_URL", "server.public_url"),
    ("INLET_BODY_LIMIT_BYTES", "server.body_limit_bytes"),
    (
        "INLET_TRUSTED_PROXIES",
        "server.trusted_proxies (comma-separated)",
    ),
    ("INLET_WORKERS", "server.workers"),
    ("INLET_DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("INLET_SQLITE_SYNCHRONOUS", "database.sqlite_synchronous"),
    ("INLET_SMTP_URL", "mail.smtp_url"),
    ("INLET_MAIL_DIR", "mail.mail_dir"),
    ("INLET_MAIL_FROM", "mail.from"),
    (
        "INLET_DKIM_SELECTOR",
        "mail.dkim.selector (with the next two)",
    ),
    ("INLET_DKIM_DOMAIN", "mail.dkim.domain"),
    ("INLET_DKIM_PRIVATE_KEY_FILE", "mail.dkim.private_key_file"),
    ("INLET_DKIM_ALGORITHM", "mail.dkim.algorithm (rsa|ed25519)"),
    ("INLET_ADMIN_TOKEN", "admin.token"),
    ("INLET_IP_PRIVACY", "privacy.ip (truncate|hash|drop|full)"),
    ("INLET_IP_HASH_KEY", "privacy.ip_hash_key"),
    ("INLET_RATE_LIMIT_ENABLED", "rate_limit.enabled"),
    (
        "INLET_RATE_LIMIT_PER_IP_PER_MINUTE",
        "rate_limit.per_ip_per_minute",
    ),
    (
        "INLET_RATE_LIMIT_PER_FORM_PER_SECOND",
        "rate_limit.per_form_per_second",
    ),
    ("INLET_OUTBOX_WORKER_ENABLED", "outbox.worker_enabled"),
    ("INLET_OUTBOX_MAX_ATTEMPTS", "outbox.max_attempts"),
    ("INLET_OUTBOX_LEASE_MS", "outbox.lease_ms"),
    ("INLET_OUTBOX_BACKOFF_BASE_MS", "outbox.backoff_base_ms"),
    ("INLET_SPAM_MIN_SUBMIT_MS", "spam.min_submit_ms"),
    (
        "INLET_SIGNING_KEYS",
        "consent.signing_keys (comma-separated, newest first)",
    ),
    ("INLET_CONFIRM_TTL_SECS", "consent.confirm_ttl_secs"),
    (
        "INLET_CONFIRM_RESEND_WINDOW_SECS",
        "consent.confirm_resend_window_secs",
    ),
    ("INLET_DOWNLOAD_TTL_SECS", "consent.download_ttl_secs"),
    ("INLET_DOWNLOADS_DIR", "consent.downloads_dir"),
    ("INLET_UNSUBSCRIBE_MAILTO", "consent.unsubscribe_mailto"),
    ("INLET_RETENTION_SPAM_DAYS", "retention.spam_days"),
    (
        "INLET_RETENTION_UNCONFIRMED_DAYS",
        "retention.unconfirmed_days",
    ),
    ("INLET_RETENTION_IP_DAYS", "retention.ip_days"),
    ("INLET_LOG_FORMAT", "log.format (text|json)"),
    ("INLET_LOG_LEVEL", "log.level"),
];

impl Settings {
    /// Loads defaults, then the file (if any), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, |k| std::env::var(k).ok())
    }

    /// As [`Settings::load`], with the environment given as a lookup (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = match file {
            Some(path) => Self::from_toml_file(path)?,
            None => Settings::default_with_demo_forms(),
        };
        settings.apply_env(env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The defaults: what `cargo run` with nothing configured serves.
    pub fn default_with_demo_forms() -> Settings {
        Settings {
            forms: crate::forms::demo_forms(),
            ..Settings::default()
        }
    }

    fn from_toml_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        })
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(var: &'static str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Env {
                var,
                message: format!("'{v}' is not valid: {e}"),
            })
        }
        fn parse_enum<T: serde::de::DeserializeOwned>(
            var: &'static str,
            v: &str,
        ) -> Result<T, ConfigError> {
            T::deserialize(
                serde::de::value::StrDeserializer::<serde::de::value::Error>::new(v.trim()),
            )
            .map_err(|e| ConfigError::Env {
                var,
                message: e.to_string(),
            })
        }
        for (var, _) in ENV_VARS {
            let Some(v) = env(var) else { continue };
            match *var {
                "DATABASE_URL" => self.database.url = SecretString::from(v),
                "INLET_BIND" => self.server.bind = v,
                "INLET_PUBLIC_URL" => self.server.public_url = Some(v),
                "INLET_BODY_LIMIT_BYTES" => self.server.body_limit_bytes = parse(var, &v)?,
                "INLET_TRUSTED_PROXIES" => {
                    self.server.trusted_proxies = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                "INLET_WORKERS" => self.server.workers = Some(parse(var, &v)?),
                "INLET_DATABASE_MAX_CONNECTIONS" => {
                    self.database.max_connections = parse(var, &v)?;
                }
                "INLET_SQLITE_SYNCHRONOUS" => self.database.sqlite_synchronous = v,
                "INLET_SMTP_URL" => self.mail.smtp_url = Some(SecretString::from(v)),
                "INLET_MAIL_DIR" => self.mail.mail_dir = PathBuf::from(v),
                "INLET_MAIL_FROM" => self.mail.from = v,
                "INLET_DKIM_SELECTOR" => self.dkim_mut().selector = v,
                "INLET_DKIM_DOMAIN" => self.dkim_mut().domain = v,
                "INLET_DKIM_PRIVATE_KEY_FILE" => {
                    self.dkim_mut().private_key_file = PathBuf::from(v)
                }
                "INLET_DKIM_ALGORITHM" => self.dkim_mut().algorithm = parse_enum(var, &v)?,
                "INLET_ADMIN_TOKEN" => self.admin.token = Some(SecretString::from(v)),
                "INLET_IP_PRIVACY" => self.privacy.ip = parse_enum(var, &v)?,
                "INLET_IP_HASH_KEY" => self.privacy.ip_hash_key = Some(SecretString::from(v)),
                "INLET_RATE_LIMIT_ENABLED" => self.rate_limit.enabled = parse(var, &v)?,
                "INLET_RATE_LIMIT_PER_IP_PER_MINUTE" => {
                    self.rate_limit.per_ip_per_minute = parse(var, &v)?;
                }
                "INLET_RATE_LIMIT_PER_FORM_PER_SECOND" => {
                    self.rate_limit.per_form_per_second = parse(var, &v)?;
                }
                "INLET_OUTBOX_WORKER_ENABLED" => self.outbox.worker_enabled = parse(var, &v)?,
                "INLET_OUTBOX_MAX_ATTEMPTS" => self.outbox.max_attempts = parse(var, &v)?,
                "INLET_OUTBOX_LEASE_MS" => self.outbox.lease_ms = parse(var, &v)?,
                "INLET_OUTBOX_BACKOFF_BASE_MS" => self.outbox.backoff_base_ms = parse(var, &v)?,
                "INLET_SPAM_MIN_SUBMIT_MS" => self.spam.min_submit_ms = parse(var, &v)?,
                "INLET_SIGNING_KEYS" => {
                    self.consent.signing_keys = v
                        .split(',')
                        .map(str::trim)
                        .filter(|k| !k.is_empty())
                        .map(|k| SecretString::from(k.to_string()))
                        .collect();
                }
                "INLET_CONFIRM_TTL_SECS" => self.consent.confirm_ttl_secs = parse(var, &v)?,
                "INLET_CONFIRM_RESEND_WINDOW_SECS" => {
                    self.consent.confirm_resend_window_secs = parse(var, &v)?;
                }
                "INLET_DOWNLOAD_TTL_SECS" => self.consent.download_ttl_secs = parse(var, &v)?,
                "INLET_DOWNLOADS_DIR" => self.consent.downloads_dir = Some(PathBuf::from(v)),
                "INLET_UNSUBSCRIBE_MAILTO" => self.consent.unsubscribe_mailto = Some(v),
                "INLET_RETENTION_SPAM_DAYS" => self.retention.spam_days = parse(var, &v)?,
                "INLET_RETENTION_UNCONFIRMED_DAYS" => {
                    self.retention.unconfirmed_days = parse(var, &v)?;
                }
                "INLET_RETENTION_IP_DAYS" => self.retention.ip_days = parse(var, &v)?,
                "INLET_LOG_FORMAT" => self.log.format = parse_enum(var, &v)?,
                "INLET_LOG_LEVEL" => self.log.level = v,
                _ => {}
            }
        }
        Ok(())
    }

    fn dkim_mut(&mut self) -> &mut DkimSettings {
        self.mail.dkim.get_or_insert_with(|| DkimSettings {
            selector: String::new(),
            domain: String::new(),
            private_key_file: PathBuf::new(),
            algorithm: DkimAlgorithm::Rsa,
        })
    }

    /// Checks every plain setting (addresses, URLs, limits, modes) without building anything
    /// and without touching the network.
    pub fn validate_scalars(&self) -> Result<(), ConfigError> {
        self.database_backend()?;
        self.bind_addr()?;
        self.trusted_proxies()?;
        if self.server.body_limit_bytes < 256 {
            return Err(ConfigError::invalid(
                "server.body_limit_bytes",
                "must be at least 256",
            ));
        }
        if let Some(url) = &self.server.public_url {
            parse_http_url(url).map_err(|m| ConfigError::invalid("server.public_url", m))?;
        }
        if let Some(url) = &self.mail.smtp_url {
            let u = url::Url::parse(url.expose_secret()).map_err(|e| {
                ConfigError::invalid("mail.smtp_url (INLET_SMTP_URL)", format!("not a URL: {e}"))
            })?;
            if !matches!(u.scheme(), "smtp" | "smtps") {
                return Err(ConfigError::invalid(
                    "mail.smtp_url (INLET_SMTP_URL)",
                    format!("unknown scheme '{}': use smtp:// or smtps://", u.scheme()),
                ));
            }
        }
        if !matches!(
            self.database.sqlite_synchronous.as_str(),
            "normal" | "full" | "off"
        ) {
            return Err(ConfigError::invalid(
                "database.sqlite_synchronous",
                "must be normal, full or off",
            ));
        }
        if self
            .consent
            .signing_keys
            .iter()
            .any(|k| k.expose_secret().len() < 32)
        {
            return Err(ConfigError::invalid(
                "consent.signing_keys (INLET_SIGNING_KEYS)",
                "each key must be at least 32 characters (e.g. `openssl rand -hex 32`)",
            ));
        }
        if self.consent.confirm_ttl_secs == 0 || self.consent.download_ttl_secs == 0 {
            return Err(ConfigError::invalid(
                "consent.confirm_ttl_secs / consent.download_ttl_secs",
                "must be at least 1",
            ));
        }
        if let Some(m) = &self.consent.unsubscribe_mailto {
            crate::domain::EmailAddress::parse(m).map_err(|e| {
                ConfigError::invalid(
                    "consent.unsubscribe_mailto (INLET_UNSUBSCRIBE_MAILTO)",
                    format!("'{m}' {e}"),
                )
            })?;
        }
        if self.privacy.ip == IpPrivacy::Hash && self.privacy.ip_hash_key.is_none() {
            return Err(ConfigError::invalid(
                "privacy.ip_hash_key (INLET_IP_HASH_KEY)",
                "is required when privacy.ip = \"hash\"",
            ));
        }
        if self.rate_limit.per_ip_per_minute == 0 || self.rate_limit.per_form_per_second == 0 {
            return Err(ConfigError::invalid(
                "rate_limit",
                "rates must be at least 1 (set rate_limit.enabled = false to turn limiting off)",
            ));
        }
        if self.outbox.max_attempts == 0
            || self.outbox.batch_size == 0
            || self.outbox.concurrency == 0
        {
            return Err(ConfigError::invalid(
                "outbox",
                "max_attempts, batch_size and concurrency must be at least 1",
            ));
        }
        crate::mail::parse_mailbox(&self.mail.from)
            .map_err(|m| ConfigError::invalid("mail.from (INLET_MAIL_FROM)", m))?;
        Ok(())
    }

    /// Everything [`Settings::validate_scalars`] checks, plus the parts that are built: forms,
    /// email templates (compiled and rendered once with sample data) and the DKIM key.
    /// `Application::build` builds those itself instead, so it calls only the scalar half.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_scalars()?;
        crate::forms::FormRegistry::build(self)?;
        crate::mail::Templates::build(self)?;
        crate::consent::ResolvedAssets::resolve(
            self,
            &crate::snippet::Assets::load(),
            "http://localhost",
        )?;
        if let Some(d) = &self.mail.dkim {
            crate::mail::load_dkim(d)?;
        }
        Ok(())
    }

    pub fn database_backend(&self) -> Result<crate::store::Backend, ConfigError> {
        crate::store::Backend::from_url(self.database.url.expose_secret())
            .map_err(|m| ConfigError::invalid("database.url (DATABASE_URL)", m))
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.bind.parse().map_err(|_| {
            ConfigError::invalid(
                "server.bind (INLET_BIND)",
                format!(
                    "'{}' is not an address like 127.0.0.1:8080",
                    self.server.bind
                ),
            )
        })
    }

    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.server
            .trusted_proxies
            .iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            "server.trusted_proxies (INLET_TRUSTED_PROXIES)",
                            format!("'{s}' is not an IP address or CIDR"),
                        )
                    })
            })
            .collect()
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }

    /// The effective configuration as TOML, every secret redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `INLET_*` variables that Inlet does not know: probably typos worth a warning.
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("INLET_") && !ENV_VARS.iter().any(|(v, _)| v == k))
        .collect()
}

pub fn parse_http_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("'{s}' is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("'{s}' must be an absolute http(s) URL"));
    }
    Ok(u)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `scheme://user:[redacted]@host/…`: the shape stays visible, the password does not.
pub fn redacted_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("[redacted]"));
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret = ["password", "pass", "token", "secret"].contains(&k.as_ref());
                    (
                        k.into_owned(),
                        if secret {
                            "[redacted]".into()
                        } else {
                            v.into_owned()
                        },
                    )
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => "[redacted: not a URL]".into(),
    }
}

fn redact_url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(v.expose_secret()))
}

fn redact_opt_url<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&redacted_url(v.expose_secret())),
        None => s.serialize_none(),
    }
}

fn redact_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_beats_defaults() {
        let s = Settings::load_from(
            None,
            env(&[
                ("DATABASE_URL", "postgres://x@h/db"),
                ("INLET_BIND", "0.0.0.0:9"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.url.expose_secret(), "postgres://x@h/db");
        assert_eq!(s.server.bind, "0.0.0.0:9");
    }

    #[test]
    fn unknown_database_scheme_names_the_setting() {
        let e = Settings::load_from(None, env(&[("DATABASE_URL", "mysql://h/db")])).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
    }

    #[test]
    fn redaction_hides_passwords() {
        let r = redacted_url("smtp://user:hunter2@mail.example.com:587?tls=required");
        assert!(
            !r.contains("hunter2") && r.contains("user") && r.contains("587"),
            "{r}"
        );
    }
}
