//! Validation of autoscaling policies. The autoscaler applies them; here we only make sure a
//! stored policy is one the autoscaler can follow.

use tideway_api_types::{AutoscalingPolicy, MetricKind};

use super::spec::MAX_REPLICAS;
use super::{ensure, Invalid};

pub fn validate_policy(p: &AutoscalingPolicy) -> Result<(), Invalid> {
    ensure(p.max >= 1, "max", "must be at least 1")?;
    ensure(
        p.max <= MAX_REPLICAS,
        "max",
        format!("must be at most {MAX_REPLICAS}"),
    )?;
    ensure(
        p.min <= p.max,
        "min",
        format!("must not exceed max ({})", p.max),
    )?;
    ensure(
        p.min > 0 || p.scale_to_zero,
        "min",
        "0 needs scale_to_zero: true",
    )?;
    ensure(
        (6..=3600).contains(&p.stable_window_secs),
        "stable_window_secs",
        "must be 6–3600",
    )?;
    ensure(
        p.panic_window_percent.is_finite() && (1.0..=100.0).contains(&p.panic_window_percent),
        "panic_window_percent",
        "must be 1–100",
    )?;
    ensure(
        p.panic_threshold_percent.is_finite()
            && (110.0..=1000.0).contains(&p.panic_threshold_percent),
        "panic_threshold_percent",
        "must be 110–1000",
    )?;
    ensure(
        p.max_scale_up_rate.is_finite() && p.max_scale_up_rate > 1.0,
        "max_scale_up_rate",
        "must be greater than 1",
    )?;
    ensure(
        p.max_scale_down_rate.is_finite() && p.max_scale_down_rate > 1.0,
        "max_scale_down_rate",
        "must be greater than 1",
    )?;
    ensure(
        p.scale_down_delay_secs <= 3600,
        "scale_down_delay_secs",
        "must be 0–3600",
    )?;
    ensure(
        p.scale_to_zero_grace_secs <= 3600,
        "scale_to_zero_grace_secs",
        "must be 0–3600",
    )?;
    ensure(
        (1..=p.max).contains(&p.activation_scale),
        "activation_scale",
        format!("must be 1–max ({})", p.max),
    )?;
    ensure(
        p.tolerance_percent.is_finite() && (0.0..=50.0).contains(&p.tolerance_percent),
        "tolerance_percent",
        "must be 0–50",
    )?;
    ensure(
        p.resource_stabilization_secs <= 3600,
        "resource_stabilization_secs",
        "must be 0–3600",
    )?;
    ensure(p.metrics.len() <= 8, "metrics", "at most 8 metrics")?;
    for (i, m) in p.metrics.iter().enumerate() {
        let field = format!("metrics[{i}]");
        ensure(
            m.target.is_finite() && m.target > 0.0,
            &format!("{field}.target"),
            "must be a positive number",
        )?;
        if matches!(m.kind, MetricKind::Cpu | MetricKind::Memory) {
            ensure(
                m.target <= 100.0,
                &format!("{field}.target"),
                "utilization targets are percentages, at most 100",
            )?;
        }
        match (m.kind, &m.name) {
            (MetricKind::Custom, None) => {
                return Err(Invalid::new(
                    format!("{field}.name"),
                    "custom metrics need a name",
                ))
            }
            (MetricKind::Custom, Some(name)) => ensure(
                !name.is_empty() && name.len() <= 255,
                &format!("{field}.name"),
                "must be 1–255 bytes",
            )?,
            (_, Some(_)) => {
                return Err(Invalid::new(
                    format!("{field}.name"),
                    "only custom metrics take a name",
                ))
            }
            (_, None) => {}
        }
        let duplicate = p.metrics[..i]
            .iter()
            .any(|other| other.kind == m.kind && other.name == m.name);
        ensure(!duplicate, &field, "each metric may appear once")?;
    }
    ensure(p.schedules.len() <= 32, "schedules", "at most 32 rules")?;
    for (i, s) in p.schedules.iter().enumerate() {
        let field = format!("schedules[{i}]");
        ensure(
            s.cron.split_whitespace().count() == 5,
            &format!("{field}.cron"),
            "must have five fields: minute hour day-of-month month day-of-week",
        )?;
        ensure(
            !s.timezone.is_empty() && s.timezone.len() <= 64,
            &format!("{field}.timezone"),
            "must be an IANA time zone name",
        )?;
        if let Err(why) = tideway_autoscaler::validate_schedule(s) {
            let which = if why.contains("zone") {
                "timezone"
            } else {
                "cron"
            };
            return Err(Invalid::new(format!("{field}.{which}"), why));
        }
        ensure(
            (60..=7 * 86_400).contains(&s.duration_secs),
            &format!("{field}.duration_secs"),
            "must be 60–604800",
        )?;
        ensure(
            s.min <= s.max,
            &format!("{field}.min"),
            "must not exceed the rule's max",
        )?;
        ensure(
            s.max <= MAX_REPLICAS,
            &format!("{field}.max"),
            format!("must be at most {MAX_REPLICAS}"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tideway_api_types::MetricTarget;

    fn policy() -> AutoscalingPolicy {
        serde_json::from_value(serde_json::json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 10}]
        }))
        .unwrap()
    }

    fn field(p: &AutoscalingPolicy) -> Option<String> {
        validate_policy(p).err().map(|e| e.field)
    }

    #[test]
    fn defaults_follow_knative() {
        let p = policy();
        assert_eq!(p.stable_window_secs, 60);
        assert_eq!(p.panic_window_percent, 10.0);
        assert_eq!(p.panic_threshold_percent, 200.0);
        assert_eq!(field(&p), None);
    }

    #[test]
    fn rejects_inconsistent_policies() {
        let mut p = policy();
        p.min = 11;
        assert_eq!(field(&p).as_deref(), Some("min"));

        let mut p = policy();
        p.min = 0;
        assert_eq!(field(&p).as_deref(), Some("min"));
        p.scale_to_zero = true;
        assert_eq!(field(&p), None);

        let mut p = policy();
        p.stable_window_secs = 5;
        assert_eq!(field(&p).as_deref(), Some("stable_window_secs"));

        let mut p = policy();
        p.metrics.push(MetricTarget {
            kind: MetricKind::Cpu,
            target: 150.0,
            name: None,
        });
        assert_eq!(field(&p).as_deref(), Some("metrics[1].target"));

        let mut p = policy();
        p.metrics[0].kind = MetricKind::Custom;
        assert_eq!(field(&p).as_deref(), Some("metrics[0].name"));

        let mut p = policy();
        p.metrics.push(p.metrics[0].clone());
        assert_eq!(field(&p).as_deref(), Some("metrics[1]"));
    }
}
