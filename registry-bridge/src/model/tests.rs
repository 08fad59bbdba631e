//! Model tests on a fake clock: leases, eviction, self-preservation, delta and hashcode,
//! status overrides, TTL checks, the blocking index and the cross-protocol mapping.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::error::Error;

const T0: u64 = 1_700_000_000_000;

fn registry(config: RegistryConfig) -> (Arc<Registry>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    (Registry::with_clock(config, clock.clone()), clock)
}

fn reg(app: &str, id: &str) -> EurekaRegistration {
    EurekaRegistration {
        instance_id: id.into(),
        app: app.into(),
        host_name: "10.0.0.5".into(),
        ip_addr: "10.0.0.5".into(),
        status: Some(EurekaStatus::Up),
        port: 8080,
        port_enabled: true,
        data_center: Some(DataCenter::default()),
        vip_address: app.to_lowercase(),
        ..EurekaRegistration::default()
    }
}

fn status_of(r: &Registry, app: &str, id: &str) -> EurekaStatus {
    r.eureka_instance(Some(app), id).unwrap().status
}

fn ttl_service(
    name: &str,
    id: &str,
    ttl: Duration,
    deregister: Option<Duration>,
) -> ServiceDefinition {
    ServiceDefinition {
        id: Some(id.into()),
        name: name.into(),
        address: "127.0.0.1".into(),
        port: 9000,
        meta: BTreeMap::from([("lane".into(), "canary".into())]),
        checks: vec![CheckDefinition {
            id: None,
            name: None,
            service_id: None,
            notes: String::new(),
            status: Some(CheckStatus::Passing),
            kind: CheckKind::Ttl { ttl },
            interval: None,
            timeout: None,
            deregister_critical_after: deregister,
        }],
        ..ServiceDefinition::default()
    }
}

#[test]
fn lease_expires_duration_after_last_renewal_and_is_evicted_on_schedule() {
    let (r, clock) = registry(RegistryConfig::default());
    r.eureka_register("ORDER", reg("order", "i-1")).unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(r.eureka_renew("ORDER", "i-1", None), Renewal::Renewed);
    // The first eviction run (60 s) finds the lease alive: it expires at 30 + 90 s.
    clock.advance(Duration::from_secs(30));
    assert_eq!(r.tick(), TickOutcome::default());
    // No run is due before 120 s.
    clock.advance(Duration::from_secs(59));
    assert!(r.tick().evicted.is_empty());
    // The run at 121 s finds it past 30 + 90 s.
    clock.advance(Duration::from_secs(2));
    assert_eq!(r.tick().evicted, vec!["i-1".to_owned()]);
    assert!(r.eureka_app("ORDER").is_none());
    let delta = r.eureka_delta();
    let deleted = &delta.apps[0].instances[0];
    assert_eq!(deleted.action_type, ChangeAction::Deleted);
    assert_eq!(delta.hashcode, "");
}

#[test]
fn eviction_is_capped_per_run_and_takes_the_longest_silent_first() {
    let (r, clock) = registry(RegistryConfig::default());
    for n in 0..10 {
        r.eureka_register("APP", reg("app", &format!("i-{n}")))
            .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(300));
    // 10 leases: at most 10 - floor(10 × 0.85) = 2 per run.
    let first = r.tick();
    assert_eq!(first.evicted, vec!["i-0".to_owned(), "i-1".to_owned()]);
    assert_eq!(first.preserved, 8);
    clock.advance(Duration::from_secs(60));
    assert_eq!(r.tick().evicted.len(), 2);
}

#[test]
fn self_preservation_stops_eviction_when_renewals_drop_below_threshold() {
    let config = RegistryConfig {
        self_preservation: true,
        ..RegistryConfig::default()
    };
    let (r, clock) = registry(config);
    for n in 0..10 {
        r.eureka_register("APP", reg("app", &format!("i-{n}")))
            .unwrap();
    }
    // Nobody renews: 0 renewals in the last minute ≤ threshold 10 × 2 × 0.85 = 17.
    clock.advance(Duration::from_secs(300));
    let outcome = r.tick();
    assert!(outcome.evicted.is_empty());
    assert_eq!(outcome.preserved, 10);
    assert_eq!(r.eureka_apps().apps[0].instances.len(), 10);
}

#[test]
fn self_preservation_allows_eviction_while_most_clients_renew() {
    let config = RegistryConfig {
        self_preservation: true,
        ..RegistryConfig::default()
    };
    let (r, clock) = registry(config);
    for n in 0..10 {
        r.eureka_register("APP", reg("app", &format!("i-{n}")))
            .unwrap();
    }
    // Nine clients renew every 30 s (18 a minute > 17); i-9 went silent.
    for _ in 0..8 {
        clock.advance(Duration::from_secs(30));
        for n in 0..9 {
            r.eureka_renew("APP", &format!("i-{n}"), None);
        }
    }
    // The eviction runs at 60 s, 120 s, 180 s, 240 s found i-9 alive until 90 s.
    clock.advance(Duration::from_secs(1));
    let mut evicted = Vec::new();
    for _ in 0..3 {
        evicted.extend(r.tick().evicted);
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(evicted, vec!["i-9".to_owned()]);
}

#[test]
fn self_preservation_without_clients_never_evicts() {
    let config = RegistryConfig {
        self_preservation: true,
        ..RegistryConfig::default()
    };
    let (r, clock) = registry(config);
    r.eureka_register("APP", reg("app", "i-1")).unwrap();
    r.eureka_cancel("APP", "i-1").unwrap();
    r.eureka_register("APP", reg("app", "i-2")).unwrap();
    clock.advance(Duration::from_secs(600));
    assert_eq!(r.tick().preserved, 1);
}

#[test]
fn delta_carries_changes_and_the_full_registry_hash() {
    let (r, clock) = registry(RegistryConfig::default());
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    r.eureka_register("ORDER", reg("order", "o-2")).unwrap();
    r.eureka_register("PAY", reg("pay", "p-1")).unwrap();
    assert_eq!(r.eureka_apps().hashcode, "UP_3_");
    assert_eq!(r.eureka_apps().version, 1);
    let v1 = r.eureka_delta().version;

    clock.advance(Duration::from_secs(200));
    r.eureka_status_override("ORDER", "o-2", EurekaStatus::OutOfService, None)
        .unwrap();
    r.eureka_cancel("PAY", "p-1").unwrap();
    let delta = r.eureka_delta();
    assert!(delta.version > v1);
    // Registrations older than the 3-minute retention have left the delta.
    let actions: Vec<(String, ChangeAction)> = delta
        .apps
        .iter()
        .flat_map(|a| {
            a.instances
                .iter()
                .map(|i| (i.instance_id.clone(), i.action_type))
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("o-2".to_owned(), ChangeAction::Modified),
            ("p-1".to_owned(), ChangeAction::Deleted)
        ]
    );
    // The hash is the whole registry's, sorted by status name.
    assert_eq!(delta.hashcode, "OUT_OF_SERVICE_1_UP_1_");
    assert_eq!(r.eureka_apps().hashcode, delta.hashcode);
    assert_eq!(
        reconcile_hash([EurekaStatus::Up, EurekaStatus::Down, EurekaStatus::Up]),
        "DOWN_1_UP_2_"
    );

    clock.advance(Duration::from_secs(181));
    let quiet = r.eureka_delta();
    assert!(quiet.apps.is_empty());
    assert_eq!(quiet.hashcode, "OUT_OF_SERVICE_1_UP_1_");
}

#[test]
fn status_override_rules_follow_eureka() {
    let (r, _clock) = registry(RegistryConfig::default());
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    r.eureka_status_override("ORDER", "o-1", EurekaStatus::OutOfService, None)
        .unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::OutOfService);
    // Renewals and an UP re-registration keep the override.
    assert_eq!(r.eureka_renew("ORDER", "o-1", None), Renewal::Renewed);
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::OutOfService);
    assert_eq!(
        r.eureka_instance(None, "o-1").unwrap().overridden_status,
        EurekaStatus::OutOfService
    );
    // A client reporting DOWN is trusted over the override.
    let mut down = reg("order", "o-1");
    down.status = Some(EurekaStatus::Down);
    r.eureka_register("ORDER", down).unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::Down);
    // Removing the override leaves UNKNOWN: the next renewal is 404, the client
    // re-registers and is UP again.
    r.eureka_delete_override("ORDER", "o-1", None, None)
        .unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::Unknown);
    assert_eq!(r.eureka_renew("ORDER", "o-1", None), Renewal::NotFound);
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::Up);
    // DELETE with ?value= falls back to that value.
    r.eureka_status_override("ORDER", "o-1", EurekaStatus::OutOfService, None)
        .unwrap();
    r.eureka_delete_override("ORDER", "o-1", Some(EurekaStatus::Up), None)
        .unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::Up);
}

#[test]
fn renew_answers_404_for_unknown_wrong_app_and_newer_client_copy() {
    let (r, _clock) = registry(RegistryConfig::default());
    assert_eq!(r.eureka_renew("ORDER", "nope", None), Renewal::NotFound);
    let mut registration = reg("order", "o-1");
    registration.last_dirty = T0 - 5_000;
    r.eureka_register("ORDER", registration).unwrap();
    assert_eq!(r.eureka_renew("PAY", "o-1", None), Renewal::NotFound);
    assert_eq!(
        r.eureka_renew("order", "o-1", Some(T0 - 5_000)),
        Renewal::Renewed
    );
    assert_eq!(
        r.eureka_renew("ORDER", "o-1", Some(T0 - 9_000)),
        Renewal::Renewed
    );
    assert_eq!(r.eureka_renew("ORDER", "o-1", Some(T0)), Renewal::NotFound);
}

#[test]
fn registration_validation_uses_eurekas_messages() {
    let (r, _clock) = registry(RegistryConfig::default());
    let err = |mut x: EurekaRegistration, f: fn(&mut EurekaRegistration)| {
        f(&mut x);
        r.eureka_register("ORDER", x).unwrap_err().to_string()
    };
    assert_eq!(
        err(reg("order", "i"), |x| x.ip_addr.clear()),
        "Missing ip address"
    );
    assert_eq!(
        err(reg("order", ""), |x| x.host_name.clear()),
        "Missing instanceId"
    );
    assert_eq!(
        err(reg("order", "i"), |x| x.data_center = None),
        "Missing dataCenterInfo"
    );
    assert_eq!(
        err(reg("pay", "i"), |_| {}),
        "Mismatched appName, expecting ORDER but was PAY"
    );
    // instanceId falls back to hostName.
    r.eureka_register("ORDER", reg("order", "")).unwrap();
    assert!(r.eureka_instance(None, "10.0.0.5").is_some());
}

#[test]
fn metadata_update_merges() {
    let (r, _clock) = registry(RegistryConfig::default());
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    r.eureka_update_metadata("ORDER", "o-1", vec![("lane".into(), "canary".into())])
        .unwrap();
    let v = r.eureka_instance(None, "o-1").unwrap();
    assert_eq!(v.metadata.get("lane").map(String::as_str), Some("canary"));
    let (_, entries) = r.consul_service_entries("order");
    assert_eq!(
        entries[0].service.meta.get("lane").map(String::as_str),
        Some("canary")
    );
}

#[test]
fn ttl_checks_expire_update_and_reap() {
    let (r, clock) = registry(RegistryConfig::default());
    r.consul_register(
        ttl_service(
            "web",
            "web-1",
            Duration::from_secs(10),
            Some(Duration::from_secs(60)),
        ),
        false,
    )
    .unwrap();
    let index = |r: &Registry| r.consul_service_index("web");
    let (_, entries) = r.consul_service_entries("web");
    assert_eq!(entries[0].checks[0].check_id, "service:web-1");
    assert_eq!(entries[0].checks[0].status, CheckStatus::Passing);
    assert_eq!(status_of(&r, "WEB", "web-1"), EurekaStatus::Up);

    // A pass that changes nothing does not move the index (blocking queries stay asleep).
    let before = index(&r);
    r.consul_ttl_update("service:web-1", CheckStatus::Passing, "ok".into())
        .unwrap();
    assert_eq!(index(&r), before);

    clock.advance(Duration::from_secs(11));
    assert_eq!(r.tick().ttl_expired, vec!["service:web-1".to_owned()]);
    assert!(index(&r) > before);
    let (_, entries) = r.consul_service_entries("web");
    assert_eq!(entries[0].checks[0].status, CheckStatus::Critical);
    assert_eq!(entries[0].checks[0].output, "TTL expired");
    assert_eq!(status_of(&r, "WEB", "web-1"), EurekaStatus::Down);

    r.consul_ttl_update("service:web-1", CheckStatus::Warning, "slow".into())
        .unwrap();
    assert_eq!(status_of(&r, "WEB", "web-1"), EurekaStatus::Up);
    r.consul_ttl_update("service:web-1", CheckStatus::Critical, "down".into())
        .unwrap();
    clock.advance(Duration::from_secs(59));
    assert!(r.tick().reaped.is_empty());
    clock.advance(Duration::from_secs(2));
    assert_eq!(r.tick().reaped, vec!["web-1".to_owned()]);
    assert!(r.consul_service_entries("web").1.is_empty());

    assert!(matches!(
        r.consul_ttl_update("nope", CheckStatus::Passing, String::new()),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn ttl_update_on_a_non_ttl_check_is_refused() {
    let (r, _clock) = registry(RegistryConfig::default());
    let mut def = ttl_service("web", "web-1", Duration::from_secs(10), None);
    def.checks[0].kind = CheckKind::Tcp {
        address: "127.0.0.1:1".into(),
    };
    def.checks[0].interval = Some(Duration::from_secs(5));
    r.consul_register(def, false).unwrap();
    assert!(matches!(
        r.consul_ttl_update("service:web-1", CheckStatus::Passing, String::new()),
        Err(Error::NotTtlCheck(_))
    ));
    // The checker claims the TCP check once per interval.
    assert_eq!(r.due_checks().len(), 1);
    assert!(r.due_checks().is_empty());
}

#[test]
fn blocking_index_moves_only_for_the_service_that_changed() {
    let (r, _clock) = registry(RegistryConfig::default());
    let mut rx = r.subscribe();
    rx.borrow_and_update();
    assert!(r.consul_service_index("web") >= 1);
    r.consul_register(
        ttl_service("web", "web-1", Duration::from_secs(10), None),
        false,
    )
    .unwrap();
    assert!(rx.has_changed().unwrap());
    let web = r.consul_service_index("web");
    let catalog = r.consul_catalog_index();
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    assert_eq!(r.consul_service_index("WEB"), web);
    assert!(r.consul_service_index("order") > web);
    assert!(r.consul_catalog_index() > catalog);
    // A health-only change moves the service index but not the catalog's.
    let catalog = r.consul_catalog_index();
    r.consul_ttl_update("service:web-1", CheckStatus::Critical, String::new())
        .unwrap();
    assert!(r.consul_service_index("web") > web);
    assert_eq!(r.consul_catalog_index(), catalog);
    // Removal moves the index too, so a watcher sees the service vanish.
    let before = r.consul_service_index("order");
    r.eureka_cancel("ORDER", "o-1").unwrap();
    assert!(r.consul_service_index("order") > before);
}

#[test]
fn cross_protocol_views() {
    let (r, _clock) = registry(RegistryConfig::default());
    r.eureka_register("ORDER", reg("order", "o-1")).unwrap();
    r.consul_register(
        ttl_service("web", "web-1", Duration::from_secs(10), None),
        false,
    )
    .unwrap();
    r.put_platform(PlatformInstance {
        service: "Billing".into(),
        instance_id: "b-1".into(),
        address: "10.0.0.9".into(),
        port: 7000,
        metadata: BTreeMap::from([("version".into(), "3".into())]),
        tags: vec!["v3".into()],
        status: InstanceStatus::Up,
    });

    // Consul sees Eureka's ORDER as `order`, passing.
    let (_, order) = r.consul_service_entries("order");
    assert_eq!(order[0].service.service, "order");
    assert_eq!(order[0].service.address, "10.0.0.5");
    assert!(order[0]
        .checks
        .iter()
        .all(|c| c.status == CheckStatus::Passing));
    // Eureka sees Consul's web as WEB, UP, with its Meta.
    let web = r.eureka_app("web").unwrap();
    assert_eq!(web.name, "WEB");
    assert_eq!(web.instances[0].status, EurekaStatus::Up);
    assert_eq!(
        web.instances[0].metadata.get("lane").map(String::as_str),
        Some("canary")
    );
    assert_eq!(web.instances[0].vip_address, "web");
    // The platform instance is in both.
    assert_eq!(
        r.eureka_app("BILLING").unwrap().instances[0].instance_id,
        "b-1"
    );
    let (_, services) = r.consul_catalog_services();
    assert_eq!(
        services.keys().cloned().collect::<Vec<_>>(),
        vec!["billing".to_owned(), "order".to_owned(), "web".to_owned()]
    );
    assert_eq!(services["billing"], vec!["v3".to_owned()]);

    // Consul maintenance ↔ Eureka OUT_OF_SERVICE, both ways.
    r.consul_maintenance("o-1", true, Some("deploy".into()))
        .unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::OutOfService);
    let (_, order) = r.consul_service_entries("order");
    let maint = order[0]
        .checks
        .iter()
        .find(|c| c.check_id == "_service_maintenance:o-1")
        .unwrap();
    assert_eq!(
        (maint.status, maint.notes.as_str()),
        (CheckStatus::Critical, "deploy")
    );
    r.consul_maintenance("o-1", false, None).unwrap();
    assert_eq!(status_of(&r, "ORDER", "o-1"), EurekaStatus::Up);
    r.eureka_status_override("WEB", "web-1", EurekaStatus::OutOfService, None)
        .unwrap();
    let (_, web) = r.consul_service_entries("web");
    assert!(web[0]
        .checks
        .iter()
        .any(|c| c.check_id == "_service_maintenance:web-1"));

    // Platform status flows to both; protocols cannot remove platform instances.
    assert!(r.set_platform_status("b-1", InstanceStatus::Down));
    assert_eq!(status_of(&r, "BILLING", "b-1"), EurekaStatus::Down);
    assert!(matches!(
        r.consul_deregister("b-1"),
        Err(Error::PlatformOwned(_))
    ));
    assert!(matches!(
        r.eureka_cancel("BILLING", "b-1"),
        Err(Error::PlatformOwned(_))
    ));
    assert_eq!(r.platform_instances().len(), 1);
    assert!(r.remove_platform("b-1"));
    assert!(!r.remove_platform("b-1"));
    assert!(!r.set_platform_status("o-1", InstanceStatus::Down));

    let snapshot = r.snapshot();
    let origins: Vec<(String, Origin, InstanceStatus)> = snapshot
        .iter()
        .map(|i| (i.instance_id.clone(), i.origin, i.status))
        .collect();
    assert_eq!(
        origins,
        vec![
            ("o-1".to_owned(), Origin::Eureka, InstanceStatus::Up),
            (
                "web-1".to_owned(),
                Origin::Consul,
                InstanceStatus::OutOfService
            ),
        ]
    );
}

#[test]
fn consul_registration_defaults_and_validation() {
    let (r, _clock) = registry(RegistryConfig::default());
    let mut def = ttl_service("api", "", Duration::from_secs(5), None);
    def.id = None;
    def.checks.push(def.checks[0].clone());
    def.checks[1].status = None;
    r.consul_register(def, false).unwrap();
    let (_, entries) = r.consul_service_entries("api");
    let ids: Vec<&str> = entries[0]
        .checks
        .iter()
        .map(|c| c.check_id.as_str())
        .collect();
    assert_eq!(ids, vec!["service:api:1", "service:api:2"]);
    assert_eq!(entries[0].checks[0].name, "Service 'api' check");
    assert_eq!(entries[0].checks[1].status, CheckStatus::Critical);
    assert_eq!(entries[0].service.id, "api");

    let mut bad = ttl_service("", "x", Duration::from_secs(5), None);
    assert_eq!(
        r.consul_register(bad.clone(), false)
            .unwrap_err()
            .to_string(),
        "Missing service name"
    );
    bad.name = "x".into();
    bad.meta.insert("consul-x".into(), "1".into());
    assert!(r.consul_register(bad, false).is_err());
    assert!(matches!(
        r.consul_deregister("nope"),
        Err(Error::NotFound(_))
    ));
}
