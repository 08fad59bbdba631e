//! Knative KPA arithmetic for request metrics (concurrency, rps), at a 1 s tick.
//!
//! The windows themselves live in [`crate::window`]; this module holds the counts derived
//! from them and the panic-mode memory.

use tideway_api_types::AutoscalingPolicy;

/// The panic window: `stable × percent / 100` seconds, rounded up like Knative's bucket
/// count, at least 1 and at most the stable window.
pub(crate) fn panic_window_secs(stable_secs: u32, percent: f64) -> u32 {
    let secs = f64::from(stable_secs) * percent / 100.0;
    if secs.is_finite() {
        (ceil_count(secs).max(1)).min(stable_secs.max(1))
    } else {
        stable_secs.max(1)
    }
}

/// Instances needed for `value` at `target` each: `ceil(value / target)`.
pub(crate) fn instances_for(value: f64, target: f64) -> u32 {
    ceil_count(value / target)
}

/// `ceil(x)` as a count, forgiving the float noise of averaging (40.000001 / 5 is 8, not 9).
pub(crate) fn ceil_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let rounded = x.round();
    let c = if (x - rounded).abs() <= 1e-6 * x.max(1.0) {
        rounded
    } else {
        x.ceil()
    };
    // `as` saturates at u32::MAX for huge values.
    c as u32
}

/// The per-tick bounds from `max_scale_up_rate` and `max_scale_down_rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimits {
    /// `ceil(max_scale_up_rate × ready)`: always allows at least one more instance.
    pub(crate) up: u32,
    /// `floor(ready / max_scale_down_rate)`.
    pub(crate) down: u32,
}

impl RateLimits {
    /// `ready` is already counted as at least 1. A rate that is not a number above 1 (only a
    /// policy that skipped validation has one) does not limit.
    pub(crate) fn new(policy: &AutoscalingPolicy, ready: u32) -> Self {
        let ready = f64::from(ready);
        let up = if policy.max_scale_up_rate.is_finite() && policy.max_scale_up_rate > 1.0 {
            (policy.max_scale_up_rate * ready).ceil() as u32
        } else {
            u32::MAX
        };
        let down = if policy.max_scale_down_rate.is_finite() && policy.max_scale_down_rate > 1.0 {
            (ready / policy.max_scale_down_rate).floor() as u32
        } else {
            0
        };
        Self { up, down }
    }
}

/// Whether the panic window's demand reached the threshold: `desired_panic / ready ≥
/// threshold_percent / 100`, with `ready` already at least 1.
pub(crate) fn over_panic_threshold(desired_panic: u32, ready: u32, threshold_percent: f64) -> bool {
    f64::from(desired_panic) / f64::from(ready) >= threshold_percent / 100.0
}

/// Panic-mode memory: when the panic window last reached the threshold and the highest count
/// decided since panic began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Panic {
    /// The last second the panic window was over the threshold; `None` outside panic.
    since: Option<i64>,
    /// The highest count decided while panicking.
    pub(crate) high: u32,
}

impl Panic {
    /// Enters or extends panic when `over`; leaves it once a full stable window has passed
    /// since the last time it was over. Returns whether it is panicking now.
    pub(crate) fn update(&mut self, over: bool, now: i64, stable_secs: u32) -> bool {
        if over {
            self.since = Some(now);
        } else if let Some(since) = self.since {
            if now - since >= i64::from(stable_secs) {
                *self = Self::default();
            }
        }
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_window_is_a_whole_number_of_seconds() {
        assert_eq!(panic_window_secs(60, 10.0), 6);
        assert_eq!(panic_window_secs(10, 10.0), 1);
        assert_eq!(panic_window_secs(15, 10.0), 2);
        assert_eq!(panic_window_secs(6, 1.0), 1);
        assert_eq!(panic_window_secs(60, 100.0), 60);
        assert_eq!(panic_window_secs(60, f64::NAN), 60);
    }

    #[test]
    fn ceil_forgives_float_noise_only() {
        assert_eq!(ceil_count(8.000_000_001), 8);
        assert_eq!(ceil_count(8.01), 9);
        assert_eq!(ceil_count(0.0), 0);
        assert_eq!(ceil_count(-3.0), 0);
        assert_eq!(ceil_count(f64::NAN), 0);
        assert_eq!(ceil_count(1e30), u32::MAX);
        assert_eq!(instances_for(41.0, 5.0), 9);
    }

    #[test]
    fn panic_leaves_after_a_full_stable_window() {
        let mut p = Panic::default();
        assert!(p.update(true, 100, 60));
        assert!(p.update(false, 159, 60));
        assert!(p.update(true, 130, 60) && p.update(false, 189, 60));
        assert!(!p.update(false, 190, 60));
        assert_eq!(p, Panic::default());
    }
}
