//! One scaled target's state and its decisions: the windows of its metrics, the memory the
//! algorithms keep between ticks, and the order in which bounds apply.
//!
//! A decision runs these steps; every step that changes the count adds a `Clamp`:
//!
//! 1. each metric with data recommends a count (KPA for concurrency and rps, HPA for cpu,
//!    memory and custom metrics); the largest wins (`recommended`). Windows end at the newest
//!    closed second: request metrics average the stable and panic windows, resource and
//!    custom metrics the last 10 s (for utilization only the seconds since the ready count
//!    last changed). Unlike Knative, the HPA tolerance dead band also applies to request
//!    metrics outside panic: a stable-window total within `tolerance_percent` of
//!    `current × target` keeps `current`, so load hovering at the target does not flap
//!    between two counts (`tolerance_percent: 0` gives plain KPA);
//! 2. `resource_stabilization`: not below the highest HPA recommendation of the last
//!    `resource_stabilization_secs`;
//! 3. `max_scale_up_rate`, `max_scale_down_rate`: at most `ceil(rate × ready)`, at least
//!    `floor(ready / rate)`, with 0 ready counted as 1;
//! 4. `activation_scale`: a non-zero count is at least the activation scale;
//! 5. `panic_no_scale_down`: while panicking, not below the panic's high or `current`;
//! 6. `scale_down_delay`: the highest count of the last `scale_down_delay_secs`;
//! 7. `restart_hold`: not below `current` for one stable window after the scaler started;
//! 8. `scale_to_zero_grace`: 0 only after a stable window plus the grace of recorded idle
//!    seconds;
//! 9. `max`, then `min`, then the schedule rule in force (`schedule:<cron>`) as floor and
//!    ceiling.
//!
//! Without data for any metric, steps 1–8 are skipped and the count in force is kept (then
//! bounded by 9, so schedules still act on an idle target).

use chrono::{DateTime, Utc};
use tideway_api_types::{AutoscalingPolicy, MetricKind, MetricReading, ScaleMode, ScaleReason};

use crate::kpa::{self, Panic, RateLimits};
use crate::reason::{self, Bounded};
use crate::resource::{self, RESOURCE_WINDOW_SECS};
use crate::schedule::Schedules;
use crate::window::{MaxWindow, Series};

/// Custom series kept before a policy says which ones matter.
const MAX_CUSTOM_SERIES: usize = 8;

/// The stable window assumed until a policy is seen (Knative's default).
const DEFAULT_STABLE_WINDOW_SECS: u32 = 60;

/// One closed second of observations of one scaled target (one version of an app).
///
/// A second without requests is `Some(0.0)`, not `None`: `None` is missing data, which
/// neither counts as idle nor dilutes the averages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Second {
    /// Time-averaged in-flight requests over the second, summed over instances.
    pub concurrency: Option<f64>,
    /// Requests in that second, all instances.
    pub rps: Option<f64>,
    /// Average CPU utilization (percent of limit) across ready instances.
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Custom metric totals across instances (sum of per-instance values).
    pub custom: Vec<(String, f64)>,
}

/// A decision: the desired instance count and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: u32,
    pub reason: ScaleReason,
}

/// Per-target state: the metric windows plus decision memory (panic mode, scale-down-delay
/// maxima, HPA recommendations, idle time, parsed schedules).
#[derive(Debug, Clone)]
pub struct Scaler {
    /// When this scaler began watching the target (unix seconds).
    started: i64,
    /// The newest recorded second.
    newest: Option<i64>,
    /// The stable window the request series are shaped for.
    window_secs: u32,
    /// Which signals the last policy reads; `None` keeps everything until a policy is seen.
    wanted: Option<Wanted>,
    concurrency: Option<Series>,
    rps: Option<Series>,
    cpu: Option<Series>,
    memory: Option<Series>,
    custom: Vec<(Box<str>, Series)>,
    /// Recorded seconds without requests since the last one with requests.
    idle_secs: u32,
    /// The ready count of the last decision, and the first second measured with it.
    ready_seen: Option<u32>,
    ready_since: i64,
    panic: Panic,
    delay: MaxWindow,
    stabilization: MaxWindow,
    schedules: Option<Box<Schedules>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    concurrency: bool,
    rps: bool,
    cpu: bool,
    memory: bool,
}

impl Wanted {
    fn of(policy: &AutoscalingPolicy) -> Self {
        let has = |kind| policy.metrics.iter().any(|m| m.kind == kind);
        Self {
            concurrency: has(MetricKind::Concurrency),
            rps: has(MetricKind::Rps),
            cpu: has(MetricKind::Cpu),
            memory: has(MetricKind::Memory),
        }
    }
}

/// Where and how one decision reads the windows.
#[derive(Debug, Clone, Copy)]
struct Observe {
    /// The last second of every window.
    end: i64,
    stable_secs: u32,
    panic_secs: u32,
    /// The utilization window: [`RESOURCE_WINDOW_SECS`], or fewer since the ready count
    /// changed.
    utilization_secs: u32,
    /// Ready instances, at least 1.
    ready: u32,
    current: u32,
    tolerance: f64,
}

/// The inputs of the history-dependent steps of one decision.
#[derive(Debug, Clone, Copy)]
struct Dynamics {
    /// The largest metric recommendation.
    recommended: u32,
    /// The largest HPA-style recommendation, when one voted.
    hpa: Option<u32>,
    panicking: bool,
    /// Ready instances, at least 1.
    ready: u32,
    current: u32,
    t: i64,
}

/// Every metric's reading and vote, and whether the target is panicking.
#[derive(Debug, Clone)]
struct Recommendation {
    readings: Vec<MetricReading>,
    votes: Vec<Vote>,
    panicking: bool,
}

/// What one metric asks for this tick.
#[derive(Debug, Clone, Copy)]
enum Vote {
    None,
    /// KPA: the stable and panic windows' counts, and the stable value for the dead band.
    Request {
        stable: u32,
        panic: Option<u32>,
        stable_value: f64,
    },
    /// HPA: already includes the dead band.
    Hpa(u32),
}

impl Scaler {
    /// `started` = unix seconds when this autoscaler instance began watching the target.
    pub fn new(started: i64) -> Self {
        Self {
            started,
            newest: None,
            window_secs: DEFAULT_STABLE_WINDOW_SECS,
            wanted: None,
            concurrency: None,
            rps: None,
            cpu: None,
            memory: None,
            custom: Vec::new(),
            idle_secs: 0,
            ready_seen: None,
            ready_since: i64::MIN,
            panic: Panic::default(),
            delay: MaxWindow::default(),
            stabilization: MaxWindow::default(),
            schedules: None,
        }
    }

    /// Records the closed second `at` (unix seconds; the second `[at, at + 1)`). Seconds not
    /// newer than the newest recorded one are ignored; skipped seconds are missing data.
    pub fn record(&mut self, at: i64, second: &Second) {
        if self.newest.is_some_and(|newest| at <= newest) {
            return;
        }
        self.newest = Some(at);
        let wanted = self.wanted;
        let keep = |pick: fn(&Wanted) -> bool| wanted.as_ref().is_none_or(pick);
        let window = self.window_secs;
        let add = |slot: &mut Option<Series>, value: Option<f64>, secs: u32, kept: bool| {
            if let (Some(v), true) = (value, kept) {
                slot.get_or_insert_with(|| Series::new(secs)).add(at, v);
            }
        };
        add(
            &mut self.concurrency,
            second.concurrency,
            window,
            keep(|w| w.concurrency),
        );
        add(&mut self.rps, second.rps, window, keep(|w| w.rps));
        add(
            &mut self.cpu,
            second.cpu_percent,
            RESOURCE_WINDOW_SECS,
            keep(|w| w.cpu),
        );
        add(
            &mut self.memory,
            second.memory_percent,
            RESOURCE_WINDOW_SECS,
            keep(|w| w.memory),
        );
        for (name, value) in &second.custom {
            if let Some((_, series)) = self.custom.iter_mut().find(|(n, _)| **n == **name) {
                series.add(at, *value);
            } else if wanted.is_none() && self.custom.len() < MAX_CUSTOM_SERIES {
                // Once a policy is seen, `adopt` creates the series it reads.
                let mut series = Series::new(RESOURCE_WINDOW_SECS);
                series.add(at, *value);
                self.custom.push((name.as_str().into(), series));
            }
        }

        let mut traffic = [second.concurrency, second.rps]
            .into_iter()
            .flatten()
            .filter(|v| v.is_finite())
            .peekable();
        if traffic.peek().is_some() {
            if traffic.any(|v| v > 0.0) {
                self.idle_secs = 0;
            } else {
                self.idle_secs = self.idle_secs.saturating_add(1);
            }
        }
    }

    /// The decision at `now` for a target that currently has `ready` ready instances and
    /// whose desired count in force is `current`.
    pub fn decide(
        &mut self,
        policy: &AutoscalingPolicy,
        ready: u32,
        current: u32,
        now: DateTime<Utc>,
    ) -> Decision {
        self.adopt(policy);
        let t = now.timestamp();
        let at = self.observe_at(policy, ready, current, t);
        let Recommendation {
            mut readings,
            votes,
            panicking,
        } = self.observe_all(policy, &at, t);

        // Each metric's count; the dead band applies in stable mode only, since panic exists
        // to react at once.
        let mut recommended: Option<u32> = None;
        let mut hpa: Option<u32> = None;
        let mut driver: Option<usize> = None;
        for (i, (vote, reading)) in votes.iter().zip(readings.iter_mut()).enumerate() {
            let desired = match *vote {
                Vote::None => continue,
                Vote::Request { stable, panic, .. } if panicking => stable.max(panic.unwrap_or(0)),
                Vote::Request {
                    stable,
                    stable_value,
                    ..
                } => {
                    let kept = resource::average_value(
                        stable_value,
                        reading.target,
                        current,
                        at.tolerance,
                    );
                    if kept.note.is_some() {
                        reading.note = kept.note;
                        kept.desired
                    } else {
                        stable
                    }
                }
                Vote::Hpa(desired) => {
                    hpa = Some(hpa.map_or(desired, |h| h.max(desired)));
                    desired
                }
            };
            reading.desired = Some(desired);
            if recommended.is_none_or(|r| desired > r) {
                recommended = Some(desired);
                driver = Some(i);
            }
        }

        let mut bounded = Bounded::new(recommended.unwrap_or(current));
        if let Some(recommended) = recommended {
            let dynamics = Dynamics {
                recommended,
                hpa,
                panicking,
                ready: at.ready,
                current,
                t,
            };
            self.apply_dynamics(policy, &mut bounded, dynamics);
        }
        let min = if policy.scale_to_zero {
            policy.min
        } else {
            policy.min.max(1)
        };
        bounded.ceiling("max", policy.max);
        bounded.floor("min", min);
        let schedule = self.apply_schedule(t, &mut bounded);

        let mode = if panicking {
            ScaleMode::Panic
        } else {
            ScaleMode::Stable
        };
        let summary = reason::summary(mode, driver.map(|i| &readings[i]), current, &bounded);
        Decision {
            desired: bounded.value,
            reason: ScaleReason {
                mode,
                ready,
                metrics: readings,
                recommended,
                clamps: bounded.clamps,
                schedule,
                summary,
            },
        }
    }

    /// A request arrived while the target has zero instances: answers at once with at least
    /// `activation_scale` (and at least 1), within `max` and the schedule rule in force.
    pub fn activate(
        &mut self,
        policy: &AutoscalingPolicy,
        current: u32,
        now: DateTime<Utc>,
    ) -> Decision {
        self.adopt(policy);
        let t = now.timestamp();
        // A request is traffic: the idle count starts again, so the target is not sent back
        // to zero on the next tick before its own metrics show the request.
        self.idle_secs = 0;
        let wanted = policy.activation_scale.max(1);
        let mut bounded = Bounded::new(wanted.max(current));
        bounded.ceiling("max", policy.max);
        bounded.floor("min", policy.min);
        let schedule = self.apply_schedule(t, &mut bounded);
        let summary = reason::activation_summary(wanted.max(current), &bounded);
        Decision {
            desired: bounded.value,
            reason: ScaleReason {
                mode: ScaleMode::Stable,
                ready: 0,
                metrics: Vec::new(),
                recommended: Some(wanted),
                clamps: bounded.clamps,
                schedule,
                summary,
            },
        }
    }

    /// Bounds the count by the schedule rule in force at second `t`, if any, and describes
    /// that rule for the reason record.
    fn apply_schedule(&mut self, t: i64, bounded: &mut Bounded) -> Option<String> {
        let (_, rule) = self.schedules.as_deref_mut()?.active(t)?;
        let by = format!("schedule:{}", rule.cron);
        bounded.floor(&by, rule.min);
        bounded.ceiling(&by, rule.max);
        Some(format!(
            "{} ({}) min {} max {}",
            rule.cron, rule.timezone, rule.min, rule.max
        ))
    }

    /// Bytes of state held for this target: the struct plus everything it owns on the heap.
    pub fn state_bytes(&self) -> usize {
        let series = [&self.concurrency, &self.rps, &self.cpu, &self.memory]
            .into_iter()
            .flatten()
            .map(Series::heap_bytes)
            .sum::<usize>();
        let custom = self.custom.capacity() * std::mem::size_of::<(Box<str>, Series)>()
            + self
                .custom
                .iter()
                .map(|(name, s)| name.len() + s.heap_bytes())
                .sum::<usize>();
        let schedules = self
            .schedules
            .as_deref()
            .map_or(0, |s| std::mem::size_of::<Schedules>() + s.heap_bytes());
        std::mem::size_of::<Self>()
            + series
            + custom
            + self.delay.heap_bytes()
            + self.stabilization.heap_bytes()
            + schedules
    }

    /// Where this decision reads the windows.
    fn observe_at(
        &mut self,
        policy: &AutoscalingPolicy,
        ready: u32,
        current: u32,
        t: i64,
    ) -> Observe {
        let end = self.window_end(t);
        // Utilization is an average over the ready instances, so seconds measured with another
        // ready count would mislead: after a change only the seconds since count (HPA, too,
        // sets aside the samples of pods that were not ready).
        if self.ready_seen != Some(ready) {
            if self.ready_seen.is_some() {
                self.ready_since = end;
            }
            self.ready_seen = Some(ready);
        }
        let since_ready = end.saturating_sub(self.ready_since).saturating_add(1);
        Observe {
            end,
            stable_secs: self.window_secs,
            panic_secs: kpa::panic_window_secs(self.window_secs, policy.panic_window_percent),
            utilization_secs: u32::try_from(since_ready)
                .unwrap_or(u32::MAX)
                .clamp(1, RESOURCE_WINDOW_SECS),
            ready: ready.max(1),
            current,
            tolerance: if policy.tolerance_percent.is_finite() {
                policy.tolerance_percent.max(0.0) / 100.0
            } else {
                0.0
            },
        }
    }

    /// Reads every metric of the policy and moves panic mode on.
    fn observe_all(&mut self, policy: &AutoscalingPolicy, at: &Observe, t: i64) -> Recommendation {
        let mut readings = Vec::with_capacity(policy.metrics.len());
        let mut votes = Vec::with_capacity(policy.metrics.len());
        for metric in &policy.metrics {
            let mut reading = MetricReading {
                kind: metric.kind,
                name: metric.name.clone(),
                target: metric.target,
                stable: None,
                panic: None,
                desired: None,
                note: None,
            };
            let vote = if !(metric.target.is_finite() && metric.target > 0.0) {
                reading.note = Some("target must be a positive number".to_owned());
                Vote::None
            } else {
                self.observe(&mut reading, at)
            };
            if matches!(vote, Vote::None) && reading.note.is_none() {
                reading.note = Some("no data".to_owned());
            }
            readings.push(reading);
            votes.push(vote);
        }

        let reads_requests = policy
            .metrics
            .iter()
            .any(|m| matches!(m.kind, MetricKind::Concurrency | MetricKind::Rps));
        let panicking = if reads_requests {
            let over = votes.iter().any(|v| match v {
                Vote::Request { panic: Some(p), .. } => {
                    kpa::over_panic_threshold(*p, at.ready, policy.panic_threshold_percent)
                }
                _ => false,
            });
            self.panic.update(over, t, at.stable_secs)
        } else {
            self.panic = Panic::default();
            false
        };
        Recommendation {
            readings,
            votes,
            panicking,
        }
    }

    /// Reads one metric's windows into `reading` and says what it asks for.
    fn observe(&self, reading: &mut MetricReading, at: &Observe) -> Vote {
        let target = reading.target;
        let end = at.end;
        match reading.kind {
            MetricKind::Concurrency | MetricKind::Rps => {
                let series = match reading.kind {
                    MetricKind::Concurrency => self.concurrency.as_ref(),
                    _ => self.rps.as_ref(),
                };
                let Some(series) = series else {
                    return Vote::None;
                };
                let Some(stable) = series.mean(end, at.stable_secs) else {
                    return Vote::None;
                };
                let panic = series.mean(end, at.panic_secs);
                reading.stable = Some(stable);
                reading.panic = panic;
                Vote::Request {
                    stable: kpa::instances_for(stable, target),
                    panic: panic.map(|p| kpa::instances_for(p, target)),
                    stable_value: stable,
                }
            }
            MetricKind::Cpu | MetricKind::Memory => {
                let series = match reading.kind {
                    MetricKind::Cpu => self.cpu.as_ref(),
                    _ => self.memory.as_ref(),
                };
                let Some(value) = series.and_then(|s| s.mean(end, at.utilization_secs)) else {
                    return Vote::None;
                };
                reading.stable = Some(value);
                let r = resource::utilization(value, target, at.ready, at.current, at.tolerance);
                reading.note = r.note;
                Vote::Hpa(r.desired)
            }
            MetricKind::Custom => {
                let name = reading.name.as_deref().unwrap_or_default();
                let series = self.custom.iter().find(|(n, _)| **n == *name);
                let Some(total) = series.and_then(|(_, s)| s.mean(end, RESOURCE_WINDOW_SECS))
                else {
                    return Vote::None;
                };
                reading.stable = Some(total);
                let r = resource::average_value(total, target, at.current, at.tolerance);
                reading.note = r.note;
                Vote::Hpa(r.desired)
            }
        }
    }

    /// Steps 2–8 of the module doc: the bounds that depend on history.
    fn apply_dynamics(&mut self, policy: &AutoscalingPolicy, bounded: &mut Bounded, d: Dynamics) {
        let Dynamics {
            recommended,
            hpa,
            panicking,
            ready,
            current,
            t,
        } = d;
        if let Some(hpa) = hpa {
            if policy.resource_stabilization_secs > 0 {
                let held = self
                    .stabilization
                    .push(t, policy.resource_stabilization_secs, hpa);
                bounded.floor("resource_stabilization", held);
            }
        }

        let rates = RateLimits::new(policy, ready);
        bounded.ceiling("max_scale_up_rate", rates.up);
        bounded.floor("max_scale_down_rate", rates.down);

        // Like Knative, only a non-zero recommendation is raised: a rate-limited step down
        // towards zero must not be lifted back up.
        if recommended > 0 {
            bounded.floor("activation_scale", policy.activation_scale);
        }

        if panicking {
            bounded.floor("panic_no_scale_down", self.panic.high.max(current));
            self.panic.high = bounded.value;
        }

        if policy.scale_down_delay_secs > 0 {
            let held = self
                .delay
                .push(t, policy.scale_down_delay_secs, bounded.value);
            bounded.floor("scale_down_delay", held);
        }

        if t - self.started < i64::from(self.window_secs) {
            bounded.floor("restart_hold", current);
        }

        if policy.scale_to_zero && bounded.value == 0 && current > 0 {
            let needed = self
                .window_secs
                .saturating_add(policy.scale_to_zero_grace_secs);
            if self.idle_secs < needed {
                bounded.floor("scale_to_zero_grace", 1);
            }
        }
    }

    /// Takes the policy's shape: the request windows' length, the signals it reads, and its
    /// parsed schedule rules.
    fn adopt(&mut self, policy: &AutoscalingPolicy) {
        let window = policy.stable_window_secs.max(1);
        if window != self.window_secs {
            for series in [&mut self.concurrency, &mut self.rps].into_iter().flatten() {
                if !series.fits(window) {
                    *series = series.reshaped(window);
                }
            }
            self.window_secs = window;
        }

        let wanted = Wanted::of(policy);
        if self.wanted != Some(wanted) {
            let drop_unless = |slot: &mut Option<Series>, keep: bool| {
                if !keep {
                    *slot = None;
                }
            };
            drop_unless(&mut self.concurrency, wanted.concurrency);
            drop_unless(&mut self.rps, wanted.rps);
            drop_unless(&mut self.cpu, wanted.cpu);
            drop_unless(&mut self.memory, wanted.memory);
            self.wanted = Some(wanted);
        }
        let custom_names = || {
            policy
                .metrics
                .iter()
                .filter(|m| m.kind == MetricKind::Custom)
                .filter_map(|m| m.name.as_deref())
        };
        self.custom
            .retain(|(name, _)| custom_names().any(|n| n == &**name));
        for name in custom_names() {
            if !self.custom.iter().any(|(n, _)| &**n == name) {
                self.custom
                    .push((name.into(), Series::new(RESOURCE_WINDOW_SECS)));
            }
        }

        if policy.schedules.is_empty() {
            self.schedules = None;
        } else if !self
            .schedules
            .as_deref()
            .is_some_and(|s| s.is_for(&policy.schedules))
        {
            self.schedules = Some(Box::new(Schedules::new(&policy.schedules)));
        }
    }

    /// The last second the windows end at: `now`'s own second when it was already recorded
    /// (callers that label a second by its end), else the second before it (the one that
    /// closed at `now`). Data that stops arriving thus ages out of the windows.
    fn window_end(&self, t: i64) -> i64 {
        match self.newest {
            Some(newest) if newest >= t => t,
            _ => t - 1,
        }
    }
}
