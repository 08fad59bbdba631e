//! `tideway gateway`: the gateway in its own process, in front of a control plane it reaches
//! over gRPC. Several can run in front of one control plane.
//!
//! It subscribes to `WatchRoutes` and publishes every table it receives on the watch channel
//! the gateway serves from; every second it pushes the samples of the last closed second on
//! `PushMetrics`. When the control plane is unreachable it keeps serving its last table and
//! reconnects with backoff (100 ms doubling to 5 s, reset once a table arrives); metrics are
//! buffered meanwhile (up to [`METRICS_BUFFER`] seconds, then dropped). A control plane that
//! refuses the token before any table was received stops the process with an error (a
//! misconfiguration); later refusals are retried like any other failure.
//!
//! Not yet: activation of apps scaled to zero (held requests time out with 503) — the
//! gateway's activation requests are logged and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use tideway_gateway::route::RouteTable;
use tideway_gateway::{Gateway, GatewayConfig, GatewayMetrics};
use tideway_proto::v1::{MetricsBatch, WatchRoutesRequest};
use tideway_proto::{sample_to_proto, table_from_proto, GatewaySyncClient};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::telemetry::{self, LogFormat};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Seconds of metrics kept while the control plane is unreachable.
pub const METRICS_BUFFER: usize = 300;
/// Most missed seconds exported at once after a stall of the exporter.
const CATCH_UP_SECS: i64 = 60;

/// `tideway gateway` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// gRPC URL of the control plane (`tideway server --grpc-addr`), e.g.
    /// `http://127.0.0.1:7071`.
    #[arg(long, env = "TIDEWAY_CONTROL_PLANE")]
    pub control_plane: String,
    /// An admin token without namespace restriction.
    #[arg(long, env = "TIDEWAY_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Address of the gateway (port 0 picks a free port).
    #[arg(long, env = "TIDEWAY_GATEWAY_ADDR", default_value = "127.0.0.1:8080")]
    pub gateway_addr: SocketAddr,
    /// How long the gateway waits for an instance's response headers (then 504).
    #[arg(long, env = "TIDEWAY_UPSTREAM_TIMEOUT_SECS", default_value_t = 60)]
    pub upstream_timeout_secs: u64,
    /// Log format on stderr.
    #[arg(long, env = "TIDEWAY_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

/// Runs the gateway until SIGTERM/Ctrl-C (drained), or until the control plane refuses the
/// token on the first connection (an error).
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init(args.log_format)?;
    let endpoint = Endpoint::from_shared(args.control_plane.clone())
        .with_context(|| format!("invalid control plane URL {:?}", args.control_plane))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let token: MetadataValue<Ascii> = format!("Bearer {}", args.token.trim())
        .parse()
        .context("the token is not valid header text")?;

    let (routes_tx, routes_rx) = watch::channel(Arc::new(RouteTable::default()));
    let (activation_tx, mut activations) = mpsc::channel(1024);
    let gateway = Gateway::bind(
        GatewayConfig {
            addr: args.gateway_addr,
            upstream_timeout: Duration::from_secs(args.upstream_timeout_secs),
            ..GatewayConfig::default()
        },
        routes_rx,
        activation_tx,
    )
    .await
    .with_context(|| format!("binding the gateway to {}", args.gateway_addr))?;
    let addr = gateway.local_addr();
    let metrics = gateway.metrics();
    // Scripts and tests read this line to find a port chosen with `:0`.
    println!("tideway: gateway listening on http://{addr}");
    tracing::info!(%addr, control_plane = %args.control_plane, "RemoteGatewayStarted");

    let shutdown = CancellationToken::new();
    tokio::spawn(crate::server::stop_on_signal(shutdown.clone()));
    let served = tokio::spawn(gateway.run(shutdown.clone()));
    tokio::spawn(async move {
        while let Some(a) = activations.recv().await {
            tracing::warn!(namespace = %a.namespace, app = %a.app, "RemoteActivationUnsupported");
        }
    });
    let (batch_tx, batch_rx) = mpsc::channel(METRICS_BUFFER);
    tokio::spawn(export_metrics(metrics, batch_tx, shutdown.clone()));

    let sync = Sync {
        endpoint,
        token,
        name: format!("{addr} pid {}", std::process::id()),
        routes: routes_tx,
        batches: Arc::new(Mutex::new(batch_rx)),
        shutdown: shutdown.clone(),
    };
    let result = sync.run().await;
    shutdown.cancel();
    served.await.context("the gateway task failed")?;
    // Keep the table's sender alive until the gateway stopped serving from it.
    drop(sync);
    result
}

struct Sync {
    endpoint: Endpoint,
    token: MetadataValue<Ascii>,
    name: String,
    routes: watch::Sender<Arc<RouteTable>>,
    batches: Arc<Mutex<mpsc::Receiver<MetricsBatch>>>,
    shutdown: CancellationToken,
}

impl Sync {
    async fn run(&self) -> anyhow::Result<()> {
        let mut backoff = BACKOFF_MIN;
        let mut synced = false;
        loop {
            let status = self.session(&mut backoff, &mut synced).await;
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let refused = matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied
            );
            if refused && !synced {
                anyhow::bail!(
                    "the control plane refused the token ({:?}): {}",
                    status.code(),
                    status.message()
                );
            }
            tracing::warn!(
                code = ?status.code(),
                error = status.message(),
                retry_ms = backoff.as_millis() as u64,
                "ControlPlaneDisconnected"
            );
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: streams tables in and metrics out until either fails; returns why.
    async fn session(&self, backoff: &mut Duration, synced: &mut bool) -> Status {
        let channel: Channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => return Status::unavailable(format!("connecting: {e}")),
        };
        let token = self.token.clone();
        let client =
            GatewaySyncClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", token.clone());
                Ok(req)
            });
        let mut watch_client = client.clone();
        let mut tables = match watch_client
            .watch_routes(WatchRoutesRequest {
                gateway: self.name.clone(),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return status,
        };
        let mut push_client = client;
        let batches = Arc::clone(&self.batches);
        let push = async move {
            // One pusher at a time owns the buffer; a batch taken but not delivered when the
            // connection drops is lost.
            let receiver = batches.lock_owned().await;
            let stream = futures_util::stream::unfold(receiver, |mut rx| async move {
                rx.recv().await.map(|batch| (batch, rx))
            });
            push_client.push_metrics(stream).await
        };
        tokio::pin!(push);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Status::cancelled("shutting down"),
                message = tables.message() => match message {
                    Ok(Some(msg)) => match table_from_proto(msg) {
                        Ok(table) => {
                            let apps = table.apps.len();
                            self.routes.send_replace(Arc::new(table));
                            if !*synced {
                                tracing::info!(apps, "RemoteGatewaySynced");
                            }
                            *synced = true;
                            *backoff = BACKOFF_MIN;
                        }
                        // Keep serving the last good table.
                        Err(error) => tracing::error!(%error, "RouteTableRejected"),
                    },
                    Ok(None) => return Status::unavailable("the route stream ended"),
                    Err(status) => return status,
                },
                pushed = &mut push => return match pushed {
                    Ok(_) => Status::unavailable("the metrics stream ended"),
                    Err(status) => status,
                },
            }
        }
    }
}

/// Half a second after each whole second (the gateway closes seconds on the whole second),
/// exports every closed second since the last export as one batch.
async fn export_metrics(
    metrics: Arc<GatewayMetrics>,
    batches: mpsc::Sender<MetricsBatch>,
    stop: CancellationToken,
) {
    let into_second = u64::from(Utc::now().timestamp_subsec_millis().min(999));
    let first = Instant::now() + Duration::from_millis((1500 - into_second) % 1000);
    let mut ticks = interval_at(first, Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last: Option<i64> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let closed = Utc::now().timestamp_millis().div_euclid(1000) - 1;
        let from = last.map_or(closed, |l| (l + 1).max(closed - CATCH_UP_SECS));
        let samples: Vec<_> = (from..=closed)
            .flat_map(|sec| metrics.export_second(sec))
            .map(|s| sample_to_proto(&s))
            .collect();
        last = Some(closed);
        if samples.is_empty() {
            continue;
        }
        let n = samples.len();
        let batch = MetricsBatch {
            gateway: String::new(),
            samples,
        };
        if batches.try_send(batch).is_err() {
            tracing::warn!(samples = n, "MetricsBufferFull");
        }
    }
}
