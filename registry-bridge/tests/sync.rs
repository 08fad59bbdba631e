//! Registry-to-registry sync between two in-process built-in registries: a Consul → Eureka
//! job (A's Consul API to B's Eureka API) and an Eureka → Consul job (B back to A) running
//! at the same time. Checks origin tags, no loops, native-wins, deletes, status carry-over,
//! lease renewals on behalf of copies, untouched unrelated entries, and measures the lag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tideway_registry_bridge::client::consul::ServiceRegistration;
use tideway_registry_bridge::model::{DataCenter, EurekaRegistration, ServiceDefinition};
use tideway_registry_bridge::{
    BuiltinRegistry, ConnectorConfig, ConsulClient, ConsulConfig, EurekaClient, EurekaConfig,
    InstanceStatus, RegisteredInstance, Registry, RegistryConfig, Remote, RequestStats, SyncJob,
    SyncSpec, SyncState, SyncStatus, SystemClock,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Server {
    registry: Arc<Registry>,
    eureka: SocketAddr,
    consul: SocketAddr,
    stats: Arc<RequestStats>,
    shutdown: CancellationToken,
}

async fn start(config: RegistryConfig) -> Server {
    let registry = Registry::new(config);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let builtin = BuiltinRegistry::bind(Arc::clone(&registry), any, any)
        .await
        .unwrap();
    let server = Server {
        registry,
        eureka: builtin.eureka_addr(),
        consul: builtin.consul_addr(),
        stats: builtin.stats(),
        shutdown: CancellationToken::new(),
    };
    tokio::spawn(builtin.run(server.shutdown.clone()));
    server
}

fn consul(server: &Server) -> ConsulClient {
    ConsulClient::new(ConsulConfig {
        addresses: vec![format!("http://{}", server.consul)],
        token: None,
        datacenter: None,
    })
    .unwrap()
}

fn eureka(server: &Server, base: &str, zone: Option<&str>) -> EurekaClient {
    EurekaClient::new(EurekaConfig {
        urls: vec![format!("http://{}{base}", server.eureka)],
        username: None,
        password: None,
        zone: zone.map(str::to_owned),
    })
    .unwrap()
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn consul_native(registry: &Registry, id: &str, service: &str, address: &str, lane: &str) {
    registry
        .consul_register(
            ServiceDefinition {
                id: Some(id.into()),
                name: service.into(),
                address: address.into(),
                port: 8080,
                tags: vec!["v1".into()],
                meta: meta(&[("lane", lane), ("version", "1.0.0")]),
                ..ServiceDefinition::default()
            },
            false,
        )
        .unwrap();
}

fn eureka_native(registry: &Registry, id: &str, app: &str, address: &str, lane: &str) {
    registry
        .eureka_register(
            app,
            EurekaRegistration {
                instance_id: id.into(),
                app: app.into(),
                host_name: address.into(),
                ip_addr: address.into(),
                port: 8080,
                port_enabled: true,
                data_center: Some(DataCenter::default()),
                metadata: meta(&[("lane", lane), ("version", "1.1.0")]),
                ..EurekaRegistration::default()
            },
        )
        .unwrap();
}

fn by_id(registry: &Registry) -> BTreeMap<String, RegisteredInstance> {
    registry
        .snapshot()
        .into_iter()
        .map(|i| (i.instance_id.clone(), i))
        .collect()
}

fn ids_with(registry: &Registry, marker: &str) -> BTreeSet<String> {
    registry
        .snapshot()
        .into_iter()
        .filter(|i| i.metadata.contains_key(marker))
        .map(|i| i.instance_id)
        .collect()
}

fn natives(registry: &Registry) -> Vec<RegisteredInstance> {
    registry
        .snapshot()
        .into_iter()
        .filter(|i| !i.metadata.contains_key("tideway-sync-origin"))
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Polls until `cond` holds; returns how long it took.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > Duration::from_secs(10) {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_to_eureka_and_back_without_loops() {
    let a = start(RegistryConfig {
        datacenter: "dc-a".into(),
        ..RegistryConfig::default()
    })
    .await;
    // B evicts expired Eureka leases every 200 ms: copies survive only if renewed.
    let b = start(RegistryConfig {
        eviction_interval: Duration::from_millis(200),
        ..RegistryConfig::default()
    })
    .await;

    // A (Consul side): two order instances, one in maintenance, one pay, one unrelated,
    // and one also registered natively in B (same address and port).
    consul_native(&a.registry, "order-a1", "order", "10.0.1.1", "stable");
    consul_native(&a.registry, "order-a2", "order", "10.0.1.2", "stable");
    consul_native(&a.registry, "order-a3", "order", "10.0.1.3", "canary");
    a.registry
        .consul_maintenance("order-a3", true, Some("patching".into()))
        .unwrap();
    consul_native(&a.registry, "pay-a1", "pay", "10.0.1.4", "stable");
    consul_native(&a.registry, "billing-a1", "billing", "10.0.1.5", "stable");
    // B (Eureka side): one order instance, the dual-registered one, and an unrelated app.
    eureka_native(&b.registry, "order-b1", "ORDER", "10.0.2.1", "canary");
    eureka_native(
        &b.registry,
        "10.0.1.2:order:8080",
        "ORDER",
        "10.0.1.2",
        "stable",
    );
    eureka_native(&b.registry, "billing-b1", "BILLING", "10.0.2.9", "stable");
    let natives_a = natives(&a.registry);
    let natives_b = natives(&b.registry);

    let write = ConnectorConfig {
        eureka_renewal_interval: Duration::from_millis(300),
        eureka_lease_duration: Duration::from_secs(1),
        consul_ttl: Duration::from_secs(2),
        consul_ttl_pass_interval: Duration::from_millis(300),
        consul_deregister_critical_after: Duration::from_secs(60),
        ..ConnectorConfig::default()
    };
    let services = vec!["order".to_owned(), "pay".to_owned()];
    let mut c2e_spec = SyncSpec::new("c2e", services.clone());
    c2e_spec.interval = Duration::from_millis(100);
    let mut e2c_spec = SyncSpec::new("e2c", services);
    e2c_spec.interval = Duration::from_millis(100);
    let c2e = SyncJob::with_config(
        c2e_spec,
        Remote::Consul(consul(&a)),
        Remote::Eureka(eureka(&b, "/eureka/", None)),
        write.clone(),
    );
    let e2c = SyncJob::with_config(
        e2c_spec,
        Remote::Eureka(eureka(&b, "/eureka/v2/", Some("zone-b"))),
        Remote::Consul(consul(&a)),
        write,
    );
    let shutdown = CancellationToken::new();
    let (c2e_tx, c2e_status) = watch::channel(c2e.status());
    let (e2c_tx, e2c_status) = watch::channel(e2c.status());
    let started = Instant::now();
    let c2e_task = tokio::spawn(c2e.run(c2e_tx, Arc::new(SystemClock), shutdown.clone()));
    let e2c_task = tokio::spawn(e2c.run(e2c_tx, Arc::new(SystemClock), shutdown.clone()));

    // Initial copy, both ways.
    // order-a3 is in maintenance: not copied until it comes up.
    let copies_in_b = set(&["order-a1@consul:dc-a", "pay-a1@consul:dc-a"]);
    let copies_in_a = set(&["order-b1@eureka:zone-b"]);
    wait_for("initial copies", || {
        ids_with(&b.registry, "tideway-sync-origin") == copies_in_b
            && ids_with(&a.registry, "tideway-sync-origin") == copies_in_a
    })
    .await;
    let initial = started.elapsed();

    // Copies carry their origin, source ID and job; lane and version survive; status too.
    let in_b = by_id(&b.registry);
    let copy = &in_b["order-a1@consul:dc-a"];
    assert_eq!(copy.service, "ORDER");
    assert_eq!((copy.address.as_str(), copy.port), ("10.0.1.1", 8080));
    for (k, v) in [
        ("tideway-sync-origin", "consul:dc-a"),
        ("tideway-sync-source-id", "order-a1"),
        ("tideway-sync-job", "c2e"),
        ("lane", "stable"),
        ("version", "1.0.0"),
    ] {
        assert_eq!(copy.metadata.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(copy.status, InstanceStatus::Up);
    let in_a = by_id(&a.registry);
    let back = &in_a["order-b1@eureka:zone-b"];
    assert_eq!(back.service, "order");
    assert_eq!(back.metadata["tideway-sync-origin"], "eureka:zone-b");
    assert_eq!(back.metadata["tideway-sync-job"], "e2c");
    assert_eq!(back.metadata["lane"], "canary");
    assert_eq!(back.status, InstanceStatus::Up);

    // Steady state over a few lease durations: no copy of a copy, nothing flaps, the
    // 1 s Eureka leases of the copies survive B's 200 ms eviction because the job renews
    // them, the registries' indexes do not move (no churn).
    let index_a = a.registry.index();
    let index_b = b.registry.index();
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_millis(2500) {
        assert_eq!(ids_with(&b.registry, "tideway-sync-origin"), copies_in_b);
        assert_eq!(ids_with(&a.registry, "tideway-sync-origin"), copies_in_a);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.registry.index(), index_a, "A changed in steady state");
    assert_eq!(b.registry.index(), index_b, "B changed in steady state");
    let renewals = b
        .stats
        .count("PUT", "/eureka/apps/ORDER/order-a1%40consul%3Adc-a");
    assert!(renewals >= 5, "{renewals} renewals in 2.5 s");
    let ttl_passes = a.stats.count(
        "PUT",
        "/v1/agent/check/pass/tideway-ttl%3Aorder-b1%40eureka%3Azone-b",
    );
    assert!(ttl_passes >= 5, "{ttl_passes} TTL passes in 2.5 s");
    let status: SyncStatus = c2e_status.borrow().clone();
    assert_eq!(status.state, SyncState::Healthy, "{status:?}");
    assert_eq!(status.copies, 2);
    assert_eq!(
        status.skipped.copies, 1,
        "e2c's copy in A is not copied back"
    );
    assert_eq!(
        status.skipped.native_at_destination, 1,
        "order-a2 is native in B"
    );
    let status: SyncStatus = e2c_status.borrow().clone();
    assert_eq!(status.state, SyncState::Healthy, "{status:?}");
    assert_eq!(
        status.skipped.copies, 2,
        "c2e's copies in B are not copied back"
    );
    assert_eq!(
        status.skipped.native_at_destination, 1,
        "10.0.1.2 is native in A"
    );

    // Lag: a new source instance, each way.
    let client_a = consul(&a);
    client_a
        .register_service(
            &ServiceRegistration {
                id: "order-a4".into(),
                name: "order".into(),
                tags: Vec::new(),
                address: "10.0.1.6".into(),
                port: 8080,
                meta: meta(&[("lane", "stable")]),
                check: None,
            },
            false,
        )
        .await
        .unwrap();
    let add_c2e = wait_for("order-a4 copied", || {
        by_id(&b.registry).contains_key("order-a4@consul:dc-a")
    })
    .await;
    eureka_native(&b.registry, "order-b3", "ORDER", "10.0.2.3", "stable");
    let add_e2c = wait_for("order-b3 copied", || {
        by_id(&a.registry).contains_key("order-b3@eureka:zone-b")
    })
    .await;

    // Status changes at the source: a1 goes into maintenance → its copy is taken out;
    // a3 leaves maintenance → it is copied, up.
    a.registry
        .consul_maintenance("order-a1", true, Some("draining".into()))
        .unwrap();
    let status_c2e = wait_for("order-a1 copy taken out", || {
        by_id(&b.registry)["order-a1@consul:dc-a"].status == InstanceStatus::OutOfService
    })
    .await;
    a.registry
        .consul_maintenance("order-a3", false, None)
        .unwrap();
    wait_for("order-a3 copied", || {
        by_id(&b.registry)
            .get("order-a3@consul:dc-a")
            .is_some_and(|i| i.status == InstanceStatus::Up)
    })
    .await;

    // Deleting the source removes the copy, each way.
    a.registry.consul_deregister("order-a1").unwrap();
    let delete_c2e = wait_for("order-a1 copy removed", || {
        !by_id(&b.registry).contains_key("order-a1@consul:dc-a")
    })
    .await;
    b.registry.eureka_cancel("ORDER", "order-b1").unwrap();
    let delete_e2c = wait_for("order-b1 copy removed", || {
        !by_id(&a.registry).contains_key("order-b1@eureka:zone-b")
    })
    .await;

    shutdown.cancel();
    let c2e = c2e_task.await.unwrap();
    let e2c = e2c_task.await.unwrap();

    // Final state: exactly the copies of the remaining sources, no loops, natives intact.
    assert_eq!(
        ids_with(&b.registry, "tideway-sync-origin"),
        set(&[
            "order-a3@consul:dc-a",
            "order-a4@consul:dc-a",
            "pay-a1@consul:dc-a"
        ])
    );
    assert_eq!(
        ids_with(&a.registry, "tideway-sync-origin"),
        set(&["order-b3@eureka:zone-b"])
    );
    let remaining_a: Vec<_> = natives_a
        .into_iter()
        .filter(|i| i.instance_id != "order-a1")
        .map(|mut i| {
            if i.instance_id == "order-a3" {
                i.status = InstanceStatus::Up;
            }
            i
        })
        .collect();
    let mut now_a = natives(&a.registry);
    now_a.retain(|i| i.instance_id != "order-a4");
    assert_eq!(now_a, remaining_a, "A's natives untouched");
    let mut now_b = natives(&b.registry);
    now_b.retain(|i| i.instance_id != "order-b3");
    let remaining_b: Vec<_> = natives_b
        .into_iter()
        .filter(|i| i.instance_id != "order-b1")
        .collect();
    assert_eq!(now_b, remaining_b, "B's natives untouched");
    let full = b.stats.count("GET", "/eureka/v2/apps/");
    let deltas = b.stats.count("GET", "/eureka/v2/apps/delta");
    assert!(
        deltas > 10 && full <= 2,
        "e2c reads B by delta: {full} full, {deltas} delta"
    );

    let (c2e, e2c) = (c2e.status(), e2c.status());
    println!(
        "sync lag (source write → copy visible, jobs every 100 ms): initial copy both ways {:.1} ms; \
         consul→eureka add {:.1} ms, take-out {:.1} ms, delete {:.1} ms; \
         eureka→consul add {:.1} ms, delete {:.1} ms",
        ms(initial),
        ms(add_c2e),
        ms(status_c2e),
        ms(delete_c2e),
        ms(add_e2c),
        ms(delete_e2c)
    );
    println!(
        "job-reported lag (change seen → copy written): c2e last {:?} ms max {:?} ms; e2c last {:?} ms max {:?} ms; \
         renewals of one copy in 2.5 s: {renewals}; TTL passes: {ttl_passes}; e2c reads of B: {full} full, {deltas} delta",
        c2e.last_lag_ms, c2e.max_lag_ms, e2c.last_lag_ms, e2c.max_lag_ms
    );
    println!("c2e status: {}", serde_json::to_string(&c2e).unwrap());
    println!("e2c status: {}", serde_json::to_string(&e2c).unwrap());
    assert!(c2e.max_lag_ms.is_some() && e2c.max_lag_ms.is_some());
    assert_eq!(c2e.pending_changes, 0);
    assert_eq!(e2c.pending_changes, 0);
    a.shutdown.cancel();
    b.shutdown.cancel();
}

/// A source outage writes nothing (no copies deleted), the job backs off, and it
/// converges when the source returns.
#[tokio::test]
async fn source_outage_keeps_copies_and_backs_off() {
    let a = start(RegistryConfig::default()).await;
    let b = start(RegistryConfig::default()).await;
    consul_native(&a.registry, "order-a1", "order", "10.0.1.1", "stable");
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut job = SyncJob::new(
        SyncSpec::new("c2e", vec!["order".into()]),
        Remote::Consul(consul(&a)),
        Remote::Eureka(eureka(&b, "/eureka/", None)),
    );
    let t = chrono::Utc::now();
    let report = job.run_once(t).await;
    assert_eq!(report.copies, 1, "{report:?}");
    assert_eq!(report.lags.len(), 1);

    // The source becomes unreachable.
    let mut unreachable = SyncJob::new(
        SyncSpec::new("c2e", vec!["order".into()]),
        Remote::Consul(
            ConsulClient::new(ConsulConfig {
                addresses: vec![format!("http://{dead}")],
                token: None,
                datacenter: Some("dc1".into()),
            })
            .unwrap(),
        ),
        Remote::Eureka(eureka(&b, "/eureka/", None)),
    );
    let report = unreachable.run_once(t).await;
    assert_eq!(report.error.as_ref().unwrap().code, "unavailable");
    assert!(report.ops.is_empty());
    assert_eq!(unreachable.status().state, SyncState::BackingOff);
    let report = unreachable
        .run_once(t + chrono::TimeDelta::milliseconds(100))
        .await;
    assert!(report.elapsed_ms < 50 && report.ops.is_empty());
    assert!(
        by_id(&b.registry).contains_key("order-a1@consul:dc1"),
        "copy kept"
    );

    // The original job still converges with nothing to do.
    let report = job.run_once(t + chrono::TimeDelta::seconds(1)).await;
    assert!(report.ops.is_empty(), "{:?}", report.ops);
    assert_eq!(job.status().state, SyncState::Healthy);
    a.shutdown.cancel();
    b.shutdown.cancel();
}
