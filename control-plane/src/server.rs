//! Assembles the control plane: `ServerConfig → Server::build → Server::run(shutdown)`.
//! `build` opens the store, bootstraps the first admin token and binds the listener, so
//! tests and the binary start the very same server (tests with port 0).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, auth::TokenCache, AppState};
use crate::clock::{Clock, SystemClock};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::token::{mint_secret, secret_hash, Role};
use crate::reconcile::release::ReleaseReconciler;
use crate::store::sql::SqlStore;
use crate::store::{Store, StoreError};
use crate::telemetry::HttpMetrics;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// `tideway server` settings; every flag has a `TIDEWAY_*` environment equivalent.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// Where the SQLite database, artifacts and the admin token live.
    #[arg(long, env = "TIDEWAY_DATA_DIR", default_value = "./.tideway")]
    pub data_dir: PathBuf,
    /// Address of the REST API (port 0 picks a free port).
    #[arg(long, env = "TIDEWAY_API_ADDR", default_value = "127.0.0.1:7070")]
    pub api_addr: SocketAddr,
    /// `postgres://…` for PostgreSQL; default is SQLite at `<data-dir>/tideway.db`.
    #[arg(long, env = "TIDEWAY_DATABASE_URL")]
    pub database_url: Option<String>,
}

pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

/// Written beside the database on first start; readable only by its owner.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

impl Server {
    pub async fn build(config: ServerConfig) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                config.data_dir.join("tideway.db").display()
            ),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store: Arc<dyn Store> = Arc::new(
            SqlStore::connect(&url, clock.clone())
                .await
                .context("opening the database")?,
        );
        let default_ns = Name::default_namespace();
        store
            .ensure_namespace(
                &default_ns,
                NewEvent::new("NamespaceCreated", "tideway", "created on first start")
                    .namespace(default_ns.as_str()),
            )
            .await?;
        bootstrap_admin_token(store.as_ref(), &config.data_dir).await?;
        let listener = TcpListener::bind(config.api_addr)
            .await
            .with_context(|| format!("binding the API to {}", config.api_addr))?;
        let state = Arc::new(AppState {
            store,
            clock,
            tokens: TokenCache::default(),
            metrics: Arc::new(HttpMetrics::default()),
            release_wake: Arc::new(Notify::new()),
        });
        Ok(Server { listener, state })
    }

    pub fn api_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` fires, then drains requests and stops background tasks.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tasks = TaskTracker::new();
        let reconciler =
            ReleaseReconciler::new(self.state.store.clone(), self.state.release_wake.clone());
        tasks.spawn(reconciler.run(shutdown.clone()));
        tasks.close();

        let router = api::router(self.state.clone());
        let serve = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let server = tokio::spawn(async move { serve.await });
        shutdown.cancelled().await;
        tracing::info!("shutting down: draining requests");
        match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
            Ok(result) => result??,
            Err(_) => tracing::warn!("requests still in flight after the drain timeout"),
        }
        tasks.wait().await;
        Ok(())
    }
}

/// Creates the first admin token when the store has none: stores its hash, writes the
/// secret to `<data-dir>/admin-token` (mode 0600) and prints it once.
async fn bootstrap_admin_token(store: &dyn Store, data_dir: &Path) -> anyhow::Result<()> {
    if store.count_tokens().await? > 0 {
        return Ok(());
    }
    let secret = mint_secret();
    let name = Name::parse("admin").map_err(|e| anyhow::anyhow!(e.reason))?;
    let event = NewEvent::new(
        "TokenCreated",
        "tideway",
        "first start: bootstrap admin token",
    )
    .details(serde_json::json!({"name": "admin", "role": "admin"}));
    match store
        .create_token(&name, Role::Admin, None, &secret_hash(&secret), event)
        .await
    {
        Ok(_) => {}
        // Another control plane on the same database won the race; it printed its token.
        Err(StoreError::AlreadyExists { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    println!("tideway: admin token: {secret}");
    println!("tideway: admin token saved to {}", path.display());
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}
