//! [`CustomMetrics`]: per-instance, per-second series of custom metric values, written by
//! the receiver and read by the autoscaler.
//!
//! Everything is behind one `std` mutex that is only ever held for a map lookup and a
//! binary search (or, when the receiver records a request, one pass over its points), never
//! across an `await`, so a slow reader cannot stall the receiver for longer than that.
//!
//! Memory is bounded by three limits: a series keeps the last [`RETENTION_SECS`] seconds
//! before its newest point, an instance has at most [`MAX_NAMES_PER_INSTANCE`] metric
//! names, and there are at most [`MAX_SERIES`] series in all. Points that would need a new
//! series beyond those limits are dropped and counted in [`CustomMetrics::dropped`], as are
//! points older than their series' window, non-finite values and names longer than
//! [`MAX_NAME_LEN`] bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many seconds a series keeps, counted back from its newest point (inclusive).
pub const RETENTION_SECS: i64 = 600;
/// How many metric names one instance may have.
pub const MAX_NAMES_PER_INSTANCE: usize = 64;
/// How many (instance, metric) series there may be in all.
pub const MAX_SERIES: usize = 100_000;
/// The longest instance id or metric name kept, in bytes (the OTLP limit for metric names).
pub const MAX_NAME_LEN: usize = 255;

/// Per-instance, per-second custom metric series, shared between the receiver and the
/// autoscaler.
#[derive(Debug, Default)]
pub struct CustomMetrics {
    state: Mutex<State>,
    dropped: AtomicU64,
}

/// One value for one (instance, metric) at one unix second, as the receiver decodes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point<'a> {
    pub instance: &'a str,
    pub name: &'a str,
    pub second: i64,
    pub value: f64,
}

/// Why a point was not recorded, by the receiver or by the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rejection {
    /// Neither the resource nor the data point names the instance.
    NoInstance,
    /// The data point carries no value.
    NoValue,
    /// The timestamp is further in the future than the receiver tolerates.
    TooNew,
    /// The value is NaN or infinite.
    NotFinite,
    /// The instance id or metric name is empty or longer than [`MAX_NAME_LEN`].
    BadName,
    /// The point is older than the window its series keeps.
    TooOld,
    /// The instance already has [`MAX_NAMES_PER_INSTANCE`] metric names.
    TooManyNames,
    /// There are already [`MAX_SERIES`] series.
    TooManySeries,
}

impl Rejection {
    /// A short English reason, for the export response.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Rejection::NoInstance => "no service.instance.id resource attribute",
            Rejection::NoValue => "no value",
            Rejection::TooNew => "timestamp too far in the future",
            Rejection::NotFinite => "value is not a finite number",
            Rejection::BadName => "empty or over-long instance id or metric name",
            Rejection::TooOld => "older than the retained window",
            Rejection::TooManyNames => "too many metric names for the instance",
            Rejection::TooManySeries => "too many series",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    instances: HashMap<String, HashMap<String, Series>>,
    series: usize,
}

/// `(second, value)` pairs in ascending order of second, one per second, spanning at most
/// [`RETENTION_SECS`] seconds.
#[derive(Debug, Default)]
struct Series {
    points: VecDeque<(i64, f64)>,
}

impl CustomMetrics {
    /// No series yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a value for (instance, metric) at unix second `second` (last write in a
    /// second wins). A value that cannot be kept is dropped and counted in
    /// [`dropped`](Self::dropped).
    pub fn record(&self, instance: &str, name: &str, second: i64, value: f64) {
        let outcome = self.lock().insert(instance, name, second, value);
        if outcome.is_err() {
            self.add_dropped(1);
        }
    }

    /// Records a batch of points under one lock; returns the reason for each point that was
    /// dropped (they are also counted in [`dropped`](Self::dropped)).
    pub(crate) fn record_points(&self, points: &[Point<'_>]) -> Vec<Rejection> {
        let rejections: Vec<Rejection> = {
            let mut state = self.lock();
            points
                .iter()
                .filter_map(|p| state.insert(p.instance, p.name, p.second, p.value).err())
                .collect()
        };
        self.add_dropped(rejections.len());
        rejections
    }

    /// The newest value of (instance, metric) at or before `second` and not older than
    /// `max_age_secs` before it.
    pub fn latest(
        &self,
        instance: &str,
        name: &str,
        second: i64,
        max_age_secs: i64,
    ) -> Option<f64> {
        self.lock().latest(instance, name, second, max_age_secs)
    }

    /// Sum over `instances` of [`latest`](Self::latest) for one metric; `None` when none of
    /// them has a value. An instance listed twice counts twice.
    pub fn total(
        &self,
        instances: &[&str],
        name: &str,
        second: i64,
        max_age_secs: i64,
    ) -> Option<f64> {
        let state = self.lock();
        instances
            .iter()
            .filter_map(|instance| state.latest(instance, name, second, max_age_secs))
            .fold(None, |sum, value| Some(sum.unwrap_or(0.0) + value))
    }

    /// Forgets an instance (it stopped): all its series and their slots under the limits.
    pub fn forget(&self, instance: &str) {
        let mut state = self.lock();
        if let Some(series) = state.instances.remove(instance) {
            state.series = state.series.saturating_sub(series.len());
        }
    }

    /// How many points were dropped so far, by the limits or by the receiver (no instance
    /// id, a value that is not a number, a timestamp far off).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn add_dropped(&self, points: usize) {
        if points > 0 {
            let points = u64::try_from(points).unwrap_or(u64::MAX);
            self.dropped.fetch_add(points, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, and every update leaves the maps
        // consistent, so a poisoned lock still guards valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn insert(
        &mut self,
        instance: &str,
        name: &str,
        second: i64,
        value: f64,
    ) -> Result<(), Rejection> {
        if !value.is_finite() {
            return Err(Rejection::NotFinite);
        }
        if !valid_name(instance) || !valid_name(name) {
            return Err(Rejection::BadName);
        }
        if let Some(series) = self
            .instances
            .get_mut(instance)
            .and_then(|m| m.get_mut(name))
        {
            return series.insert(second, value);
        }
        // A new series: check the limits before allocating anything.
        if self.series >= MAX_SERIES {
            return Err(Rejection::TooManySeries);
        }
        let names = self.instances.get(instance).map_or(0, HashMap::len);
        if names >= MAX_NAMES_PER_INSTANCE {
            return Err(Rejection::TooManyNames);
        }
        let mut series = Series::default();
        series.insert(second, value)?;
        self.instances
            .entry(instance.to_owned())
            .or_default()
            .insert(name.to_owned(), series);
        self.series += 1;
        Ok(())
    }

    fn latest(&self, instance: &str, name: &str, second: i64, max_age_secs: i64) -> Option<f64> {
        if max_age_secs < 0 {
            return None;
        }
        self.instances
            .get(instance)?
            .get(name)?
            .latest(second, second.saturating_sub(max_age_secs))
    }
}

impl Series {
    fn insert(&mut self, second: i64, value: f64) -> Result<(), Rejection> {
        let newest = self.points.back().map(|&(s, _)| s);
        match newest {
            // The common case: a newer second.
            Some(newest) if second > newest => self.points.push_back((second, value)),
            None => self.points.push_back((second, value)),
            Some(newest) => {
                if second <= newest.saturating_sub(RETENTION_SECS) {
                    return Err(Rejection::TooOld);
                }
                match self.points.binary_search_by_key(&second, |&(s, _)| s) {
                    Ok(at) => self.points[at].1 = value,
                    Err(at) => self.points.insert(at, (second, value)),
                }
            }
        }
        self.trim();
        Ok(())
    }

    /// Drops points that fell out of the window behind the newest one.
    fn trim(&mut self) {
        let Some(&(newest, _)) = self.points.back() else {
            return;
        };
        let oldest_kept = newest.saturating_sub(RETENTION_SECS - 1);
        while self.points.front().is_some_and(|&(s, _)| s < oldest_kept) {
            self.points.pop_front();
        }
    }

    /// The newest value at a second in `oldest..=second`.
    fn latest(&self, second: i64, oldest: i64) -> Option<f64> {
        let after = self.points.partition_point(|&(s, _)| s <= second);
        let &(at, value) = self.points.get(after.checked_sub(1)?)?;
        (at >= oldest).then_some(value)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn latest_is_the_newest_value_within_the_age() {
        let m = CustomMetrics::new();
        m.record("a", "q", 100, 1.0);
        m.record("a", "q", 105, 2.0);
        m.record("a", "q", 110, 3.0);

        assert_eq!(m.latest("a", "q", 110, 0), Some(3.0));
        assert_eq!(m.latest("a", "q", 109, 10), Some(2.0));
        assert_eq!(m.latest("a", "q", 108, 3), Some(2.0));
        assert_eq!(m.latest("a", "q", 108, 2), None);
        assert_eq!(m.latest("a", "q", 99, 100), None);
        assert_eq!(m.latest("a", "q", 200, 60), None);
        assert_eq!(m.latest("a", "q", 110, -1), None);
        assert_eq!(m.latest("a", "other", 110, 10), None);
        assert_eq!(m.latest("b", "q", 110, 10), None);
    }

    #[test]
    fn last_write_in_a_second_wins_and_late_points_are_ordered() {
        let m = CustomMetrics::new();
        m.record("a", "q", 100, 1.0);
        m.record("a", "q", 100, 4.0);
        m.record("a", "q", 110, 3.0);
        m.record("a", "q", 105, 2.0);

        assert_eq!(m.latest("a", "q", 100, 0), Some(4.0));
        assert_eq!(m.latest("a", "q", 107, 5), Some(2.0));
        assert_eq!(m.latest("a", "q", 120, 60), Some(3.0));
        assert_eq!(m.dropped(), 0);
    }

    #[test]
    fn a_series_keeps_600_seconds() {
        let m = CustomMetrics::new();
        for second in 0..1000 {
            m.record("a", "q", second, second as f64);
        }
        // The newest point is at 999, so 400..=999 are kept.
        assert_eq!(m.latest("a", "q", 400, 0), Some(400.0));
        assert_eq!(m.latest("a", "q", 399, 1000), None);
        assert_eq!(m.lock().instances["a"]["q"].points.len(), 600);

        // A point older than the window is dropped; one inside it is kept.
        m.record("a", "q", 399, -1.0);
        assert_eq!(m.dropped(), 1);
        m.record("a", "q", 400, -2.0);
        assert_eq!(m.latest("a", "q", 400, 0), Some(-2.0));
        assert_eq!(m.dropped(), 1);

        // A jump ahead pushes everything older than its window out.
        m.record("a", "q", 5000, 1.0);
        assert_eq!(m.latest("a", "q", 999, 999), None);
        assert_eq!(m.lock().instances["a"]["q"].points.len(), 1);
    }

    #[test]
    fn an_instance_has_at_most_64_names() {
        let m = CustomMetrics::new();
        for i in 0..MAX_NAMES_PER_INSTANCE {
            m.record("a", &format!("m{i}"), 1, 1.0);
        }
        m.record("a", "one-too-many", 1, 1.0);
        assert_eq!(m.dropped(), 1);
        assert_eq!(m.latest("a", "one-too-many", 1, 0), None);

        // Existing names still take points, and other instances have their own budget.
        m.record("a", "m0", 2, 2.0);
        m.record("b", "one-too-many", 1, 1.0);
        assert_eq!(m.latest("a", "m0", 2, 0), Some(2.0));
        assert_eq!(m.latest("b", "one-too-many", 1, 0), Some(1.0));
        assert_eq!(m.dropped(), 1);
    }

    #[test]
    fn there_are_at_most_100_000_series() {
        let m = CustomMetrics::new();
        let names: Vec<(String, String)> = (0..MAX_SERIES + 10)
            .map(|i| {
                let instance = format!("i{}", i / MAX_NAMES_PER_INSTANCE);
                (instance, format!("m{}", i % MAX_NAMES_PER_INSTANCE))
            })
            .collect();
        let points: Vec<Point<'_>> = names
            .iter()
            .map(|(instance, name)| Point {
                instance,
                name,
                second: 1,
                value: 1.0,
            })
            .collect();
        let rejected = m.record_points(&points);
        assert_eq!(rejected, vec![Rejection::TooManySeries; 10]);
        assert_eq!(m.dropped(), 10);

        // Forgetting an instance frees its slots.
        m.forget("i0");
        m.record("new", "q", 1, 5.0);
        assert_eq!(m.latest("new", "q", 1, 0), Some(5.0));
        assert_eq!(m.dropped(), 10);
        assert_eq!(m.lock().series, MAX_SERIES - MAX_NAMES_PER_INSTANCE + 1);
    }

    #[test]
    fn forget_removes_an_instance() {
        let m = CustomMetrics::new();
        m.record("a", "q", 1, 1.0);
        m.record("a", "r", 1, 1.0);
        m.record("b", "q", 1, 2.0);
        m.forget("a");
        m.forget("never-seen");

        assert_eq!(m.latest("a", "q", 1, 0), None);
        assert_eq!(m.latest("b", "q", 1, 0), Some(2.0));
        assert_eq!(m.lock().series, 1);
    }

    #[test]
    fn total_sums_the_instances_that_have_a_value() {
        let m = CustomMetrics::new();
        m.record("a", "q", 10, 3.0);
        m.record("b", "q", 8, 4.0);
        m.record("c", "q", 1, 100.0);

        assert_eq!(m.total(&["a", "b", "c", "d"], "q", 10, 5), Some(7.0));
        assert_eq!(m.total(&["a"], "q", 10, 5), Some(3.0));
        assert_eq!(m.total(&["c", "d"], "q", 10, 5), None);
        assert_eq!(m.total(&[], "q", 10, 5), None);
        assert_eq!(m.total(&["a", "b"], "other", 10, 5), None);
    }

    #[test]
    fn odd_values_and_names_are_dropped() {
        let m = CustomMetrics::new();
        m.record("a", "q", 1, f64::NAN);
        m.record("a", "q", 1, f64::INFINITY);
        m.record("", "q", 1, 1.0);
        m.record("a", "", 1, 1.0);
        m.record("a", &"x".repeat(MAX_NAME_LEN + 1), 1, 1.0);
        assert_eq!(m.dropped(), 5);
        assert_eq!(m.lock().series, 0);

        m.record("a", &"x".repeat(MAX_NAME_LEN), 1, 1.0);
        assert_eq!(m.dropped(), 5);
    }

    #[test]
    fn custom_metrics_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CustomMetrics>();
    }
}
