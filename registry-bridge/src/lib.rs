//! The registry bridge: Consul and Eureka.
//!
//! It owns registering the platform's instances (with namespace, app, version and lane
//! metadata) in external registries, draining them before they stop, syncing registries,
//! and a built-in registry that speaks both protocols. It must never depend on the control
//! plane or its store.
//!
//! **Built so far: the built-in registry.** One in-memory [`Registry`] ([`model`]) served
//! over the Eureka REST API ([`eureka`], `/eureka/…` and `/eureka/v2/…`) and the discovery
//! subset of the Consul HTTP API ([`consul`]), so unchanged Eureka and Consul clients use
//! it. A service registered through one protocol is visible through the other, and the
//! platform's own instances ([`Registry::put_platform`]) appear in both. The registry runs
//! Consul HTTP/TCP checks itself ([`check`]) and evicts expired Eureka leases. Nothing is
//! persisted: like leases, registrations do not survive a restart. [`BuiltinRegistry`]
//! binds both listeners and runs everything until shutdown.
//!
//! **Where it differs from the real servers** (deliberately or not yet):
//!
//! * Eureka: a lease expires `duration` after its last renewal (Netflix: 2 × duration);
//!   capped evictions take the longest-silent leases first (Netflix: random);
//!   self-preservation is off by default; no gzip responses, `regions`, peer replication
//!   (`peerreplication/batch`) or ASG endpoints; metadata keys that are not XML names are
//!   left out of XML responses (they stay in JSON).
//! * Consul: one node (`tideway`) holds every instance, and `/v1/agent/services` lists all
//!   of them; only HTTP, TCP and TTL checks (script, gRPC, Docker, alias, H2PING, UDP and
//!   OS-service checks are refused with 400); checks must belong to a service (no
//!   node-level checks); `DeregisterCriticalServiceAfter` has no 1-minute minimum and is
//!   enforced within ~100 ms; `?filter=` supports service selectors only; no `?hash=`
//!   blocking on `/v1/agent/service/:id`, no wait jitter, no `/v1/catalog/register`, KV
//!   or sessions; check output-only changes do not move the index.
//!
//! **Later (not built yet):** the bridge's pure core
//! `diff(desired, observed) -> Vec<RegistryOp>` with its reconcile loop, and the outbound
//! Eureka and Consul clients that register the platform's instances in *external*
//! registries (see `shared/reference/registries.md` §3.4 for the sync rules).

pub mod builtin;
pub mod check;
pub mod clock;
pub mod consul;
mod error;
pub mod eureka;
pub mod model;
mod text;

pub use builtin::{BuiltinRegistry, RequestStats};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::Error;
pub use model::{
    InstanceStatus, Origin, PlatformInstance, RegisteredInstance, Registry, RegistryConfig,
    TickOutcome,
};
