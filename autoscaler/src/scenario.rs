//! Behaviour as data: each scenario is a policy, a load profile and how instances become
//! ready, played one second at a time through a [`Scaler`], with the desired counts expected
//! at listed ticks.
//!
//! Tick `t` is the end of second `t`: the runner records second `T0 + t` and then decides at
//! `now = T0 + t + 1`, feeding back the decision as the count in force. The clock is plain
//! `DateTime` values; nothing sleeps.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use tideway_api_types::{AutoscalingPolicy, ScaleMode};

use crate::{Decision, Scaler, Second};

/// The load of second `tick` given the instances ready then; `None` is a missing second.
type Load = Box<dyn Fn(u32, u32) -> Option<Second>>;

/// How the ready count follows the desired count.
#[derive(Debug, Clone, Copy)]
enum Ready {
    /// Ready at tick `t` is the count decided `lag` ticks before the previous one: `Follow(0)`
    /// makes every decision ready at the next tick.
    Follow(u32),
    Fixed(u32),
}

#[derive(Debug, Clone)]
enum Check {
    /// The desired count at the tick is within `[lo, hi]`.
    At(u32, u32, u32),
    /// The desired count does not change over the ticks `[from, to]`.
    Steady(u32, u32),
    Mode(u32, ScaleMode),
    /// A clamp by this name applies at the tick.
    Clamp(u32, &'static str),
    /// The summary at the tick contains this text.
    Says(u32, &'static str),
}

struct Scenario {
    name: &'static str,
    policy: AutoscalingPolicy,
    /// The start of second 0.
    start: DateTime<Utc>,
    /// How long the scaler has watched the target before second 0.
    scaler_age: i64,
    /// The count in force (and ready) before tick 0.
    initial: u32,
    load: Load,
    ready: Ready,
    /// Ticks at which a request arrives at zero: the runner calls `activate` instead of
    /// `decide`.
    activate: Vec<u32>,
    ticks: u32,
    checks: Vec<Check>,
}

impl Scenario {
    fn new(name: &'static str, policy: serde_json::Value) -> Self {
        Self {
            name,
            policy: serde_json::from_value(policy).unwrap(),
            start: Utc.with_ymd_and_hms(2025, 6, 2, 0, 0, 0).unwrap(),
            scaler_age: 3600,
            initial: 1,
            load: Box::new(|_, _| None),
            ready: Ready::Follow(0),
            activate: Vec::new(),
            ticks: 0,
            checks: Vec::new(),
        }
    }

    fn start(mut self, start: DateTime<Utc>) -> Self {
        self.start = start;
        self
    }

    fn new_scaler(mut self) -> Self {
        self.scaler_age = 0;
        self
    }

    fn initial(mut self, initial: u32) -> Self {
        self.initial = initial;
        self
    }

    fn load(mut self, load: impl Fn(u32, u32) -> Option<Second> + 'static) -> Self {
        self.load = Box::new(load);
        self
    }

    fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    fn activate_at(mut self, tick: u32) -> Self {
        self.activate.push(tick);
        self
    }

    fn expect(mut self, checks: impl IntoIterator<Item = Check>) -> Self {
        self.checks.extend(checks);
        self.ticks = self
            .checks
            .iter()
            .map(|c| match *c {
                Check::At(t, ..) | Check::Mode(t, _) | Check::Clamp(t, _) | Check::Says(t, _) => t,
                Check::Steady(_, to) => to,
            })
            .max()
            .unwrap_or(0)
            + 1;
        self
    }

    fn run(&self) -> Vec<Decision> {
        let t0 = self.start.timestamp();
        let mut scaler = Scaler::new(t0 - self.scaler_age);
        let mut current = self.initial;
        let mut decided: Vec<u32> = Vec::new();
        let mut trace = Vec::new();
        for tick in 0..self.ticks {
            let ready = match self.ready {
                Ready::Fixed(n) => n,
                Ready::Follow(lag) => tick
                    .checked_sub(lag + 1)
                    .map_or(self.initial, |i| decided[i as usize]),
            };
            let at = t0 + i64::from(tick);
            if let Some(second) = (self.load)(tick, ready) {
                scaler.record(at, &second);
            }
            let now = DateTime::from_timestamp(at + 1, 0).unwrap();
            let decision = if self.activate.contains(&tick) {
                scaler.activate(&self.policy, current, now)
            } else {
                scaler.decide(&self.policy, ready, current, now)
            };
            current = decision.desired;
            decided.push(current);
            trace.push(decision);
        }
        trace
    }

    /// Runs the scenario and returns what did not hold, one line each.
    fn failures(&self) -> Vec<String> {
        let trace = self.run();
        let at = |tick: u32| &trace[tick as usize];
        let mut out = Vec::new();
        let mut fail = |tick: u32, what: String| {
            let d = at(tick);
            out.push(format!(
                "{}: tick {tick}: {what}; got {} ({})",
                self.name, d.desired, d.reason.summary
            ));
        };
        for check in &self.checks {
            match *check {
                Check::At(tick, lo, hi) => {
                    let got = at(tick).desired;
                    if !(lo..=hi).contains(&got) {
                        fail(tick, format!("expected {lo}..={hi}"));
                    }
                }
                Check::Steady(from, to) => {
                    let first = at(from).desired;
                    if let Some(tick) = (from..=to).find(|&t| at(t).desired != first) {
                        fail(tick, format!("expected {first} steady over {from}..={to}"));
                    }
                }
                Check::Mode(tick, mode) => {
                    if at(tick).reason.mode != mode {
                        fail(tick, format!("expected mode {mode:?}"));
                    }
                }
                Check::Clamp(tick, by) => {
                    if !at(tick).reason.clamps.iter().any(|c| c.by == by) {
                        fail(tick, format!("expected a `{by}` clamp"));
                    }
                }
                Check::Says(tick, text) => {
                    if !at(tick).reason.summary.contains(text) {
                        fail(tick, format!("expected the summary to say `{text}`"));
                    }
                }
            }
        }
        out
    }
}

fn concurrency(v: f64) -> Option<Second> {
    Some(Second {
        concurrency: Some(v),
        ..Second::default()
    })
}

/// Concurrency in steps: `(from tick, value)`, each holding until the next.
fn steps(points: &[(u32, f64)]) -> impl Fn(u32, u32) -> Option<Second> + 'static {
    let points = points.to_vec();
    move |tick, _| {
        let v = points
            .iter()
            .take_while(|(from, _)| *from <= tick)
            .last()
            .map_or(0.0, |&(_, v)| v);
        concurrency(v)
    }
}

/// CPU utilization of `work` (percent of one instance) spread over the ready instances.
fn cpu_work(work: impl Fn(u32) -> f64 + 'static) -> impl Fn(u32, u32) -> Option<Second> {
    move |tick, ready| {
        Some(Second {
            cpu_percent: Some(work(tick) / f64::from(ready.max(1))),
            ..Second::default()
        })
    }
}

/// Deterministic noise in `[-1, 1]` (splitmix64), so the anti-flap runs are reproducible.
fn noise(seed: u64, tick: u32) -> f64 {
    let mut z = seed ^ u64::from(tick).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn concurrency_policy(target: f64, extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({
        "min": 1, "max": 100,
        "metrics": [{"type": "concurrency", "target": target}]
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        p.extend(extra.clone());
    }
    p
}

fn check_all(scenarios: Vec<Scenario>) {
    let failures: Vec<String> = scenarios.iter().flat_map(Scenario::failures).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

use Check::*;

/// Knative's published KPA cases (`autoscaler_test.go`), re-expressed as 1 s load profiles.
#[test]
fn knative_kpa_cases() {
    check_all(vec![
        Scenario::new("steady state", concurrency_policy(10.0, json!({})))
            .initial(5)
            .load(steps(&[(0, 50.0)]))
            .expect([At(0, 5, 5), Steady(0, 299), Mode(299, ScaleMode::Stable)]),
        // K1: 50 then 100 at target 10; the doubling trips panic (10 / 5 ready ≥ 200 %) once
        // the 6 s panic window is full of it.
        Scenario::new("stable increase", concurrency_policy(10.0, json!({})))
            .load(steps(&[(0, 50.0), (120, 100.0)]))
            .expect([
                At(0, 5, 5),
                Steady(1, 123),
                At(124, 10, 10),
                Mode(124, ScaleMode::Panic),
                Steady(124, 300),
            ]),
        // K2: 100 then 50 with 8 ready: the stable window walks down to 5.
        Scenario::new("stable decrease", concurrency_policy(10.0, json!({})))
            .initial(8)
            .load(steps(&[(0, 100.0), (120, 50.0)]))
            .expect([
                At(0, 10, 10),
                At(119, 10, 10),
                At(125, 10, 10),
                At(150, 6, 9),
                At(185, 5, 5),
            ]),
        // K5: a spike moves the 6 s panic window long before the 60 s one.
        Scenario::new(
            "panic entry on a spike",
            concurrency_policy(10.0, json!({})),
        )
        .ready(Ready::Follow(2))
        .load(steps(&[(0, 5.0), (60, 100.0)]))
        .expect([
            At(59, 1, 1),
            Mode(59, ScaleMode::Stable),
            Mode(60, ScaleMode::Panic),
            At(60, 2, 10),
            At(65, 10, 10),
        ]),
        // K7: after a 10 s spike the count holds while panicking, and panic ends one stable
        // window after the panic window was last over the threshold (tick 60).
        Scenario::new(
            "no scale-down in panic, exit after a stable window",
            concurrency_policy(10.0, json!({})),
        )
        .load(steps(&[(0, 10.0), (60, 100.0), (70, 1.0)]))
        .expect([
            At(65, 10, 10),
            Steady(65, 119),
            Mode(119, ScaleMode::Panic),
            Clamp(80, "panic_no_scale_down"),
            Mode(120, ScaleMode::Stable),
            // Down to 2 by the stable window, limited to 10 / 2.
            At(120, 5, 5),
            Clamp(120, "max_scale_down_rate"),
            At(130, 1, 1),
        ]),
        // K8: rate 10 from 1 ready allows 10; once 10 are ready, 100.
        Scenario::new(
            "max scale-up rate",
            concurrency_policy(10.0, json!({"max": 1000, "max_scale_up_rate": 10.0})),
        )
        .ready(Ready::Follow(2))
        .load(steps(&[(0, 1000.0)]))
        .expect([
            At(0, 10, 10),
            Clamp(0, "max_scale_up_rate"),
            At(2, 10, 10),
            At(3, 100, 100),
        ]),
        // K9: rate 10 from 100 ready allows 10; once 10 are ready, 1.
        Scenario::new(
            "max scale-down rate",
            concurrency_policy(10.0, json!({"max_scale_down_rate": 10.0})),
        )
        .initial(100)
        .ready(Ready::Follow(1))
        .load(steps(&[(0, 1.0)]))
        .expect([
            At(0, 10, 10),
            Clamp(0, "max_scale_down_rate"),
            At(1, 10, 10),
            At(2, 1, 1),
        ]),
        // K10: ceil(1.1 × 2) = 3 still allows one more instance.
        Scenario::new(
            "small scale-up rate",
            concurrency_policy(1.0, json!({"max_scale_up_rate": 1.1})),
        )
        .initial(2)
        .ready(Ready::Fixed(2))
        .load(steps(&[(0, 5.0)]))
        .expect([At(0, 3, 3), Clamp(0, "max_scale_up_rate")]),
        // K11: floor(100 / 1.1) = 90.
        Scenario::new(
            "small scale-down rate",
            concurrency_policy(10.0, json!({"max_scale_down_rate": 1.1})),
        )
        .initial(100)
        .ready(Ready::Fixed(100))
        .load(steps(&[(0, 1.0)]))
        .expect([At(0, 90, 90)]),
        // K20: 0 ready counts as 1, so rate 10 allows 10.
        Scenario::new(
            "0 ready counted as 1",
            concurrency_policy(10.0, json!({"max_scale_up_rate": 10.0})),
        )
        .initial(0)
        .ready(Ready::Fixed(0))
        .load(steps(&[(0, 1000.0)]))
        .expect([At(0, 10, 10), At(5, 10, 10)]),
        // K6: exponential growth is tracked and then holds.
        Scenario::new(
            "exponential track and stabilize",
            concurrency_policy(1.0, json!({"max": 2000})),
        )
        .load(steps(&[(0, 6.0), (100, 36.0), (200, 216.0), (300, 1296.0)]))
        .expect([
            At(99, 6, 6),
            At(199, 36, 36),
            At(299, 216, 216),
            At(399, 1296, 1296),
            Steady(400, 500),
        ]),
        // K13/K14: a 300 s delay keeps the highest count of the last 300 s. The stable
        // window last asked for 4 at tick 73, 3 at tick 88 and 2 at tick 103 (a high
        // scale-down rate keeps the rate limit out of the way).
        Scenario::new(
            "scale-down delay",
            concurrency_policy(
                10.0,
                json!({"scale_down_delay_secs": 300, "max_scale_down_rate": 100.0}),
            ),
        )
        .initial(4)
        .load(steps(&[(0, 40.0), (60, 0.0)]))
        .expect([
            At(0, 4, 4),
            At(200, 4, 4),
            Clamp(200, "scale_down_delay"),
            At(372, 4, 4),
            At(373, 3, 3),
            At(387, 3, 3),
            At(388, 2, 2),
            At(403, 1, 1),
        ]),
        // K15: no delay, the count follows the stable window down at once.
        Scenario::new("no scale-down delay", concurrency_policy(10.0, json!({})))
            .initial(4)
            .load(steps(&[(0, 40.0), (60, 0.0)]))
            .expect([At(74, 3, 3), At(119, 1, 1)]),
        // K4: a non-zero count is at least activation_scale.
        Scenario::new(
            "activation scale in decide",
            json!({
                "min": 0, "max": 10, "scale_to_zero": true, "activation_scale": 2,
                "metrics": [{"type": "concurrency", "target": 10}]
            }),
        )
        .initial(0)
        .ready(Ready::Fixed(0))
        .load(|tick, _| concurrency(if tick < 5 { 0.0 } else { 1.0 }))
        .expect([At(4, 0, 0), At(5, 2, 2), Clamp(5, "activation_scale")]),
    ]);
}

#[test]
fn missing_data_is_no_action() {
    check_all(vec![
        Scenario::new("no data at all", concurrency_policy(10.0, json!({})))
            .initial(3)
            .ready(Ready::Fixed(3))
            .expect([At(0, 3, 3), Says(0, "no data: keeping 3"), Steady(0, 100)]),
        // Data for 10 s, then nothing: the window keeps answering until it ages out, and
        // then the count in force stays.
        Scenario::new("data stops", concurrency_policy(10.0, json!({})))
            .initial(3)
            .load(|tick, _| {
                if (30..40).contains(&tick) {
                    concurrency(50.0)
                } else {
                    None
                }
            })
            .expect([
                At(29, 3, 3),
                At(30, 5, 5),
                Steady(30, 200),
                Says(98, "stable: concurrency 50.0"),
                Says(99, "no data: keeping 5"),
            ]),
        // Every other second missing: the recorded ones are not diluted.
        Scenario::new(
            "skipped seconds do not dilute",
            concurrency_policy(10.0, json!({})),
        )
        .initial(5)
        .load(|tick, _| {
            if tick % 2 == 0 {
                concurrency(50.0)
            } else {
                None
            }
        })
        .expect([At(0, 5, 5), Steady(0, 200)]),
        // Recorded zero-traffic seconds do count as 0 (min 1 holds the floor).
        Scenario::new("recorded zeros count", concurrency_policy(10.0, json!({})))
            .initial(5)
            .load(|tick, _| concurrency(if tick % 2 == 0 { 50.0 } else { 0.0 }))
            .expect([At(70, 3, 3), Steady(70, 200)]),
    ]);
}

/// The end-to-end goal: stable window 10 s (panic window 1 s), concurrency target 5, a step
/// from 0 to 40 clients reaches ≥ 8 within 2 ticks.
#[test]
fn step_from_0_to_40_clients_reaches_8_within_2_ticks() {
    let policy = || {
        json!({
            "min": 1, "max": 10, "stable_window_secs": 10,
            "metrics": [{"type": "concurrency", "target": 5}]
        })
    };
    check_all(vec![
        Scenario::new("step after idle", policy())
            .ready(Ready::Follow(3))
            .load(steps(&[(0, 0.0), (30, 40.0)]))
            .expect([
                At(29, 1, 1),
                At(30, 8, 10),
                At(31, 8, 10),
                Mode(30, ScaleMode::Panic),
                Says(30, "panic: concurrency 40.0 / target 5 → 8"),
                At(60, 8, 8),
                Steady(40, 120),
            ]),
        Scenario::new("step on a new scaler", policy())
            .new_scaler()
            .ready(Ready::Follow(3))
            .load(steps(&[(0, 40.0)]))
            .expect([At(0, 8, 10), Steady(0, 60)]),
        Scenario::new("step beyond max", policy())
            .load(steps(&[(0, 0.0), (30, 80.0)]))
            .expect([At(30, 10, 10), Clamp(30, "max"), Says(30, "(max: 16→10)")]),
    ]);
}

#[test]
fn hpa_resource_and_custom_metrics() {
    let cpu = |extra: serde_json::Value| {
        let mut p = json!({"min": 1, "max": 20, "metrics": [{"type": "cpu", "target": 50}]});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        p
    };
    check_all(vec![
        // 54 % on a 50 % target is within the 10 % dead band; 75 % is not.
        Scenario::new("tolerance dead band", cpu(json!({})))
            .initial(4)
            .load(cpu_work(|tick| if tick < 60 { 216.0 } else { 300.0 }))
            .expect([
                At(0, 4, 4),
                Steady(0, 59),
                Says(30, "within 10% tolerance: keeps 4"),
                At(75, 6, 6),
                Steady(75, 200),
            ]),
        // Up at once; down only to the highest recommendation of the last 300 s. The last
        // recommendation of 8 was at tick 61 (the 10 s mean still in the dead band).
        Scenario::new("300 s downscale stabilization", cpu(json!({})))
            .initial(4)
            .load(cpu_work(|tick| if tick < 60 { 400.0 } else { 200.0 }))
            .expect([
                At(0, 8, 8),
                At(200, 8, 8),
                Clamp(200, "resource_stabilization"),
                At(360, 8, 8),
                At(361, 7, 7),
                At(400, 4, 4),
            ]),
        Scenario::new(
            "custom metric, AverageValue",
            json!({
                "min": 1, "max": 20,
                "metrics": [{"type": "custom", "name": "queue_depth", "target": 20}]
            }),
        )
        .load(|tick, _| {
            let total = match tick {
                0..40 => 100.0,
                40..60 => 110.0,
                60..100 => 160.0,
                _ => 40.0,
            };
            Some(Second {
                custom: vec![("queue_depth".to_owned(), total), ("other".to_owned(), 1e6)],
                ..Second::default()
            })
        })
        .expect([
            At(0, 5, 5),
            Steady(1, 59),
            Says(50, "within 10% tolerance"),
            At(80, 8, 8),
            At(399, 8, 8),
            Clamp(399, "resource_stabilization"),
            At(420, 2, 2),
        ]),
        // Concurrency asks for 3, cpu for 6: the larger wins; rps has no data and no vote.
        Scenario::new(
            "several metrics: the largest wins",
            json!({
                "min": 1, "max": 20,
                "metrics": [
                    {"type": "concurrency", "target": 10},
                    {"type": "rps", "target": 100},
                    {"type": "cpu", "target": 50}
                ]
            }),
        )
        .initial(3)
        .load(|_, ready| {
            Some(Second {
                concurrency: Some(30.0),
                cpu_percent: Some(300.0 / f64::from(ready.max(1))),
                ..Second::default()
            })
        })
        .expect([
            At(0, 6, 6),
            Says(0, "stable: cpu 100.0 / target 50 → 6"),
            Steady(1, 100),
        ]),
    ]);
}

#[test]
fn several_metrics_readings_record_who_voted() {
    let s = Scenario::new(
        "readings",
        json!({
            "min": 1, "max": 20,
            "metrics": [
                {"type": "concurrency", "target": 10},
                {"type": "rps", "target": 100},
                {"type": "cpu", "target": 50}
            ]
        }),
    )
    .initial(3)
    .load(|_, _| {
        Some(Second {
            concurrency: Some(30.0),
            cpu_percent: Some(100.0),
            ..Second::default()
        })
    })
    .expect([At(0, 6, 6)]);
    let trace = s.run();
    let reason = &trace[0].reason;
    assert_eq!(reason.recommended, Some(6));
    assert_eq!(reason.ready, 3);
    let desired: Vec<_> = reason.metrics.iter().map(|m| m.desired).collect();
    assert_eq!(desired, [Some(3), None, Some(6)]);
    assert_eq!(reason.metrics[0].stable, Some(30.0));
    assert_eq!(reason.metrics[0].panic, Some(30.0));
    assert_eq!(reason.metrics[1].note.as_deref(), Some("no data"));
}

#[test]
fn schedules_bound_the_decision() {
    check_all(vec![
        // 22:00–04:00 Shanghai time is 14:00Z–20:00Z: the floor holds across local midnight.
        Scenario::new("floor across midnight, Asia/Shanghai", json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 10}],
            "schedules": [{"cron": "0 22 * * *", "timezone": "Asia/Shanghai",
                           "duration_secs": 21600, "min": 5, "max": 10}]
        }))
            .start(Utc.with_ymd_and_hms(2025, 6, 1, 13, 58, 0).unwrap())
            .load(steps(&[(0, 10.0)]))
            .expect([
                At(118, 1, 1),
                At(119, 5, 5),
                Clamp(119, "schedule:0 22 * * *"),
                At(10_000, 5, 5),
                At(21_718, 5, 5),
                // Closed at 20:00Z; down at the scale-down rate.
                At(21_719, 2, 2),
                At(21_725, 1, 1),
            ]),
        // A weekday-morning ceiling, and a higher-priority rule inside it.
        Scenario::new("ceiling and priority", json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 10}],
            "schedules": [
                {"cron": "0 9 * * 1-5", "timezone": "UTC", "duration_secs": 3600, "min": 0, "max": 2},
                {"cron": "30 9 * * *", "timezone": "UTC", "duration_secs": 600, "min": 4, "max": 4, "priority": 1}
            ]
        }))
            .start(Utc.with_ymd_and_hms(2025, 6, 2, 8, 59, 0).unwrap())
            .initial(8)
            .load(steps(&[(0, 80.0)]))
            .expect([
                At(58, 8, 8),
                At(59, 2, 2),
                Clamp(59, "schedule:0 9 * * 1-5"),
                At(1858, 2, 2),
                At(1859, 4, 4),
                Clamp(1859, "schedule:30 9 * * *"),
                At(2459, 2, 2),
                At(3658, 2, 2),
                At(3659, 8, 8),
            ]),
        // Schedules act on an idle target too: no data keeps the count, the floor raises it.
        Scenario::new("floor without data", json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 10}],
            "schedules": [{"cron": "0 9 * * *", "timezone": "UTC", "duration_secs": 600, "min": 3, "max": 10}]
        }))
            .start(Utc.with_ymd_and_hms(2025, 6, 2, 8, 59, 0).unwrap())
            .expect([At(58, 1, 1), At(59, 3, 3), Says(59, "no data: keeping 1 → 3")]),
    ]);
}

/// DST in the scaler itself: New York's 02:30 rule on the spring-forward day opens at 03:00
/// EDT, and on the fall-back day a 01:30 rule opens once.
#[test]
fn schedules_across_dst() {
    let policy = |cron: &str, duration: u32| {
        json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 10}],
            "schedules": [{"cron": cron, "timezone": "America/New_York",
                           "duration_secs": duration, "min": 4, "max": 10}]
        })
    };
    check_all(vec![
        // 2025-03-09 06:50Z is 01:50 EST; 03:00 EDT is 07:00Z (tick 599).
        Scenario::new("spring forward", policy("30 2 * * *", 1800))
            .start(Utc.with_ymd_and_hms(2025, 3, 9, 6, 50, 0).unwrap())
            .load(steps(&[(0, 5.0)]))
            .expect([At(598, 1, 1), At(599, 4, 4), At(2398, 4, 4), At(2399, 2, 2)]),
        // 2025-11-02: 01:30 EDT is 05:30Z (tick 1799); 01:30 EST (06:30Z, tick 5399) is not a
        // second opening.
        Scenario::new("fall back", policy("30 1 * * *", 1800))
            .start(Utc.with_ymd_and_hms(2025, 11, 2, 5, 0, 0).unwrap())
            .load(steps(&[(0, 5.0)]))
            .expect([
                At(1798, 1, 1),
                At(1799, 4, 4),
                At(3598, 4, 4),
                At(3610, 1, 1),
                At(5399, 1, 1),
                Steady(3610, 7200),
            ]),
    ]);
}

#[test]
fn restart_safety() {
    check_all(vec![
        // A new scaler with no history holds the count in force for one stable window.
        Scenario::new(
            "no scale-down for a stable window",
            concurrency_policy(10.0, json!({})),
        )
        .new_scaler()
        .initial(10)
        .load(steps(&[(0, 10.0)]))
        .expect([
            At(0, 10, 10),
            Clamp(0, "restart_hold"),
            Steady(0, 58),
            At(59, 5, 5),
            At(70, 1, 1),
        ]),
        // Scaling up is not held back.
        Scenario::new(
            "scale-up during the hold",
            concurrency_policy(10.0, json!({})),
        )
        .new_scaler()
        .initial(2)
        .load(steps(&[(0, 50.0)]))
        .expect([At(0, 5, 5)]),
    ]);
}

#[test]
fn scale_to_zero_and_activation() {
    let policy = |activation: u32| {
        json!({
            "min": 0, "max": 10, "scale_to_zero": true, "activation_scale": activation,
            "stable_window_secs": 60, "scale_to_zero_grace_secs": 30,
            "metrics": [{"type": "concurrency", "target": 10}]
        })
    };
    let load = |tick: u32, _| concurrency(if (60..300).contains(&tick) { 0.0 } else { 5.0 });
    check_all(vec![
        // Idle from tick 60: the stable window empties at tick 119, then 30 s of grace; the
        // 90th recorded idle second is tick 149.
        Scenario::new("window plus grace, then activation", policy(1))
            .load(load)
            .activate_at(300)
            .expect([
                At(59, 1, 1),
                At(119, 1, 1),
                Clamp(120, "scale_to_zero_grace"),
                At(148, 1, 1),
                At(149, 0, 0),
                Steady(149, 299),
                Says(200, "stable: concurrency 0.0 / target 10 → 0"),
                At(300, 1, 1),
                Says(300, "activation: request at zero → 1"),
                Steady(300, 400),
            ]),
        Scenario::new("activation scale", policy(3))
            .load(load)
            .activate_at(300)
            // When the window empties, 3 → 1 at the scale-down rate (the activation scale does
            // not lift a step towards zero), held by the grace, then 0.
            .expect([
                At(118, 3, 3),
                At(119, 1, 1),
                At(148, 1, 1),
                At(149, 0, 0),
                At(300, 3, 3),
                At(301, 3, 3),
                Clamp(301, "activation_scale"),
            ]),
        // An activation scale above max is cut to max.
        Scenario::new("activation beyond max", policy(20))
            .initial(0)
            .activate_at(0)
            .expect([
                At(0, 10, 10),
                Says(0, "activation: request at zero → 20 → 10 (max: 20→10)"),
            ]),
        // Without scale_to_zero the floor is 1 whatever min says.
        Scenario::new(
            "no scale to zero",
            json!({
                "min": 1, "max": 10, "metrics": [{"type": "concurrency", "target": 10}]
            }),
        )
        .load(load)
        .expect([At(200, 1, 1)]),
    ]);
}

/// Load within ±8 % of the target for 10 minutes changes nothing.
#[test]
fn anti_flap() {
    check_all(vec![
        Scenario::new("concurrency ±8%", concurrency_policy(10.0, json!({})))
            .initial(5)
            .load(|tick, _| concurrency(50.0 * (1.0 + 0.08 * noise(1, tick))))
            .expect([At(0, 5, 5), Steady(0, 599)]),
        Scenario::new(
            "rps ±8%",
            json!({
                "min": 1, "max": 100, "metrics": [{"type": "rps", "target": 100}]
            }),
        )
        .initial(7)
        .load(|tick, _| {
            Some(Second {
                rps: Some(700.0 * (1.0 + 0.08 * noise(2, tick))),
                ..Second::default()
            })
        })
        .expect([At(0, 7, 7), Steady(0, 599)]),
        Scenario::new(
            "cpu ±8%",
            json!({
                "min": 1, "max": 100, "metrics": [{"type": "cpu", "target": 60}]
            }),
        )
        .initial(5)
        .load(cpu_work(|tick| 300.0 * (1.0 + 0.08 * noise(3, tick))))
        .expect([At(0, 5, 5), Steady(0, 599)]),
    ]);
}

#[test]
fn bounds_and_reason_record() {
    let s = Scenario::new(
        "bounds",
        json!({
            "min": 2, "max": 6, "metrics": [{"type": "concurrency", "target": 10}]
        }),
    )
    .initial(2)
    .load(|tick, _| concurrency(if tick < 10 { 0.0 } else { 200.0 }))
    .expect([At(0, 2, 2), Clamp(0, "min"), At(15, 6, 6), Clamp(15, "max")]);
    check_all(vec![s]);
}

#[test]
fn state_stays_small() {
    let policy: AutoscalingPolicy = serde_json::from_value(json!({
        "min": 1, "max": 10,
        "metrics": [{"type": "concurrency", "target": 10}, {"type": "rps", "target": 100}]
    }))
    .unwrap();
    let mut scaler = Scaler::new(0);
    for t in 0..3600 {
        scaler.record(
            t,
            &Second {
                concurrency: Some(5.0),
                rps: Some(50.0),
                ..Second::default()
            },
        );
        scaler.decide(&policy, 1, 1, DateTime::from_timestamp(t + 1, 0).unwrap());
    }
    assert!(scaler.state_bytes() <= 4096, "{}", scaler.state_bytes());

    // A one-hour window downsamples: still bounded.
    let mut long = policy.clone();
    long.stable_window_secs = 3600;
    long.scale_down_delay_secs = 3600;
    for t in 3600..10_000 {
        scaler.record(
            t,
            &Second {
                concurrency: Some((t % 97) as f64),
                rps: Some(50.0),
                ..Second::default()
            },
        );
        scaler.decide(&long, 5, 5, DateTime::from_timestamp(t + 1, 0).unwrap());
    }
    assert!(scaler.state_bytes() <= 4096, "{}", scaler.state_bytes());
}

#[test]
fn ignores_old_and_duplicate_seconds() {
    let policy: AutoscalingPolicy =
        serde_json::from_value(concurrency_policy(10.0, json!({}))).unwrap();
    let mut scaler = Scaler::new(0);
    scaler.record(100, &concurrency(50.0).unwrap());
    scaler.record(100, &concurrency(1000.0).unwrap());
    scaler.record(99, &concurrency(1000.0).unwrap());
    let d = scaler.decide(&policy, 5, 5, DateTime::from_timestamp(101, 0).unwrap());
    assert_eq!(d.reason.metrics[0].stable, Some(50.0));
}
