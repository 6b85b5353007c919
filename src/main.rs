//! The `inlet` command: thin. Parses the command line, loads settings, runs one command.
//! Exit codes: 0 success, 1 a runtime failure, 2 a configuration or startup error.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inlet::config::Settings;
use inlet::domain::EmailAddress;
use inlet::export::ExportFormat;
use inlet::startup::{Application, StartupError};
use inlet::store::LeadStore;
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "inlet",
    version,
    about = "Self-hosted lead capture: forms in, leads stored, email out"
)]
struct Cli {
    /// TOML config file (defaults -> file -> environment; the environment wins).
    #[arg(long, global = true, env = "INLET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default command).
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8080 (overrides server.bind and INLET_BIND).
        #[arg(long)]
        bind: Option<String>,
    },
    /// Run database migrations and exit.
    Migrate,
    /// Ask a running Inlet whether it is ready (`GET /readyz`); exit 0 if so, 1 if not. For
    /// container health checks (the image has no curl).
    Healthcheck {
        /// Base URL to ask; default: server.bind (0.0.0.0 asked as 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the effective configuration (secrets redacted) and check it.
    CheckConfig,
    /// Send one test email through the configured transport and report what happened.
    SendTestEmail {
        #[arg(long)]
        to: String,
    },
    /// Work with stored leads.
    Leads {
        #[command(subcommand)]
        command: LeadsCommand,
    },
    /// Print the tags to paste into a page: the embed script and stylesheet pinned to this
    /// version with their Subresource Integrity hashes (uses server.public_url).
    Snippet {
        /// Print the machine-readable description instead (as `GET /v1/snippet`).
        #[arg(long)]
        json: bool,
    },
    /// Run the retention job once (the server also runs it every retention.interval_secs).
    Retention,
    /// See and revive outgoing email.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Manage who may sign in to the console (`/console`).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage API keys for machines (`Authorization: Bearer` on `/v1/admin/*`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Lead scoring: see what a rule change would do before it does it.
    Scoring {
        #[command(subcommand)]
        command: ScoringCommand,
    },
    /// Webhooks: make a secret, read the delivery log, send messages again.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Nurture sequences: see what an edit changes for leads already in them.
    Sequences {
        #[command(subcommand)]
        command: SequencesCommand,
    },
}

#[derive(Subcommand)]
enum SequencesCommand {
    /// Compare each sequence in --config with the step order it last ran with: per sequence,
    /// how many active enrolments gain or lose which step, and what finished ones gain.
    /// Changes nothing unless --apply (inlet serve applies it on startup too).
    Plan {
        /// Record the new step orders and re-open finished enrolments that gain steps (when
        /// the sequence says reach_finished).
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Subcommand)]
enum ScoringCommand {
    /// Compare every lead's stored stage and score with what the rules in --config give now:
    /// how many leads change stage, and a sample with their factors. Changes nothing unless
    /// --apply.
    Plan {
        /// How many changed leads to show with their factors.
        #[arg(long, default_value_t = 5)]
        sample: usize,
        /// Record the stage moves (cause cli) and the fresh scores.
        #[arg(long)]
        apply: bool,
        /// With --apply: leads that become MQLs get hand-offs (not by default: a rule change
        /// alone should not flood sales).
        #[arg(long, requires = "apply")]
        handoffs: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Print a fresh endpoint secret (whsec_…) for the configuration and the receiver.
    Secret,
    /// The delivery log, newest first.
    Deliveries {
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, value_parser = ["pending", "failed", "delivered", "dead", "cancelled"])]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send messages again (same webhook-id): one delivery, or an endpoint's deliveries of
    /// events in a time range.
    Replay {
        /// A delivery id (see `inlet webhooks deliveries`).
        #[arg(conflicts_with_all = ["endpoint", "since", "until"], required_unless_present = "endpoint")]
        delivery: Option<String>,
        #[arg(long, requires = "since")]
        endpoint: Option<String>,
        /// RFC 3339, e.g. 2026-12-07T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339 (default: now).
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key and print it once (only a hash of it is stored).
    Create {
        /// What the key is for, e.g. "CRM sync".
        #[arg(long)]
        name: String,
        /// Comma-separated: leads:read, leads:export, leads:write, leads:erase, leads:import,
        /// stats:read, webhooks:manage (or all).
        #[arg(long)]
        scope: String,
    },
    /// List keys (never their secrets) with their scopes and last use.
    List,
    /// Revoke a key by its id or the prefix `inlet keys list` shows; it stops working at once.
    Revoke { key: String },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a person and print a one-time sign-in link (they choose a password after it).
    Add {
        email: String,
        #[arg(long, value_enum)]
        role: inlet::console::Role,
    },
    /// Print a fresh one-time sign-in link for a person (a forgotten password).
    Link { email: String },
    /// List everyone who may sign in.
    List,
    /// Remove a person (their sessions end at once).
    Remove { email: String },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// List messages, newest first.
    List {
        #[arg(long, value_parser = ["pending", "failed", "dead", "sent", "skipped"])]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Make a dead or failed message (or every dead one) due again with fresh attempts.
    Retry {
        /// The message id (see `inlet outbox list`).
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        #[arg(long)]
        dead: bool,
    },
}

#[derive(Subcommand)]
enum LeadsCommand {
    /// Write every lead with its latest submission to stdout.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Only leads with a submission on this form.
        #[arg(long)]
        form: Option<String>,
        /// Only leads in these states (comma-separated), e.g. `--status active,confirmed` for
        /// the people who may be mailed.
        #[arg(long, value_enum, value_delimiter = ',')]
        status: Vec<inlet::store::LeadStatus>,
    },
    /// Print everything held about one person (as GET /v1/admin/leads/{id}/export).
    Show { email: String },
    /// Erase one person everywhere; the address stays suppressed (as a hash).
    Erase { email: String },
    /// Take one person's quarantined submissions out of quarantine (nothing is sent).
    Restore { email: String },
    /// Put one person on the suppression list (e.g. from a mailto: unsubscribe).
    Unsubscribe { email: String },
    /// Bring people in from a CSV file (a Mailchimp or HubSpot export, or any CSV with an
    /// email column) into a form; nobody is mailed. Prints a report line per row (CSV) on
    /// stdout and a summary on stderr.
    Import {
        file: PathBuf,
        /// The form the people join (its fields are what is read, and checked).
        #[arg(long)]
        form: String,
        #[arg(long, value_enum, default_value = "csv")]
        preset: inlet::import::Preset,
        /// The consent of rows whose file says nothing about it: only `subscribed` lets them
        /// be mailed.
        #[arg(long, value_enum, default_value = "pending")]
        consent: inlet::store::ImportedState,
        /// FIELD=COLUMN: read a form field from a column the preset does not know (repeat).
        #[arg(long = "map", value_parser = inlet::import::map_pair)]
        map: Vec<(String, String)>,
        /// Check every row and report, writing nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set a lead's lifecycle stage (subscriber, lead, mql, sql, opportunity, customer,
    /// disqualified); recorded in the stage ledger with cause cli.
    Stage {
        lead_id: String,
        stage: String,
        /// Required to move a lead back, or to disqualify it.
        #[arg(long)]
        reason: Option<String>,
        /// Who is doing it (default: cli).
        #[arg(long)]
        actor: Option<String>,
    },
}

fn now_ms() -> i64 {
    inlet::clock::Clock::system().now_ms()
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("inlet: error: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(2, e),
    };
    if let Some(Command::Serve { bind: Some(bind) }) = &cli.command {
        settings.server.bind.clone_from(bind);
        // Only a scalar changed; Application::build builds (and so checks) everything else.
        if let Err(e) = settings.validate_scalars() {
            return fail(2, e);
        }
    }
    inlet::telemetry::init(&settings.log);
    for var in inlet::config::unknown_env_vars() {
        tracing::warn!(%var, "unknown INLET_* environment variable ignored (typo?)");
    }
    if matches!(cli.command, None | Some(Command::Serve { .. })) {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(run(
        cli.command.unwrap_or(Command::Serve { bind: None }),
        settings,
    ))
}

async fn run(command: Command, settings: Settings) -> ExitCode {
    match command {
        Command::Serve { .. } => serve(settings).await,
        Command::Migrate => match LeadStore::connect(
            &inlet::config::DatabaseSettings {
                migrate_on_start: true,
                ..settings.database.clone()
            },
            settings.suppression_key(),
        )
        .await
        {
            Ok(store) => {
                store.close().await;
                println!("migrations applied ({})", store.backend().name());
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, StartupError::Database(e)),
        },
        Command::Healthcheck { url } => healthcheck(url, &settings).await,
        Command::Snippet { json } => {
            let base = settings
                .server
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", settings.server.bind));
            let assets = inlet::snippet::Assets::load();
            let text = if json {
                format!("{:#}", assets.describe(&base))
            } else {
                assets.embed_tags(&base)
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Command::CheckConfig => {
            if let Err(e) = inlet::startup::Components::check(&settings) {
                return fail(2, e);
            }
            print!("{}", settings.to_redacted_toml());
            for warning in settings.warnings() {
                eprintln!("inlet: warning: {warning}");
            }
            eprintln!(
                "inlet: configuration is valid ({} forms)",
                settings.forms.len()
            );
            ExitCode::SUCCESS
        }
        Command::SendTestEmail { to } => {
            let to = match EmailAddress::parse(&to) {
                Ok(t) => t,
                Err(e) => return fail(2, format!("--to {e}")),
            };
            match inlet::mail::send_test_email(&settings.mail, &to).await {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e @ inlet::mail::MailError::Config(_)) => fail(2, e),
                Err(e) => fail(1, e),
            }
        }
        Command::Outbox { command } => {
            on_store(&settings, async |store| outbox(store, command).await).await
        }
        Command::Users { command } => {
            on_store(&settings, async |store| {
                users(store, &settings, command).await
            })
            .await
        }
        Command::Keys { command } => {
            on_store(&settings, async |store| keys(store, command).await).await
        }
        Command::Scoring {
            command:
                ScoringCommand::Plan {
                    sample,
                    apply,
                    handoffs,
                },
        } => {
            let q = match inlet::qualify::Qualifier::build(&settings) {
                Ok(q) => q,
                Err(e) => return fail(2, e),
            };
            let opts = inlet::cli::scoring::PlanOptions {
                sample,
                apply,
                handoffs,
            };
            on_store(&settings, async |store| {
                report(inlet::cli::scoring::plan(store, &q, opts, now_ms()).await)
            })
            .await
        }
        Command::Sequences {
            command: SequencesCommand::Plan { apply },
        } => {
            let q = match inlet::qualify::Qualifier::build(&settings) {
                Ok(q) => q,
                Err(e) => return fail(2, e),
            };
            on_store(&settings, async |store| {
                report(inlet::cli::sequences::plan(store, &q, apply, now_ms()).await)
            })
            .await
        }
        Command::Leads {
            command:
                LeadsCommand::Stage {
                    lead_id,
                    stage,
                    reason,
                    actor,
                },
        } => {
            let q = match inlet::qualify::Qualifier::build(&settings) {
                Ok(q) => q,
                Err(e) => return fail(2, e),
            };
            on_store(&settings, async |store| {
                report(
                    inlet::cli::scoring::set_stage(
                        store,
                        &q,
                        &lead_id,
                        &stage,
                        (reason.as_deref(), actor.as_deref()),
                        now_ms(),
                    )
                    .await,
                )
            })
            .await
        }
        Command::Webhooks {
            command: WebhooksCommand::Secret,
        } => report(Ok::<_, String>(inlet::webhooks::new_secret())),
        Command::Webhooks {
            command:
                WebhooksCommand::Deliveries {
                    endpoint,
                    status,
                    limit,
                },
        } => {
            on_store(&settings, async |store| {
                report(
                    inlet::cli::webhooks::deliveries(
                        store,
                        endpoint.as_deref(),
                        status.as_deref(),
                        limit,
                    )
                    .await,
                )
            })
            .await
        }
        Command::Webhooks {
            command:
                WebhooksCommand::Replay {
                    delivery,
                    endpoint,
                    since,
                    until,
                },
        } => {
            let q = match inlet::qualify::Qualifier::build(&settings) {
                Ok(q) => q,
                Err(e) => return fail(2, e),
            };
            let r = inlet::cli::webhooks::Replay {
                delivery,
                endpoint,
                since,
                until,
            };
            on_store(&settings, async |store| {
                report(inlet::cli::webhooks::replay(store, &q, &r, now_ms()).await)
            })
            .await
        }
        Command::Retention => {
            let store =
                match LeadStore::connect(&settings.database, settings.suppression_key()).await {
                    Ok(s) => s,
                    Err(e) => return fail(2, StartupError::Database(e)),
                };
            let now = inlet::clock::Clock::system().now_ms();
            let result = store.apply_retention(now, &settings.retention).await;
            store.close().await;
            match result {
                Ok(r) => {
                    let _ = writeln!(
                        std::io::stdout(),
                        "{}",
                        serde_json::to_string_pretty(&r).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        Command::Leads {
            command:
                command @ (LeadsCommand::Show { .. }
                | LeadsCommand::Erase { .. }
                | LeadsCommand::Restore { .. }
                | LeadsCommand::Unsubscribe { .. }),
        } => on_store(&settings, async |store| person(store, command).await).await,
        Command::Leads {
            command:
                LeadsCommand::Import {
                    file,
                    form,
                    preset,
                    consent,
                    map,
                    dry_run,
                },
        } => {
            let forms = match inlet::forms::FormRegistry::build(&settings) {
                Ok(f) => f,
                Err(e) => return fail(2, e),
            };
            let Some(form) = forms.get(&form) else {
                return fail(
                    2,
                    format!("no form with id '{form}' (inlet check-config lists them)"),
                );
            };
            let input = match std::fs::File::open(&file) {
                Ok(f) => std::io::BufReader::new(f),
                Err(e) => return fail(2, format!("cannot read {}: {e}", file.display())),
            };
            let opts = inlet::import::ImportOptions {
                preset,
                default_consent: consent,
                map,
                label: file
                    .file_name()
                    .map_or_else(|| "a file".into(), |n| n.to_string_lossy().into_owned()),
                dry_run,
            };
            on_store(&settings, async |store| {
                import(store, form, &opts, input).await
            })
            .await
        }
        Command::Leads {
            command:
                LeadsCommand::Export {
                    format,
                    form,
                    status,
                },
        } => {
            let forms = match inlet::forms::FormRegistry::build(&settings) {
                Ok(f) => f,
                Err(e) => return fail(2, e),
            };
            let store =
                match LeadStore::connect(&settings.database, settings.suppression_key()).await {
                    Ok(s) => s,
                    Err(e) => return fail(2, StartupError::Database(e)),
                };
            let result = inlet::export::export_leads(
                &store,
                &forms,
                format,
                &inlet::store::LeadQuery {
                    form_id: form,
                    ..Default::default()
                },
                &status,
                inlet::export::WriteSink(std::io::stdout()),
            )
            .await;
            store.close().await;
            match result {
                Ok(n) => {
                    eprintln!("inlet: exported {n} leads");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

/// `inlet healthcheck`: one `GET /readyz` with a short deadline.
async fn healthcheck(url: Option<String>, settings: &Settings) -> ExitCode {
    let base = url.unwrap_or_else(|| {
        let bind = settings
            .server
            .bind
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        format!("http://{bind}")
    });
    let target = format!("{}/readyz", base.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(1, e),
    };
    match client.get(&target).send().await {
        Ok(r) if r.status().is_success() => {
            println!("ready: {target}");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            fail(1, format!("not ready: {target} answered {status}: {body}"))
        }
        Err(e) => fail(1, format!("not ready: {target}: {}", e.without_url())),
    }
}

/// `inlet leads show|erase|restore|unsubscribe EMAIL`.
async fn person(store: &LeadStore, command: LeadsCommand) -> ExitCode {
    let (LeadsCommand::Show { email }
    | LeadsCommand::Erase { email }
    | LeadsCommand::Restore { email }
    | LeadsCommand::Unsubscribe { email }) = &command
    else {
        return fail(1, "not a per-person command");
    };
    let email = match EmailAddress::parse(email) {
        Ok(e) => e,
        Err(e) => return fail(2, format!("'{email}' {e}")),
    };
    let lead = match store.lead_id_by_email(email.as_str()).await {
        Ok(Some(id)) => id,
        Ok(None) => return fail(1, "no lead with that address"),
        Err(e) => return fail(1, e),
    };
    let now = inlet::clock::Clock::system().now_ms();
    let result = match command {
        LeadsCommand::Show { .. } => store
            .export_lead(&lead)
            .await
            .map(|r| format!("{:#}", r.unwrap_or_default())),
        LeadsCommand::Erase { .. } => store.erase_lead(&lead, now).await.map(|n| {
            format!(
                "erased lead {lead}: {} submissions removed; the address stays suppressed",
                n.unwrap_or(0)
            )
        }),
        LeadsCommand::Restore { .. } => store.restore_lead(&lead, now).await.map(|n| match n {
            Some(0) | None => format!("lead {lead} has no quarantined submission"),
            Some(n) => format!(
                "lead {lead}: {n} submissions restored from quarantine; it is listed and \
                 exported from now on (nothing was sent)"
            ),
        }),
        LeadsCommand::Unsubscribe { .. } => store
            .unsubscribe(&lead, now, &inlet::store::Actor::default())
            .await
            .map(|_| format!("lead {lead} is unsubscribed (suppressed)")),
        LeadsCommand::Export { .. } | LeadsCommand::Import { .. } | LeadsCommand::Stage { .. } => {
            return fail(2, "not a command about one person")
        }
    };
    report(result)
}

async fn users(store: &LeadStore, settings: &Settings, command: UsersCommand) -> ExitCode {
    let now = chrono::Utc::now().timestamp_millis();
    let public_url = match settings.bind_addr() {
        Ok(addr) => settings.public_url(addr),
        Err(e) => return fail(2, e),
    };
    let parse = |email: &str| {
        inlet::domain::EmailAddress::parse(email.trim())
            .map(|e| e.as_str().to_string())
            .map_err(|e| format!("'{email}' {e}"))
    };
    let link = |id: String| async move {
        inlet::console::issue_link(store, Some(&id), now, &settings.console, &public_url).await
    };
    let result = match command {
        UsersCommand::Add { email, role } => {
            let email = match parse(&email) {
                Ok(e) => e,
                Err(m) => return fail(2, m),
            };
            match store.create_user(&email, role.as_str(), now).await {
                Ok(Some(user)) => link(user.id).await.map(|url| {
                    format!(
                        "added {email} ({role}). Send them this one-time sign-in link \
                         (it works once, for {}):\n{url}",
                        inlet::console::minutes_in_words(settings.console.link_minutes)
                    )
                }),
                Ok(None) => {
                    return fail(
                        1,
                        format!("{email} has an account already (inlet users link {email})"),
                    )
                }
                Err(e) => Err(e),
            }
        }
        UsersCommand::Link { email } => {
            let email = match parse(&email) {
                Ok(e) => e,
                Err(m) => return fail(2, m),
            };
            match store.user_by_email(&email).await {
                Ok(Some(user)) => link(user.id)
                    .await
                    .map(|url| format!("one-time sign-in link for {email}:\n{url}")),
                Ok(None) => return fail(1, format!("no account for {email} (inlet users add)")),
                Err(e) => Err(e),
            }
        }
        UsersCommand::List => store.list_users().await.map(|users| {
            tsv(
                ["email", "role", "password", "last sign-in"],
                users.into_iter().map(|u| {
                    [
                        u.email,
                        u.role,
                        if u.password_hash.is_some() {
                            "set"
                        } else {
                            "not set"
                        }
                        .into(),
                        u.last_sign_in_at_ms
                            .map_or_else(|| "never".into(), inlet::console::when),
                    ]
                }),
            )
        }),
        UsersCommand::Remove { email } => {
            let email = match parse(&email) {
                Ok(e) => e,
                Err(m) => return fail(2, m),
            };
            match store.remove_user(&email).await {
                Ok(true) => Ok(format!("removed {email}; their sessions ended")),
                Ok(false) => return fail(1, format!("no account for {email}")),
                Err(e) => Err(e),
            }
        }
    };
    report(result)
}

/// `inlet leads import`: a CSV report line per row on stdout, the summary on stderr.
async fn import(
    store: &LeadStore,
    form: &inlet::forms::Form,
    opts: &inlet::import::ImportOptions,
    input: impl std::io::Read,
) -> ExitCode {
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = csv::Writer::from_writer(std::io::BufWriter::new(std::io::stdout()));
    let _ = out.write_record(["row", "outcome", "consent", "lead_id", "detail"]);
    let result = inlet::import::import(store, form, opts, input, now, |r| {
        let _ = out.write_record([
            r.row.to_string().as_str(),
            r.outcome.as_str(),
            r.consent.map_or("", |c| c.as_str()),
            r.lead_id.as_deref().unwrap_or(""),
            &inlet::export::neutralise(&r.detail),
        ]);
    })
    .await;
    let _ = out.flush();
    match result {
        Ok(summary) => {
            eprintln!("{}", inlet::import::describe(&summary));
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

/// A command's outcome: its text on stdout (exit 0) or its error on stderr (exit 1).
fn report(result: Result<String, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

/// Rows as tab-separated lines under a header line.
fn tsv<const N: usize>(header: [&str; N], rows: impl IntoIterator<Item = [String; N]>) -> String {
    let mut out = header.join("\t");
    for row in rows {
        out.push('\n');
        out.push_str(&row.join("\t"));
    }
    out
}

/// Runs a command on the store and closes it (a store that cannot open: exit 2).
async fn on_store(settings: &Settings, run: impl AsyncFnOnce(&LeadStore) -> ExitCode) -> ExitCode {
    let store = match LeadStore::connect(&settings.database, settings.suppression_key()).await {
        Ok(s) => s,
        Err(e) => return fail(2, StartupError::Database(e)),
    };
    // What the CLI changes (an erasure, an unsubscribe) reaches scoring and webhooks too.
    let events = inlet::qualify::Qualifier::build(settings).is_ok_and(|q| q.events_needed());
    let store = store.with_events(events);
    let code = run(&store).await;
    store.close().await;
    code
}

async fn keys(store: &LeadStore, command: KeysCommand) -> ExitCode {
    let now = chrono::Utc::now().timestamp_millis();
    let result = match command {
        KeysCommand::Create { name, scope } => {
            let scopes = match inlet::keys::Scopes::parse(&scope) {
                Ok(s) => s,
                Err(m) => return fail(2, m),
            };
            let name = match inlet::keys::KeyName::parse(&name) {
                Ok(n) => n,
                Err(m) => return fail(2, m),
            };
            inlet::keys::create(store, &name, scopes, "cli", now)
                .await
                .map(|(key, secret)| {
                    format!(
                        "created key {} '{}' ({}). This is the only time it is shown:\n{secret}",
                        key.prefix, key.name, key.scopes
                    )
                })
        }
        KeysCommand::List => store.list_api_keys().await.map(|keys| {
            tsv(
                [
                    "key",
                    "name",
                    "scopes",
                    "created",
                    "last used",
                    "state",
                    "id",
                ],
                keys.into_iter().map(|k| {
                    [
                        k.prefix,
                        k.name,
                        k.scopes,
                        format!(
                            "{} by {}",
                            inlet::console::when(k.created_at_ms),
                            k.created_by
                        ),
                        k.last_used_at_ms
                            .map_or_else(|| "never".into(), inlet::console::when),
                        k.revoked_at_ms.map_or_else(
                            || "live".into(),
                            |t| format!("revoked {}", inlet::console::when(t)),
                        ),
                        k.id,
                    ]
                }),
            )
        }),
        KeysCommand::Revoke { key } => match store.revoke_api_key(key.trim(), now).await {
            Ok(Ok(Some(k))) => Ok(format!(
                "revoked {} '{}'; it no longer works",
                k.prefix, k.name
            )),
            Ok(Ok(None)) => return fail(1, format!("no live key {key} (inlet keys list)")),
            Ok(Err(n)) => {
                return fail(
                    1,
                    format!("{n} live keys start with {key}; revoke by id (inlet keys list)"),
                )
            }
            Err(e) => Err(e),
        },
    };
    report(result)
}

async fn outbox(store: &LeadStore, command: OutboxCommand) -> ExitCode {
    match command {
        OutboxCommand::List { status, limit } => {
            match store.list_outbox(status.as_deref(), None, limit).await {
                Ok(rows) => {
                    println!(
                        "{:<36}  {:<8}  {:<18}  {:<12}  {:>8}  {:<24}  {:<30}  last_error",
                        "id", "status", "kind", "form", "attempts", "created_at", "recipient"
                    );
                    for r in &rows {
                        println!(
                            "{:<36}  {:<8}  {:<18}  {:<12}  {:>4}/{:<3}  {:<24}  {:<30}  {}",
                            r.id,
                            r.status,
                            r.kind,
                            r.form_id,
                            r.attempts,
                            r.max_attempts,
                            inlet::export::rfc3339(r.created_at_ms),
                            r.recipient,
                            r.last_error.as_deref().unwrap_or("")
                        );
                    }
                    eprintln!("inlet: {} messages", rows.len());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
        OutboxCommand::Retry { id, dead } => {
            let target = match (id, dead) {
                (Some(id), false) => inlet::store::RetryTarget::One(id),
                _ => inlet::store::RetryTarget::AllDead,
            };
            match store
                .retry_outbox(&target, inlet::clock::Clock::system().now_ms())
                .await
            {
                Ok(0) => fail(1, "no dead or failed message matched"),
                Ok(n) => {
                    println!("{n} messages due again; a running Inlet sends them within its poll interval");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            }
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
    let db = inlet::config::redacted_url(settings.database.url.expose_secret());
    let mail = match &settings.mail.smtp_url {
        Some(u) => format!("SMTP {}", inlet::config::redacted_url(u.expose_secret())),
        None => format!(".eml files in {}", settings.mail.mail_dir.display()),
    };
    let forms: Vec<String> = settings
        .forms
        .iter()
        .map(|f| {
            format!(
                "{} ({})",
                f.id,
                serde_json::to_value(f.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            )
        })
        .collect();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => return fail(2, e),
    };
    let url = app.state().public_url.clone();
    println!(
        "Inlet {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        app.addr()
    );
    println!("  database: {db}");
    println!("  mail:     {mail}");
    println!("  forms:    {}", forms.join(", "));
    println!("  try:      curl -i {url}/v1/forms/newsletter/submissions -H 'content-type: application/json' -d '{{\"email\":\"you@example.com\"}}'");
    match app.console_banner().await {
        Ok(Some(setup)) => {
            println!("  console:  {url}/console (nobody can sign in yet)");
            println!("  set up:   {setup}");
            println!("            (a one-time link: it creates the first admin account, then stops working)");
        }
        Ok(None) => println!("  console:  {url}/console"),
        Err(e) => tracing::warn!(error = %e, "could not check the console's accounts"),
    }
    tracing::info!(addr = %app.addr(), "listening");
    match app.run_until_stopped().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}
