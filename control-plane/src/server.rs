//! Assembles the control plane: `ServerConfig → Server::build → Server::run(shutdown)`.
//! `build` opens the store, bootstraps the first admin token and binds the listener, so
//! tests and the binary start the very same server (tests with port 0).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tideway_gateway::route::RouteTable;
use tideway_gateway::{Activation, Gateway, GatewayConfig};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, auth::TokenCache, AppState};
use crate::artifact::{ArtifactStore, UnpackLimits};
use crate::clock::{Clock, SystemClock};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::token::{mint_secret, secret_hash, Role};
use crate::grpc::GatewaySyncService;
use crate::intake::{Intake, UploadLimits};
use crate::layout::Layout;
use crate::reconcile::autoscale::{Autoscaler, ScaleBoard, ScalingStatus};
use crate::reconcile::build::BuildReconciler;
use crate::reconcile::metrics::MetricsRollup;
use crate::reconcile::registry::{Bridge, BridgeView};
use crate::reconcile::release::ReleaseReconciler;
use crate::reconcile::routes::RouteBuilder;
use crate::reconcile::runtime::{record_events, RuntimeReconciler};
use crate::runtime::local::{LocalConfig, LocalDriver};
use crate::runtime::RuntimeDriver;
use crate::store::sql::SqlStore;
use crate::store::{Store, StoreError};
use crate::telemetry::HttpMetrics;
use tideway_custom_metrics::{CustomMetrics, OtlpReceiver};
use tideway_registry_bridge::{BuiltinRegistry, Registry, RegistryConfig};

const MIB: u64 = 1024 * 1024;

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
    /// Largest artifact upload, in MiB.
    #[arg(long, env = "TIDEWAY_MAX_ARTIFACT_MB", default_value_t = 1024)]
    pub max_artifact_mb: u64,
    /// Most entries an artifact may unpack to.
    #[arg(long, env = "TIDEWAY_MAX_ARTIFACT_ENTRIES", default_value_t = 100_000)]
    pub max_artifact_entries: u64,
    /// Most bytes an artifact may unpack to, in MiB (archive bombs stop here).
    #[arg(long, env = "TIDEWAY_MAX_UNPACKED_MB", default_value_t = 4096)]
    pub max_unpacked_mb: u64,
    /// How long a version's build step may run.
    #[arg(long, env = "TIDEWAY_BUILD_TIMEOUT_SECS", default_value_t = 600)]
    pub build_timeout_secs: u64,
    /// Between SIGTERM and SIGKILL when an instance stops.
    #[arg(long, env = "TIDEWAY_STOP_GRACE_SECS", default_value_t = 10)]
    pub stop_grace_secs: u64,
    /// Address of the gateway that serves the apps (port 0 picks a free port).
    #[arg(long, env = "TIDEWAY_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub gateway_addr: SocketAddr,
    /// Address of the gRPC service remote gateways (`tideway gateway`) connect to (port 0
    /// picks a free port).
    #[arg(long, env = "TIDEWAY_GRPC_ADDR", default_value = "127.0.0.1:7071")]
    pub grpc_addr: SocketAddr,
    /// Address of the OTLP/gRPC metrics receiver apps send custom metrics to (port 0 picks
    /// a free port). Instances get it as `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[arg(long, env = "TIDEWAY_OTLP_ADDR", default_value = "127.0.0.1:4317")]
    pub otlp_addr: SocketAddr,
    /// Address of the built-in registry's Eureka REST API (`/eureka/` and `/eureka/v2/`;
    /// port 0 picks a free port).
    #[arg(long, env = "TIDEWAY_EUREKA_ADDR", default_value = "127.0.0.1:8761")]
    pub eureka_addr: SocketAddr,
    /// Address of the built-in registry's Consul HTTP API (discovery subset).
    #[arg(long, env = "TIDEWAY_CONSUL_ADDR", default_value = "127.0.0.1:8500")]
    pub consul_addr: SocketAddr,
    /// ACL token the built-in Consul API requires for writes (none by default).
    #[arg(long, env = "TIDEWAY_CONSUL_TOKEN")]
    pub consul_token: Option<String>,
    /// How long a stopping instance stays up after it left the gateway and the service
    /// registries, before SIGTERM (so consumers stop calling it first).
    #[arg(long, env = "TIDEWAY_DRAIN_DELAY_MS", default_value_t = 1000)]
    pub drain_delay_ms: u64,
    /// How long the gateway waits for an instance's response headers (then 504).
    #[arg(long, env = "TIDEWAY_UPSTREAM_TIMEOUT_SECS", default_value_t = 60)]
    pub upstream_timeout_secs: u64,
}

pub struct Server {
    listener: TcpListener,
    grpc_listener: TcpListener,
    state: Arc<AppState>,
    gateway: Gateway,
    routes: watch::Sender<Arc<RouteTable>>,
    activations: mpsc::Receiver<Activation>,
    otlp: OtlpReceiver,
    custom_metrics: Arc<CustomMetrics>,
    builtin_registry: BuiltinRegistry,
    /// The built-in registry's model, where the bridge registers the platform's instances.
    registry: Arc<Registry>,
    /// The autoscaler's counts for non-serving versions, read by the runtime reconciler.
    board: Arc<ScaleBoard>,
    build_timeout: Duration,
    /// Stops the runtime driver's own loops (never its instances).
    runtime_shutdown: CancellationToken,
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
        let grpc_listener = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding the gRPC service to {}", config.grpc_addr))?;

        let custom_metrics = Arc::new(CustomMetrics::new());
        let otlp = OtlpReceiver::bind(config.otlp_addr, custom_metrics.clone())
            .await
            .with_context(|| format!("binding the OTLP receiver to {}", config.otlp_addr))?;
        let registry = Registry::new(RegistryConfig {
            consul_acl_token: config.consul_token.clone(),
            ..RegistryConfig::default()
        });
        let builtin_registry =
            BuiltinRegistry::bind(registry.clone(), config.eureka_addr, config.consul_addr)
                .await
                .with_context(|| {
                    format!(
                        "binding the built-in registry to {} (Eureka) and {} (Consul)",
                        config.eureka_addr, config.consul_addr
                    )
                })?;
        let layout = Layout::new(config.data_dir.clone());
        let runtime_shutdown = CancellationToken::new();
        let runtime: Arc<dyn RuntimeDriver> = LocalDriver::start(
            LocalConfig {
                root: layout.runtime(),
                shim_exe: std::env::current_exe().context("locating the tideway binary")?,
                stop_grace: Duration::from_secs(config.stop_grace_secs),
                log_max_bytes: 10 * MIB,
                log_files: 3,
                drain_delay: Duration::from_millis(config.drain_delay_ms),
                platform_env: [(
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                    format!("http://{}", otlp.local_addr()),
                )]
                .into(),
            },
            runtime_shutdown.clone(),
        )
        .context("starting the local runtime")?;
        let intake = Arc::new(Intake::new(
            store.clone(),
            ArtifactStore::new(layout.artifacts()),
            layout.clone(),
            UploadLimits {
                max_artifact_bytes: config.max_artifact_mb.saturating_mul(MIB),
                unpack: UnpackLimits {
                    max_entries: config.max_artifact_entries,
                    max_unpacked_bytes: config.max_unpacked_mb.saturating_mul(MIB),
                },
            },
        ));
        let (routes, routes_rx) = watch::channel(Arc::new(RouteTable::default()));
        let (activation_tx, activations) = mpsc::channel(1024);
        let gateway = Gateway::bind(
            GatewayConfig {
                addr: config.gateway_addr,
                upstream_timeout: Duration::from_secs(config.upstream_timeout_secs),
                ..GatewayConfig::default()
            },
            routes_rx,
            activation_tx,
        )
        .await
        .with_context(|| format!("binding the gateway to {}", config.gateway_addr))?;
        let board = Arc::new(ScaleBoard::default());
        let state = Arc::new(AppState {
            store,
            runtime,
            intake,
            layout,
            clock,
            tokens: TokenCache::default(),
            metrics: Arc::new(HttpMetrics::default()),
            release_wake: Arc::new(Notify::new()),
            runtime_wake: Arc::new(Notify::new()),
            build_wake: Arc::new(Notify::new()),
            routes_wake: Arc::new(Notify::new()),
            gateway_metrics: gateway.metrics(),
            scaling: Arc::new(ScalingStatus::default()),
            bridge: Arc::new(BridgeView::new(
                registry.clone(),
                format!("http://{}/eureka/", builtin_registry.eureka_addr()),
                format!("http://{}", builtin_registry.consul_addr()),
            )),
        });

        Ok(Server {
            listener,
            grpc_listener,
            state,
            gateway,
            routes,
            activations,
            otlp,
            custom_metrics,
            builtin_registry,
            registry,
            board,
            build_timeout: Duration::from_secs(config.build_timeout_secs),
            runtime_shutdown,
        })
    }

    pub fn api_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    pub fn grpc_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.grpc_listener.local_addr()?)
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    pub fn otlp_addr(&self) -> SocketAddr {
        self.otlp.local_addr()
    }

    pub fn eureka_addr(&self) -> SocketAddr {
        self.builtin_registry.eureka_addr()
    }

    pub fn consul_addr(&self) -> SocketAddr {
        self.builtin_registry.consul_addr()
    }

    /// Serves until `shutdown` fires, then drains requests and stops background tasks.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let st = &self.state;
        let tasks = TaskTracker::new();
        // Desired state first: the runtime must not drain adopted instances before it knows
        // what should run, and it learns that from its first `apply`.
        let runtime = RuntimeReconciler {
            store: st.store.clone(),
            runtime: st.runtime.clone(),
            layout: st.layout.clone(),
            board: self.board.clone(),
            bridge: st.bridge.clone(),
            wake: st.runtime_wake.clone(),
        };
        tasks.spawn(runtime.run(shutdown.clone()));
        // Subscribed here, in order: the event log's receiver is the first and gets the
        // driver's startup events (adoptions, restarts) too.
        tasks.spawn(record_events(
            st.store.clone(),
            st.runtime.subscribe(),
            st.release_wake.clone(),
            shutdown.clone(),
        ));
        let grpc = GatewaySyncService {
            state: st.clone(),
            store: st.store.clone(),
            routes: self.routes.subscribe(),
            metrics: st.gateway_metrics.clone(),
            shutdown: shutdown.clone(),
        };
        let grpc_listener = self.grpc_listener;
        tasks.spawn(async move {
            if let Err(error) = grpc.serve(grpc_listener).await {
                tracing::error!(error = format!("{error:#}"), "GrpcServerFailed");
            }
        });
        let route_updates = self.routes.subscribe();
        let routes = RouteBuilder {
            store: st.store.clone(),
            runtime: st.runtime.clone(),
            wake: st.routes_wake.clone(),
            release_wake: st.release_wake.clone(),
            routes: self.routes,
        };
        tasks.spawn(routes.run(st.runtime.subscribe(), shutdown.clone()));
        let autoscaler = Autoscaler::new(
            st.store.clone(),
            st.runtime.clone(),
            st.gateway_metrics.clone(),
            self.custom_metrics.clone(),
            self.board.clone(),
            st.scaling.clone(),
            st.clock.clone(),
            st.runtime_wake.clone(),
            st.release_wake.clone(),
        );
        tasks.spawn(autoscaler.run(self.activations, shutdown.clone()));
        let bridge = Bridge::new(
            st.store.clone(),
            st.runtime.clone(),
            self.registry.clone(),
            st.bridge.clone(),
            st.clock.clone(),
        );
        tasks.spawn(bridge.run(st.runtime.subscribe(), shutdown.clone()));
        let builtin_registry = self.builtin_registry;
        let registry_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = builtin_registry.run(registry_shutdown).await {
                tracing::error!(%error, "BuiltinRegistryFailed");
            }
        });
        let otlp = self.otlp;
        let otlp_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = otlp.run(otlp_shutdown).await {
                tracing::error!(%error, "OtlpReceiverFailed");
            }
        });
        let rollup = MetricsRollup {
            store: st.store.clone(),
            metrics: st.gateway_metrics.clone(),
            clock: st.clock.clone(),
        };
        tasks.spawn(rollup.run(shutdown.clone()));
        tasks.spawn(self.gateway.run(shutdown.clone()));
        let releases = ReleaseReconciler {
            store: st.store.clone(),
            runtime: st.runtime.clone(),
            routes: route_updates,
            metrics: st.gateway_metrics.clone(),
            clock: st.clock.clone(),
            wake: st.release_wake.clone(),
            runtime_wake: st.runtime_wake.clone(),
            routes_wake: st.routes_wake.clone(),
        };
        tasks.spawn(releases.run(shutdown.clone()));
        let builds = BuildReconciler::new(
            st.store.clone(),
            st.layout.clone(),
            st.intake.clone(),
            self.build_timeout,
            st.build_wake.clone(),
            st.release_wake.clone(),
            st.runtime_wake.clone(),
        );
        tasks.spawn(builds.run(shutdown.clone()));
        tasks.close();

        // The console renders its pages by calling this very API over loopback.
        let console = tideway_web_console::router(tideway_web_console::ConsoleConfig {
            api_base: format!("http://{}", self.listener.local_addr()?),
        });
        let router = api::router_with(self.state.clone(), console);
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
        self.runtime_shutdown.cancel();
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

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
pub async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.cancel();
}
