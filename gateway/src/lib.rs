//! The gateway: Tideway's data plane.
//!
//! It owns routing of user traffic (host and path rules, weighted and rule-based splits
//! between versions, load balancing across ready instances) and the per-second request
//! metrics that the autoscaler and release analysis decide on. Routes arrive whole from the
//! control plane on a watch channel; the request path must never query a database, await
//! the control plane, or hold a lock across a request.
//!
//! It must never depend on the control plane (`tideway`): its inputs are the
//! [`route::RouteTable`] on a watch channel and its outputs are [`Activation`] requests on an
//! mpsc channel and the [`GatewayMetrics`] readers.
//!
//! Layout:
//! - [`route`]: the contract the control plane fills.
//! - [`table`]: the table compiled once per change (host map, prefixes longest first,
//!   regexes, weight buckets, per-backend load and metrics handles), swapped whole.
//! - [`pick`]: the pure decisions, [`pick_version`] and [`pick_backend`], with injected dice.
//! - [`metrics`]: per-second series, windows for in-process readers, Prometheus text.
//! - `proxy`: the request path; `server`: listener, table watcher, metrics tick, drain.
//!
//! The server speaks HTTP/1.1 and h2c (prior knowledge) to clients and HTTP/1.1 to
//! upstreams. Prometheus text is served at `GET /__tideway/metrics` to clients connected
//! over loopback whose host is `localhost`, `127.0.0.1` or `[::1]`, when no app claims that
//! exact host (checked before path-prefix routes, so a `/` prefix route does not hide it);
//! [`GatewayMetrics::render_prometheus`] gives the same text to in-process readers.

mod body;
mod error;
mod headers;
pub mod metrics;
pub mod pick;
mod proxy;
pub mod route;
mod server;
pub mod table;

pub use error::{ErrorCode, GatewayError};
pub use metrics::{GatewayMetrics, InstanceSeries, SecondSample};
pub use pick::{pick_backend, pick_backend_excluding, pick_version, RequestFacts};
pub use server::{Activation, Gateway, GatewayConfig};
pub use table::{BackendState, CompiledApp, CompiledTable};
