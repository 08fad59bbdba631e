//! Kubernetes HPA arithmetic for resource metrics (cpu, memory: `Utilization`) and custom
//! metrics (`AverageValue`), with the tolerance dead band.

use crate::kpa::ceil_count;

/// Resource and custom metrics are read as the mean of the last this many seconds. The
/// metrics-server HPA reads 15 s samples every 15 s; at a 1 s tick, 10 s smooths one noisy
/// second without lagging a real change by more than a few ticks, and the downscale
/// stabilization window does the long-term smoothing.
pub(crate) const RESOURCE_WINDOW_SECS: u32 = 10;

/// Slack for float noise at the edge of the dead band: 10 % off is within 10 %.
const EDGE: f64 = 1e-9;

/// What one HPA-style metric asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recommendation {
    pub(crate) desired: u32,
    /// Set when the dead band kept the current count.
    pub(crate) note: Option<String>,
}

/// `Utilization`: `value` is the mean utilization percent over the ready instances, so
/// `desired = ceil(ready × value / target)`; keeps `current` when `value / target` is within
/// the tolerance of 1.
pub(crate) fn utilization(
    value: f64,
    target: f64,
    ready: u32,
    current: u32,
    tolerance: f64,
) -> Recommendation {
    let ratio = value / target;
    if (ratio - 1.0).abs() <= tolerance + EDGE {
        return kept(current, tolerance);
    }
    Recommendation {
        desired: ceil_count(f64::from(ready) * ratio),
        note: None,
    }
}

/// `AverageValue`: `total` is the sum over instances, so `desired = ceil(total / target)`;
/// keeps `current` when `total / (target × current)` is within the tolerance of 1.
pub(crate) fn average_value(
    total: f64,
    target: f64,
    current: u32,
    tolerance: f64,
) -> Recommendation {
    if current > 0 {
        let ratio = total / (target * f64::from(current));
        if (ratio - 1.0).abs() <= tolerance + EDGE {
            return kept(current, tolerance);
        }
    }
    Recommendation {
        desired: ceil_count(total / target),
        note: None,
    }
}

fn kept(current: u32, tolerance: f64) -> Recommendation {
    Recommendation {
        desired: current,
        note: Some(format!(
            "within {}% tolerance: keeps {current}",
            crate::reason::Number(tolerance * 100.0)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_follows_the_hpa_formula() {
        // The HPA doc vectors: 200m/100m doubles, 50m/100m halves.
        assert_eq!(utilization(200.0, 100.0, 3, 3, 0.1).desired, 6);
        assert_eq!(utilization(50.0, 100.0, 4, 4, 0.1).desired, 2);
        let kept = utilization(54.0, 50.0, 4, 4, 0.1);
        assert_eq!(kept.desired, 4);
        assert_eq!(kept.note.as_deref(), Some("within 10% tolerance: keeps 4"));
        assert_eq!(utilization(60.0, 50.0, 4, 4, 0.1).desired, 5);
    }

    #[test]
    fn average_value_divides_the_total() {
        assert_eq!(average_value(100.0, 20.0, 1, 0.1).desired, 5);
        assert_eq!(average_value(105.0, 20.0, 5, 0.1).desired, 5);
        assert_eq!(average_value(0.0, 20.0, 0, 0.1).desired, 0);
        assert_eq!(average_value(1.0, 20.0, 0, 0.1).desired, 1);
    }
}
