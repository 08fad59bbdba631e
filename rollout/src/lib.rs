//! Releases as pure decisions: the plan of each strategy, the state machine that walks it,
//! the user's controls over it and the analysis that compares the target version with the
//! stable one. It must never do I/O or read a clock: the caller passes what it observed and
//! the time, and persists the transition it gets back.
//!
//! The caller's loop is: [`validate`] a strategy when the release is created (and show
//! [`plan`] as the dry run); then, for every active release, call [`step`] with what it
//! observed and persist each [`Transition`] (its `to` state and `progress`, with an event of
//! its `kind`) until it returns `None`; publish [`routing`] to the gateway and the runtime;
//! and turn user requests into [`control`] calls. Everything the machine needs to resume is
//! in the release's [`ReleaseProgress`](tideway_api_types::ReleaseProgress), with absolute
//! times, so a restarted caller continues exactly where the stored release stands.

mod analysis;
mod control;
mod machine;
mod plan;
mod routing;
mod validate;

#[cfg(test)]
mod tests;

pub use analysis::{analysis_of, analyze};
pub use control::{control, Control, ControlError};
pub use machine::{step, Observed, TargetStatus, Transition};
pub use plan::plan;
pub use routing::{routing, Routing};
pub use validate::{validate, Invalid};

/// What the release needs to know about its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The app's desired instance count (at least 1; 0 is read as 1).
    pub replicas: u32,
    /// The app's serving version when the release started; `None` for a first release.
    pub stable_version: Option<u32>,
}
