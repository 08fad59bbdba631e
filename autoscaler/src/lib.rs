//! The autoscaler: pure scaling decisions from per-second metrics.
//!
//! It owns the decision `decide(&window, &policy, now) -> ScaleDecision` (KPA semantics for
//! request metrics, HPA semantics for resource metrics, schedules as floors and ceilings)
//! and the 1 s tick loop around it, whose inputs (metrics) and outputs (desired counts,
//! decision events) are traits. It must never do I/O inside a decision, never read a wall
//! clock directly, and never depend on the control plane or its store.
//!
//! Filled by the autoscaler issue; the policy it follows is already stored and validated by
//! the control plane (`PUT .../autoscaling`).
