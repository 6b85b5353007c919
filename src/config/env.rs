//! Settings from environment variables, as a figment provider.
//!
//! **One nesting rule** reaches every setting: `INLET_` + the setting's path in upper case with
//! `__` between sections, e.g. `writer.max_batch` is `INLET_WRITER__MAX_BATCH` and
//! `mail.dkim.selector` is `INLET_MAIL__DKIM__SELECTOR`. The shorter names that worked before
//! ([`LEGACY`], e.g. `INLET_BIND`, `DATABASE_URL`) keep working; where both are set, the
//! nested name wins. Forms, scoring rules, owners, routes and webhook endpoints (lists of
//! tables) come from the config file only.
//!
//! Values are handed over as text and converted by the setting's type (figment's lossy
//! extraction), so a numeric admin token stays a string. A list setting takes a
//! comma-separated value.

use std::collections::{BTreeMap, BTreeSet};

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

use super::{DkimAlgorithm, DkimSettings, Settings};

/// The names that predate the nesting rule, and the setting each one sets.
pub const LEGACY: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("INLET_BIND", "server.bind"),
    ("INLET_PUBLIC_URL", "server.public_url"),
    ("INLET_BODY_LIMIT_BYTES", "server.body_limit_bytes"),
    ("INLET_TRUSTED_PROXIES", "server.trusted_proxies"),
    ("INLET_WORKERS", "server.workers"),
    ("INLET_DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("INLET_SQLITE_SYNCHRONOUS", "database.sqlite_synchronous"),
    ("INLET_SMTP_URL", "mail.smtp_url"),
    ("INLET_MAIL_DIR", "mail.mail_dir"),
    ("INLET_MAIL_FROM", "mail.from"),
    ("INLET_DKIM_SELECTOR", "mail.dkim.selector"),
    ("INLET_DKIM_DOMAIN", "mail.dkim.domain"),
    ("INLET_DKIM_PRIVATE_KEY_FILE", "mail.dkim.private_key_file"),
    ("INLET_DKIM_ALGORITHM", "mail.dkim.algorithm"),
    ("INLET_ADMIN_TOKEN", "admin.token"),
    ("INLET_METRICS_TOKEN", "admin.metrics_token"),
    ("INLET_IP_PRIVACY", "privacy.ip"),
    ("INLET_IP_HASH_KEY", "privacy.ip_hash_key"),
    ("INLET_SUPPRESSION_KEY", "privacy.suppression_key"),
    ("INLET_RATE_LIMIT_ENABLED", "rate_limit.enabled"),
    ("INLET_REDIS_URL", "redis.url"),
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
    ("INLET_SIGNING_KEYS", "consent.signing_keys"),
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
    ("INLET_LOG_FORMAT", "log.format"),
    ("INLET_LOG_LEVEL", "log.level"),
];

/// Settings that are lists of tables: set in the config file only.
const TABLE_LISTS: &[&str] = &[
    "forms",
    "scoring.rules",
    "scoring.caps",
    "handoff.owners",
    "handoff.routes",
    "webhooks.endpoints",
    "crm",
    "sequences",
];

/// Read by the CLI itself, not a setting.
pub const CONFIG_FILE_VAR: &str = "INLET_CONFIG";

/// Where a setting path's environment variable comes from the nesting rule.
pub fn nested_name(path: &str) -> String {
    format!("INLET_{}", path.to_uppercase().replace('.', "__"))
}

/// What every setting looks like: its path, and whether it is a list.
pub struct Catalog {
    leaves: BTreeMap<String, bool>,
}

impl Catalog {
    /// Every setting of [`Settings`] (forms aside), read off the defaults' shape.
    pub fn of_settings() -> Catalog {
        let mut leaves = BTreeMap::new();
        let defaults = Value::serialize(Settings::default()).unwrap_or(Value::from(Dict::new()));
        flatten("", &defaults, &mut leaves);
        // `mail.dkim` is absent by default, so its fields are not in the defaults' shape.
        let dkim = DkimSettings {
            selector: String::new(),
            domain: String::new(),
            private_key_file: std::path::PathBuf::new(),
            algorithm: DkimAlgorithm::Rsa,
        };
        if let Ok(v) = Value::serialize(dkim) {
            flatten("mail.dkim", &v, &mut leaves);
        }
        // Lists of tables come from the config file only.
        leaves.retain(|path, _| {
            !TABLE_LISTS
                .iter()
                .any(|t| path == t || path.starts_with(&format!("{t}.")))
        });
        Catalog { leaves }
    }

    /// The setting an environment variable sets, if it names one.
    pub fn setting_of(&self, var: &str) -> Option<&str> {
        if let Some((_, path)) = LEGACY.iter().find(|(v, _)| *v == var) {
            return Some(path);
        }
        let rest = var.strip_prefix("INLET_")?;
        let path = rest.to_lowercase().replace("__", ".");
        self.leaves.get_key_value(&path).map(|(p, _)| p.as_str())
    }

    fn is_list(&self, path: &str) -> bool {
        self.leaves.get(path).copied().unwrap_or(false)
    }

    /// Every setting path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.leaves.keys().map(String::as_str)
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, bool>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Dict(_, dict) => {
            for (k, v) in dict {
                match v {
                    Value::Dict(..) => flatten(&join(k), v, out),
                    Value::Array(..) => {
                        out.insert(join(k), true);
                    }
                    _ => {
                        out.insert(join(k), false);
                    }
                }
            }
        }
        _ => {
            out.insert(prefix.to_string(), false);
        }
    }
}

/// The settings that a set of environment variables gives, as a figment provider.
pub struct Environment {
    /// (variable, setting path, value), legacy names first so nested names win.
    values: Vec<(String, String, Value)>,
}

impl Environment {
    /// Picks the variables that name a setting; the rest are ignored here (see
    /// [`unknown`]).
    pub fn new(vars: impl IntoIterator<Item = (String, String)>, catalog: &Catalog) -> Self {
        let mut values: Vec<(String, String, Value)> = vars
            .into_iter()
            .filter_map(|(var, raw)| {
                let path = catalog.setting_of(&var)?.to_string();
                let value = if catalog.is_list(&path) {
                    Value::from(
                        raw.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| Value::from(s.to_string()))
                            .collect::<Vec<_>>(),
                    )
                } else {
                    Value::from(raw)
                };
                Some((var, path, value))
            })
            .collect();
        // Legacy names first: a later value for the same path wins when merged.
        values.sort_by_key(|(var, _, _)| !LEGACY.iter().any(|(v, _)| v == var));
        Environment { values }
    }

    /// The variable that set a setting path (for error messages).
    pub fn variable_for(&self, path: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(_, p, _)| p == path)
            .map(|(v, _, _)| v.as_str())
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(METADATA_NAME)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for (_, path, value) in &self.values {
            insert(&mut root, path, value.clone());
        }
        Ok(Profile::Default.collect(root))
    }
}

/// How errors from this provider are recognised.
pub const METADATA_NAME: &str = "environment";

fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let child = dict
                .entry(head.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if !matches!(child, Value::Dict(..)) {
                *child = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = child {
                insert(inner, rest, value);
            }
        }
    }
}

/// `INLET_*` variables that set nothing: probably typos worth a warning.
pub fn unknown(vars: impl IntoIterator<Item = String>, catalog: &Catalog) -> Vec<String> {
    let known: BTreeSet<&str> = [CONFIG_FILE_VAR].into_iter().collect();
    vars.into_iter()
        .filter(|k| {
            k.starts_with("INLET_")
                && !known.contains(k.as_str())
                && catalog.setting_of(k).is_none()
        })
        .collect()
}
