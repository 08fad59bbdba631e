//! The pure routing decisions: which version a request goes to ([`pick_version`]) and
//! which instance serves it ([`pick_backend`]). Randomness is injected, so both are
//! deterministic for given inputs and tested with tables.

use http::HeaderMap;

use crate::table::{BackendState, CompiledApp, CompiledSticky, Matcher};

/// What the version choice may look at: the request's headers and raw query string.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    headers: &'a HeaderMap,
    query: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    pub fn new(headers: &'a HeaderMap, query: Option<&'a str>) -> Self {
        RequestFacts { headers, query }
    }

    fn cookie(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
            .find_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                let (n, v) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
                (n == name).then(|| strip_quotes(v))
            })
    }

    fn query_has(&self, name: &[u8], value: &[u8]) -> bool {
        let Some(query) = self.query else {
            return false;
        };
        query.as_bytes().split(|&b| b == b'&').any(|pair| {
            let (n, v) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            decoded_eq(n, name) && decoded_eq(v, value)
        })
    }
}

fn strip_quotes(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether the form-urlencoded `raw` decodes to exactly `want`, without allocating.
fn decoded_eq(raw: &[u8], want: &[u8]) -> bool {
    let mut i = 0;
    let mut j = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'+' => {
                i += 1;
                b' '
            }
            b'%' => {
                match (
                    raw.get(i + 1).copied().and_then(hex_val),
                    raw.get(i + 2).copied().and_then(hex_val),
                ) {
                    (Some(h), Some(l)) => {
                        i += 3;
                        h * 16 + l
                    }
                    _ => {
                        i += 1;
                        b'%'
                    }
                }
            }
            b => {
                i += 1;
                b
            }
        };
        if want.get(j) != Some(&b) {
            return false;
        }
        j += 1;
    }
    j == want.len()
}

impl Matcher {
    fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        match self {
            Matcher::HeaderExact(name, want) => facts
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes() == &**want),
            Matcher::HeaderPrefix(name, want) => facts
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.as_bytes().starts_with(want)),
            Matcher::HeaderRegex(name, re) => facts
                .headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|s| re.is_match(s))),
            Matcher::Cookie { name, value } => facts.cookie(name) == Some(&**value),
            Matcher::Query { name, value } => facts.query_has(name, value),
            Matcher::HeaderHash(name, from, to) => facts
                .headers
                .get(name)
                .is_some_and(|v| in_hash_range(v.as_bytes(), *from, *to)),
            Matcher::CookieHash(name, from, to) => facts
                .cookie(name)
                .is_some_and(|v| in_hash_range(v, *from, *to)),
            Matcher::Never => false,
        }
    }
}

fn in_hash_range(value: &[u8], from: u32, to: u32) -> bool {
    let point = (fnv1a(value) % 100) as u32;
    (from..to).contains(&point)
}

/// 64-bit FNV-1a: a stable hash for sticky assignment (the same value maps to the same
/// bucket on every gateway and across restarts).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn bucket(buckets: &[(u32, u32)], point: u32) -> Option<u32> {
    buckets
        .iter()
        .find(|&&(upper, _)| point < upper)
        .or(buckets.last())
        .map(|&(_, version)| version)
}

/// Chooses the version for a request: the first matching rule; else, with weights, the
/// sticky key's bucket when the sticky header or cookie is present, or `rand`'s bucket;
/// else the app's default version. Buckets are laid out by ascending version number, so
/// raising the newest version's weight only moves clients toward it.
pub fn pick_version(app: &CompiledApp, facts: &RequestFacts<'_>, rand: u32) -> Option<u32> {
    if let Some(rule) = app.rules.iter().find(|r| r.matcher.matches(facts)) {
        return Some(rule.version);
    }
    let Some(&(total, _)) = app.buckets.last() else {
        return app.default_version;
    };
    if total == 0 {
        return app.default_version;
    }
    let sticky_key = app.sticky.as_ref().and_then(|s| match s {
        CompiledSticky::Header(name) => facts.headers.get(name).map(|v| v.as_bytes()),
        CompiledSticky::Cookie(name) => facts.cookie(name),
    });
    let point = match sticky_key {
        Some(key) => (fnv1a(key) % u64::from(total)) as u32,
        None => rand % total,
    };
    bucket(&app.buckets, point)
}

/// Power of two choices over `n` candidates: two distinct candidates drawn from `r1`, `r2`;
/// the one with fewer requests in flight wins, ties go to the lower index.
fn p2c(n: usize, load: impl Fn(usize) -> u64, r1: u32, r2: u32) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let i = r1 as usize % n;
            let mut j = r2 as usize % (n - 1);
            if j >= i {
                j += 1;
            }
            let (lo, hi) = if i < j { (i, j) } else { (j, i) };
            Some(if load(hi) < load(lo) { hi } else { lo })
        }
    }
}

/// Chooses a backend by power of two choices on in-flight requests; `None` when there is
/// none.
pub fn pick_backend(backends: &[BackendState], r1: u32, r2: u32) -> Option<usize> {
    p2c(backends.len(), |i| backends[i].inflight(), r1, r2)
}

/// Like [`pick_backend`], never choosing `exclude` (the backend that just failed).
pub fn pick_backend_excluding(
    backends: &[BackendState],
    exclude: usize,
    r1: u32,
    r2: u32,
) -> Option<usize> {
    if exclude >= backends.len() {
        return pick_backend(backends, r1, r2);
    }
    let actual = |k: usize| if k >= exclude { k + 1 } else { k };
    p2c(
        backends.len() - 1,
        |k| backends[actual(k)].inflight(),
        r1,
        r2,
    )
    .map(actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::GatewayMetrics;
    use crate::route::{AppRoute, Backend, VersionRoute};
    use http::HeaderValue;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use tideway_api_types::{
        HeaderMatch, MatchRule, Sticky, TrafficPolicy, ValueMatch, VersionWeight,
    };

    fn route(policy: TrafficPolicy) -> AppRoute {
        AppRoute {
            namespace: "ns".into(),
            app: "shop".into(),
            hosts: vec![],
            path_prefixes: vec![],
            policy,
            default_version: Some(1),
            versions: (1..=3)
                .map(|v| VersionRoute {
                    version: v,
                    backends: vec![Backend {
                        instance: format!("i{v}"),
                        addr: "127.0.0.1:1".parse().unwrap(),
                    }],
                })
                .collect(),
            scale_to_zero: false,
        }
    }

    fn weights(w: &[(u32, u32)]) -> Vec<VersionWeight> {
        w.iter()
            .map(|&(version, weight)| VersionWeight { version, weight })
            .collect()
    }

    fn header_rule(name: &str, m: (&str, &str), version: u32) -> MatchRule {
        let (kind, value) = m;
        MatchRule {
            header: Some(HeaderMatch {
                name: name.into(),
                exact: (kind == "exact").then(|| value.into()),
                prefix: (kind == "prefix").then(|| value.into()),
                regex: (kind == "regex").then(|| value.into()),
            }),
            cookie: None,
            query: None,
            hash: None,
            version,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn distribution_90_10_within_two_points() {
        let metrics = GatewayMetrics::new();
        let app = CompiledApp::compile(
            &route(TrafficPolicy {
                weights: weights(&[(2, 10), (1, 90)]),
                ..Default::default()
            }),
            &metrics,
        );
        let h = HeaderMap::new();
        let facts = RequestFacts::new(&h, None);
        let mut rng = StdRng::seed_from_u64(42);
        let n = 10_000;
        let v2 = (0..n)
            .filter(|_| pick_version(&app, &facts, rng.gen()) == Some(2))
            .count();
        let pct = v2 as f64 * 100.0 / n as f64;
        assert!((8.0..=12.0).contains(&pct), "v2 got {pct}%");
    }

    #[test]
    fn buckets_follow_version_order() {
        let metrics = GatewayMetrics::new();
        let app = CompiledApp::compile(
            &route(TrafficPolicy {
                weights: weights(&[(2, 10), (1, 90)]),
                ..Default::default()
            }),
            &metrics,
        );
        let h = HeaderMap::new();
        let f = RequestFacts::new(&h, None);
        let cases = [(0, 1), (89, 1), (90, 2), (99, 2), (100, 1), (190, 2)];
        for (rand, want) in cases {
            assert_eq!(pick_version(&app, &f, rand), Some(want), "rand {rand}");
        }
    }

    #[test]
    fn rules_win_over_weights() {
        let metrics = GatewayMetrics::new();
        let cookie_rule = MatchRule {
            header: None,
            cookie: Some(ValueMatch {
                name: "canary".into(),
                value: "yes".into(),
            }),
            query: None,
            hash: None,
            version: 3,
        };
        let query_rule = MatchRule {
            header: None,
            cookie: None,
            hash: None,
            query: Some(ValueMatch {
                name: "v".into(),
                value: "two words".into(),
            }),
            version: 2,
        };
        let app = CompiledApp::compile(
            &route(TrafficPolicy {
                weights: weights(&[(1, 100)]),
                rules: vec![
                    header_rule("X-Canary", ("exact", "always"), 2),
                    header_rule("x-beta", ("prefix", "team-"), 3),
                    header_rule("User-Agent", ("regex", ".*Chrome/1[0-9]{2}.*"), 2),
                    cookie_rule,
                    query_rule,
                ],
                sticky: None,
            }),
            &metrics,
        );
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, u32);
        let cases: &[Case] = &[
            (&[], None, 1),
            (&[("x-canary", "always")], None, 2),
            (&[("x-canary", "ALWAYS")], None, 1),
            (&[("x-canary", "no"), ("x-canary", "always")], None, 2),
            (&[("x-beta", "team-red")], None, 3),
            (&[("x-beta", "team")], None, 1),
            (&[("user-agent", "Mozilla Chrome/120.0 Safari")], None, 2),
            (&[("user-agent", "Mozilla Chrome/99.0")], None, 1),
            (&[("cookie", "a=b; canary=yes")], None, 3),
            (&[("cookie", "a=b"), ("cookie", "canary=\"yes\"")], None, 3),
            (&[("cookie", "canary=yess")], None, 1),
            (&[], Some("x=1&v=two+words"), 2),
            (&[], Some("v=two%20words"), 2),
            (&[], Some("v=two"), 1),
            (&[], Some("vv=two+words"), 1),
        ];
        for &(hs, query, want) in cases {
            let h = headers(hs);
            let f = RequestFacts::new(&h, query);
            for rand in [0, 50, 99] {
                assert_eq!(pick_version(&app, &f, rand), Some(want), "{hs:?} {query:?}");
            }
        }
    }

    #[test]
    fn sticky_is_stable_and_moves_only_toward_new_version() {
        let metrics = GatewayMetrics::new();
        let policy = |new_weight: u32| TrafficPolicy {
            weights: weights(&[(1, 100 - new_weight), (2, new_weight)]),
            rules: vec![],
            sticky: Some(Sticky {
                header: Some("X-User".into()),
                cookie: None,
            }),
        };
        let at10 = CompiledApp::compile(&route(policy(10)), &metrics);
        let at30 = CompiledApp::compile(&route(policy(30)), &metrics);
        let mut on_v2 = 0;
        for user in 0..1000 {
            let h = headers(&[("x-user", &format!("user-{user}"))]);
            let f = RequestFacts::new(&h, None);
            let first = pick_version(&at10, &f, 0);
            for rand in [1, 57, 98, 12345] {
                assert_eq!(pick_version(&at10, &f, rand), first, "sticky user-{user}");
            }
            if first == Some(2) {
                on_v2 += 1;
                assert_eq!(
                    pick_version(&at30, &f, 0),
                    Some(2),
                    "user-{user} moved back"
                );
            }
        }
        assert!(
            (50..=150).contains(&on_v2),
            "{on_v2} of 1000 users on v2 at 10%"
        );
        // Without the sticky header, the dice decide.
        let h = HeaderMap::new();
        let f = RequestFacts::new(&h, None);
        assert_eq!(pick_version(&at10, &f, 95), Some(2));
        assert_eq!(pick_version(&at10, &f, 5), Some(1));
    }

    #[test]
    fn sticky_cookie_and_empty_weights() {
        let metrics = GatewayMetrics::new();
        let app = CompiledApp::compile(
            &route(TrafficPolicy {
                weights: weights(&[(1, 50), (2, 50)]),
                rules: vec![],
                sticky: Some(Sticky {
                    header: None,
                    cookie: Some("sid".into()),
                }),
            }),
            &metrics,
        );
        let h = headers(&[("cookie", "sid=abc")]);
        let f = RequestFacts::new(&h, None);
        let first = pick_version(&app, &f, 0);
        assert!((0..100).all(|r| pick_version(&app, &f, r) == first));

        let empty = CompiledApp::compile(&route(TrafficPolicy::default()), &metrics);
        assert_eq!(pick_version(&empty, &f, 7), Some(1));
        let mut none = route(TrafficPolicy::default());
        none.default_version = None;
        let none = CompiledApp::compile(&none, &metrics);
        assert_eq!(pick_version(&none, &f, 7), None);
    }

    #[test]
    fn invalid_regex_never_matches() {
        let metrics = GatewayMetrics::new();
        let app = CompiledApp::compile(
            &route(TrafficPolicy {
                weights: vec![],
                rules: vec![header_rule("x", ("regex", "(unclosed"), 2)],
                sticky: None,
            }),
            &metrics,
        );
        let h = headers(&[("x", "(unclosed")]);
        assert_eq!(pick_version(&app, &RequestFacts::new(&h, None), 0), Some(1));
    }

    fn backends(loads: &[u64]) -> Vec<BackendState> {
        let metrics = GatewayMetrics::new();
        loads
            .iter()
            .enumerate()
            .map(|(i, &load)| {
                let instance: std::sync::Arc<str> = format!("i{i}").into();
                let stats = metrics.series("ns", "app", 1, &instance);
                for _ in 0..load {
                    stats.begin(0);
                }
                BackendState::new(instance, "127.0.0.1:1".parse().unwrap(), stats)
            })
            .collect()
    }

    #[test]
    fn p2c_table() {
        type Case<'a> = (&'a [u64], u32, u32, Option<usize>);
        let cases: &[Case] = &[
            (&[], 0, 0, None),
            (&[5], 3, 9, Some(0)),
            (&[0, 0], 0, 0, Some(0)),
            (&[0, 0], 1, 0, Some(0)),
            (&[3, 1], 0, 0, Some(1)),
            (&[1, 3], 1, 7, Some(0)),
            // r1 picks 2, r2 picks 0 (then 0 < 2): lower load wins.
            (&[4, 0, 1], 2, 0, Some(2)),
            // r1 picks 1, r2 % 2 = 1 → shifted to 2: tie → lower index.
            (&[9, 2, 2], 1, 1, Some(1)),
        ];
        for &(loads, r1, r2, want) in cases {
            assert_eq!(
                pick_backend(&backends(loads), r1, r2),
                want,
                "{loads:?} {r1} {r2}"
            );
        }
    }

    #[test]
    fn p2c_prefers_idle_and_excludes() {
        let b = backends(&[10, 0, 10, 10]);
        let mut rng = StdRng::seed_from_u64(7);
        let mut hits = [0u32; 4];
        for _ in 0..10_000 {
            hits[pick_backend(&b, rng.gen(), rng.gen()).unwrap()] += 1;
        }
        // The idle backend wins whenever it is drawn: 1 − (3/4 · 2/3) = 1/2 of the time.
        assert!((4500..5500).contains(&hits[1]), "{hits:?}");
        for _ in 0..1000 {
            let pick = pick_backend_excluding(&b, 1, rng.gen(), rng.gen()).unwrap();
            assert_ne!(pick, 1);
            assert!(pick < 4);
        }
        assert_eq!(pick_backend_excluding(&b[..1], 0, 1, 2), None);
        assert_eq!(pick_backend_excluding(&b[..2], 0, 1, 2), Some(1));
    }

    #[test]
    fn decoding() {
        assert!(decoded_eq(b"a%2Fb", b"a/b"));
        assert!(decoded_eq(b"a+b", b"a b"));
        assert!(decoded_eq(b"100%", b"100%"));
        assert!(decoded_eq(b"%zz", b"%zz"));
        assert!(decoded_eq(b"%4", b"%4"));
        assert!(!decoded_eq(b"ab", b"abc"));
        assert!(!decoded_eq(b"abc", b"ab"));
    }
}
