//! What the REST and gRPC APIs both do: each function authorizes the caller, validates its
//! plain arguments, calls the store and wakes the reconcilers that must follow, exactly once
//! for both transports. Handlers only convert their transport's input into these arguments
//! and the result (or [`ApiError`](crate::api::error::ApiError)) into their output.

pub mod apps;
pub mod releases;
