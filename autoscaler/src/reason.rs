//! The reason record of a decision: the bounds that changed the count, in order, and the
//! one-line summary people read.

use std::fmt::Write as _;

use tideway_api_types::{Clamp, MetricKind, MetricReading, ScaleMode};

/// A count being bounded step by step, remembering every bound that changed it.
#[derive(Debug, Clone)]
pub(crate) struct Bounded {
    pub(crate) value: u32,
    pub(crate) clamps: Vec<Clamp>,
}

impl Bounded {
    pub(crate) fn new(value: u32) -> Self {
        Self {
            value,
            clamps: Vec::new(),
        }
    }

    /// Raises the count to `floor` when below it.
    pub(crate) fn floor(&mut self, by: &str, floor: u32) {
        if self.value < floor {
            self.set(by, floor);
        }
    }

    /// Lowers the count to `ceiling` when above it.
    pub(crate) fn ceiling(&mut self, by: &str, ceiling: u32) {
        if self.value > ceiling {
            self.set(by, ceiling);
        }
    }

    fn set(&mut self, by: &str, to: u32) {
        self.clamps.push(Clamp {
            by: by.to_owned(),
            from: self.value,
            to,
        });
        self.value = to;
    }
}

/// Shows `5` for 5.0 and `0.25` for 0.25: targets and percentages as people write them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Number(pub(crate) f64);

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let x = self.0;
        if x.fract() == 0.0 && x.abs() < 1e15 {
            write!(f, "{}", x as i64)
        } else {
            let s = format!("{x:.2}");
            f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

/// The metric's name in summaries: its kind, or the custom metric's name.
pub(crate) fn label(reading: &MetricReading) -> &str {
    match reading.kind {
        MetricKind::Concurrency => "concurrency",
        MetricKind::Rps => "rps",
        MetricKind::Cpu => "cpu",
        MetricKind::Memory => "memory",
        MetricKind::Custom => reading.name.as_deref().unwrap_or("custom"),
    }
}

/// The one-line summary, e.g. `panic: concurrency 41.0 / target 5 → 9` or
/// `stable: cpu 92.0 / target 50 → 8 → 6 (max: 8→6)`.
///
/// `driver` is the reading whose recommendation won; `None` when no metric had data.
pub(crate) fn summary(
    mode: ScaleMode,
    driver: Option<&MetricReading>,
    current: u32,
    bounded: &Bounded,
) -> String {
    let mut s = String::with_capacity(96);
    let mut note: Option<&str> = None;
    match driver {
        Some(reading) => {
            // In panic the panic window speaks for request metrics.
            let (mode, value) = match mode {
                ScaleMode::Stable => ("stable", reading.stable),
                ScaleMode::Panic => ("panic", reading.panic.or(reading.stable)),
            };
            let value = value.unwrap_or(0.0);
            let _ = write!(
                s,
                "{mode}: {} {value:.1} / target {} → {}",
                label(reading),
                Number(reading.target),
                reading.desired.unwrap_or(current)
            );
            note = reading.note.as_deref();
        }
        None => {
            let _ = write!(s, "no data: keeping {current}");
        }
    }
    let before = driver.and_then(|r| r.desired).unwrap_or(current);
    finish(&mut s, before, bounded, note.as_slice());
    s
}

/// The summary of an activation, e.g. `activation: request at zero → 2`.
pub(crate) fn activation_summary(wanted: u32, bounded: &Bounded) -> String {
    let mut s = format!("activation: request at zero → {wanted}");
    finish(&mut s, wanted, bounded, &[]);
    s
}

/// Appends the bounded count when the bounds changed it, then the notes and clamps.
fn finish(s: &mut String, before: u32, bounded: &Bounded, notes: &[&str]) {
    if bounded.value != before {
        let _ = write!(s, " → {}", bounded.value);
    }
    if notes.is_empty() && bounded.clamps.is_empty() {
        return;
    }
    s.push_str(" (");
    let mut first = true;
    for note in notes {
        if !first {
            s.push_str("; ");
        }
        first = false;
        s.push_str(note);
    }
    for clamp in &bounded.clamps {
        if !first {
            s.push_str("; ");
        }
        first = false;
        let _ = write!(s, "{}: {}→{}", clamp.by, clamp.from, clamp.to);
    }
    s.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(
        kind: MetricKind,
        target: f64,
        stable: f64,
        panic: Option<f64>,
        desired: u32,
    ) -> MetricReading {
        MetricReading {
            kind,
            name: None,
            target,
            stable: Some(stable),
            panic,
            desired: Some(desired),
            note: None,
        }
    }

    #[test]
    fn numbers_read_like_people_write_them() {
        let show = |x| Number(x).to_string();
        assert_eq!(show(5.0), "5");
        assert_eq!(show(0.25), "0.25");
        assert_eq!(show(70.5), "70.5");
        assert_eq!(show(1.0 / 3.0), "0.33");
    }

    #[test]
    fn summaries() {
        let panic = reading(MetricKind::Concurrency, 5.0, 20.0, Some(41.0), 9);
        assert_eq!(
            summary(ScaleMode::Panic, Some(&panic), 1, &Bounded::new(9)),
            "panic: concurrency 41.0 / target 5 → 9"
        );
        let mut bounded = Bounded::new(12);
        bounded.ceiling("max", 10);
        bounded.floor("min", 2);
        let r = reading(MetricKind::Cpu, 50.0, 92.0, None, 12);
        assert_eq!(
            summary(ScaleMode::Stable, Some(&r), 6, &bounded),
            "stable: cpu 92.0 / target 50 → 12 → 10 (max: 12→10)"
        );
        let mut bounded = Bounded::new(3);
        bounded.floor("schedule:0 9 * * *", 5);
        assert_eq!(
            summary(ScaleMode::Stable, None, 3, &bounded),
            "no data: keeping 3 → 5 (schedule:0 9 * * *: 3→5)"
        );
        let mut kept = reading(MetricKind::Concurrency, 10.0, 52.0, Some(50.0), 5);
        kept.note = Some("within 10% tolerance: keeps 5".to_owned());
        assert_eq!(
            summary(ScaleMode::Stable, Some(&kept), 5, &Bounded::new(5)),
            "stable: concurrency 52.0 / target 10 → 5 (within 10% tolerance: keeps 5)"
        );
    }
}
