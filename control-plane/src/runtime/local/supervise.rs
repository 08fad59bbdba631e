//! The supervisor's decisions, as pure functions of observed state, policy and `now`: when a
//! dead instance is restarted, when it is in a crash loop, what a health probe result means,
//! and which instances to start or drain to match the desired replicas. The driver's loop
//! does the I/O around them.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tideway_api_types::{HealthCheck, InstanceState};

use super::record::InstanceRecord;
use crate::runtime::WorkloadKey;

/// Consecutive failures without becoming ready after which an instance is in a crash loop.
pub(crate) const CRASH_LOOP_AFTER: u32 = 5;
/// The longest wait between restarts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before restarting after the `n`th consecutive failure: the first failure after
/// the instance was ready (or started) restarts at once, then 1 s doubling up to 5 min.
pub(crate) fn backoff(consecutive_failures: u32) -> Duration {
    match consecutive_failures {
        0 | 1 => Duration::ZERO,
        n => {
            let doublings = n - 2;
            if doublings >= 9 {
                // 2^9 s already exceeds the cap; also keeps the shift below from overflowing.
                MAX_BACKOFF
            } else {
                Duration::from_secs(1 << doublings).min(MAX_BACKOFF)
            }
        }
    }
}

/// What an exit of the app means for the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitOutcome {
    pub consecutive_failures: u32,
    pub backoff: Duration,
    pub crash_loop: bool,
    /// True exactly on the failure that enters the crash loop (the event is sent once).
    pub entered_crash_loop: bool,
}

pub(crate) fn on_exit(rec: &InstanceRecord) -> ExitOutcome {
    let failures = rec.consecutive_failures.saturating_add(1);
    ExitOutcome {
        consecutive_failures: failures,
        backoff: backoff(failures),
        crash_loop: failures >= CRASH_LOOP_AFTER,
        entered_crash_loop: failures == CRASH_LOOP_AFTER,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextAction {
    /// The app runs (or is being started): nothing to do.
    Keep,
    /// The app is down and its backoff has passed.
    Restart,
    /// The app is down; restart at this time.
    WaitUntil(DateTime<Utc>),
}

/// Whether a dead instance is due for its restart.
pub(crate) fn next_action(rec: &InstanceRecord, now: DateTime<Utc>) -> NextAction {
    let Some(exited_at) = rec.exited_at else {
        return NextAction::Keep;
    };
    let wait = chrono::Duration::from_std(backoff(rec.consecutive_failures))
        .unwrap_or(chrono::Duration::zero());
    let due = exited_at + wait;
    if now >= due {
        NextAction::Restart
    } else {
        NextAction::WaitUntil(due)
    }
}

/// The state of an instance whose app is running but not (yet) ready.
pub(crate) fn not_ready_state(rec: &InstanceRecord) -> InstanceState {
    if rec.consecutive_failures >= CRASH_LOOP_AFTER {
        InstanceState::CrashLoop
    } else {
        InstanceState::Starting
    }
}

/// Consecutive probe results of the current run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProbeCounts {
    pub successes: u32,
    pub failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthVerdict {
    /// No change of state.
    Unchanged,
    /// A not-ready instance reached `healthy_threshold` successes.
    Ready,
    /// A ready instance reached `unhealthy_threshold` failures.
    Unhealthy,
}

/// Applies one probe result. `ready` is whether the instance currently counts as ready.
pub(crate) fn after_probe(
    ready: bool,
    counts: ProbeCounts,
    ok: bool,
    health: &HealthCheck,
) -> (ProbeCounts, HealthVerdict) {
    let counts = if ok {
        ProbeCounts {
            successes: counts.successes.saturating_add(1),
            failures: 0,
        }
    } else {
        ProbeCounts {
            successes: 0,
            failures: counts.failures.saturating_add(1),
        }
    };
    let verdict = match (ready, ok) {
        (false, true) if counts.successes >= health.healthy_threshold.max(1) => {
            HealthVerdict::Ready
        }
        (true, false) if counts.failures >= health.unhealthy_threshold.max(1) => {
            HealthVerdict::Unhealthy
        }
        _ => HealthVerdict::Unchanged,
    };
    (counts, verdict)
}

/// An instance as the scale plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LiveInstance {
    pub id: String,
    pub key: WorkloadKey,
    pub state: InstanceState,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScaleOp {
    Start(WorkloadKey),
    Drain(String),
}

/// Starts and drains that make the live (non-draining) instances match the desired replicas.
/// Instances of undeclared workloads are drained. When scaling down, the least useful go
/// first: crash-looping, then unhealthy, then starting, then ready; newest first among equals.
pub(crate) fn plan_scale(
    desired: &BTreeMap<WorkloadKey, u32>,
    live: &[LiveInstance],
) -> Vec<ScaleOp> {
    let mut ops = Vec::new();
    let mut by_key: BTreeMap<&WorkloadKey, Vec<&LiveInstance>> = BTreeMap::new();
    for instance in live {
        if desired.contains_key(&instance.key) {
            by_key.entry(&instance.key).or_default().push(instance);
        } else {
            ops.push(ScaleOp::Drain(instance.id.clone()));
        }
    }
    for (key, &replicas) in desired {
        let mut running = by_key.remove(key).unwrap_or_default();
        let have = running.len();
        let want = replicas as usize;
        if have < want {
            ops.extend((have..want).map(|_| ScaleOp::Start(key.clone())));
        } else if have > want {
            running.sort_by(|a, b| {
                drain_rank(a.state)
                    .cmp(&drain_rank(b.state))
                    .then(b.created_at.cmp(&a.created_at))
                    .then(a.id.cmp(&b.id))
            });
            ops.extend(
                running
                    .iter()
                    .take(have - want)
                    .map(|i| ScaleOp::Drain(i.id.clone())),
            );
        }
    }
    ops
}

fn drain_rank(state: InstanceState) -> u8 {
    match state {
        InstanceState::CrashLoop => 0,
        InstanceState::Unhealthy => 1,
        InstanceState::Starting => 2,
        InstanceState::Ready => 3,
        InstanceState::Draining | InstanceState::Stopped => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::local::record::RunTemplate;
    use chrono::TimeZone;

    fn key(version: u32) -> WorkloadKey {
        WorkloadKey {
            namespace: "default".into(),
            app: "web".into(),
            version,
        }
    }

    fn record() -> InstanceRecord {
        InstanceRecord {
            id: "web-v1-abcde".into(),
            namespace: "default".into(),
            app: "web".into(),
            version: 1,
            port: 8080,
            created_at: t0(),
            restarts: 0,
            consecutive_failures: 0,
            exited_at: None,
            last_exit: None,
            shim: None,
            app_proc: None,
            template: RunTemplate {
                dir: "/tmp".into(),
                command: "true".into(),
                env: Default::default(),
                health: HealthCheck::default(),
                resources: Default::default(),
            },
            cgroups: None,
            limits_enforced: false,
            limits_note: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap()
    }

    #[test]
    fn backoff_sequence() {
        let secs: Vec<u64> = (1..=12).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    /// A run of events, each with the backoff and crash-loop state it must produce.
    #[test]
    fn exits_ready_and_crash_loop_table() {
        enum Ev {
            Exit {
                backoff_s: u64,
                crash_loop: bool,
                entered: bool,
            },
            Ready,
        }
        use Ev::*;
        let table = [
            Exit {
                backoff_s: 0,
                crash_loop: false,
                entered: false,
            },
            Exit {
                backoff_s: 1,
                crash_loop: false,
                entered: false,
            },
            Exit {
                backoff_s: 2,
                crash_loop: false,
                entered: false,
            },
            Exit {
                backoff_s: 4,
                crash_loop: false,
                entered: false,
            },
            Exit {
                backoff_s: 8,
                crash_loop: true,
                entered: true,
            },
            Exit {
                backoff_s: 16,
                crash_loop: true,
                entered: false,
            },
            // Becoming ready resets the count: the next exit restarts at once.
            Ready,
            Exit {
                backoff_s: 0,
                crash_loop: false,
                entered: false,
            },
            Exit {
                backoff_s: 1,
                crash_loop: false,
                entered: false,
            },
        ];
        let mut rec = record();
        for (step, ev) in table.iter().enumerate() {
            match ev {
                Ready => rec.consecutive_failures = 0,
                Exit {
                    backoff_s,
                    crash_loop,
                    entered,
                } => {
                    let out = on_exit(&rec);
                    assert_eq!(out.backoff.as_secs(), *backoff_s, "step {step}");
                    assert_eq!(out.crash_loop, *crash_loop, "step {step}");
                    assert_eq!(out.entered_crash_loop, *entered, "step {step}");
                    rec.consecutive_failures = out.consecutive_failures;
                    let expected = if *crash_loop {
                        InstanceState::CrashLoop
                    } else {
                        InstanceState::Starting
                    };
                    assert_eq!(not_ready_state(&rec), expected, "step {step}");
                }
            }
        }
    }

    #[test]
    fn next_action_waits_for_the_backoff() {
        let mut rec = record();
        assert_eq!(next_action(&rec, t0()), NextAction::Keep);
        rec.exited_at = Some(t0());
        rec.consecutive_failures = 1;
        assert_eq!(next_action(&rec, t0()), NextAction::Restart);
        rec.consecutive_failures = 3; // 2 s
        let due = t0() + chrono::Duration::seconds(2);
        let cases = [
            (t0(), NextAction::WaitUntil(due)),
            (
                t0() + chrono::Duration::milliseconds(1999),
                NextAction::WaitUntil(due),
            ),
            (due, NextAction::Restart),
            (due + chrono::Duration::seconds(60), NextAction::Restart),
        ];
        for (now, expected) in cases {
            assert_eq!(next_action(&rec, now), expected, "at {now}");
        }
    }

    #[test]
    fn probe_thresholds() {
        let hc = HealthCheck {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..HealthCheck::default()
        };
        // (ready, results, final verdict)
        let table: [(bool, &[bool], HealthVerdict); 6] = [
            (false, &[true], HealthVerdict::Unchanged),
            (false, &[true, true], HealthVerdict::Ready),
            (false, &[true, false, true], HealthVerdict::Unchanged),
            (true, &[false, false], HealthVerdict::Unchanged),
            (true, &[false, false, false], HealthVerdict::Unhealthy),
            (true, &[false, false, true, false], HealthVerdict::Unchanged),
        ];
        for (ready, results, expected) in table {
            let mut counts = ProbeCounts::default();
            let mut verdict = HealthVerdict::Unchanged;
            for &ok in results {
                (counts, verdict) = after_probe(ready, counts, ok, &hc);
            }
            assert_eq!(verdict, expected, "ready={ready} results={results:?}");
        }
    }

    fn live(id: &str, version: u32, state: InstanceState, age_s: i64) -> LiveInstance {
        LiveInstance {
            id: id.into(),
            key: key(version),
            state,
            created_at: t0() - chrono::Duration::seconds(age_s),
        }
    }

    #[test]
    fn scale_plan() {
        let desired: BTreeMap<WorkloadKey, u32> = [(key(1), 2)].into();
        // Scale up from nothing.
        assert_eq!(
            plan_scale(&desired, &[]),
            vec![ScaleOp::Start(key(1)), ScaleOp::Start(key(1))]
        );
        // Converged: nothing to do.
        let two = [
            live("a", 1, InstanceState::Ready, 10),
            live("b", 1, InstanceState::Ready, 5),
        ];
        assert!(plan_scale(&desired, &two).is_empty());
        // Undeclared versions are drained.
        let mut with_old = two.to_vec();
        with_old.push(live("old", 2, InstanceState::Ready, 100));
        assert_eq!(
            plan_scale(&desired, &with_old),
            vec![ScaleOp::Drain("old".into())]
        );
        // Scale down drains the crash-looping one, then the newest ready one.
        let one: BTreeMap<WorkloadKey, u32> = [(key(1), 1)].into();
        let three = [
            live("a", 1, InstanceState::Ready, 10),
            live("b", 1, InstanceState::Ready, 5),
            live("c", 1, InstanceState::CrashLoop, 20),
        ];
        assert_eq!(
            plan_scale(&one, &three),
            vec![ScaleOp::Drain("c".into()), ScaleOp::Drain("b".into())]
        );
    }
}
