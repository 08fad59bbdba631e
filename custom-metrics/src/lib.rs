//! Custom metrics from the apps Tideway runs: an OTLP/gRPC metrics receiver that turns
//! gauges and sums tagged with an instance id (`service.instance.id`) into per-instance,
//! per-second series the autoscaler can target. It must never block the receiver on a slow
//! reader, and never keep more than a bounded window per series.
//!
//! [`OtlpReceiver`] serves `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`
//! and writes into a shared [`CustomMetrics`], which the autoscaler reads with
//! [`CustomMetrics::latest`] and [`CustomMetrics::total`]. How OTLP data maps to series
//! (instance ids, timestamps, which metric kinds count) is described in [`points`]; the
//! limits that bound memory are in [`series`].
//!
//! Values are recorded as exported: a cumulative counter shows up as its running total, not
//! as a rate, so autoscaling targets are meant to be gauge-like (queue length, jobs in
//! flight).

mod error;
pub mod points;
mod receiver;
pub mod series;

pub use error::Error;
pub use receiver::{OtlpReceiver, DRAIN_TIMEOUT, MAX_MESSAGE_BYTES, REQUEST_TIMEOUT};
pub use series::CustomMetrics;
