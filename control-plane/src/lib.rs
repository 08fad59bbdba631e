//! The Tideway control plane: the REST API, the store, the reconcilers that converge the
//! platform to the desired state, and the `tideway` binary's server half.
//!
//! It owns desired state (what should run, how it is released and scaled) and the event log
//! of every change and decision. It must never sit on the request path of user traffic: the
//! gateway routes from a table the control plane pushes to it, and keeps routing when the
//! control plane is down.

pub mod api;
pub mod artifact;
pub mod clock;
pub mod domain;
pub mod grpc;
pub mod intake;
pub mod layout;
pub mod reconcile;
pub mod remote_gateway;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
