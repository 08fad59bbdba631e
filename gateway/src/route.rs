//! The route table: everything the gateway needs to route a request, built by the control
//! plane and swapped whole. Building it is the only work done when routes change; serving a
//! request only reads it.

use std::net::SocketAddr;

use tideway_api_types::TrafficPolicy;

/// The complete routing state, as the control plane last published it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    pub apps: Vec<AppRoute>,
}

/// One app: where it is reached and how its traffic is split.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRoute {
    pub namespace: String,
    pub app: String,
    /// Host names (lowercase, no port) that reach the app: `{app}.{ns}.localhost` and any
    /// custom domains.
    pub hosts: Vec<String>,
    /// Path prefixes (starting with `/`) that reach the app on any host not claimed by a
    /// host route; the longest prefix wins.
    pub path_prefixes: Vec<String>,
    /// Validated by the control plane: weights sum to 100 and name versions in `versions`.
    /// Empty weights mean all traffic goes to `default_version`.
    pub policy: TrafficPolicy,
    /// The app's current (serving) version, for an empty policy.
    pub default_version: Option<u32>,
    pub versions: Vec<VersionRoute>,
    /// With no ready backend, hold requests and ask for capacity instead of failing fast.
    pub scale_to_zero: bool,
}

/// The ready instances of one version. Draining instances are never listed.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRoute {
    pub version: u32,
    pub backends: Vec<Backend>,
}

/// A ready instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    pub instance: String,
    pub addr: SocketAddr,
}
