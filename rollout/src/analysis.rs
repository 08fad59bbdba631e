//! Analysis: one check compares the target's figures over an interval with the analysis'
//! bounds and with the stable version's figures over the same interval.

use chrono::{DateTime, Utc};
use tideway_api_types::{
    Analysis, AnalysisCheck, CheckFigures, CheckOutcome, InsufficientTraffic, Strategy,
};

/// The analysis a strategy runs, if any.
pub fn analysis_of(strategy: &Strategy) -> Option<&Analysis> {
    match strategy {
        Strategy::Immediate => None,
        Strategy::Canary(c) => c.analysis.as_ref(),
        Strategy::Gray(g) => g.analysis.as_ref(),
        Strategy::Batch(b) => b.analysis.as_ref(),
        Strategy::BlueGreen(bg) => bg.analysis.as_ref(),
    }
}

/// One analysis check over one interval, timed `now`.
///
/// Too little target traffic (fewer than `min_requests`) is inconclusive or a failure, as
/// the analysis says; otherwise the check fails on any of: success rate (non-5xx percent)
/// below `success_rate_percent`, p99 above `p99_max_ms`, p99 above `p99_max_factor` times
/// the stable's p99 (skipped when the stable has no p99). A bound without the figure to test
/// it (no requests, no p99) is not a failure.
pub fn analyze(
    spec: &Analysis,
    target: &CheckFigures,
    stable: &CheckFigures,
    now: DateTime<Utc>,
) -> AnalysisCheck {
    let check = |outcome, failures| AnalysisCheck {
        at: now,
        outcome,
        target: target.clone(),
        stable: stable.clone(),
        failures,
    };
    if target.requests < spec.min_requests {
        let why = format!(
            "too little traffic: {} requests < {} required",
            target.requests, spec.min_requests
        );
        let outcome = match spec.insufficient {
            InsufficientTraffic::Wait => CheckOutcome::Inconclusive,
            InsufficientTraffic::Fail => CheckOutcome::Failed,
        };
        return check(outcome, vec![why]);
    }
    let mut failures = Vec::new();
    if let Some(rate) = success_rate(target) {
        if rate < spec.success_rate_percent {
            failures.push(format!(
                "success rate {rate:.1}% < {:.1}% ({} requests)",
                spec.success_rate_percent, target.requests
            ));
        }
    }
    if let Some(p99) = target.p99_ms {
        if let Some(max) = spec.p99_max_ms {
            if p99 > max {
                failures.push(format!("p99 {} > {}", ms(p99), ms(max)));
            }
        }
        if let (Some(factor), Some(base)) = (spec.p99_max_factor, stable.p99_ms) {
            let bound = base * factor;
            if p99 > bound {
                failures.push(format!(
                    "p99 {} > {factor} × stable p99 {} ({})",
                    ms(p99),
                    ms(base),
                    ms(bound)
                ));
            }
        }
    }
    let outcome = if failures.is_empty() {
        CheckOutcome::Passed
    } else {
        CheckOutcome::Failed
    };
    check(outcome, failures)
}

/// The percent of non-5xx responses: as reported, or counted; `None` without requests.
fn success_rate(f: &CheckFigures) -> Option<f64> {
    f.success_rate_percent.or_else(|| {
        (f.requests > 0).then(|| {
            let ok = f.requests.saturating_sub(f.responses_5xx);
            // Request counts stay far below 2^52, where f64 is exact.
            100.0 * ok as f64 / f.requests as f64
        })
    })
}

/// Milliseconds as people write them: `250ms`, `12.5ms`.
fn ms(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v:.1}ms")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Analysis {
        serde_json::from_str(json).unwrap()
    }

    fn figures(requests: u64, responses_5xx: u64, p99_ms: Option<f64>) -> CheckFigures {
        CheckFigures {
            requests,
            responses_5xx,
            success_rate_percent: None,
            p99_ms,
        }
    }

    /// `(analysis, target, stable, outcome, failures)`.
    #[test]
    fn checks() {
        let now = DateTime::UNIX_EPOCH;
        let cases: &[(&str, CheckFigures, CheckFigures, CheckOutcome, &[&str])] = &[
            (
                "{}",
                figures(1400, 0, Some(80.0)),
                figures(1400, 0, None),
                CheckOutcome::Passed,
                &[],
            ),
            (
                "{}",
                figures(1400, 420, None),
                figures(1400, 0, None),
                CheckOutcome::Failed,
                &["success rate 70.0% < 99.0% (1400 requests)"],
            ),
            (
                "{}",
                CheckFigures {
                    success_rate_percent: Some(98.5),
                    ..figures(100, 0, None)
                },
                figures(0, 0, None),
                CheckOutcome::Failed,
                &["success rate 98.5% < 99.0% (100 requests)"],
            ),
            (
                "{}",
                figures(3, 0, None),
                figures(1400, 0, None),
                CheckOutcome::Inconclusive,
                &["too little traffic: 3 requests < 20 required"],
            ),
            (
                r#"{"insufficient": "fail"}"#,
                figures(3, 0, None),
                figures(1400, 0, None),
                CheckOutcome::Failed,
                &["too little traffic: 3 requests < 20 required"],
            ),
            (
                r#"{"p99_max_ms": 500}"#,
                figures(100, 0, Some(812.0)),
                figures(100, 0, Some(90.0)),
                CheckOutcome::Failed,
                &["p99 812ms > 500ms"],
            ),
            (
                r#"{"p99_max_ms": 500}"#,
                figures(100, 0, Some(500.0)),
                figures(100, 0, None),
                CheckOutcome::Passed,
                &[],
            ),
            (
                r#"{"p99_max_factor": 1.5}"#,
                figures(100, 0, Some(200.0)),
                figures(100, 0, Some(100.0)),
                CheckOutcome::Failed,
                &["p99 200ms > 1.5 × stable p99 100ms (150ms)"],
            ),
            (
                r#"{"p99_max_factor": 1.5}"#,
                figures(100, 0, Some(200.0)),
                figures(0, 0, None),
                CheckOutcome::Passed,
                &[],
            ),
            (
                r#"{"p99_max_ms": 100, "p99_max_factor": 2, "success_rate_percent": 95}"#,
                figures(100, 10, Some(250.5)),
                figures(100, 0, Some(100.0)),
                CheckOutcome::Failed,
                &[
                    "success rate 90.0% < 95.0% (100 requests)",
                    "p99 250.5ms > 100ms",
                    "p99 250.5ms > 2 × stable p99 100ms (200ms)",
                ],
            ),
            (
                r#"{"min_requests": 0}"#,
                figures(0, 0, None),
                figures(0, 0, None),
                CheckOutcome::Passed,
                &[],
            ),
        ];
        for (i, (json, target, stable, outcome, failures)) in cases.iter().enumerate() {
            let check = analyze(&spec(json), target, stable, now);
            assert_eq!(
                (check.outcome, check.failures.as_slice()),
                (
                    *outcome,
                    failures
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .as_slice()
                ),
                "case {i}: {json}"
            );
            assert_eq!(check.at, now);
            assert_eq!(&check.target, target);
            assert_eq!(&check.stable, stable);
        }
    }
}
