//! The gateway: Tideway's data plane.
//!
//! It owns routing of user traffic (host and path rules, weighted and rule-based splits
//! between versions, load balancing across ready instances) and the per-second request
//! metrics that the autoscaler and release analysis decide on. Routes arrive whole from the
//! control plane on a watch channel; the request path must never query a database, await
//! the control plane, or hold a lock across a request.

pub mod route;
