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
//! **Outbound side.** The bridge also registers the platform's instances in *external*
//! registries and copies services between registries:
//!
//! * [`client`]: typed clients for real Consul ([`ConsulClient`]) and Eureka
//!   ([`EurekaClient`]), hand-written on `reqwest` with rustls. *Why not a crate:*
//!   `consul-rs` pulls libcurl and OpenSSL and is unmaintained since 2021, `consul` 0.4 is
//!   blocking, OpenSSL-based and cannot register services, and `rs-consul` (maintained)
//!   has no `/v1/agent/*` endpoints — no agent registration, TTL check updates or
//!   maintenance — and does not read service `Meta`; a thin client over the dozen
//!   endpoints we use has the same dependency weight, no OpenSSL, and one HTTP stack
//!   shared with Eureka, for which no adequate Rust client exists at all.
//! * [`diff()`]: the pure core, `diff(desired, observed) -> Vec<RegistryOp>`, touching only
//!   entries carrying the owner's marker (`tideway-managed=true`,
//!   `tideway-bridge=<connector>`).
//! * [`Connector`]: the level-triggered reconciler around it — observe, diff, apply, send
//!   due heartbeats (Eureka renewals every 30 s, Consul TTL passes) — with exponential
//!   backoff (0.5 s → 30 s) while a registry is unreachable, converging exactly once it
//!   returns. Consul entries carry a TTL check the connector passes while the instance
//!   is ready (see [`remote`] for why TTL and not HTTP); draining instances are taken out
//!   first (Eureka `OUT_OF_SERVICE` override, Consul maintenance) and deregistered once
//!   they leave the desired set.
//! * [`SyncJob`]: one-way registry-to-registry copies of selected services, marked with
//!   their origin; copies are never copied again, so two opposite jobs do not loop (see
//!   [`sync`]).

pub mod builtin;
pub mod check;
pub mod client;
pub mod clock;
pub mod connector;
pub mod consul;
pub mod desired;
pub mod diff;
mod error;
pub mod eureka;
pub mod model;
pub mod remote;
pub mod sync;
mod text;

pub use builtin::{BuiltinRegistry, RequestStats};
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::Error;
pub use model::{
    InstanceStatus, Origin, PlatformInstance, RegisteredInstance, Registry, RegistryConfig,
    TickOutcome,
};

pub use client::consul::{ConsulClient, ConsulConfig};
pub use client::eureka::{EurekaClient, EurekaConfig};
pub use client::ClientError;
pub use connector::{
    Backoff, Connector, ConnectorConfig, ConnectorStatus, ConvergeReport, ErrorInfo,
    HeartbeatSummary, OpResult, PassOutcome,
};
pub use desired::{DesiredRegistration, InstanceIdentity, Lane, ObservedRegistration, Owner};
pub use diff::{diff, DeregisterReason, Field, RegistryOp};
pub use remote::{Remote, RemoteKind};
pub use sync::{
    plan_copies, CopyPlan, LagSample, SkipCounts, SyncJob, SyncReport, SyncSpec, SyncState,
    SyncStatus,
};
