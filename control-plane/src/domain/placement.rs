//! Where an app's traffic goes and how many instances each of its versions gets, from its
//! stored state: the user's traffic policy, or, while a release is active, the release's
//! current step (which then owns the split), with the autoscaler's per-version counts on top.

use std::collections::BTreeMap;

use tideway_api_types::{App, HeaderMatch, MatchRule, Release, TrafficPolicy, VersionWeight};
use tideway_rollout::{Context, Routing};

use crate::domain::traffic::referenced_versions;
use crate::store::AppRouting;

/// The header that reaches a blue-green target before promotion.
pub const PREVIEW_HEADER: &str = "x-tideway-preview";

/// The effective routing and baseline sizes of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub traffic: TrafficPolicy,
    /// Hosts that reach the app besides its own (a blue-green preview host).
    pub extra_hosts: Vec<String>,
    /// Instances per version before autoscaler overrides; versions absent here do not run.
    pub replicas: BTreeMap<u32, u32>,
    /// Whether an active release decides the sizes (the autoscaler then only scales the
    /// release's target and, for canary and gray, its stable version).
    pub release_owned: bool,
}

/// The context of a release of `app` (`None`: one about to start): the app's size and the
/// version serving before the release started.
pub fn context_of(app: &App, release: Option<&Release>) -> Context {
    Context {
        replicas: app.replicas.max(1),
        stable_version: release
            .and_then(|r| r.progress.stable_version)
            .or(app.current_version),
    }
}

/// The active release's routing, when it has one.
pub fn release_routing(app: &AppRouting) -> Option<Routing> {
    let release = app.release.as_ref()?;
    tideway_rollout::routing(release, &context_of(&app.record.app, Some(release)))
}

pub fn place(app: &AppRouting) -> Placement {
    match release_routing(app) {
        Some(routing) => from_release(&routing),
        None => from_policy(app),
    }
}

fn from_release(r: &Routing) -> Placement {
    let weights = match (r.stable, r.weight) {
        (Some(stable), w) if w < 100 && stable != r.target => vec![
            VersionWeight {
                version: stable,
                weight: 100 - w,
            },
            VersionWeight {
                version: r.target,
                weight: w,
            },
        ],
        _ => vec![VersionWeight {
            version: r.target,
            weight: 100,
        }],
    };
    let mut rules = Vec::new();
    let mut extra_hosts = Vec::new();
    if r.preview {
        rules.push(header_rule(PREVIEW_HEADER, "1", r.target));
        if let Some(host) = &r.preview_host {
            rules.push(header_rule("host", host, r.target));
            extra_hosts.push(host.clone());
        }
    }
    rules.extend(r.rules.iter().cloned());
    let mut replicas = BTreeMap::new();
    if let Some(stable) = r.stable.filter(|s| *s != r.target) {
        replicas.insert(stable, r.stable_replicas);
    }
    replicas.insert(r.target, r.target_replicas);
    Placement {
        traffic: TrafficPolicy {
            weights: weights.into_iter().filter(|w| w.weight > 0).collect(),
            rules,
            sticky: r.sticky.clone(),
        },
        extra_hosts,
        replicas,
        release_owned: true,
    }
}

fn header_rule(name: &str, exact: &str, version: u32) -> MatchRule {
    MatchRule {
        header: Some(HeaderMatch {
            name: name.into(),
            exact: Some(exact.into()),
            prefix: None,
            regex: None,
        }),
        cookie: None,
        query: None,
        hash: None,
        version,
    }
}

/// Without a release: the serving version at the app's replica count, and every other
/// version the traffic policy sends traffic to or names in a rule, sized to its share of
/// the traffic (at least one instance).
fn from_policy(app: &AppRouting) -> Placement {
    let replicas = app.record.app.replicas;
    let traffic = app.traffic.clone().unwrap_or_default();
    let mut sizes = BTreeMap::new();
    if let Some(current) = app.record.app.current_version {
        sizes.insert(current, replicas);
    }
    for version in referenced_versions(&traffic) {
        if sizes.contains_key(&version) {
            continue;
        }
        let weight = traffic
            .weights
            .iter()
            .find(|w| w.version == version)
            .map_or(0, |w| w.weight);
        sizes.insert(version, (replicas * weight).div_ceil(100).max(1));
    }
    Placement {
        traffic,
        extra_hosts: Vec::new(),
        replicas: sizes,
        release_owned: false,
    }
}
