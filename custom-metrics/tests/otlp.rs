//! The receiver against real OTLP senders: the OpenTelemetry Rust SDK exporting over
//! gRPC (tonic), and the generated OTLP client for requests the SDK would not send.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, WithExportConfig as _};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tideway_custom_metrics::{CustomMetrics, OtlpReceiver, MAX_MESSAGE_BYTES};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Running {
    metrics: Arc<CustomMetrics>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), tideway_custom_metrics::Error>>,
}

impl Running {
    async fn start() -> Self {
        let metrics = Arc::new(CustomMetrics::new());
        let receiver = OtlpReceiver::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&metrics))
            .await
            .unwrap();
        let addr = receiver.local_addr();
        assert_ne!(addr.port(), 0);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(receiver.run(shutdown.clone()));
        Running {
            metrics,
            addr,
            shutdown,
            server,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A meter provider exporting to `addr` over OTLP/gRPC; must be built inside the runtime
/// (the tonic channel spawns onto it).
fn provider(addr: SocketAddr, instance: Option<&str>) -> SdkMeterProvider {
    let exporter = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{addr}"))
        .with_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // A long interval: the test exports with `force_flush`.
    let reader = PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(60))
        .build();
    let mut resource = opentelemetry_sdk::Resource::builder_empty().with_service_name("web");
    if let Some(instance) = instance {
        resource =
            resource.with_attribute(KeyValue::new("service.instance.id", instance.to_owned()));
    }
    SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource.build())
        .build()
}

/// Flushes (or shuts down) providers off the runtime's workers: the SDK's reader thread
/// blocks on an export that needs the runtime to make progress.
async fn blocking<F: FnOnce() + Send + 'static>(f: F) {
    tokio::task::spawn_blocking(f).await.unwrap();
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exports_become_per_instance_series() {
    let running = Running::start().await;
    let a = provider(running.addr, Some("web-v1-abc"));
    let b = provider(running.addr, Some("web-v1-def"));

    let meter_a = a.meter("app");
    let _queue_a = meter_a
        .f64_observable_gauge("queue_length")
        .with_callback(|gauge| gauge.observe(7.0, &[]))
        .build();
    let jobs = meter_a.u64_counter("jobs_done").build();
    jobs.add(3, &[KeyValue::new("kind", "email")]);
    jobs.add(2, &[KeyValue::new("kind", "email")]);
    let meter_b = b.meter("app");
    let _queue_b = meter_b
        .i64_observable_gauge("queue_length")
        .with_callback(|gauge| gauge.observe(5, &[]))
        .build();

    let (a2, b2) = (a.clone(), b.clone());
    blocking(move || {
        a2.force_flush().unwrap();
        b2.force_flush().unwrap();
    })
    .await;

    let now = unix_now();
    let m = &running.metrics;
    assert_eq!(m.latest("web-v1-abc", "queue_length", now, 30), Some(7.0));
    assert_eq!(m.latest("web-v1-def", "queue_length", now, 30), Some(5.0));
    // A cumulative counter arrives as its running total.
    assert_eq!(m.latest("web-v1-abc", "jobs_done", now, 30), Some(5.0));
    assert_eq!(
        m.total(&["web-v1-abc", "web-v1-def"], "queue_length", now, 30),
        Some(12.0)
    );
    assert_eq!(
        m.total(&["web-v1-abc", "web-v1-gone"], "queue_length", now, 30),
        Some(7.0)
    );
    assert_eq!(m.total(&["web-v1-def"], "jobs_done", now, 30), None);
    assert_eq!(m.dropped(), 0);

    // The instance stopped.
    m.forget("web-v1-abc");
    assert_eq!(
        m.total(&["web-v1-abc", "web-v1-def"], "queue_length", now, 30),
        Some(5.0)
    );

    blocking(move || {
        a.shutdown().unwrap();
        b.shutdown().unwrap();
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exports_without_an_instance_id_are_dropped() {
    let running = Running::start().await;
    let anonymous = provider(running.addr, None);
    let _queue = anonymous
        .meter("app")
        .f64_observable_gauge("queue_length")
        .with_callback(|gauge| gauge.observe(1.0, &[]))
        .build();

    let flushing = anonymous.clone();
    blocking(move || flushing.force_flush().unwrap()).await;

    assert_eq!(running.metrics.dropped(), 1);
    blocking(move || anonymous.shutdown().unwrap()).await;
    running.stop().await;
}

fn gauge_request(instance: &str, points: Vec<NumberDataPoint>) -> ExportMetricsServiceRequest {
    let attribute = opentelemetry_proto::tonic::common::v1::KeyValue {
        key: "service.instance.id".to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(instance.to_owned())),
        }),
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attribute],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_length".to_owned(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn point(time_unix_nano: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

#[tokio::test]
async fn rejected_points_are_reported_as_partial_success() {
    let running = Running::start().await;
    let mut client = MetricsServiceClient::connect(format!("http://{}", running.addr))
        .await
        .unwrap();

    let now = unix_now();
    let at = u64::try_from(now).unwrap() * 1_000_000_000;
    let request = gauge_request(
        "web-v1-abc",
        vec![
            point(at, 4.0),
            point(0, f64::NAN),
            point(at + 3_600_000_000_000, 1.0),
        ],
    );
    let response = client.export(request).await.unwrap().into_inner();
    let partial = response.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 2);
    assert!(
        partial.error_message.contains("not a finite number"),
        "{partial:?}"
    );
    assert!(partial.error_message.contains("future"), "{partial:?}");
    assert_eq!(
        running.metrics.latest("web-v1-abc", "queue_length", now, 0),
        Some(4.0)
    );
    assert_eq!(running.metrics.dropped(), 2);

    // A timestamp of 0 means "now" at the receiver.
    let response = client
        .export(gauge_request("web-v1-abc", vec![point(0, 9.0)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.partial_success, None);
    let after = unix_now();
    assert_eq!(
        running
            .metrics
            .latest("web-v1-abc", "queue_length", after, after - now),
        Some(9.0)
    );

    running.stop().await;
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let running = Running::start().await;
    let mut client = MetricsServiceClient::connect(format!("http://{}", running.addr))
        .await
        .unwrap();

    let mut request = gauge_request("web-v1-abc", vec![point(0, 1.0)]);
    request.resource_metrics[0].scope_metrics[0].metrics[0].description =
        "x".repeat(MAX_MESSAGE_BYTES + 1);
    let status = client.export(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert_eq!(
        running
            .metrics
            .latest("web-v1-abc", "queue_length", unix_now(), 60),
        None
    );

    // The connection and the receiver still serve.
    let response = client
        .export(gauge_request("web-v1-abc", vec![point(0, 2.0)]))
        .await
        .unwrap();
    assert_eq!(response.into_inner().partial_success, None);

    running.stop().await;
}
