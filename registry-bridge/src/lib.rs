//! The registry bridge: Consul and Eureka.
//!
//! It owns registering the platform's instances (with namespace, app, version and lane
//! metadata) in external registries, draining them before they stop, syncing registries,
//! and a built-in registry that speaks both protocols. Its core is a pure
//! `diff(desired, observed) -> Vec<RegistryOp>`; it must never depend on the control plane
//! or its store.
//!
//! Filled by the registry bridge issue.
