//! Per-second observation windows: a bucketed ring per signal, and a sliding maximum.
//!
//! Both are bounded whatever the window length, so a target's state stays small: windows of
//! up to [`MAX_FINE_BUCKETS`] seconds keep one bucket per second, longer ones downsample into
//! wider buckets.

/// Windows up to this many seconds are kept at 1 s resolution; longer ones use wider
/// buckets so no series holds more than about this many.
pub(crate) const MAX_FINE_BUCKETS: u32 = 128;

/// At most this many entries in a [`MaxWindow`]; see [`MaxWindow::push`] for what happens
/// past it.
const MAX_WINDOW_ENTRIES: usize = 16;

/// The per-second values of one signal over a window, in buckets of `width` seconds.
///
/// A bucket holds the sum of the values written into it and how many seconds had a value,
/// so a mean counts only seconds that were recorded: seconds without data (before the first
/// write, or skipped) neither add nor dilute.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Seconds per bucket.
    width: u32,
    /// Bucket number (`second / width`) of the newest write; `None` before the first.
    newest: Option<i64>,
    sums: Box<[f32]>,
    counts: Box<[u8]>,
}

impl Series {
    /// A series able to answer means over the last `window_secs` seconds.
    pub(crate) fn new(window_secs: u32) -> Self {
        let (width, len) = geometry(window_secs);
        Self {
            width,
            newest: None,
            sums: vec![0.0; len].into_boxed_slice(),
            counts: vec![0; len].into_boxed_slice(),
        }
    }

    /// Whether this series was built for windows of `window_secs` seconds.
    pub(crate) fn fits(&self, window_secs: u32) -> bool {
        let (width, len) = geometry(window_secs);
        self.width == width && self.sums.len() == len
    }

    /// The same data in the geometry for `window_secs`; a bucket moves whole into the new
    /// bucket holding its first second, which is exact when shrinking width and off by less
    /// than one old bucket otherwise.
    pub(crate) fn reshaped(&self, window_secs: u32) -> Self {
        let mut out = Self::new(window_secs);
        if let Some(newest) = self.newest {
            let len = self.len();
            for bucket in (newest - len + 1)..=newest {
                let slot = self.slot(bucket);
                if self.counts[slot] > 0 {
                    out.add_bucket(
                        bucket * i64::from(self.width),
                        self.sums[slot],
                        self.counts[slot],
                    );
                }
            }
        }
        out
    }

    /// Adds the value of second `at`. Non-finite values are missing data; negative ones are
    /// read as 0. Seconds that fell out of the ring are ignored.
    pub(crate) fn add(&mut self, at: i64, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.add_bucket(at, value.max(0.0) as f32, 1);
    }

    fn add_bucket(&mut self, at: i64, sum: f32, count: u8) {
        let bucket = at.div_euclid(i64::from(self.width));
        let len = self.len();
        match self.newest {
            Some(newest) if bucket <= newest - len => return,
            Some(newest) if bucket > newest => {
                // Clear the slots the ring moves over; they hold buckets a full ring older.
                let steps = (bucket - newest).min(len);
                for k in 0..steps {
                    let slot = self.slot(bucket - k);
                    self.sums[slot] = 0.0;
                    self.counts[slot] = 0;
                }
                self.newest = Some(bucket);
            }
            Some(_) => {}
            None => self.newest = Some(bucket),
        }
        let slot = self.slot(bucket);
        self.sums[slot] += sum;
        self.counts[slot] = self.counts[slot].saturating_add(count);
    }

    /// The mean over the recorded seconds of the window `(end - secs, end]`, or `None` when
    /// none of them was recorded. With wide buckets the window starts at the start of the
    /// bucket holding its first second.
    pub(crate) fn mean(&self, end: i64, secs: u32) -> Option<f64> {
        let newest = self.newest?;
        let width = i64::from(self.width);
        let len = self.len();
        let first = (end - i64::from(secs.max(1)) + 1)
            .div_euclid(width)
            .max(newest - len + 1);
        let last = end.div_euclid(width).min(newest);
        if first > last {
            return None;
        }
        // The buckets are one run of slots, or two when the run wraps around the ring; one
        // modulo per query instead of one per bucket.
        let start = self.slot(first);
        let n = (last - first + 1) as usize;
        let (head, tail) = if start + n <= self.sums.len() {
            (start..start + n, 0..0)
        } else {
            (start..self.sums.len(), 0..start + n - self.sums.len())
        };
        let sum = sum(&self.sums[head.clone()]) + sum(&self.sums[tail.clone()]);
        let count = count(&self.counts[head]) + count(&self.counts[tail]);
        (count > 0).then(|| sum / f64::from(count))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.sums.len() * std::mem::size_of::<f32>() + self.counts.len()
    }

    fn len(&self) -> i64 {
        self.sums.len() as i64
    }

    fn slot(&self, bucket: i64) -> usize {
        bucket.rem_euclid(self.len()) as usize
    }
}

/// The sum of `values` in f64. Four accumulators, because one float sum is a chain of
/// dependent additions and this runs over every bucket of every window on every tick.
fn sum(values: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = values.chunks_exact(4);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f64::from(v);
        }
    }
    rest.iter()
        .fold((acc[0] + acc[1]) + (acc[2] + acc[3]), |t, &v| {
            t + f64::from(v)
        })
}

fn count(counts: &[u8]) -> u32 {
    counts.iter().map(|&c| u32::from(c)).sum()
}

/// Bucket width and count for a window: exact seconds up to [`MAX_FINE_BUCKETS`], then
/// wider buckets plus one, because a window rarely starts on a bucket boundary.
fn geometry(window_secs: u32) -> (u32, usize) {
    let window = window_secs.max(1);
    if window <= MAX_FINE_BUCKETS {
        (1, window as usize)
    } else {
        let width = window.div_ceil(MAX_FINE_BUCKETS);
        (width, window.div_ceil(width) as usize + 1)
    }
}

/// The maximum of the values pushed over a sliding time window (scale-down delay, HPA
/// downscale stabilization).
///
/// Keeps only the entries that can still become the maximum: times increase and values
/// strictly decrease from front to back.
#[derive(Debug, Clone, Default)]
pub(crate) struct MaxWindow {
    entries: Vec<(i64, u32)>,
}

impl MaxWindow {
    /// Pushes `value` at second `now` and returns the maximum over `(now - secs, now]`.
    ///
    /// Past [`MAX_WINDOW_ENTRIES`] (a long staircase down inside one window) the newest kept
    /// entry takes the new time instead: its larger value then lives a little longer, so the
    /// answer may hold a higher count longer than exact, never a lower one.
    pub(crate) fn push(&mut self, now: i64, secs: u32, value: u32) -> u32 {
        let horizon = now - i64::from(secs);
        let expired = self
            .entries
            .iter()
            .take_while(|(t, _)| *t <= horizon)
            .count();
        self.entries.drain(..expired);
        while self.entries.last().is_some_and(|&(_, v)| v <= value) {
            self.entries.pop();
        }
        if self.entries.len() >= MAX_WINDOW_ENTRIES {
            if let Some(last) = self.entries.last_mut() {
                last.0 = now;
            }
        } else {
            self.entries.push((now, value));
        }
        self.entries.first().map_or(value, |&(_, v)| v)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(i64, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_counts_only_recorded_seconds() {
        let mut s = Series::new(60);
        assert_eq!(s.mean(100, 60), None);
        s.add(100, 40.0);
        assert_eq!(s.mean(100, 60), Some(40.0));
        s.add(101, 0.0);
        assert_eq!(s.mean(101, 60), Some(20.0));
        // Second 102 skipped: missing, not zero.
        s.add(103, 20.0);
        assert_eq!(s.mean(103, 60), Some(20.0));
        assert_eq!(s.mean(103, 1), Some(20.0));
        assert_eq!(s.mean(102, 1), None);
    }

    #[test]
    fn old_seconds_fall_out_of_the_window() {
        let mut s = Series::new(10);
        for t in 0..10 {
            s.add(t, 10.0);
        }
        s.add(10, 0.0);
        // (0, 10]: nine tens and one zero.
        assert_eq!(s.mean(10, 10), Some(9.0));
        assert_eq!(s.mean(25, 10), None);
        // A write far ahead clears the whole ring.
        s.add(100, 5.0);
        assert_eq!(s.mean(100, 10), Some(5.0));
        // Too old to fit: ignored.
        s.add(50, 1000.0);
        assert_eq!(s.mean(100, 10), Some(5.0));
    }

    #[test]
    fn long_windows_downsample_into_bounded_buckets() {
        let mut s = Series::new(3600);
        assert!(s.sums.len() <= MAX_FINE_BUCKETS as usize + 1);
        for t in 0..5400 {
            s.add(t, if t < 3600 { 100.0 } else { 0.0 });
        }
        let mean = s.mean(5399, 3600).unwrap_or(f64::NAN);
        assert!((mean - 50.0).abs() < 2.0, "{mean}");
        for t in 5400..7200 {
            s.add(t, 0.0);
        }
        let mean = s.mean(7199, 3600).unwrap_or(f64::NAN);
        assert!(mean < 2.0, "{mean}");
    }

    #[test]
    fn reshaping_keeps_the_data() {
        let mut s = Series::new(10);
        for t in 0..10 {
            s.add(t, t as f64);
        }
        let wider = s.reshaped(60);
        assert!(wider.fits(60));
        assert_eq!(wider.mean(9, 60), Some(4.5));
        let coarse = s.reshaped(600);
        assert_eq!(coarse.mean(9, 600), Some(4.5));
    }

    #[test]
    fn max_window_holds_the_maximum_for_its_length() {
        let mut w = MaxWindow::default();
        assert_eq!(w.push(2, 300, 4), 4);
        for t in 3..=301 {
            assert_eq!(w.push(t, 300, 0), 4, "t={t}");
        }
        assert_eq!(w.push(302, 300, 0), 0);
        assert_eq!(w.push(303, 300, 3), 3);
    }

    #[test]
    fn max_window_stays_bounded_and_never_under_reports() {
        let mut w = MaxWindow::default();
        for (i, t) in (0..100).enumerate() {
            let got = w.push(t, 1000, 1000 - i as u32);
            assert_eq!(got, 1000);
        }
        assert!(w.entries.len() <= MAX_WINDOW_ENTRIES);
    }
}
