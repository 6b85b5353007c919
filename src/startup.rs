//! Building and running the application: what `inlet serve` and the tests both use.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, web, App, HttpServer};
use secrecy::ExposeSecret;

use crate::config::{ConfigError, Settings};
use crate::forms::FormRegistry;
use crate::mail::Templates;
use crate::rate_limit::RateLimits;
use crate::routes::{self, Pages};
use crate::store::{LeadStore, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("setting database.url (DATABASE_URL): cannot open the database: {0}")]
    Database(#[source] StoreError),
    #[error("setting server.bind (INLET_BIND): cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Server(#[source] std::io::Error),
}

/// Everything a handler needs; owned by the app (no globals), shared through `web::Data`.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub forms: FormRegistry,
    pub store: LeadStore,
    pub limits: RateLimits,
    pub metrics: Metrics,
    pub templates: Templates,
    pub pages: Pages,
    pub public_url: String,
}

impl AppState {
    /// A URL for people: absolute ones as they are, paths under the public URL.
    pub fn absolute_url(&self, u: &str) -> String {
        if u.starts_with("http://") || u.starts_with("https://") {
            u.to_string()
        } else {
            format!("{}/{}", self.public_url, u.trim_start_matches('/'))
        }
    }

    pub fn ip_hash_key(&self) -> &[u8] {
        self.settings
            .privacy
            .ip_hash_key
            .as_ref()
            .map_or(&[][..], |k| k.expose_secret().as_bytes())
    }
}

pub struct Application {
    addr: SocketAddr,
    server: Server,
    state: web::Data<AppState>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Validates the settings, opens the database (running migrations), binds the listener.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        settings.validate()?;
        let forms = FormRegistry::build(&settings)?;
        let templates = Templates::build(&settings)?;
        let store = LeadStore::connect(&settings.database)
            .await
            .map_err(StartupError::Database)?;
        let bind = settings.bind_addr()?;
        let listener =
            TcpListener::bind(bind).map_err(|source| StartupError::Bind { addr: bind, source })?;
        let addr = listener.local_addr().map_err(StartupError::Server)?;
        let limits = RateLimits::new(
            &settings.rate_limit,
            forms.len(),
            settings.trusted_proxies()?,
        );
        let pages = Pages::new().map_err(|e| StartupError::Server(std::io::Error::other(e)))?;
        let state = web::Data::new(AppState {
            public_url: settings.public_url(addr),
            settings: Arc::new(settings),
            forms,
            store,
            limits,
            metrics: Metrics::new(),
            templates,
            pages,
        });

        let app_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(middleware::from_fn(crate::telemetry::request_span))
                .configure(routes::configure)
        })
        .shutdown_timeout(15)
        .listen(listener)
        .map_err(StartupError::Server)?;
        if let Some(n) = state.settings.server.workers {
            server = server.workers(n.max(1));
        }
        let server = server.run();

        let evict_state = state.clone();
        let evictor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                evict_state.limits.evict_stale();
            }
        });
        Ok(Application {
            addr,
            server,
            state,
            background: vec![evictor],
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// A handle that stops the server gracefully (in-flight requests finish).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or the handle), then closes the database.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in &self.background {
            task.abort();
        }
        self.state.store.close().await;
        result
    }
}
