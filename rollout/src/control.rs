//! The user's controls over an active release: promote (the current step, or everything),
//! pause, resume and abort. Each is a transition like the machine's, or an error with a
//! stable code when it does not apply.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use tideway_api_types::{Release, ReleaseState};

use crate::machine::{after_ms, Transition, Walk};
use crate::plan::Kind;
use crate::Context;

/// What a user asks of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `full: false` ends the current pause, analysis, batch confirmation or blue-green
    /// wait now; `full: true` goes straight to full promotion, which still waits for the
    /// target's instances and for the gateway to move all traffic before the old version
    /// stops.
    Promote { full: bool },
    /// Stop where it is (a timed pause is frozen with its remaining time).
    Pause,
    /// Continue after `Pause`, with the remaining time of a frozen pause.
    Resume,
    /// Send all traffic back to the stable version at once and stop.
    Abort,
}

/// A control that does not apply to the release as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// `release_not_active`, `release_pending`, `release_paused`, `release_not_paused`,
    /// `release_awaiting_promote`, `release_step_in_progress` or `release_plan_mismatch`.
    pub code: &'static str,
    pub message: String,
}

impl ControlError {
    fn new(code: &'static str, message: String) -> Self {
        ControlError { code, message }
    }
}

/// Applies `control` to `release` at `now`.
pub fn control(
    release: &Release,
    ctx: &Context,
    control: Control,
    now: DateTime<Utc>,
) -> Result<Transition, ControlError> {
    let state = release.state;
    if !state.is_active() {
        return Err(ControlError::new(
            "release_not_active",
            format!(
                "release {} is {}; only pending, progressing and paused releases can be controlled",
                release.id,
                state_name(state)
            ),
        ));
    }
    let walk = Walk::new(release, ctx, now);
    match control {
        Control::Abort => Ok(abort(&walk)),
        _ if state == ReleaseState::Pending => Err(ControlError::new(
            if control == Control::Resume {
                "release_not_paused"
            } else {
                "release_pending"
            },
            format!(
                "release {} has not started: v{} is not built yet",
                release.id, release.target_version
            ),
        )),
        Control::Pause => pause(&walk),
        Control::Resume => resume(&walk),
        Control::Promote { full: false } => promote_step(&walk),
        Control::Promote { full: true } => promote_full(&walk),
    }
}

fn state_name(state: ReleaseState) -> &'static str {
    match state {
        ReleaseState::Pending => "pending",
        ReleaseState::Progressing => "progressing",
        ReleaseState::Paused => "paused",
        ReleaseState::Succeeded => "succeeded",
        ReleaseState::Failed => "failed",
        ReleaseState::Aborted => "aborted",
        ReleaseState::Superseded => "superseded",
    }
}

/// All traffic back to the stable version. A plain switch already made the target the
/// serving version, so its abort makes the previous one serve again.
fn abort(walk: &Walk<'_>) -> Transition {
    let release = walk.release;
    let started = release.state != ReleaseState::Pending;
    let back = if walk.is_switch() && started {
        walk.stable_version
    } else {
        None
    };
    let reason = match (walk.is_switch() && started, back) {
        (true, None) => format!(
            "aborted by request; v{} keeps serving (there is no earlier version)",
            release.target_version
        ),
        _ if !started => "aborted by request before it started".to_string(),
        _ => format!(
            "aborted by request at {}; all traffic back to {}",
            walk.describe(walk.index()),
            walk.stable_name()
        ),
    };
    Transition {
        set_current_version: back,
        ..walk.transition(
            ReleaseState::Aborted,
            "ReleaseAborted",
            reason,
            release.progress.clone(),
            None,
        )
    }
}

fn pause(walk: &Walk<'_>) -> Result<Transition, ControlError> {
    let release = walk.release;
    if release.state == ReleaseState::Paused {
        return Err(ControlError::new(
            "release_paused",
            format!(
                "release {} is already paused at {}",
                release.id,
                walk.describe(walk.index())
            ),
        ));
    }
    let mut p = release.progress.clone();
    p.paused_by_user = true;
    let mut reason = format!("paused by request at {}", walk.describe(walk.index()));
    if let Some(until) = p.pause_until.take() {
        let left = (until - walk.now).num_milliseconds().max(0);
        p.pause_remaining_ms = Some(left);
        reason.push_str(&format!(" with {}s of the pause left", (left + 999) / 1000));
    }
    Ok(walk.transition(ReleaseState::Paused, "ReleasePaused", reason, p, None))
}

fn resume(walk: &Walk<'_>) -> Result<Transition, ControlError> {
    let release = walk.release;
    match (release.state, release.progress.paused_by_user) {
        (ReleaseState::Paused, true) => {}
        (ReleaseState::Paused, false) => {
            return Err(ControlError::new(
                "release_awaiting_promote",
                format!(
                    "release {} waits at {} for promote, not resume",
                    release.id,
                    walk.describe(walk.index())
                ),
            ))
        }
        _ => {
            return Err(ControlError::new(
                "release_not_paused",
                format!("release {} is not paused", release.id),
            ))
        }
    }
    let mut p = release.progress.clone();
    p.paused_by_user = false;
    if let Some(ms) = p.pause_remaining_ms.take() {
        p.pause_until = Some(after_ms(walk.now, ms));
    }
    let reason = format!("resumed by request at {}", walk.describe(walk.index()));
    Ok(walk.transition(ReleaseState::Progressing, "ReleaseResumed", reason, p, None))
}

fn mismatch(walk: &Walk<'_>) -> ControlError {
    ControlError::new(
        "release_plan_mismatch",
        format!(
            "release {} is at step {} but its plan has {} steps",
            walk.release.id,
            walk.index().saturating_add(1),
            walk.steps.len()
        ),
    )
}

/// Ends the current step now when it is a wait; steps that move traffic cannot be cut short.
fn promote_step(walk: &Walk<'_>) -> Result<Transition, ControlError> {
    let step = walk.current().ok_or_else(|| mismatch(walk))?;
    match step.kind {
        Kind::Pause(_) | Kind::Analysis(_) | Kind::KeepOld(_) => {
            let why = format!("promoted by request past {}; ", walk.describe(walk.index()));
            let kind = match step.kind {
                Kind::KeepOld(_) => "ReleaseSucceeded",
                _ => "ReleasePromoted",
            };
            Ok(walk.complete(kind, &why, None))
        }
        _ => Err(ControlError::new(
            "release_step_in_progress",
            format!(
                "{} ends when v{} has {} instances ready and the gateway applies its traffic; \
                 promote ends pauses, analyses and confirmations, and promote with full goes \
                 straight to full promotion",
                walk.describe(walk.index()),
                walk.release.target_version,
                step.target_replicas
            ),
        )),
    }
}

/// Goes straight to full promotion: the last traffic step (the switch, for blue-green, whose
/// old version then stops as soon as the gateway has moved all traffic).
fn promote_full(walk: &Walk<'_>) -> Result<Transition, ControlError> {
    let release = walk.release;
    let index = walk.index();
    if index >= walk.steps.len() {
        return Err(mismatch(walk));
    }
    let switch = walk.steps.iter().position(|s| s.kind == Kind::Switch);
    let finale = switch.unwrap_or(walk.steps.len() - 1);
    let mut p = release.progress.clone();
    // Blue-green: read at the switch, so the old version stops right after it.
    let cut_keep_old = switch.is_some() && p.keep_old_until.is_none();
    if cut_keep_old {
        p.keep_old_until = Some(walk.now);
    }
    match index.cmp(&finale) {
        Ordering::Greater => {
            let why = format!("promoted by request past {}; ", walk.describe(index));
            Ok(walk.complete("ReleaseSucceeded", &why, None))
        }
        Ordering::Equal if cut_keep_old => {
            p.paused_by_user = false;
            if let Some(ms) = p.pause_remaining_ms.take() {
                p.pause_until = Some(after_ms(walk.now, ms));
            }
            let reason = format!(
                "promoted fully by request: {} stops once all traffic moved",
                walk.stable_name()
            );
            Ok(walk.transition(
                ReleaseState::Progressing,
                "ReleasePromoted",
                reason,
                p,
                None,
            ))
        }
        Ordering::Equal if release.progress.paused_by_user => resume(walk).map(|t| Transition {
            kind: "ReleasePromoted",
            ..t
        }),
        Ordering::Equal => Err(ControlError::new(
            "release_step_in_progress",
            format!(
                "release {} is already at full promotion: {}",
                release.id,
                walk.describe(index)
            ),
        )),
        Ordering::Less => {
            let (to, progress) = walk.enter(finale, &p, None);
            let reason = format!(
                "promoted fully by request from {}; {}",
                walk.describe(index),
                walk.describe(finale)
            );
            Ok(walk.transition(to, "ReleasePromoted", reason, progress, None))
        }
    }
}
