//! [`OtlpReceiver`]: the OTLP/gRPC metrics endpoint
//! (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`).
//!
//! Each export is decoded with [`points::decode`](crate::points) against the wall clock read
//! once per request, recorded into [`CustomMetrics`] under one short lock, and answered
//! with a `partial_success` that counts the rejected data points and names the reasons.
//! Requests are limited to [`MAX_MESSAGE_BYTES`] (decoded) and [`REQUEST_TIMEOUT`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::points;
use crate::series::{CustomMetrics, Rejection};

/// The largest export request accepted, after decompression.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long one export may take before the server answers `CANCELLED`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`OtlpReceiver::run`] waits for open exports after shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP/gRPC metrics receiver, bound and not yet serving.
#[derive(Debug)]
pub struct OtlpReceiver {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics: Arc<CustomMetrics>,
}

impl OtlpReceiver {
    /// Binds `addr` (port 0 allowed); returns the bound receiver.
    pub async fn bind(addr: SocketAddr, metrics: Arc<CustomMetrics>) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(Error::Listener)?;
        Ok(Self {
            listener,
            local_addr,
            metrics,
        })
    }

    /// The address the receiver is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then waits up to [`DRAIN_TIMEOUT`] for exports
    /// in progress.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let addr = self.local_addr;
        let service = MetricsServiceServer::new(ExportService {
            metrics: self.metrics,
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        tracing::info!(%addr, "CustomMetricsReceiverStarted");
        let serve = tonic::transport::Server::builder()
            .timeout(REQUEST_TIMEOUT)
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.listener),
                shutdown.clone().cancelled_owned(),
            );
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            () = shutdown.cancelled() => {
                match tokio::time::timeout(DRAIN_TIMEOUT, &mut serve).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        tracing::warn!(%addr, "CustomMetricsReceiverDrainTimedOut");
                        Ok(())
                    }
                }
            }
        };
        result.map_err(Error::Serve)?;
        tracing::info!(%addr, "CustomMetricsReceiverStopped");
        Ok(())
    }
}

/// The tonic service behind the receiver.
struct ExportService {
    metrics: Arc<CustomMetrics>,
}

#[tonic::async_trait]
impl MetricsService for ExportService {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let request = request.into_inner();
        let decoded = points::decode(&request, unix_now());
        let mut rejected = decoded.rejected;
        self.metrics.add_dropped(rejected.len());
        let not_stored = self.metrics.record_points(&decoded.points);
        let accepted = decoded.points.len() - not_stored.len();
        rejected.extend(not_stored);
        if !rejected.is_empty() {
            // Debug, not warn: a misconfigured app would otherwise log on every export.
            tracing::debug!(
                accepted,
                rejected = rejected.len(),
                "CustomMetricsPointsRejected"
            );
        }
        Ok(Response::new(response(&rejected)))
    }
}

/// The export response: a `partial_success` counting the rejected points, when there are
/// any.
fn response(rejected: &[Rejection]) -> ExportMetricsServiceResponse {
    if rejected.is_empty() {
        return ExportMetricsServiceResponse::default();
    }
    let mut reasons = BTreeMap::<Rejection, usize>::new();
    for &rejection in rejected {
        *reasons.entry(rejection).or_default() += 1;
    }
    let reasons: Vec<String> = reasons
        .iter()
        .map(|(rejection, count)| format!("{count} {}", rejection.reason()))
        .collect();
    ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected.len()).unwrap_or(i64::MAX),
            error_message: format!("rejected data points: {}", reasons.join("; ")),
        }),
    }
}

/// The current unix second, read once per request. A clock before 1970 reads as 0.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_export_has_no_partial_success() {
        assert_eq!(response(&[]), ExportMetricsServiceResponse::default());
    }

    #[test]
    fn rejections_are_counted_by_reason() {
        let response = response(&[
            Rejection::TooManySeries,
            Rejection::NoInstance,
            Rejection::TooManySeries,
        ]);
        assert_eq!(
            response.partial_success,
            Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "rejected data points: 1 no service.instance.id resource \
                                attribute; 2 too many series"
                    .to_owned(),
            })
        );
    }
}
