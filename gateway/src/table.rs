//! The compiled route table: the [`RouteTable`] turned into lookup structures once per
//! change, so that the request path only does hash lookups, prefix comparisons and reads of
//! atomics.
//!
//! A compiled table is immutable. State that must outlive a table swap (in-flight counts and
//! metrics per instance, the activation queue per app) lives in shared cells that each new
//! table takes over from the registry in [`GatewayMetrics`] or from the previous table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use http::uri::Authority;
use http::HeaderName;
use regex::Regex;
use tideway_api_types::{HeaderMatch, MatchRule, Sticky, ValueMatch};

use crate::metrics::{GatewayMetrics, SeriesStats};
use crate::route::{AppRoute, RouteTable};

/// A [`RouteTable`] compiled for lookups.
#[derive(Debug, Default)]
pub struct CompiledTable {
    pub(crate) apps: Vec<CompiledApp>,
    /// Exact host (lowercase, no port) → index into `apps`.
    hosts: HashMap<Box<str>, usize>,
    /// Path prefixes, longest first, with the index of the app they reach.
    prefixes: Vec<(Box<str>, usize)>,
    /// `namespace/app` → index into `apps`, for requests waiting on an activation.
    by_key: HashMap<Box<str>, usize>,
    /// Compiled header regexes by pattern, reused by the next table.
    regexes: HashMap<Box<str>, Regex>,
}

/// One app of a compiled table.
#[derive(Debug)]
pub struct CompiledApp {
    pub(crate) namespace: Arc<str>,
    pub(crate) app: Arc<str>,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) sticky: Option<CompiledSticky>,
    /// Cumulative weight buckets ordered by version number: `(upper bound, version)`.
    pub(crate) buckets: Vec<(u32, u32)>,
    pub(crate) default_version: Option<u32>,
    /// Sorted by version number; includes every version the policy can choose, with an
    /// empty backend list when it has no ready instance.
    pub(crate) versions: Vec<CompiledVersion>,
    pub(crate) scale_to_zero: bool,
    pub(crate) shared: Arc<AppShared>,
}

/// The ready backends of one version.
#[derive(Debug)]
pub struct CompiledVersion {
    pub(crate) version: u32,
    pub(crate) backends: Vec<BackendState>,
    /// Series for requests the gateway answers itself after choosing this version (no ready
    /// instance, activation timeout), labelled with an empty instance.
    pub(crate) gateway_series: Arc<SeriesStats>,
}

/// A ready instance with its live load and metrics.
#[derive(Debug, Clone)]
pub struct BackendState {
    pub(crate) instance: Arc<str>,
    pub(crate) addr: SocketAddr,
    pub(crate) authority: Authority,
    pub(crate) stats: Arc<SeriesStats>,
}

impl BackendState {
    pub(crate) fn new(instance: Arc<str>, addr: SocketAddr, stats: Arc<SeriesStats>) -> Self {
        // A socket address always forms a valid authority; fall back to localhost so this
        // constructor cannot fail.
        let authority = Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        BackendState {
            instance,
            addr,
            authority,
            stats,
        }
    }

    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Where the instance listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests currently in flight to this instance through this gateway.
    pub fn inflight(&self) -> u64 {
        self.stats.inflight()
    }
}

/// Per-app state that survives table swaps: activation dedupe and the held-request queue.
#[derive(Debug)]
pub(crate) struct AppShared {
    pub(crate) key: Box<str>,
    /// Milliseconds (gateway clock) of the last activation sent, plus one; 0 = never.
    pub(crate) last_activation_ms: AtomicU64,
    /// Requests held waiting for capacity.
    pub(crate) waiting: AtomicUsize,
}

impl AppShared {
    fn new(key: Box<str>) -> Self {
        AppShared {
            key,
            last_activation_ms: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Claims the right to send an activation at `now_ms` when none was sent in the last
    /// `min_gap_ms`.
    pub(crate) fn claim_activation(&self, now_ms: u64, min_gap_ms: u64) -> bool {
        let stamp = now_ms.saturating_add(1);
        let last = self.last_activation_ms.load(Ordering::Relaxed);
        if last != 0 && stamp.saturating_sub(last) < min_gap_ms {
            return false;
        }
        self.last_activation_ms
            .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// A compiled traffic rule.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) matcher: Matcher,
    pub(crate) version: u32,
}

#[derive(Debug)]
pub(crate) enum Matcher {
    HeaderExact(HeaderName, Box<[u8]>),
    HeaderPrefix(HeaderName, Box<[u8]>),
    /// Full-match semantics (the pattern is anchored at both ends), as in Envoy and Istio.
    HeaderRegex(HeaderName, Regex),
    Cookie {
        name: Box<[u8]>,
        value: Box<[u8]>,
    },
    Query {
        name: Box<[u8]>,
        value: Box<[u8]>,
    },
    /// FNV-1a of a header's value modulo 100 in `from..to`.
    HeaderHash(HeaderName, u32, u32),
    /// FNV-1a of a cookie's value modulo 100 in `from..to`.
    CookieHash(Box<[u8]>, u32, u32),
    /// An invalid rule (bad header name or regex): never matches.
    Never,
}

/// What identifies a client for sticky assignment.
#[derive(Debug)]
pub(crate) enum CompiledSticky {
    Header(HeaderName),
    Cookie(Box<[u8]>),
}

fn app_key(namespace: &str, app: &str) -> String {
    format!("{namespace}/{app}")
}

impl CompiledTable {
    /// Compiles `table`, taking per-app state from `previous` and per-instance series from
    /// `metrics`, so that a swap keeps in-flight counts, metrics and held requests.
    pub fn compile(
        table: &RouteTable,
        previous: Option<&CompiledTable>,
        metrics: &GatewayMetrics,
    ) -> CompiledTable {
        let mut compiled = CompiledTable::default();
        let no_regexes = HashMap::new();
        let old_regexes = previous.map_or(&no_regexes, |p| &p.regexes);
        for route in &table.apps {
            let key = app_key(&route.namespace, &route.app);
            if compiled.by_key.contains_key(key.as_str()) {
                tracing::warn!(app = %key, "GatewayRouteDuplicateApp");
                continue;
            }
            let index = compiled.apps.len();
            let shared = previous
                .and_then(|p| p.app_by_key(&key))
                .map(|a| Arc::clone(&a.shared))
                .unwrap_or_else(|| Arc::new(AppShared::new(key.clone().into_boxed_str())));
            let app = compile_app(route, shared, metrics, old_regexes, &mut compiled.regexes);
            for host in &route.hosts {
                let host = host.to_ascii_lowercase();
                if compiled.hosts.contains_key(host.as_str()) {
                    tracing::warn!(app = %key, %host, "GatewayRouteDuplicateHost");
                    continue;
                }
                compiled.hosts.insert(host.into_boxed_str(), index);
            }
            for prefix in &route.path_prefixes {
                if compiled.prefixes.iter().any(|(p, _)| **p == **prefix) {
                    tracing::warn!(app = %key, %prefix, "GatewayRouteDuplicatePrefix");
                    continue;
                }
                compiled
                    .prefixes
                    .push((prefix.clone().into_boxed_str(), index));
            }
            compiled.by_key.insert(key.into_boxed_str(), index);
            compiled.apps.push(app);
        }
        compiled
            .prefixes
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        compiled
    }

    /// The apps, in table order.
    pub fn apps(&self) -> &[CompiledApp] {
        &self.apps
    }

    /// The app reached by an exact host (lowercase, no port).
    pub fn route_host(&self, host: &str) -> Option<usize> {
        self.hosts.get(host).copied()
    }

    /// The app reached by the longest matching path prefix. A prefix matches whole path
    /// segments: `/api` matches `/api` and `/api/x` but not `/apiary`.
    pub fn route_prefix(&self, path: &str) -> Option<usize> {
        self.prefixes
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, index)| *index)
    }

    /// Host route first, then path prefix.
    pub fn route(&self, host: &str, path: &str) -> Option<usize> {
        self.route_host(host).or_else(|| self.route_prefix(path))
    }

    pub(crate) fn app_index(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    fn app_by_key(&self, key: &str) -> Option<&CompiledApp> {
        self.app_index(key).and_then(|i| self.apps.get(i))
    }

    /// The app of this namespace and name.
    pub fn app(&self, namespace: &str, app: &str) -> Option<&CompiledApp> {
        self.app_by_key(&app_key(namespace, app))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    prefix.ends_with('/') || path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'
}

impl CompiledApp {
    /// Compiles one app on its own, with fresh shared state (for tests and tools).
    pub fn compile(route: &AppRoute, metrics: &GatewayMetrics) -> CompiledApp {
        let key = app_key(&route.namespace, &route.app).into_boxed_str();
        compile_app(
            route,
            Arc::new(AppShared::new(key)),
            metrics,
            &HashMap::new(),
            &mut HashMap::new(),
        )
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.app
    }

    /// The index into `versions` of a version number.
    pub(crate) fn version_index(&self, version: u32) -> Option<usize> {
        self.versions
            .binary_search_by_key(&version, |v| v.version)
            .ok()
    }

    /// The ready backends of a version (empty when it has none or is unknown).
    pub fn backends(&self, version: u32) -> &[BackendState] {
        self.version_index(version)
            .and_then(|i| self.versions.get(i))
            .map_or(&[], |v| v.backends.as_slice())
    }
}

fn compile_app(
    route: &AppRoute,
    shared: Arc<AppShared>,
    metrics: &GatewayMetrics,
    old_regexes: &HashMap<Box<str>, Regex>,
    regexes: &mut HashMap<Box<str>, Regex>,
) -> CompiledApp {
    let namespace: Arc<str> = Arc::from(route.namespace.as_str());
    let app: Arc<str> = Arc::from(route.app.as_str());
    let policy = &route.policy;

    let rules = policy
        .rules
        .iter()
        .map(|rule| CompiledRule {
            matcher: compile_matcher(rule, old_regexes, regexes),
            version: rule.version,
        })
        .collect();

    let sticky = policy.sticky.as_ref().and_then(compile_sticky);

    let mut weights: Vec<(u32, u32)> = policy
        .weights
        .iter()
        .filter(|w| w.weight > 0)
        .map(|w| (w.version, w.weight))
        .collect();
    weights.sort_by_key(|&(version, _)| version);
    let mut buckets = Vec::with_capacity(weights.len());
    let mut upper = 0u32;
    for (version, weight) in weights {
        upper = upper.saturating_add(weight);
        buckets.push((upper, version));
    }

    // Every version the policy can choose gets an entry, so that "no ready backend" and
    // the gateway's own answers are attributed to it.
    let mut numbers: Vec<u32> = route.versions.iter().map(|v| v.version).collect();
    numbers.extend(policy.weights.iter().map(|w| w.version));
    numbers.extend(policy.rules.iter().map(|r| r.version));
    numbers.extend(route.default_version);
    numbers.sort_unstable();
    numbers.dedup();
    let versions = numbers
        .into_iter()
        .map(|number| {
            let mut backends = Vec::new();
            for v in route.versions.iter().filter(|v| v.version == number) {
                for b in &v.backends {
                    let instance: Arc<str> = Arc::from(b.instance.as_str());
                    let stats = metrics.series(&namespace, &app, number, &instance);
                    backends.push(BackendState::new(instance, b.addr, stats));
                }
            }
            CompiledVersion {
                version: number,
                backends,
                gateway_series: metrics.series(&namespace, &app, number, ""),
            }
        })
        .collect();

    CompiledApp {
        namespace,
        app,
        rules,
        sticky,
        buckets,
        default_version: route.default_version,
        versions,
        scale_to_zero: route.scale_to_zero,
        shared,
    }
}

fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()
}

fn compile_matcher(
    rule: &MatchRule,
    old_regexes: &HashMap<Box<str>, Regex>,
    regexes: &mut HashMap<Box<str>, Regex>,
) -> Matcher {
    if let Some(HeaderMatch {
        name,
        exact,
        prefix,
        regex,
    }) = &rule.header
    {
        let Some(name) = header_name(name) else {
            tracing::warn!(header = %name, "GatewayRuleHeaderInvalid");
            return Matcher::Never;
        };
        if let Some(exact) = exact {
            return Matcher::HeaderExact(name, exact.as_bytes().into());
        }
        if let Some(prefix) = prefix {
            return Matcher::HeaderPrefix(name, prefix.as_bytes().into());
        }
        if let Some(pattern) = regex {
            if let Some(re) = regexes.get(pattern.as_str()) {
                return Matcher::HeaderRegex(name, re.clone());
            }
            let re = match old_regexes.get(pattern.as_str()) {
                Some(re) => re.clone(),
                None => match Regex::new(&format!("^(?:{pattern})$")) {
                    Ok(re) => re,
                    Err(error) => {
                        tracing::warn!(%pattern, %error, "GatewayRuleRegexInvalid");
                        return Matcher::Never;
                    }
                },
            };
            regexes.insert(pattern.clone().into_boxed_str(), re.clone());
            return Matcher::HeaderRegex(name, re);
        }
        return Matcher::Never;
    }
    if let Some(h) = &rule.hash {
        if let Some(name) = &h.header {
            return match header_name(name) {
                Some(name) => Matcher::HeaderHash(name, h.from, h.to),
                None => Matcher::Never,
            };
        }
        if let Some(name) = &h.cookie {
            return Matcher::CookieHash(name.as_bytes().into(), h.from, h.to);
        }
        return Matcher::Never;
    }
    if let Some(ValueMatch { name, value }) = &rule.cookie {
        return Matcher::Cookie {
            name: name.as_bytes().into(),
            value: value.as_bytes().into(),
        };
    }
    if let Some(ValueMatch { name, value }) = &rule.query {
        return Matcher::Query {
            name: name.as_bytes().into(),
            value: value.as_bytes().into(),
        };
    }
    Matcher::Never
}

fn compile_sticky(sticky: &Sticky) -> Option<CompiledSticky> {
    if let Some(name) = &sticky.header {
        return header_name(name).map(CompiledSticky::Header);
    }
    sticky
        .cookie
        .as_ref()
        .map(|name| CompiledSticky::Cookie(name.as_bytes().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Backend, VersionRoute};
    use tideway_api_types::TrafficPolicy;

    fn app(name: &str, hosts: &[&str], prefixes: &[&str]) -> AppRoute {
        AppRoute {
            namespace: "default".into(),
            app: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            policy: TrafficPolicy::default(),
            default_version: Some(1),
            versions: vec![VersionRoute {
                version: 1,
                backends: vec![Backend {
                    instance: format!("{name}-1"),
                    addr: "127.0.0.1:9".parse().unwrap(),
                }],
            }],
            scale_to_zero: false,
        }
    }

    #[test]
    fn host_then_longest_prefix() {
        let metrics = GatewayMetrics::new();
        let table = RouteTable {
            apps: vec![
                app("a", &["a.default.localhost"], &["/"]),
                app("b", &[], &["/api"]),
                app("c", &[], &["/api/v2"]),
            ],
        };
        let t = CompiledTable::compile(&table, None, &metrics);
        let cases = [
            ("a.default.localhost", "/api/v2/x", Some(0)),
            ("other", "/api/v2/x", Some(2)),
            ("other", "/api/v2", Some(2)),
            ("other", "/api/v22", Some(1)),
            ("other", "/api", Some(1)),
            ("other", "/apiary", Some(0)),
            ("other", "/", Some(0)),
        ];
        for (host, path, want) in cases {
            assert_eq!(t.route(host, path), want, "{host} {path}");
        }
        let only_b = CompiledTable::compile(
            &RouteTable {
                apps: vec![app("b", &[], &["/api"])],
            },
            None,
            &metrics,
        );
        assert_eq!(only_b.route("x", "/other"), None);
    }

    #[test]
    fn swap_keeps_shared_state() {
        let metrics = GatewayMetrics::new();
        let table = RouteTable {
            apps: vec![app("a", &["a"], &[])],
        };
        let t1 = CompiledTable::compile(&table, None, &metrics);
        t1.apps[0].versions[0].backends[0].stats.begin(0);
        t1.apps[0].shared.waiting.store(3, Ordering::Relaxed);
        let t2 = CompiledTable::compile(&table, Some(&t1), &metrics);
        assert_eq!(t2.apps[0].versions[0].backends[0].inflight(), 1);
        assert_eq!(t2.apps[0].shared.waiting.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn activation_dedupe() {
        let shared = AppShared::new("a/b".into());
        assert!(shared.claim_activation(0, 500));
        assert!(!shared.claim_activation(499, 500));
        assert!(shared.claim_activation(500, 500));
        assert!(!shared.claim_activation(900, 500));
        assert!(shared.claim_activation(1000, 500));
    }
}
