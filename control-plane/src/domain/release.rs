//! The release state machine. A release moves an app from its current version(s) to a target
//! version; `step` decides the next transition from the release and what was observed, so the
//! reconciler that calls it can be stopped and restarted at any point without losing or
//! repeating a step.

use tideway_api_types::{ReleaseProgress, ReleaseState, Strategy};

/// What the reconciler observed about the target version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub target: TargetStatus,
    pub desired_instances: u32,
    pub ready_instances: u32,
}

/// Whether the target version can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStatus {
    /// Its build has not finished; switching now would take the app down for nothing.
    Building,
    Runnable,
    /// It cannot succeed: the build failed or its instances crash-loop. Carries why.
    Failed(String),
}

/// A decided change to a release.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: ReleaseState,
    pub reason: String,
    /// Make this the app's serving version.
    pub set_current_version: Option<u32>,
    /// The release's progress after the transition.
    pub progress: ReleaseProgress,
}

/// The next transition of an active release, or `None` when it must wait.
pub fn step(
    strategy: &Strategy,
    state: ReleaseState,
    target_version: u32,
    observed: &Observed,
) -> Option<Transition> {
    if !state.is_active() {
        return None;
    }
    match &observed.target {
        TargetStatus::Failed(why) => {
            return Some(Transition {
                to: ReleaseState::Failed,
                reason: format!("v{target_version} failed: {why}"),
                set_current_version: None,
                progress: ReleaseProgress::default(),
            })
        }
        TargetStatus::Building => return None,
        TargetStatus::Runnable => {}
    }
    match (strategy, state) {
        (Strategy::Immediate, ReleaseState::Pending) => Some(Transition {
            to: ReleaseState::Progressing,
            reason: format!("switching all traffic and instances to v{target_version}"),
            set_current_version: Some(target_version),
            progress: ReleaseProgress::default(),
        }),
        (Strategy::Immediate, ReleaseState::Progressing)
            if observed.ready_instances >= observed.desired_instances =>
        {
            Some(Transition {
                to: ReleaseState::Succeeded,
                reason: format!(
                    "v{target_version} has {}/{} instances ready",
                    observed.ready_instances, observed.desired_instances
                ),
                set_current_version: None,
                progress: ReleaseProgress::default(),
            })
        }
        _ => None,
    }
}

pub fn state_str(state: ReleaseState) -> &'static str {
    match state {
        ReleaseState::Pending => "pending",
        ReleaseState::Progressing => "progressing",
        ReleaseState::Paused => "paused",
        ReleaseState::Superseded => "superseded",
        ReleaseState::Succeeded => "succeeded",
        ReleaseState::Failed => "failed",
        ReleaseState::Aborted => "aborted",
    }
}

pub fn parse_state(s: &str) -> Option<ReleaseState> {
    Some(match s {
        "pending" => ReleaseState::Pending,
        "progressing" => ReleaseState::Progressing,
        "paused" => ReleaseState::Paused,
        "superseded" => ReleaseState::Superseded,
        "succeeded" => ReleaseState::Succeeded,
        "failed" => ReleaseState::Failed,
        "aborted" => ReleaseState::Aborted,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(target: TargetStatus, ready: u32) -> Observed {
        Observed {
            target,
            desired_instances: 2,
            ready_instances: ready,
        }
    }

    #[test]
    fn immediate_switches_then_waits_for_readiness() {
        let waiting = observed(TargetStatus::Runnable, 1);
        let t = step(&Strategy::Immediate, ReleaseState::Pending, 3, &waiting).unwrap();
        assert_eq!(t.to, ReleaseState::Progressing);
        assert_eq!(t.set_current_version, Some(3));
        assert_eq!(
            step(&Strategy::Immediate, ReleaseState::Progressing, 3, &waiting),
            None
        );
        let ready = observed(TargetStatus::Runnable, 2);
        let done = step(&Strategy::Immediate, ReleaseState::Progressing, 3, &ready).unwrap();
        assert_eq!(done.to, ReleaseState::Succeeded);
        assert_eq!(done.set_current_version, None);
    }

    #[test]
    fn waits_for_the_build_and_fails_with_the_reason() {
        let building = observed(TargetStatus::Building, 0);
        assert_eq!(
            step(&Strategy::Immediate, ReleaseState::Pending, 2, &building),
            None,
            "the serving version keeps running while the new one builds"
        );
        let failed = observed(TargetStatus::Failed("build exited with 1".into()), 0);
        for state in [ReleaseState::Pending, ReleaseState::Progressing] {
            let t = step(&Strategy::Immediate, state, 2, &failed).unwrap();
            assert_eq!(t.to, ReleaseState::Failed);
            assert!(t.reason.contains("build exited with 1"));
            assert_eq!(t.set_current_version, None);
        }
    }

    #[test]
    fn finished_releases_never_move() {
        for s in [
            ReleaseState::Succeeded,
            ReleaseState::Failed,
            ReleaseState::Aborted,
        ] {
            let ready = observed(TargetStatus::Runnable, 2);
            assert_eq!(step(&Strategy::Immediate, s, 1, &ready), None);
            let failed = observed(TargetStatus::Failed("x".into()), 0);
            assert_eq!(step(&Strategy::Immediate, s, 1, &failed), None);
        }
    }
}
