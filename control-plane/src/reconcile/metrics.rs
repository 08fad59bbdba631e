//! Keeps request metrics beyond the gateway's in-memory hour: once a minute, the last whole
//! minute of every app version is written to the store as a rollup, and rollups older than
//! the retention are deleted. Minutes that pass while the control plane is down are lost;
//! the gateway's own hour of per-second data is in memory only.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tideway_api_types::MetricPoint;
use tideway_gateway::GatewayMetrics;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::store::{MinuteMetrics, Store};

/// How long per-minute rollups are kept.
pub const RETENTION: TimeDelta = TimeDelta::days(14);
/// Seconds past the minute before rolling it up, so its last second is complete.
const SETTLE: Duration = Duration::from_secs(2);

pub struct MetricsRollup {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<GatewayMetrics>,
    pub clock: Arc<dyn Clock>,
}

impl MetricsRollup {
    /// Writes the minute that ended at `end` (a whole minute).
    pub async fn roll_up(&self, end: DateTime<Utc>) -> Result<usize, String> {
        let start = end - TimeDelta::minutes(1);
        let apps = self
            .store
            .routing_state()
            .await
            .map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        for app in &apps {
            let a = &app.record.app;
            for series in self.metrics.window(&a.namespace, &a.name, start, end, 60) {
                rows.extend(
                    series
                        .points
                        .into_iter()
                        .filter(|p| p.requests > 0)
                        .map(|point| MinuteMetrics {
                            app_id: app.record.id,
                            version: series.version,
                            point,
                        }),
                );
            }
        }
        self.store
            .record_metrics(&rows)
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.len())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_prune: Option<DateTime<Utc>> = None;
        loop {
            let now = self.clock.now();
            let Ok(minute) = now.duration_trunc(TimeDelta::minutes(1)) else {
                return;
            };
            let next = minute + TimeDelta::minutes(1);
            let wait = (next - now).to_std().unwrap_or_default() + SETTLE;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if let Err(error) = self.roll_up(next).await {
                tracing::warn!(%error, "MetricsRollupError");
            }
            if last_prune.is_none_or(|at| next - at >= TimeDelta::hours(1)) {
                last_prune = Some(next);
                if let Err(error) = self.store.prune_metrics(next - RETENTION).await {
                    tracing::warn!(%error, "MetricsPruneError");
                }
            }
        }
    }
}

/// Merges per-minute points into `step_secs` buckets starting at `from`: counts add up,
/// concurrency averages over the bucket's time, and each percentile takes the worst minute
/// (percentiles cannot be merged exactly without the histograms).
pub fn merge_minutes(
    points: &[MetricPoint],
    from: DateTime<Utc>,
    step_secs: u32,
) -> Vec<MetricPoint> {
    let step = i64::from(step_secs.max(60));
    let mut buckets: Vec<MetricPoint> = Vec::new();
    for p in points {
        let offset = (p.time - from).num_seconds().div_euclid(step);
        let start = from + TimeDelta::seconds(offset * step);
        let minutes_per_bucket = (step / 60) as f64;
        match buckets.last_mut() {
            Some(b) if b.time == start => {
                b.requests += p.requests;
                b.responses_2xx += p.responses_2xx;
                b.responses_3xx += p.responses_3xx;
                b.responses_4xx += p.responses_4xx;
                b.responses_5xx += p.responses_5xx;
                b.concurrency += p.concurrency / minutes_per_bucket;
                b.p50_ms = worst(b.p50_ms, p.p50_ms);
                b.p90_ms = worst(b.p90_ms, p.p90_ms);
                b.p99_ms = worst(b.p99_ms, p.p99_ms);
            }
            _ => buckets.push(MetricPoint {
                time: start,
                concurrency: p.concurrency / minutes_per_bucket,
                ..p.clone()
            }),
        }
    }
    buckets
}

fn worst(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: i64, requests: u64, p99: f64) -> MetricPoint {
        MetricPoint {
            time: DateTime::from_timestamp(minute * 60, 0).unwrap(),
            requests,
            responses_2xx: requests,
            responses_3xx: 0,
            responses_4xx: 0,
            responses_5xx: 0,
            concurrency: 2.0,
            p50_ms: Some(p99 / 2.0),
            p90_ms: Some(p99 / 1.5),
            p99_ms: Some(p99),
        }
    }

    #[test]
    fn merges_minutes_into_steps() {
        let from = DateTime::from_timestamp(0, 0).unwrap();
        let merged = merge_minutes(
            &[point(0, 10, 5.0), point(1, 20, 9.0), point(5, 7, 3.0)],
            from,
            300,
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].time, from);
        assert_eq!(merged[0].requests, 30);
        assert_eq!(merged[0].p99_ms, Some(9.0));
        // Two busy minutes of five: concurrency 2 for 2/5 of the time.
        assert!((merged[0].concurrency - 0.8).abs() < 1e-9);
        assert_eq!(merged[1].time, from + TimeDelta::minutes(5));
        assert_eq!(merged[1].requests, 7);
    }
}
