//! How numbers, times and states read on the page, and the request summaries of the
//! overview (pure functions of API answers).

use chrono::{DateTime, Utc};
use tideway_api_types::{AppMetrics, InstanceState, ReleaseState};

/// Requests per second: `0`, `0.4`, `12.3`, `1.2k`.
pub fn rate(v: f64) -> String {
    if v <= 0.0 {
        "0".into()
    } else if v < 100.0 {
        format!("{v:.1}")
    } else if v < 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{:.1}k", v / 1000.0)
    }
}

/// A percentage, or `–` when there is nothing to divide.
pub fn percent(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(p) if p <= 0.0 => "0%".into(),
        Some(p) if p < 0.1 => "<0.1%".into(),
        Some(p) => format!("{p:.1}%"),
    }
}

/// Milliseconds: `–`, `3.2 ms`, `120 ms`, `1.5 s`.
pub fn millis(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.1} ms"),
        Some(ms) if ms < 1000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

/// Bytes in binary units.
pub fn bytes(v: Option<u64>) -> String {
    let Some(b) = v else { return "–".into() };
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = b as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How long ago, coarsely: `12s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A timestamp as `HH:MM:SS` (UTC).
pub fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

/// The colour class of a status pill.
pub fn tone_of_instance(s: InstanceState) -> &'static str {
    match s {
        InstanceState::Ready => "ok",
        InstanceState::Starting | InstanceState::Draining => "info",
        InstanceState::Unhealthy | InstanceState::CrashLoop => "bad",
        InstanceState::Stopped => "muted",
    }
}

pub fn tone_of_release(s: ReleaseState) -> &'static str {
    match s {
        ReleaseState::Succeeded => "ok",
        ReleaseState::Pending | ReleaseState::Progressing => "info",
        ReleaseState::Paused => "warn",
        ReleaseState::Failed | ReleaseState::Aborted => "bad",
        ReleaseState::Superseded => "muted",
    }
}

/// The snake_case name of a serde enum value, as the API writes it.
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// `crash_loop` → `crash loop`.
pub fn human(v: &str) -> String {
    v.replace('_', " ")
}

/// An app's recent traffic.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    pub rps: f64,
    /// Percent of responses that were 5xx; `None` without requests.
    pub error_rate: Option<f64>,
    /// The worst p99 of any version over the window.
    pub p99_ms: Option<f64>,
}

/// Sums every version over the last `window` complete points (the newest point is still
/// filling, so it is left out).
pub fn summarize(m: &AppMetrics, window: usize) -> Summary {
    let mut requests = 0u64;
    let mut errors = 0u64;
    let mut p99: Option<f64> = None;
    let mut seconds = 0.0f64;
    for series in &m.series {
        let n = series.points.len();
        if n < 2 {
            continue;
        }
        let from = n.saturating_sub(window + 1);
        let points = &series.points[from..n - 1];
        seconds = seconds.max(points.len() as f64 * f64::from(m.step_secs.max(1)));
        for p in points {
            requests += p.requests;
            errors += p.responses_5xx;
            if let Some(v) = p.p99_ms {
                p99 = Some(p99.map_or(v, |w: f64| w.max(v)));
            }
        }
    }
    Summary {
        rps: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        error_rate: (requests > 0).then(|| errors as f64 * 100.0 / requests as f64),
        p99_ms: p99,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use tideway_api_types::{MetricPoint, MetricSeries};

    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(250.2), "250");
        assert_eq!(rate(1520.0), "1.5k");
        assert_eq!(percent(None), "–");
        assert_eq!(percent(Some(0.0)), "0%");
        assert_eq!(percent(Some(0.01)), "<0.1%");
        assert_eq!(percent(Some(12.345)), "12.3%");
        assert_eq!(millis(Some(3.21)), "3.2 ms");
        assert_eq!(millis(Some(120.4)), "120 ms");
        assert_eq!(millis(Some(1500.0)), "1.5 s");
        assert_eq!(bytes(Some(512)), "512 B");
        assert_eq!(bytes(Some(3 * 1024 * 1024)), "3.0 MiB");
        assert_eq!(bytes(None), "–");
        let now = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(ago(now - chrono::TimeDelta::seconds(5), now), "5s ago");
        assert_eq!(ago(now - chrono::TimeDelta::minutes(90), now), "1h ago");
        assert_eq!(clock(now), "12:00:00");
        assert_eq!(wire_name(&InstanceState::CrashLoop), "crash_loop");
        assert_eq!(human("crash_loop"), "crash loop");
    }

    fn point(second: u32, requests: u64, errors: u64, p99: Option<f64>) -> MetricPoint {
        MetricPoint {
            time: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, second).unwrap(),
            requests,
            responses_2xx: requests - errors,
            responses_3xx: 0,
            responses_4xx: 0,
            responses_5xx: errors,
            concurrency: 0.0,
            p50_ms: None,
            p90_ms: None,
            p99_ms: p99,
        }
    }

    #[test]
    fn summary_leaves_out_the_filling_second() {
        let m = AppMetrics {
            step_secs: 1,
            series: vec![
                MetricSeries {
                    version: 1,
                    points: vec![
                        point(0, 100, 0, Some(5.0)),
                        point(1, 10, 1, Some(8.0)),
                        point(2, 10, 0, Some(4.0)),
                        point(3, 999, 999, Some(900.0)),
                    ],
                },
                MetricSeries {
                    version: 2,
                    points: vec![point(2, 20, 2, Some(30.0)), point(3, 5, 0, None)],
                },
            ],
        };
        let s = summarize(&m, 2);
        assert_eq!(s.rps, 40.0 / 2.0);
        assert_eq!(s.error_rate, Some(3.0 * 100.0 / 40.0));
        assert_eq!(s.p99_ms, Some(30.0));
        let empty = summarize(
            &AppMetrics {
                step_secs: 1,
                series: vec![],
            },
            5,
        );
        assert_eq!(empty, Summary::default());
    }
}
