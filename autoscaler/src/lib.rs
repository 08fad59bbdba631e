//! The autoscaler: pure scaling decisions from per-second metrics.
//!
//! It owns the decision for one scaled target (one version of an app): a [`Scaler`] keeps the
//! per-second windows of that target's metrics plus the little memory the algorithms need
//! (panic mode, scale-down-delay maxima, HPA recommendations), and
//! [`Scaler::decide`] turns them, the stored policy and `now` into a [`Decision`] with its
//! reason record. Request metrics follow Knative's KPA, resource and custom metrics follow
//! the Kubernetes HPA, and schedule rules act as floors and ceilings.
//!
//! It must never do I/O inside a decision, never read a wall clock (time is always passed
//! in), never spawn or await, and never depend on the control plane or its store. The 1 s
//! loop that feeds it metrics and applies its decisions lives with its callers.
//!
//! The policy it follows is already stored and validated by the control plane
//! (`PUT .../autoscaling`); a decision still never panics on a policy that slipped through.

mod kpa;
mod reason;
mod resource;
mod scaler;
mod schedule;
mod window;

#[cfg(test)]
mod scenario;

pub use scaler::{Decision, Scaler, Second};
pub use schedule::{active_schedule, validate_schedule};
