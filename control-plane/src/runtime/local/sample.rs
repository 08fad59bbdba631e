//! Per-instance resource samples: the latest one is shown on the instance, the last
//! [`SAMPLES_KEPT`] are kept for the autoscaler.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Five minutes at one sample per second.
pub const SAMPLES_KEPT: usize = 300;

/// CPU and memory use of an instance at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceSample {
    pub at: DateTime<Utc>,
    /// CPU use since the previous sample, in percent of one core (may exceed 100).
    pub cpu_percent: Option<f64>,
    /// Memory in bytes: the cgroup's usage where there is one, else the resident size.
    pub memory_bytes: Option<u64>,
}

/// A bounded history of samples, oldest first.
#[derive(Debug, Default, Clone)]
pub(crate) struct SampleRing {
    samples: VecDeque<ResourceSample>,
}

impl SampleRing {
    pub fn push(&mut self, sample: ResourceSample) {
        if self.samples.len() == SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn to_vec(&self) -> Vec<ResourceSample> {
        self.samples.iter().copied().collect()
    }
}

/// CPU percent of one core from two readings of cumulative CPU time.
pub(crate) fn cpu_percent(prev_ns: u64, now_ns: u64, elapsed: Duration) -> Option<f64> {
    let elapsed_ns = elapsed.as_nanos() as f64;
    if elapsed_ns <= 0.0 || now_ns < prev_ns {
        // A counter that went backwards belongs to a new run (or a new cgroup).
        return None;
    }
    Some((now_ns - prev_ns) as f64 / elapsed_ns * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_latest() {
        let mut ring = SampleRing::default();
        for i in 0..(SAMPLES_KEPT + 5) {
            ring.push(ResourceSample {
                at: Utc::now(),
                cpu_percent: Some(i as f64),
                memory_bytes: None,
            });
        }
        let v = ring.to_vec();
        assert_eq!(v.len(), SAMPLES_KEPT);
        assert_eq!(v[0].cpu_percent, Some(5.0));
        assert_eq!(
            v[SAMPLES_KEPT - 1].cpu_percent,
            Some((SAMPLES_KEPT + 4) as f64)
        );
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let second = Duration::from_secs(1);
        assert_eq!(cpu_percent(0, 500_000_000, second), Some(50.0));
        assert_eq!(cpu_percent(0, 2_000_000_000, second), Some(200.0));
        assert_eq!(cpu_percent(10, 5, second), None);
        assert_eq!(cpu_percent(0, 5, Duration::ZERO), None);
    }
}
