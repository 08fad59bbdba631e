//! The control plane's gRPC port (`--grpc-addr`): the API for tools (`tideway.v1`, in
//! [`tools`], [`apps`] and [`releases`]), server reflection (v1 and v1alpha, so grpcurl-style
//! tools can list and describe everything), and this module's service for gateways that
//! run in their own process (`tideway gateway`).
//!
//! `GatewaySync`: `WatchRoutes` streams the route table the route builder publishes
//! (the current table at once, then every change; intermediate tables may be skipped, each
//! message is a whole table), and `PushMetrics` merges the gateways' per-second samples
//! into the same [`GatewayMetrics`] the in-process gateway fills, so the metrics API, the
//! autoscaler's windows and the rollups count traffic of every gateway.
//!
//! Authentication uses the REST API's tokens (`authorization: Bearer <token>` metadata).
//! A gateway sees every app's backends and reports metrics for every namespace, so it needs
//! an admin token without namespace restriction (the check of `Action::Administer` on no
//! namespace). Tokens are checked when a call starts; a long-lived stream is not cut when
//! its token is revoked later.

pub mod apps;
pub mod follow;
pub mod releases;
pub mod status;
pub mod tools;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt as _};
use tideway_gateway::route::RouteTable;
use tideway_gateway::GatewayMetrics;
use tideway_proto::api::{AppServiceServer, ReleaseServiceServer};
use tideway_proto::v1::{MetricsBatch, PushMetricsAck, RouteTableMsg, WatchRoutesRequest};
use tideway_proto::{
    sample_from_proto, table_to_proto, GatewaySync, GatewaySyncServer, FILE_DESCRIPTOR_SET,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::domain::token::{secret_hash, Action};
use crate::store::Store;

pub struct GatewaySyncService {
    /// Everything the API serves from; the gRPC API for tools shares it.
    pub state: Arc<crate::api::AppState>,
    pub store: Arc<dyn Store>,
    pub routes: watch::Receiver<Arc<RouteTable>>,
    pub metrics: Arc<GatewayMetrics>,
    /// Ends open `WatchRoutes` streams so a graceful shutdown does not wait on them.
    pub shutdown: CancellationToken,
}

impl GatewaySyncService {
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let secret = tools::bearer(request)
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let principal = match self.store.principal_by_hash(&secret_hash(secret)).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(Status::unauthenticated("invalid token")),
            Err(error) => {
                tracing::warn!(%error, "GatewayAuthStoreError");
                return Err(Status::unavailable("the store is unavailable"));
            }
        };
        principal
            .authorize(Action::Administer, None)
            .map_err(|_| Status::permission_denied("a gateway needs an unrestricted admin token"))
    }

    /// Serves this service, the API for tools and reflection on `listener` until
    /// `shutdown` fires.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let shutdown = self.shutdown.clone();
        let tools = Arc::new(tools::ToolsApi {
            state: self.state.clone(),
            shutdown: shutdown.clone(),
        });
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        };
        tonic::transport::Server::builder()
            .add_service(GatewaySyncServer::new(self))
            .add_service(
                AppServiceServer::from_arc(tools.clone())
                    .max_decoding_message_size(apps::DEPLOY_MESSAGE_LIMIT),
            )
            .add_service(ReleaseServiceServer::from_arc(tools))
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                shutdown.cancelled_owned(),
            )
            .await?;
        Ok(())
    }
}

fn peer(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

type RouteStream = Pin<Box<dyn Stream<Item = Result<RouteTableMsg, Status>> + Send>>;

#[tonic::async_trait]
impl GatewaySync for GatewaySyncService {
    type WatchRoutesStream = RouteStream;

    async fn watch_routes(
        &self,
        request: Request<WatchRoutesRequest>,
    ) -> Result<Response<Self::WatchRoutesStream>, Status> {
        self.authenticate(&request).await?;
        let peer = peer(request.remote_addr());
        let gateway = request.into_inner().gateway;
        tracing::info!(%peer, %gateway, "RemoteGatewayConnected");
        let tables = WatchStream::new(self.routes.clone())
            .map(|table| Ok(table_to_proto(&table)))
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(tables)))
    }

    async fn push_metrics(
        &self,
        request: Request<Streaming<MetricsBatch>>,
    ) -> Result<Response<PushMetricsAck>, Status> {
        self.authenticate(&request).await?;
        let mut batches = request.into_inner();
        let mut samples = 0u64;
        loop {
            let batch = tokio::select! {
                () = self.shutdown.cancelled() => break,
                batch = batches.message() => match batch? {
                    Some(batch) => batch,
                    None => break,
                },
            };
            let received: Vec<_> = batch.samples.into_iter().map(sample_from_proto).collect();
            samples += received.len() as u64;
            self.metrics.ingest(&received);
        }
        Ok(Response::new(PushMetricsAck { samples }))
    }
}
