//! Settings as plain data: defaults in code -> optional TOML file (`--config` / `INLET_CONFIG`)
//! -> environment, layered by figment. The environment always wins; [`env`] has the one
//! nesting rule that reaches every setting and the older names that keep working.
//!
//! Loading reads and checks values; it builds nothing (forms, templates, the DKIM key and the
//! download assets are built once, by `startup`) and never writes. Nothing here imports a
//! feature module.

mod demo;
pub mod env;
mod qualification;
mod sequences;

pub use demo::{demo_forms, demo_handoff, demo_scoring, demo_sequences, demo_stages};
pub use qualification::{
    ActivityKind, AwayConfig, CrmConfig, CrmSettings, EmailDomainKind, HandoffSettings,
    OwnerConfig, RouteConfig, ScoreRuleConfig, ScoringSettings, StageSettings,
    WebhookEndpointConfig, WebhookSettings,
};
pub use sequences::{
    EnrollConfig, EnrollOn, ExitConfig, Reenroll, ReplySettings, SequenceConfig, StepConfig,
    WindowConfig,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use figment::providers::{Format, Toml};
use figment::Figment;

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
    Env { var: String, message: String },
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
    /// A Redis shared by every instance for the limits (off without a URL).
    pub redis: RedisSettings,
    pub spam: SpamSettings,
    pub outbox: OutboxSettings,
    pub writer: WriterSettings,
    pub consent: ConsentSettings,
    pub retention: RetentionSettings,
    pub console: ConsoleSettings,
    pub views: ViewSettings,
    pub log: LogSettings,
    /// Lead scoring (absent with the demo forms: the demo's rules).
    pub scoring: ScoringSettings,
    /// Lifecycle stage rules (absent with the demo forms: the demo's).
    pub stages: StageSettings,
    /// Sales owners, routing and the hand-off's clock (absent with the demo forms: one demo
    /// owner).
    pub handoff: HandoffSettings,
    pub webhooks: WebhookSettings,
    /// CRM adapters (HubSpot, Salesforce, Pipedrive).
    pub crm: CrmSettings,
    /// Nurture sequences (absent with the demo forms: the demo's whitepaper sequence).
    pub sequences: Vec<SequenceConfig>,
    /// Where replies to sequence mail go, and the inbound endpoint's credential.
    pub replies: ReplySettings,
    /// The forms this instance serves. Absent: the three demo forms.
    #[serde(default = "demo_forms")]
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
    /// The whole request body must arrive within this many milliseconds of the request's head
    /// (a client trickling its body, or stopping, gets 408 instead of holding a connection).
    pub body_timeout_ms: u64,
    /// Request bodies one client (an IPv4 address or an IPv6 /64) may be sending at once; the
    /// next one is answered 429 before its body is read. 0: no cap. Behind a proxy, set
    /// `trusted_proxies`, or every visitor is the proxy.
    pub max_body_reads_per_client: u32,
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
            body_timeout_ms: 10_000,
            max_body_reads_per_client: 16,
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
    /// SQLite's writer's page cache, in MiB (readers keep SQLite's default). Pages it misses
    /// come from the operating system's cache: measured on a 1 M-lead database, 16 MiB wrote
    /// as fast as 32 and kept the process 18 MiB smaller (see BENCHMARKS.md).
    pub sqlite_cache_mib: u32,
    pub migrate_on_start: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SecretString::from("sqlite://inlet.db"),
            max_connections: 8,
            acquire_timeout_ms: 3000,
            sqlite_synchronous: "normal".into(),
            sqlite_cache_mib: 16,
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

/// The shortest admin token accepted (a guessable one would open every lead's data).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 24;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token for `/v1/admin/*`. Absent: the admin API answers 401 to everyone.
    #[serde(serialize_with = "redact_opt")]
    pub token: Option<SecretString>,
    /// Bearer token for `GET /metrics`. Absent (the default): metrics are open, for a scraper
    /// on a private network.
    #[serde(serialize_with = "redact_opt")]
    pub metrics_token: Option<SecretString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacySettings {
    pub ip: IpPrivacy,
    /// Key for `ip = "hash"`; required in that mode.
    #[serde(serialize_with = "redact_opt")]
    pub ip_hash_key: Option<SecretString>,
    /// Keys the suppression list's address hashes (at least 32 characters). Unset: a key
    /// generated once and kept in the database, so a copy of the database alone could still
    /// test addresses against the list. Changing it later is refused at startup.
    #[serde(serialize_with = "redact_opt")]
    pub suppression_key: Option<SecretString>,
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
    /// Mail to addresses nobody has confirmed (follow-ups of forms without double opt-in,
    /// confirmation requests), per client network (IPv4 /24, IPv6 /64) and per recipient, an
    /// hour. Past a cap the submission is still stored and owners are still notified; the
    /// message to the typed address is stored as `skipped` with the reason. 0: no cap. These
    /// apply whether or not `enabled` is set.
    pub unconfirmed_mail_per_network_per_hour: u32,
    pub unconfirmed_mail_per_recipient_per_hour: u32,
    /// Form views (`POST /v1/forms/{id}/views`) per client network (IPv4 address, IPv6 /64)
    /// per minute, all usable at once; past it views are not counted (429).
    pub views_per_ip_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            enabled: true,
            per_ip_per_minute: 30,
            per_ip_burst: 10,
            per_form_per_second: 500,
            per_form_burst: 1000,
            unconfirmed_mail_per_network_per_hour: 30,
            unconfirmed_mail_per_recipient_per_hour: 3,
            views_per_ip_per_minute: 120,
        }
    }
}

/// Redis, shared by several instances so their limits are global: the per-IP and per-form
/// submission limits, the view limit, the caps on mail to unconfirmed addresses, and the
/// throttles on failed admin credentials and console sign-ins. Each instance's own in-memory
/// limiter still runs first (what it refuses never costs a Redis round trip); Redis decides
/// for what it lets through. Unreachable or slow Redis: each instance limits on its own
/// until it answers again (fail open to the local limiter, counted in
/// `inlet_redis_fallbacks_total` and logged when the state changes), never a 5xx.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[:password@]host:6379[/db]` (`rediss://` for TLS is not built in). Unset:
    /// limits per instance.
    #[serde(serialize_with = "redact_opt_url")]
    pub url: Option<SecretString>,
    /// Longest wait for Redis's answer before the local limiter decides alone.
    pub timeout_ms: u64,
    /// After a failure, how long each instance uses only its local limiter before it tries
    /// Redis again (so a dead Redis costs one timeout per this period, not one per request).
    pub retry_ms: u64,
    /// Prefix of every key Inlet writes (keys expire by themselves once a limit is full again).
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            timeout_ms: 50,
            retry_ms: 1_000,
            key_prefix: "inlet:".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamSettings {
    /// Sent sooner than this after page load (as the client reports it): a weak spam signal
    /// (30 points; within a quarter of it, 50). Quarantine takes 70 points.
    pub min_submit_ms: u64,
    /// A client network (IPv4 address, IPv6 /64) that has used more than this much of its
    /// per-IP allowance (`rate_limit.per_ip_burst`) at once is sending in a burst (a 30-point
    /// signal). Read from the rate limiter's own state, so it needs `rate_limit.enabled`.
    /// 0: no burst signal.
    pub burst: u32,
}

impl Default for SpamSettings {
    fn default() -> Self {
        SpamSettings {
            min_submit_ms: 1500,
            burst: 5,
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
    /// Parallel writer tasks on PostgreSQL (SQLite always uses one). Default: one per CPU core
    /// (at least 2): more writers than cores make smaller batches that cost PostgreSQL more
    /// CPU per submission.
    pub postgres_writers: usize,
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            max_batch: 256,
            max_wait_us: 0,
            queue_capacity: 4096,
            postgres_writers: std::thread::available_parallelism()
                .map_or(2, std::num::NonZeroUsize::get)
                .clamp(2, 16),
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
    /// Backoff after the first failure; doubles each attempt (less up to 20 % jitter) up to
    /// the maximum. The defaults (30 s doubling to 12 h, 20 attempts) keep a message alive
    /// through more than 72 hours of provider trouble. A refusal of the message itself (550-555)
    /// is not retried.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// How long a claimed message is reserved for its worker, at least: the worker raises it
    /// to cover its worst round (every send running into its deadline). Leases are judged by
    /// the database's clock and re-checked before each send. A worker that dies mid-send
    /// releases its messages when the lease expires (the ones in flight may be sent twice).
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
            max_attempts: 20,
            backoff_base_ms: 30_000,
            backoff_max_ms: 43_200_000,
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
    /// How long after it expired a download link may still ask for a fresh one (mailed to the
    /// lead). Past it the page says the link is too old, and nothing is sent: an old link
    /// found in a forwarded mail or a log cannot keep mailing the person.
    pub download_renewal_window_secs: u64,
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
            download_renewal_window_secs: 90 * 86_400,
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
    /// Dispatched integration events, finished webhook and CRM deliveries (with their
    /// attempt log) and sent staff mail are deleted after this many days (0: keep).
    pub log_days: u32,
    /// How often the job runs in each instance (it is idempotent; several may run).
    pub interval_secs: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            spam_days: 30,
            unconfirmed_days: 0,
            ip_days: 90,
            log_days: 30,
            interval_secs: 3_600,
        }
    }
}

/// Counting form views (see `crate::views`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ViewSettings {
    /// Count views at all (`POST /v1/forms/{id}/views`); off: the endpoint answers 204 and
    /// counts nothing.
    pub enabled: bool,
    /// How often counted views are written to the database (seconds); a crash loses at most
    /// this much of the view counts.
    pub flush_secs: u64,
}

impl Default for ViewSettings {
    fn default() -> Self {
        ViewSettings {
            enabled: true,
            flush_secs: 5,
        }
    }
}

/// The marketer's console (`/console`): sessions, sign-in links and sign-in throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// A session ends after this many minutes without a request.
    pub idle_minutes: u64,
    /// A session ends this many hours after sign-in, however busy.
    pub absolute_hours: u64,
    /// How long a one-time sign-in link (and the set-up link) works, in minutes.
    pub link_minutes: u64,
    /// Sign-in attempts per account per 15 minutes (each costs an Argon2id hash); past it the
    /// account's sign-in answers 429 for a while. 0: unlimited.
    pub sign_in_attempts_per_account: u32,
    /// Sign-in attempts per client IP per 15 minutes. 0: unlimited.
    pub sign_in_attempts_per_ip: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            idle_minutes: 60,
            absolute_hours: 12,
            link_minutes: 24 * 60,
            sign_in_attempts_per_account: 10,
            sign_in_attempts_per_ip: 50,
        }
    }
}

pub(crate) fn redact<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
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
    /// Refuse a submission that carries neither an `Origin` nor a `Referer` from
    /// `allowed_origins` (browsers always send `Origin` on cross-site posts; scripts need not).
    /// Off by default: a listed origin is then enforced only when the request names one.
    #[serde(default)]
    pub require_origin: bool,
    /// Where a no-JavaScript post lands after success. Default: Inlet's own thank-you page.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Shown by the thank-you page and the embed script.
    #[serde(default)]
    pub success_message: Option<String>,
    /// Double opt-in forms: shown once the person has confirmed (the confirmation page and the
    /// welcome email), where the success message ("please confirm…") no longer fits.
    #[serde(default)]
    pub confirmed_message: Option<String>,
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
    /// Put what the person typed (their name, other fields) into the follow-up even though
    /// nobody has confirmed the address. Off by default: anyone can type any address, so such
    /// mail would carry a stranger's text to a stranger (a spam relay). `check-config` warns
    /// when it is on for a form without `double_opt_in`.
    #[serde(default)]
    pub personalize_unconfirmed: bool,
    /// A challenge every submission must pass: a self-hosted proof of work, or a CAPTCHA.
    #[serde(default)]
    pub challenge: Option<ChallengeConfig>,
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

/// `[forms.challenge]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChallengeConfig {
    /// Inlet's own proof of work (the ALTCHA protocol): the embed script searches for a
    /// number up to `difficulty` whose SHA-256 with the challenge's salt matches. No third
    /// party, no cookie. Each step of 100,000 is about a second of a phone's CPU on average.
    Pow {
        #[serde(default = "default_pow_difficulty")]
        difficulty: u64,
    },
    /// Cloudflare Turnstile: put their widget in the form; Inlet verifies its token.
    Turnstile(CaptchaConfig),
    /// hCaptcha: put their widget in the form; Inlet verifies its token.
    Hcaptcha(CaptchaConfig),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptchaConfig {
    /// The public site key (for the widget on the page).
    pub site_key: String,
    #[serde(serialize_with = "redact")]
    pub secret: SecretString,
    /// The provider's verification endpoint (default: theirs).
    #[serde(default)]
    pub verify_url: Option<String>,
}

fn default_pow_difficulty() -> u64 {
    100_000
}

fn default_honeypot() -> String {
    "_gotcha".into()
}

fn default_max_extra() -> usize {
    20
}

impl Settings {
    /// Loads defaults, then the file (if any), then the process environment, and checks the
    /// values.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given (tests).
    pub fn load_from(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            // Read here, not by figment: a missing file is an error, not an empty layer.
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        // The demo's qualification comes with the demo's forms: rules written for `contact`
        // and `whitepaper` mean nothing to anyone else's forms.
        let demo = !["forms", "scoring", "stages", "handoff", "sequences"]
            .iter()
            .any(|k| figment.contains(k));
        let environment = env::Environment::new(vars, &env::Catalog::of_settings());
        let mut settings: Settings = figment
            .merge(&environment)
            .extract_lossy()
            .map_err(|e| config_error(e, file, &environment))?;
        if demo {
            settings.with_demo_qualification();
        }
        settings.validate_scalars()?;
        Ok(settings)
    }

    /// The defaults: what `cargo run` with nothing configured serves.
    pub fn default_with_demo_forms() -> Settings {
        let mut s = Settings {
            forms: demo_forms(),
            ..Settings::default()
        };
        s.with_demo_qualification();
        s
    }

    /// The demo's scoring rules, stage rules and owner (kept: scalars already set, e.g. by
    /// the environment).
    fn with_demo_qualification(&mut self) {
        let scoring = demo_scoring();
        self.scoring.rules = scoring.rules;
        self.scoring.caps = scoring.caps;
        self.stages = demo_stages();
        let handoff = demo_handoff();
        self.handoff.owners = handoff.owners;
        self.handoff.routes = handoff.routes;
        self.sequences = demo_sequences();
    }

    /// Checks every plain setting (addresses, URLs, limits, modes) without building anything
    /// and without touching the network.
    pub fn validate_scalars(&self) -> Result<(), ConfigError> {
        self.database_engine()?;
        self.bind_addr()?;
        self.trusted_proxies()?;
        if let Some(address) = &self.replies.address {
            let plain = address.parse::<lettre::Address>().is_ok() && !address.contains('+');
            if !plain {
                return Err(ConfigError::invalid(
                    "replies.address (INLET_REPLIES__ADDRESS)",
                    format!(
                        "'{address}' is not a plain address like replies@in.example.com (Inlet \
                         adds +<token> to it)"
                    ),
                ));
            }
        }
        if let Some(url) = &self.redis.url {
            if let Err(e) = redis::Client::open(url.expose_secret()) {
                return Err(ConfigError::invalid(
                    "redis.url (INLET_REDIS_URL)",
                    format!(
                        "'{}' is not a Redis URL like redis://127.0.0.1:6379: {e}",
                        redacted_url(url.expose_secret())
                    ),
                ));
            }
        }
        if self.redis.timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "redis.timeout_ms",
                "must be at least 1",
            ));
        }
        for (value, name) in [
            (self.views.flush_secs, "views.flush_secs"),
            (self.console.idle_minutes, "console.idle_minutes"),
            (self.console.absolute_hours, "console.absolute_hours"),
            (self.console.link_minutes, "console.link_minutes"),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(name, "must be at least 1"));
            }
        }
        if self.server.body_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.body_timeout_ms",
                "must be at least 1",
            ));
        }
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
        for (token, name) in [
            (&self.admin.token, "admin.token (INLET_ADMIN_TOKEN)"),
            (
                &self.admin.metrics_token,
                "admin.metrics_token (INLET_METRICS_TOKEN)",
            ),
        ] {
            let Some(token) = token else { continue };
            let token = token.expose_secret();
            if token.trim().len() < MIN_ADMIN_TOKEN_CHARS || token.contains("change-me") {
                return Err(ConfigError::invalid(
                    name,
                    format!(
                        "must be at least {MIN_ADMIN_TOKEN_CHARS} characters and not an example's \
                         placeholder (e.g. `openssl rand -hex 32`)"
                    ),
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
        if self
            .privacy
            .suppression_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().len() < 32)
        {
            return Err(ConfigError::invalid(
                "privacy.suppression_key (INLET_SUPPRESSION_KEY)",
                "must be at least 32 characters",
            ));
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
        parse_mailbox(&self.mail.from)
            .map_err(|m| ConfigError::invalid("mail.from (INLET_MAIL_FROM)", m))?;
        Ok(())
    }

    pub fn database_engine(&self) -> Result<Engine, ConfigError> {
        Engine::from_url(self.database.url.expose_secret())
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

    /// Choices that are valid but weaken a protection, for `check-config` and the startup
    /// log. No secrets in them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .forms
            .iter()
            .filter(|f| f.personalize_unconfirmed && !f.double_opt_in)
            .map(|f| {
                format!(
                    "form '{}': personalize_unconfirmed puts what a submitter typed into mail to \
                     an address nobody confirmed; anyone can type anyone's address, so this \
                     lets strangers send their text from your domain (use double_opt_in)",
                    f.id
                )
            })
            .collect();
        for e in &self.webhooks.endpoints {
            if e.url.starts_with("http://") {
                out.push(format!(
                    "webhooks endpoint '{}' uses http://: lead data travels unencrypted (signed, \
                     but readable on the way); use https://",
                    e.id
                ));
            }
        }
        if self.redis.url.is_some() && self.server.trusted_proxies.is_empty() {
            out.push(
                "redis.url shares the per-client limits across instances, but \
                 server.trusted_proxies is empty: behind a load balancer every visitor then \
                 counts as the balancer's address (list the balancer's IPs or CIDRs)"
                    .into(),
            );
        }
        let qualifies = self.stages.mql_when.is_some() || !self.stages.hand_raisers.is_empty();
        if qualifies && self.handoff.owners.is_empty() {
            out.push(
                "stages: leads become MQLs but [handoff] has no owners, so nobody is handed \
                 them (add owners, or watch the lead.mql webhook)"
                    .into(),
            );
        }
        for seq in &self.sequences {
            let form = seq
                .enroll
                .form
                .as_deref()
                .and_then(|id| self.forms.iter().find(|f| f.id == id));
            if seq.enroll.on == EnrollOn::Submitted && form.is_some_and(|f| !f.double_opt_in) {
                out.push(format!(
                    "sequence '{}': enrolled by any submission of a form without double opt-in,                      so anyone can sign a stranger up for {} mails; enrol on `downloaded` or                      `confirmed` (the address is then proven)",
                    seq.id,
                    seq.steps.len()
                ));
            }
            if seq.exit.on_reply && self.replies.address.is_none() {
                out.push(format!(
                    "sequence '{}': replies end it, but replies.address is not set, so a reply                      cannot be told apart (set replies.address and replies.secret)",
                    seq.id
                ));
            }
        }
        if self.replies.address.is_some() && self.replies.secret.is_none() {
            out.push(
                "replies.address is set but replies.secret is not: POST /v1/inbound/email                  answers 404, so no reply is ever read"
                    .into(),
            );
        }
        if self.privacy.suppression_key.is_none() {
            out.push(
                "privacy.suppression_key (INLET_SUPPRESSION_KEY) is not set: the suppression \
                 list is keyed by a key kept in the database, so a copy of the database alone \
                 can test addresses against it"
                    .into(),
            );
        }
        out
    }

    /// The configured suppression-list key's bytes, if any (see [`PrivacySettings`]).
    pub fn suppression_key(&self) -> Option<&[u8]> {
        self.privacy
            .suppression_key
            .as_ref()
            .map(|k| k.expose_secret().as_bytes())
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

    /// The effective configuration as TOML, every secret redacted, and a comment under its
    /// section for each optional setting left unset saying what that means (an unset value
    /// is otherwise simply absent, and an empty `[admin]` says nothing).
    pub fn to_redacted_toml(&self) -> String {
        let text =
            toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        let unset: [(&str, bool, &str); 9] = [
            ("[server]", self.server.public_url.is_none(),
             "public_url: not set: links in email use the address Inlet listens on (INLET_PUBLIC_URL)"),
            ("[mail]", self.mail.smtp_url.is_none(),
             "smtp_url: not set: mail is written as .eml files to mail_dir, nothing is sent (INLET_SMTP_URL)"),
            ("[mail]", self.mail.dkim.is_none(),
             "dkim: not set: mail is not DKIM-signed by Inlet (your provider may sign it)"),
            ("[admin]", self.admin.token.is_none(),
             "token: not set: only API keys open the admin API (inlet keys create --scope ...; INLET_ADMIN_TOKEN)"),
            ("[admin]", self.admin.token.is_some(),
             "token: a full-access key: every scope of the admin API; prefer scoped keys (inlet keys create --scope ...)"),
            ("[admin]", self.admin.metrics_token.is_none(),
             "metrics_token: not set: GET /metrics is open (INLET_METRICS_TOKEN)"),
            ("[redis]", self.redis.url.is_none(),
             "url: not set: each instance limits on its own; N instances allow N times each limit (INLET_REDIS_URL)"),
            ("[privacy]", self.privacy.suppression_key.is_none(),
             "suppression_key: not set: generated once and kept in the database (INLET_SUPPRESSION_KEY)"),
            ("[consent]", self.consent.signing_keys.is_empty(),
             "signing_keys: none configured: a key is generated once and kept in the database (INLET_SIGNING_KEYS)"),
        ];
        let mut out = String::with_capacity(text.len() + 512);
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            for (_, _, note) in unset.iter().filter(|(h, on, _)| *on && *h == line) {
                out.push_str("# ");
                out.push_str(note);
                out.push('\n');
            }
        }
        out
    }
}

/// `INLET_*` variables that set nothing: probably typos worth a warning.
pub fn unknown_env_vars() -> Vec<String> {
    env::unknown(
        std::env::vars().map(|(k, _)| k),
        &env::Catalog::of_settings(),
    )
}

/// A figment error as one line that names the file or the environment variable.
fn config_error(
    e: figment::Error,
    file: Option<&Path>,
    environment: &env::Environment,
) -> ConfigError {
    let from_env = e
        .metadata
        .as_ref()
        .is_some_and(|m| m.name == env::METADATA_NAME);
    let path = e.path.join(".");
    let message = one_line(&e.kind.to_string());
    if from_env {
        let var = environment
            .variable_for(&path)
            .map_or_else(|| env::nested_name(&path), str::to_string);
        return ConfigError::Env { var, message };
    }
    let setting = if path.is_empty() {
        String::new()
    } else {
        format!(" (setting {path})")
    };
    match file {
        Some(file) => ConfigError::Parse {
            path: file.to_path_buf(),
            message: format!("{message}{setting}"),
        },
        None => ConfigError::invalid(path, message),
    }
}

/// Which database engine a URL names: chosen once, from its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Result<Engine, String> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "sqlite" => Ok(Engine::Sqlite),
            "postgres" | "postgresql" => Ok(Engine::Postgres),
            "" => Err(format!(
                "'{}' has no scheme: use sqlite://… or postgres://…",
                url.chars().take(20).collect::<String>()
            )),
            other => Err(format!(
                "unknown scheme '{other}': use sqlite://path or postgres://user@host/db"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A `From:`/`Reply-To:` mailbox (`Name <a@b.c>` or a bare address), never with line breaks.
pub fn parse_mailbox(s: &str) -> Result<lettre::message::Mailbox, String> {
    if s.contains(['\r', '\n']) {
        return Err("must not contain line breaks".into());
    }
    s.parse::<lettre::message::Mailbox>()
        .map_err(|e| format!("'{s}' is not a mailbox like 'Name <name@example.com>': {e}"))
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

pub(crate) fn redact_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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
    fn the_nesting_rule_reaches_every_setting_and_every_old_name_still_works() {
        let catalog = env::Catalog::of_settings();
        let paths: Vec<&str> = catalog.paths().collect();
        for section in [
            "server.bind",
            "writer.max_batch",
            "outbox.lease_ms",
            "mail.dkim.selector",
        ] {
            assert!(paths.contains(&section), "{section} missing from {paths:?}");
        }
        for path in &paths {
            assert_eq!(catalog.setting_of(&env::nested_name(path)), Some(*path));
        }
        for (var, path) in env::LEGACY {
            assert!(
                paths.contains(path),
                "{var} sets {path}, which is not a setting"
            );
        }
    }

    #[test]
    fn nested_names_set_any_setting_and_win_over_old_names() -> Result<(), ConfigError> {
        let s = Settings::load_from(
            None,
            env(&[
                ("INLET_WRITER__MAX_BATCH", "32"),
                ("INLET_OUTBOX__WORKER_ENABLED", "false"),
                ("INLET_BIND", "127.0.0.1:1"),
                ("INLET_SERVER__BIND", "127.0.0.1:2"),
                ("INLET_RETENTION__INTERVAL_SECS", "600"),
            ]),
        )?;
        assert_eq!(s.writer.max_batch, 32);
        assert!(!s.outbox.worker_enabled);
        assert_eq!(s.server.bind, "127.0.0.1:2");
        assert_eq!(s.retention.interval_secs, 600);
        Ok(())
    }

    #[test]
    fn values_keep_their_type_lists_split_on_commas() -> Result<(), ConfigError> {
        let s = Settings::load_from(
            None,
            env(&[
                ("INLET_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
                ("INLET_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.0/8,"),
                ("INLET_IP_PRIVACY", "drop"),
                ("INLET_MAIL__DKIM__SELECTOR", "s1"),
                ("INLET_MAIL__DKIM__DOMAIN", "example.com"),
                ("INLET_MAIL__DKIM__PRIVATE_KEY_FILE", "/k.pem"),
            ]),
        )?;
        assert_eq!(
            s.admin
                .token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
            Some("0123456789abcdef0123456789abcdef".to_string())
        );
        assert_eq!(s.server.trusted_proxies, ["10.0.0.1", "10.0.0.0/8"]);
        assert_eq!(s.privacy.ip, IpPrivacy::Drop);
        assert_eq!(
            s.mail.dkim.as_ref().map(|d| d.selector.as_str()),
            Some("s1")
        );
        Ok(())
    }

    #[test]
    fn a_bad_value_names_the_variable_that_set_it() {
        for (var, value) in [
            ("INLET_WRITER__MAX_BATCH", "lots"),
            ("INLET_BODY_LIMIT_BYTES", "lots"),
            ("INLET_LOG_FORMAT", "xml"),
        ] {
            let pairs = vec![(var.to_string(), value.to_string())];
            let e = Settings::load_from(None, pairs).unwrap_err();
            assert!(e.to_string().contains(var), "{var}: {e}");
        }
    }

    #[test]
    fn unknown_inlet_variables_are_reported_and_known_ones_are_not() {
        let catalog = env::Catalog::of_settings();
        let vars = [
            "INLET_WRITER__MAX_BATHC",
            "INLET_BIND",
            "INLET_CONFIG",
            "INLET_WRITER__MAX_BATCH",
            "INLET_FORMS",
            "HOME",
        ]
        .map(String::from);
        assert_eq!(
            env::unknown(vars, &catalog),
            ["INLET_WRITER__MAX_BATHC", "INLET_FORMS"]
        );
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
