//! The [`Gateway`] service: its listener, the task that compiles each published route
//! table, the per-second metrics tick, and the accept loop with a bounded drain on
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::Utc;
use http::HeaderValue;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::GatewayError;
use crate::metrics::GatewayMetrics;
use crate::proxy::{handle, ConnCtx, Shared};
use crate::route::RouteTable;
use crate::table::CompiledTable;

/// How the gateway listens and how long it waits.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen (`127.0.0.1:0` in tests).
    pub addr: SocketAddr,
    /// Longest wait for an upstream's response headers (connect included) before a 504.
    pub upstream_timeout: Duration,
    /// Most requests held per app while it is activated from zero; beyond, 503.
    pub activation_queue_depth: usize,
    /// Longest hold of a request waiting for an activated app; then 503.
    pub activation_timeout: Duration,
    /// Longest TCP connect to an upstream; a failed connect is retried once elsewhere
    /// for idempotent requests without a body.
    pub connect_timeout: Duration,
    /// Longest wait for in-flight requests after shutdown is requested; WebSocket tunnels
    /// are closed at its end.
    pub drain_timeout: Duration,
}

impl GatewayConfig {
    /// Defaults: upstream timeout 60 s, activation queue 1000, activation timeout 30 s,
    /// connect timeout 1 s, drain timeout 30 s.
    pub fn new(addr: SocketAddr) -> Self {
        GatewayConfig {
            addr,
            upstream_timeout: Duration::from_secs(60),
            activation_queue_depth: 1000,
            activation_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The defaults of [`GatewayConfig::new`] on `127.0.0.1:0` (an ephemeral loopback port, as
/// tests want); a deployment sets `addr`.
impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// A request for capacity: the app scales to zero, has no ready backend, and a request
/// is waiting. Sent at most once per 500 ms per app (again each second while requests
/// stay held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub namespace: String,
    pub app: String,
}

/// The data plane's HTTP server. Bound by [`Gateway::bind`], served by [`Gateway::run`].
pub struct Gateway {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    routes: watch::Receiver<Arc<RouteTable>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Gateway {
    /// Binds the listener and compiles the current route table. Nothing is served until
    /// [`Gateway::run`].
    pub async fn bind(
        config: GatewayConfig,
        mut routes: watch::Receiver<Arc<RouteTable>>,
        activations: mpsc::Sender<Activation>,
    ) -> Result<Gateway, GatewayError> {
        let listener = listen(config.addr).map_err(|source| GatewayError::Bind {
            addr: config.addr,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(GatewayError::Listener)?;

        let metrics = Arc::new(GatewayMetrics::new());
        let current = Arc::clone(&routes.borrow_and_update());
        let table = CompiledTable::compile(&current, None, &metrics);

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);

        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(table),
            swapped: Notify::new(),
            client,
            metrics,
            activations,
            config,
            tunnels: TaskTracker::new(),
            tunnel_stop: CancellationToken::new(),
        });
        Ok(Gateway {
            listener,
            local_addr,
            shared,
            routes,
        })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The gateway's request metrics (live while the gateway runs).
    pub fn metrics(&self) -> Arc<GatewayMetrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests
    /// finish for at most the drain timeout, closes WebSocket tunnels and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let Gateway {
            listener,
            local_addr,
            shared,
            routes,
        } = self;
        tracing::info!(%local_addr, "GatewayStarted");
        let background = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(watch_routes(
            Arc::clone(&shared),
            routes,
            background.clone(),
        ));
        tasks.spawn(tick_metrics(
            Arc::clone(&shared.metrics),
            background.clone(),
        ));

        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();

        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let ip = peer.ip().to_canonical();
                        let local_peer = ip.is_loopback();
                        let ip = ip.to_string();
                        let ctx = Arc::new(ConnCtx {
                            shared: Arc::clone(&shared),
                            client_ip: HeaderValue::from_str(&ip)
                                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
                            local_peer,
                        });
                        let service = hyper::service::service_fn(move |req| {
                            handle(Arc::clone(&ctx), req)
                        });
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(error) = conn.await {
                                tracing::debug!(%error, "GatewayConnectionError");
                            }
                        });
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "GatewayAcceptError");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);

        let drain = shared.config.drain_timeout;
        tracing::info!(drain_secs = drain.as_secs_f64(), "GatewayDrainStarted");
        let drained = tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_ok();
        shared.tunnel_stop.cancel();
        shared.tunnels.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), shared.tunnels.wait()).await;
        background.cancel();
        tasks.close();
        tasks.wait().await;
        tracing::info!(drained, "GatewayStopped");
    }
}

/// Compiles every table the control plane publishes and swaps it in whole.
async fn watch_routes(
    shared: Arc<Shared>,
    mut routes: watch::Receiver<Arc<RouteTable>>,
    stop: CancellationToken,
) {
    // A table published between bind and run is picked up here.
    if routes.has_changed().unwrap_or(false) {
        let table = Arc::clone(&routes.borrow_and_update());
        shared.install(&table);
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = routes.changed() => {
                if changed.is_err() {
                    tracing::info!("GatewayRoutesClosed");
                    return;
                }
                let table = Arc::clone(&routes.borrow_and_update());
                shared.install(&table);
            }
        }
    }
}

/// Closes each second of metrics right after it ends (wall clock, whole seconds).
async fn tick_metrics(metrics: Arc<GatewayMetrics>, stop: CancellationToken) {
    let into_second = u64::from(Utc::now().timestamp_subsec_millis().min(999));
    let first = Instant::now() + Duration::from_millis(1000 - into_second);
    let mut ticks = interval_at(first, Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {
                // The second that just ended, robust to a tick a little early or late.
                let ended = (Utc::now().timestamp_millis() + 500).div_euclid(1000) - 1;
                metrics.rotate_at(ended, metrics.now_nanos());
            }
        }
    }
}
