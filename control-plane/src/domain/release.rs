//! Releases in the control plane: the state machine itself is the pure `tideway-rollout`
//! crate; here are the stored names of its states.

use tideway_api_types::ReleaseState;

pub use tideway_rollout::{TargetStatus, Transition};

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
