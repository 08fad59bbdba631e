//! One autoscaler tick for 10,000 apps on one thread: record one second and decide, for
//! every app, each app with a full 60 s window of concurrency and rps.
//!
//! Prints `tick for 10000 apps: X ms (goal ≤ 10 ms)` (the median of the repetitions) and
//! `window state per app: N bytes (goal ≤ 4096)`. Run it with `bench/autoscaler.sh`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::DateTime;
use tideway_api_types::{AutoscalingPolicy, MetricKind, MetricTarget};
use tideway_autoscaler::{Scaler, Second};

const APPS: usize = 10_000;
const WINDOW_SECS: i64 = 60;
const REPETITIONS: usize = 200;
const GOAL_MS: f64 = 10.0;
const GOAL_BYTES: usize = 4096;
/// 2025-06-02T00:00:00Z; any fixed time would do.
const T0: i64 = 1_748_822_400;

fn policy() -> AutoscalingPolicy {
    AutoscalingPolicy {
        min: 1,
        max: 100,
        metrics: vec![
            MetricTarget {
                kind: MetricKind::Concurrency,
                target: 10.0,
                name: None,
            },
            MetricTarget {
                kind: MetricKind::Rps,
                target: 100.0,
                name: None,
            },
        ],
        stable_window_secs: 60,
        panic_window_percent: 10.0,
        panic_threshold_percent: 200.0,
        max_scale_up_rate: 1000.0,
        max_scale_down_rate: 2.0,
        scale_down_delay_secs: 0,
        scale_to_zero: false,
        scale_to_zero_grace_secs: 30,
        activation_scale: 1,
        tolerance_percent: 10.0,
        resource_stabilization_secs: 300,
        schedules: Vec::new(),
    }
}

/// A different, slowly moving load per app, so apps do not all decide alike.
fn second(app: usize, t: i64) -> Second {
    let base = (app % 97) as f64 + 1.0;
    let wave = ((t + app as i64) % 13) as f64 / 13.0;
    Second {
        concurrency: Some(base * (1.0 + 0.2 * wave)),
        rps: Some(base * 12.0 * (1.0 + 0.1 * wave)),
        ..Second::default()
    }
}

struct App {
    scaler: Scaler,
    current: u32,
}

/// One tick at second `t`: every app records second `t` and decides at `t + 1`.
fn tick(apps: &mut [App], policy: &AutoscalingPolicy, t: i64) {
    let Some(now) = DateTime::from_timestamp(t + 1, 0) else {
        return;
    };
    for (i, app) in apps.iter_mut().enumerate() {
        app.scaler.record(t, &second(i, t));
        let decision = app.scaler.decide(policy, app.current, app.current, now);
        app.current = decision.desired;
        black_box(&decision);
    }
}

fn main() {
    let policy = policy();
    let mut apps: Vec<App> = (0..APPS)
        .map(|_| App {
            scaler: Scaler::new(T0 - 3600),
            current: 1,
        })
        .collect();

    // Fill every window: one full stable window of ticks.
    let mut t = T0;
    for _ in 0..WINDOW_SECS {
        tick(&mut apps, &policy, t);
        t += 1;
    }

    // The loads are generated outside the timed part too, in `second`, but cheaply; the
    // figure is what a control plane would spend on the autoscaler per second.
    let mut times: Vec<Duration> = Vec::with_capacity(REPETITIONS);
    for _ in 0..REPETITIONS {
        let start = Instant::now();
        tick(&mut apps, &policy, t);
        times.push(start.elapsed());
        t += 1;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(times[times.len() / 2]);
    let p90 = ms(times[times.len() * 9 / 10]);
    let fastest = ms(times[0]);
    let slowest = ms(times[times.len() - 1]);
    let bytes = apps
        .iter()
        .map(|a| a.scaler.state_bytes())
        .max()
        .unwrap_or(0);
    let scaled: usize = apps.iter().map(|a| a.current as usize).sum();

    println!(
        "{REPETITIONS} ticks: median {median:.2} ms, p90 {p90:.2} ms, min {fastest:.2} ms, max {slowest:.2} ms ({} instances desired in all)",
        scaled
    );
    println!(
        "tick for {APPS} apps: {median:.2} ms (goal ≤ {GOAL_MS:.0} ms){}",
        if median <= GOAL_MS { "" } else { " MISSED" }
    );
    println!(
        "window state per app: {bytes} bytes (goal ≤ {GOAL_BYTES}){}",
        if bytes <= GOAL_BYTES { "" } else { " MISSED" }
    );
}
