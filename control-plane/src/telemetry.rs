//! The control plane's own observability: logging setup (pretty or JSON, optional OTLP
//! traces) and the Prometheus request metrics served at `/metrics`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::api::error::ErrorCause;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable (default on a terminal).
    Pretty,
    Json,
}

/// Keeps the OTLP exporter alive; flushes spans when dropped.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. Logs go to stderr; stdout is kept for the few lines a
/// user or script must read (the listening address, the first admin token).
pub fn init(format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_env("TIDEWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut provider = None;
    let otel_layer = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        use opentelemetry::trace::TracerProvider as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let p = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tideway")
                    .build(),
            )
            .build();
        let tracer = p.tracer("tideway");
        provider = Some(p);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    } else {
        None
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Series {
    count: AtomicU64,
    sum_micros: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

type SeriesKey = (String, String, u16);

/// Request counts and latency histograms by route, method and status.
#[derive(Default)]
pub struct HttpMetrics {
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
}

impl HttpMetrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let key = (route.to_owned(), method.to_owned(), status);
        let existing = self.series.read().ok().and_then(|s| s.get(&key).cloned());
        let series = match existing {
            Some(s) => s,
            None => match self.series.write() {
                Ok(mut all) => all.entry(key).or_default().clone(),
                Err(_) => return,
            },
        };
        series.count.fetch_add(1, Ordering::Relaxed);
        series
            .sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            series.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(series) = self.series.read() else {
            return out;
        };
        let mut keys: Vec<_> = series.keys().collect();
        keys.sort();
        out.push_str(
            "# HELP tideway_api_requests_total API requests by route, method and status.\n",
        );
        out.push_str("# TYPE tideway_api_requests_total counter\n");
        for key in &keys {
            let (route, method, status) = key;
            let n = series[*key].count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tideway_api_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP tideway_api_request_duration_seconds API request latency by route, method and status.\n",
        );
        out.push_str("# TYPE tideway_api_request_duration_seconds histogram\n");
        for key in &keys {
            let (route, method, status) = key;
            let s = &series[*key];
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "tideway_api_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tideway_api_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "tideway_api_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "tideway_api_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out
    }
}

/// Records every request in [`HttpMetrics`] and logs server errors once, with their cause.
pub async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    // Label by route template, never the raw path, so cardinality stays bounded.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    metrics.observe(
        &route,
        &method,
        status.as_u16(),
        start.elapsed().as_secs_f64(),
    );
    if let Some(ErrorCause(cause)) = response.extensions().get::<ErrorCause>() {
        tracing::error!(%route, %method, status = status.as_u16(), error = %cause, "ApiRequestError");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::HttpMetrics;

    #[test]
    fn renders_cumulative_histograms() {
        let m = HttpMetrics::default();
        m.observe("/a", "GET", 200, 0.002);
        m.observe("/a", "GET", 200, 0.2);
        let text = m.render();
        assert!(text
            .contains("tideway_api_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.0025\"} 1"));
        assert!(text.contains("le=\"0.25\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }
}
