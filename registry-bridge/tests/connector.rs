//! The outbound side against real protocols: connectors talking HTTP to an in-process
//! built-in registry (register, drain, remove, heartbeats, outage and exact convergence
//! on the same ports), and the Consul and Eureka clients reading hand-written fixtures
//! of real server responses from a tiny local HTTP server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use tideway_registry_bridge::client::consul::QueryOptions;
use tideway_registry_bridge::client::eureka::AppsCache;
use tideway_registry_bridge::model::{
    ChangeAction, CheckDefinition, CheckKind, DataCenter, EurekaRegistration, EurekaStatus,
    Renewal, ServiceDefinition,
};
use tideway_registry_bridge::{
    BuiltinRegistry, Connector, ConsulClient, ConsulConfig, DesiredRegistration, EurekaClient,
    EurekaConfig, InstanceIdentity, InstanceStatus, Lane, PassOutcome, RegisteredInstance,
    Registry, RegistryConfig, Remote, RequestStats,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// A built-in registry served in process.

struct Server {
    registry: Arc<Registry>,
    eureka: SocketAddr,
    consul: SocketAddr,
    stats: Arc<RequestStats>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tideway_registry_bridge::Error>>,
}

async fn serve(registry: Arc<Registry>, eureka: SocketAddr, consul: SocketAddr) -> Server {
    let builtin = BuiltinRegistry::bind(Arc::clone(&registry), eureka, consul)
        .await
        .unwrap();
    let (eureka, consul, stats) = (
        builtin.eureka_addr(),
        builtin.consul_addr(),
        builtin.stats(),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(builtin.run(shutdown.clone()));
    Server {
        registry,
        eureka,
        consul,
        stats,
        shutdown,
        task,
    }
}

async fn start() -> Server {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    serve(Registry::new(RegistryConfig::default()), any, any).await
}

impl Server {
    async fn stop(self) -> (Arc<Registry>, SocketAddr, SocketAddr) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("registry stops")
            .unwrap()
            .unwrap();
        (self.registry, self.eureka, self.consul)
    }

    fn remote(&self, kind: Kind, dead: Option<SocketAddr>) -> Remote {
        match kind {
            Kind::Consul => {
                let mut addresses: Vec<String> =
                    dead.iter().map(|d| format!("http://{d}")).collect();
                addresses.push(format!("http://{}", self.consul));
                Remote::Consul(
                    ConsulClient::new(ConsulConfig {
                        addresses,
                        token: None,
                        datacenter: None,
                    })
                    .unwrap(),
                )
            }
            Kind::Eureka => {
                let mut urls: Vec<String> = dead
                    .iter()
                    .map(|d| format!("http://{d}/eureka/v2/"))
                    .collect();
                urls.push(format!("http://{}/eureka/v2/", self.eureka));
                Remote::Eureka(
                    EurekaClient::new(EurekaConfig {
                        urls,
                        username: None,
                        password: None,
                        zone: None,
                    })
                    .unwrap(),
                )
            }
        }
    }
}

/// A local address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Consul,
    Eureka,
}

fn identity(lane: Lane) -> InstanceIdentity {
    InstanceIdentity {
        namespace: "prod".into(),
        app: "order".into(),
        version: "1.2.0".into(),
        lane,
    }
}

fn ready(id: &str, port: u16) -> DesiredRegistration {
    DesiredRegistration::ready("order", id, "10.0.0.1", port, &identity(Lane::Stable))
        .with_health_url(format!("http://10.0.0.1:{port}/health"))
}

fn t0() -> DateTime<Utc> {
    Utc::now()
}

fn at(base: DateTime<Utc>, millis: i64) -> DateTime<Utc> {
    base + TimeDelta::milliseconds(millis)
}

/// The entries connector `tem` owns, by ID.
fn ours(registry: &Registry) -> BTreeMap<String, RegisteredInstance> {
    registry
        .snapshot()
        .into_iter()
        .filter(|i| i.metadata.get("tideway-bridge").map(String::as_str) == Some("tem"))
        .map(|i| (i.instance_id.clone(), i))
        .collect()
}

fn others(registry: &Registry) -> Vec<RegisteredInstance> {
    registry
        .snapshot()
        .into_iter()
        .filter(|i| i.metadata.get("tideway-bridge").map(String::as_str) != Some("tem"))
        .collect()
}

fn statuses(registry: &Registry) -> BTreeMap<String, InstanceStatus> {
    ours(registry)
        .into_iter()
        .map(|(id, i)| (id, i.status))
        .collect()
}

fn op_kinds(ops: &[tideway_registry_bridge::OpResult]) -> Vec<(String, String)> {
    ops.iter()
        .map(|r| {
            assert!(r.error.is_none(), "{:?} failed: {:?}", r.op, r.error);
            (r.op.kind().to_owned(), r.op.instance_id().to_owned())
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// Entries we must never touch: a native one, one of another connector, and one whose
/// ID a desired instance wants.
fn add_foreign_entries(registry: &Registry, kind: Kind) {
    let other_bridge = BTreeMap::from([
        ("tideway-managed".to_owned(), "true".to_owned()),
        ("tideway-bridge".to_owned(), "staging".to_owned()),
    ]);
    for (id, meta) in [
        ("native-1", BTreeMap::new()),
        ("order-x", BTreeMap::new()),
        ("staging-1", other_bridge),
    ] {
        match kind {
            Kind::Consul => registry
                .consul_register(
                    ServiceDefinition {
                        id: Some(id.into()),
                        name: "order".into(),
                        address: "10.9.0.1".into(),
                        port: 9000,
                        meta,
                        ..ServiceDefinition::default()
                    },
                    false,
                )
                .unwrap(),
            Kind::Eureka => registry
                .eureka_register(
                    "ORDER",
                    EurekaRegistration {
                        instance_id: id.into(),
                        app: "ORDER".into(),
                        host_name: "10.9.0.1".into(),
                        ip_addr: "10.9.0.1".into(),
                        port: 9000,
                        port_enabled: true,
                        data_center: Some(DataCenter::default()),
                        metadata: meta,
                        ..EurekaRegistration::default()
                    },
                )
                .unwrap(),
        }
    }
}

async fn get_json(url: String) -> Value {
    reqwest::Client::new()
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// IDs Consul clients get from `/v1/health/service/order?passing`.
async fn consul_passing(server: &Server) -> Vec<String> {
    let body = get_json(format!(
        "http://{}/v1/health/service/order?passing",
        server.consul
    ))
    .await;
    let mut ids: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Eureka's view of one instance.
async fn eureka_instance(server: &Server, id: &str) -> Value {
    get_json(format!("http://{}/eureka/apps/ORDER/{id}", server.eureka)).await["instance"].clone()
}

fn heartbeat_requests(stats: &RequestStats, kind: Kind, id: &str) -> u64 {
    match kind {
        Kind::Consul => stats.count("PUT", &format!("/v1/agent/check/pass/tideway-ttl%3A{id}")),
        Kind::Eureka => stats.count("PUT", &format!("/eureka/v2/apps/ORDER/{id}")),
    }
}

// ---------------------------------------------------------------------------------------
// Lifecycle: register 3, drain 1, remove 1, heartbeats, deregister after stop.

async fn lifecycle(kind: Kind) {
    let server = start().await;
    add_foreign_entries(&server.registry, kind);
    let foreign_before = others(&server.registry);
    let dead = closed_port().await;
    let mut connector = Connector::new("tem".into(), server.remote(kind, Some(dead)));
    let t = t0();
    let (a, b, c, x) = (
        ready("order-a", 8080),
        ready("order-b", 8081),
        ready("order-c", 8082),
        ready("order-x", 8083),
    );

    // Register three (the fourth's ID is taken by a native entry: a conflict).
    let report = connector
        .converge(&[a.clone(), b.clone(), c.clone(), x.clone()], t)
        .await;
    assert_eq!(report.outcome, PassOutcome::Converged, "{report:?}");
    assert_eq!(
        op_kinds(&report.ops),
        pairs(&[
            ("register", "order-a"),
            ("register", "order-b"),
            ("register", "order-c")
        ])
    );
    assert_eq!(report.conflicts, vec!["order-x".to_owned()]);
    assert_eq!(report.registered, 3);
    let registered = ours(&server.registry);
    assert_eq!(registered.len(), 3);
    let entry = &registered["order-a"];
    for (k, v) in [
        ("tideway-managed", "true"),
        ("tideway-bridge", "tem"),
        ("tideway-namespace", "prod"),
        ("tideway-app", "order"),
        ("tideway-instance", "order-a"),
        ("version", "1.2.0"),
        ("lane", "stable"),
    ] {
        assert_eq!(entry.metadata.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!((entry.address.as_str(), entry.port), ("10.0.0.1", 8080));
    assert!(registered.values().all(|i| i.status == InstanceStatus::Up));
    match kind {
        Kind::Consul => {
            let passing = consul_passing(&server).await;
            for id in ["order-a", "order-b", "order-c"] {
                assert!(passing.contains(&id.to_owned()), "{passing:?}");
            }
            let checks = get_json(format!("http://{}/v1/agent/checks", server.consul)).await;
            assert_eq!(checks["tideway-ttl:order-a"]["Status"], "passing");
            assert_eq!(checks["tideway-ttl:order-a"]["Type"], "ttl");
        }
        Kind::Eureka => {
            let i = eureka_instance(&server, "order-a").await;
            assert_eq!(i["status"], "UP");
            assert_eq!(i["leaseInfo"]["renewalIntervalInSecs"], 30);
            assert_eq!(i["leaseInfo"]["durationInSecs"], 90);
            assert_eq!(i["healthCheckUrl"], "http://10.0.0.1:8080/health");
            assert_eq!(i["metadata"]["lane"], "stable");
        }
    }

    // Level-triggered: nothing to do, no heartbeat due yet.
    let report = connector
        .converge(&[a.clone(), b.clone(), c.clone()], at(t, 1000))
        .await;
    assert_eq!(report.outcome, PassOutcome::Converged);
    assert!(report.ops.is_empty(), "{:?}", report.ops);
    assert_eq!(report.heartbeats.renewed, 0);

    // Drain b: out of traffic, still registered.
    let drained = b.clone().draining();
    let report = connector
        .converge(&[a.clone(), drained.clone(), c.clone()], at(t, 2000))
        .await;
    assert_eq!(op_kinds(&report.ops), pairs(&[("take_out", "order-b")]));
    assert_eq!(
        statuses(&server.registry),
        BTreeMap::from([
            ("order-a".to_owned(), InstanceStatus::Up),
            ("order-b".to_owned(), InstanceStatus::OutOfService),
            ("order-c".to_owned(), InstanceStatus::Up),
        ])
    );
    match kind {
        Kind::Consul => {
            let passing = consul_passing(&server).await;
            assert!(!passing.contains(&"order-b".to_owned()), "{passing:?}");
            let checks = get_json(format!("http://{}/v1/agent/checks", server.consul)).await;
            assert_eq!(checks["_service_maintenance:order-b"]["Status"], "critical");
        }
        Kind::Eureka => {
            let i = eureka_instance(&server, "order-b").await;
            assert_eq!(i["status"], "OUT_OF_SERVICE");
            assert_eq!(i["overriddenStatus"], "OUT_OF_SERVICE");
        }
    }
    // Taken out stays taken out.
    let report = connector
        .converge(&[a.clone(), drained.clone(), c.clone()], at(t, 2500))
        .await;
    assert!(report.ops.is_empty(), "{:?}", report.ops);

    // c crashes: deregistered straight away.
    let report = connector
        .converge(&[a.clone(), drained.clone()], at(t, 3000))
        .await;
    assert_eq!(op_kinds(&report.ops), pairs(&[("deregister", "order-c")]));
    assert_eq!(statuses(&server.registry).len(), 2);

    // 31 s after registration: heartbeats for both (the draining one too).
    let before_a = heartbeat_requests(&server.stats, kind, "order-a");
    let report = connector
        .converge(&[a.clone(), drained.clone()], at(t, 31_000))
        .await;
    assert!(report.ops.is_empty(), "{:?}", report.ops);
    assert_eq!(report.heartbeats.renewed, 2, "{:?}", report.heartbeats);
    assert_eq!(
        heartbeat_requests(&server.stats, kind, "order-a"),
        before_a + 1
    );
    assert_eq!(heartbeat_requests(&server.stats, kind, "order-b"), 1);
    assert!(report.requeue_after_ms <= 30_000);
    // Still taken out after the heartbeat.
    assert_eq!(
        statuses(&server.registry)["order-b"],
        InstanceStatus::OutOfService
    );

    // b has stopped: deregistered.
    let report = connector
        .converge(std::slice::from_ref(&a), at(t, 32_000))
        .await;
    assert_eq!(op_kinds(&report.ops), pairs(&[("deregister", "order-b")]));
    assert_eq!(
        statuses(&server.registry),
        BTreeMap::from([("order-a".to_owned(), InstanceStatus::Up)])
    );

    // Never touched what is not ours.
    assert_eq!(others(&server.registry), foreign_before);
    let status = connector.status();
    assert!(status.healthy);
    assert_eq!(status.registered, 1);
    assert_eq!(status.last_success, Some(at(t, 32_000)));
    assert_eq!(status.consecutive_failures, 0);
    println!(
        "{kind:?} connector status: {}",
        serde_json::to_string(&status).unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn consul_connector_registers_drains_and_removes() {
    lifecycle(Kind::Consul).await;
}

#[tokio::test]
async fn eureka_connector_registers_drains_and_removes() {
    lifecycle(Kind::Eureka).await;
}

// ---------------------------------------------------------------------------------------
// Outage: scale-in and scale-out while the registry is down, then exact convergence.

async fn outage(kind: Kind, registry_kept_state: bool) {
    let server = start().await;
    let mut connector = Connector::new("tem".into(), server.remote(kind, None));
    let t = t0();
    let (a, b, c) = (
        ready("order-a", 8080),
        ready("order-b", 8081),
        ready("order-c", 8082),
    );
    let report = connector
        .converge(&[a.clone(), b.clone(), c.clone()], t)
        .await;
    assert_eq!(report.outcome, PassOutcome::Converged);
    assert_eq!(statuses(&server.registry).len(), 3);
    let (registry, eureka_addr, consul_addr) = server.stop().await;

    // While down: c dies, b starts draining, d and e start, f starts already draining.
    let (d, e, f) = (
        ready("order-d", 8083),
        ready("order-e", 8084),
        ready("order-f", 8085).draining(),
    );
    let desired = vec![
        a.clone(),
        b.clone().draining(),
        d.clone(),
        e.clone(),
        f.clone(),
    ];
    let t1 = at(t, 10_000);
    let report = connector.converge(&desired, t1).await;
    assert_eq!(report.outcome, PassOutcome::Failed, "{report:?}");
    assert_eq!(report.error.as_ref().unwrap().code, "unavailable");
    assert_eq!(report.next_retry, Some(at(t1, 500)));
    let status = connector.status();
    assert!(!status.healthy);
    assert_eq!(status.last_error.as_ref().unwrap().code, "unavailable");
    assert_eq!(status.registered, 3, "last known");

    // Inside the window: no I/O, immediate answer.
    let report = connector.converge(&desired, at(t1, 100)).await;
    assert_eq!(report.outcome, PassOutcome::BackingOff);
    assert!(report.ops.is_empty());
    assert!(report.elapsed_ms < 50, "{} ms", report.elapsed_ms);
    assert_eq!(report.requeue_after_ms, 400);

    // Each failure doubles the wait: 0.5 s, 1 s, 2 s.
    let report = connector.converge(&desired, at(t1, 500)).await;
    assert_eq!(report.outcome, PassOutcome::Failed);
    assert_eq!(report.next_retry, Some(at(t1, 1500)));
    let report = connector.converge(&desired, at(t1, 1500)).await;
    assert_eq!(report.outcome, PassOutcome::Failed);
    assert_eq!(report.next_retry, Some(at(t1, 3500)));
    assert_eq!(connector.status().consecutive_failures, 3);
    let report = connector.converge(&desired, at(t1, 3000)).await;
    assert_eq!(report.outcome, PassOutcome::BackingOff);

    // The registry comes back on the same ports: with its old state (its HTTP side was
    // down), or empty (it restarted and lost everything).
    let registry = if registry_kept_state {
        registry
    } else {
        Registry::new(RegistryConfig::default())
    };
    add_foreign_entries(&registry, kind);
    let foreign_before = others(&registry);
    let server = serve(Arc::clone(&registry), eureka_addr, consul_addr).await;
    let report = connector.converge(&desired, at(t1, 3500)).await;
    assert_eq!(report.outcome, PassOutcome::Converged, "{report:?}");
    let expected_ops = if registry_kept_state {
        pairs(&[
            ("take_out", "order-b"),
            ("register", "order-d"),
            ("register", "order-e"),
            ("deregister", "order-c"),
        ])
    } else {
        pairs(&[
            ("register", "order-a"),
            ("register", "order-d"),
            ("register", "order-e"),
        ])
    };
    assert_eq!(op_kinds(&report.ops), expected_ops);

    // Exactly the desired state: nothing extra (no c, no f), nothing missing, b out.
    let mut expected = BTreeMap::from([
        ("order-a".to_owned(), InstanceStatus::Up),
        ("order-d".to_owned(), InstanceStatus::Up),
        ("order-e".to_owned(), InstanceStatus::Up),
    ]);
    if registry_kept_state {
        expected.insert("order-b".to_owned(), InstanceStatus::OutOfService);
    }
    assert_eq!(statuses(&registry), expected);
    assert_eq!(others(&registry), foreign_before);
    let report = connector.converge(&desired, at(t1, 4000)).await;
    assert!(report.ops.is_empty(), "{:?}", report.ops);
    let status = connector.status();
    assert!(status.healthy);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.registered, expected.len());
    assert_eq!(status.next_retry, None);
    server.stop().await;
}

#[tokio::test]
async fn consul_outage_converges_exactly_with_state_kept() {
    outage(Kind::Consul, true).await;
}

#[tokio::test]
async fn consul_outage_converges_exactly_after_registry_restart() {
    outage(Kind::Consul, false).await;
}

#[tokio::test]
async fn eureka_outage_converges_exactly_with_state_kept() {
    outage(Kind::Eureka, true).await;
}

#[tokio::test]
async fn eureka_outage_converges_exactly_after_registry_restart() {
    outage(Kind::Eureka, false).await;
}

/// An entry lost behind the connector's back (a registry-side eviction, an operator's
/// delete) is registered again at the next pass; a lease the registry no longer knows is
/// re-registered by the heartbeat itself.
#[tokio::test]
async fn lost_entries_come_back() {
    let server = start().await;
    let t = t0();
    for kind in [Kind::Consul, Kind::Eureka] {
        let mut connector = Connector::new("tem".into(), server.remote(kind, None));
        let id = format!("order-{kind:?}").to_lowercase();
        let desired = [ready(&id, 8080)];
        connector.converge(&desired, t).await;
        match kind {
            Kind::Consul => server.registry.consul_deregister(&id).unwrap(),
            Kind::Eureka => server.registry.eureka_cancel("ORDER", &id).unwrap(),
        }
        assert!(!statuses(&server.registry).contains_key(&id));
        let report = connector.converge(&desired, at(t, 1000)).await;
        assert_eq!(op_kinds(&report.ops), pairs(&[("register", id.as_str())]));
        assert_eq!(statuses(&server.registry)[&id], InstanceStatus::Up);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Fixtures: real Consul and Eureka response shapes served by a tiny HTTP server.

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: String,
}

type Route = (u16, Vec<(&'static str, String)>, String);

#[derive(Clone, Default)]
struct Fixtures {
    routes: Arc<Mutex<BTreeMap<(String, String), Route>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fixtures {
    fn route(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) {
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (method.to_owned(), path.to_owned()),
                (status, headers, body),
            );
    }

    fn json(&self, path: &str, file: &str) {
        self.route(
            "GET",
            path,
            200,
            vec![("content-type", "application/json".into())],
            fixture(file),
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn writes(&self) -> Vec<(String, String)> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .map(|s| (s.method, s.path))
            .collect()
    }
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn answer(
    State(fx): State<Fixtures>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fx.seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    let route = fx
        .routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(method.to_string(), uri.path().to_owned()))
        .cloned();
    match route {
        Some((status, headers, body)) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response
        }
        None if method == Method::GET => StatusCode::NOT_FOUND.into_response(),
        None if method == Method::POST => StatusCode::NO_CONTENT.into_response(),
        None => StatusCode::OK.into_response(),
    }
}

async fn serve_fixtures(fx: &Fixtures) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(answer).with_state(fx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn consul_fixtures(fx: &Fixtures) {
    fx.json("/v1/agent/services", "consul/agent_services.json");
    fx.json("/v1/agent/checks", "consul/agent_checks.json");
    fx.json("/v1/agent/self", "consul/agent_self.json");
    fx.json("/v1/catalog/services", "consul/catalog_services.json");
    let indexed = |index: &str| {
        vec![
            ("content-type", "application/json".to_owned()),
            ("x-consul-index", index.to_owned()),
        ]
    };
    fx.route(
        "GET",
        "/v1/catalog/service/web",
        200,
        indexed("60"),
        fixture("consul/catalog_service_web.json"),
    );
    fx.route(
        "GET",
        "/v1/health/service/redis",
        200,
        indexed("12"),
        fixture("consul/health_service_redis.json"),
    );
}

#[tokio::test]
async fn consul_client_reads_real_shapes_and_sends_token_and_dc() {
    let fx = Fixtures::default();
    consul_fixtures(&fx);
    let addr = serve_fixtures(&fx).await;
    let client = ConsulClient::new(ConsulConfig {
        addresses: vec![format!("{addr}")],
        token: Some("s3cr3t".into()),
        datacenter: Some("dc1".into()),
    })
    .unwrap();

    let services = client.agent_services(None).await.unwrap();
    assert_eq!(services.len(), 4);
    assert_eq!(services["redis"].address, "");
    assert_eq!(services["redis"].meta["redis_version"], "4.0");
    assert_eq!(services["redis"].weights.unwrap().passing, 10);
    assert!(services["order-9c"].tags.is_empty(), "null tags");
    assert_eq!(services["order-7f"].meta["lane"], "canary");

    let checks = client.agent_checks().await.unwrap();
    assert!(checks["_service_maintenance:order-9c"].is_maintenance());
    assert_eq!(checks["tideway-ttl:order-7f"].check_type, "ttl");

    let catalog = client
        .catalog_service("web", &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(catalog.index, 60);
    assert_eq!(catalog.value.len(), 2);
    assert_eq!(catalog.value[0].service_address, "172.17.0.3");
    assert_eq!(catalog.value[0].service_meta["lane"], "canary");
    assert_eq!(catalog.value[1].service_address, "");
    assert!(catalog.value[1].service_meta.is_empty() && catalog.value[1].service_tags.is_empty());
    assert_eq!(catalog.value[1].modify_index, 60);

    let names = client
        .catalog_services(&QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(names.value["redis"], ["primary", "v1"]);
    assert!(names.value["order"].is_empty());

    let health = client
        .health_service(
            "redis",
            false,
            &QueryOptions {
                index: Some(11),
                wait: Some(Duration::from_secs(2)),
                filter: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(health.index, 12);
    let (first, second) = (&health.value[0], &health.value[1]);
    assert_eq!(first.address(), "10.1.10.12");
    assert!(!first.in_maintenance());
    assert_eq!(first.aggregated_status().as_str(), "passing");
    assert_eq!(first.service.tags, ["primary", "lane=canary"]);
    assert_eq!(
        second.address(),
        "10.1.10.13",
        "node address when the service has none"
    );
    assert!(second.in_maintenance());
    assert_eq!(second.aggregated_status().as_str(), "critical");

    assert_eq!(
        client.agent_self().await.unwrap().config.datacenter,
        "eu-west-1"
    );

    for seen in fx.seen() {
        assert_eq!(
            seen.headers.get("x-consul-token").map(String::as_str),
            Some("s3cr3t"),
            "{}",
            seen.path
        );
        let reads_catalog =
            seen.path.starts_with("/v1/catalog") || seen.path.starts_with("/v1/health");
        assert_eq!(
            seen.query.contains("dc=dc1"),
            reads_catalog,
            "{} ?{}",
            seen.path,
            seen.query
        );
    }
    let blocking = fx
        .seen()
        .into_iter()
        .find(|s| s.path == "/v1/health/service/redis")
        .unwrap();
    assert!(
        blocking.query.contains("index=11") && blocking.query.contains("wait=2s"),
        "{}",
        blocking.query
    );
}

/// The connector over real agent shapes: only its own entries (meta marker with its
/// name) are changed; the maintenance check reads as out of service.
#[tokio::test]
async fn consul_connector_on_fixtures_touches_only_its_own_entries() {
    let fx = Fixtures::default();
    consul_fixtures(&fx);
    let addr = serve_fixtures(&fx).await;
    let client = ConsulClient::new(ConsulConfig {
        addresses: vec![format!("http://{addr}")],
        token: None,
        datacenter: None,
    })
    .unwrap();
    let mut connector = Connector::new("tem".into(), Remote::Consul(client));
    let keep = DesiredRegistration::ready(
        "order",
        "order-7f",
        "10.0.0.7",
        8080,
        &identity(Lane::Canary),
    )
    .with_tags(vec!["lane=canary".into()]);
    let report = connector.converge(&[keep], t0()).await;
    assert_eq!(report.outcome, PassOutcome::Converged, "{report:?}");
    assert_eq!(report.observed, 2, "order-7f and order-9c carry bridge=tem");
    assert_eq!(op_kinds(&report.ops), pairs(&[("deregister", "order-9c")]));
    assert_eq!(
        fx.writes(),
        vec![
            (
                "PUT".to_owned(),
                "/v1/agent/service/deregister/order-9c".to_owned()
            ),
            (
                "PUT".to_owned(),
                "/v1/agent/check/pass/tideway-ttl%3Aorder-7f".to_owned()
            ),
        ]
    );
}

/// Minimal base64 for checking basic-auth headers.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn eureka_client_reads_real_shapes_with_url_credentials() {
    let fx = Fixtures::default();
    fx.json("/eureka/v2/apps/", "eureka/apps.json");
    fx.json("/eureka/v2/apps/ORDER", "eureka/app_order.json");
    fx.json("/eureka/apps/", "eureka/apps_legacy.json");
    let addr = serve_fixtures(&fx).await;
    let client = EurekaClient::new(EurekaConfig {
        urls: vec![format!("http://bridge:p%40ss@{addr}/eureka/v2")],
        username: Some("ignored".into()),
        password: Some("ignored".into()),
        zone: None,
    })
    .unwrap();
    assert!(
        !client.current_url().contains("p%40ss"),
        "credentials are not kept in the URL"
    );

    let apps = client.apps().await.unwrap();
    assert_eq!(apps.version_delta, 1);
    assert_eq!(apps.apps_hashcode, "OUT_OF_SERVICE_1_UP_2_");
    assert_eq!(apps.reconcile_hash(), apps.apps_hashcode);
    let order = apps.application("order").unwrap();
    let (o1, o2) = (&order.instances[0], &order.instances[1]);
    assert_eq!(o1.instance_id, "10.0.0.5:order:8080");
    assert_eq!(
        (
            o1.port,
            o1.port_enabled,
            o1.secure_port,
            o1.secure_port_enabled
        ),
        (8080, true, 443, false)
    );
    assert_eq!(o1.metadata["lane"], "canary");
    assert_eq!(o1.metadata["management.port"], "8081");
    assert_eq!(o1.lease.renewal_interval_secs, 30);
    assert_eq!(o1.lease.last_renewal_timestamp, 1_700_000_030_000);
    assert_eq!(o1.last_dirty_timestamp, 1_700_000_000_000);
    assert_eq!(o1.action_type, Some(ChangeAction::Added));
    assert_eq!(
        (o2.status, o2.overridden_status),
        (EurekaStatus::OutOfService, EurekaStatus::OutOfService)
    );
    assert!(o2.metadata.is_empty(), "EmptyMap marker dropped");
    let pay = &apps.application("PAY").unwrap().instances[0];
    assert_eq!(pay.data_center.name, "Amazon");
    assert_eq!(pay.data_center.metadata["availability-zone"], "us-east-1a");
    assert_eq!(pay.vip_address, "pay,payments");
    assert_eq!((pay.secure_port, pay.secure_port_enabled), (7002, true));

    let one = client.app("order").await.unwrap().unwrap();
    assert_eq!(one.name, "ORDER");
    assert_eq!(one.instances.len(), 1);
    assert!(client.app("missing").await.unwrap().is_none());

    for seen in fx.seen() {
        assert_eq!(
            seen.headers.get("accept").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            seen.headers.get("authorization").cloned(),
            Some(format!("Basic {}", base64(b"bridge:p@ss"))),
            "URL credentials win over the configured ones"
        );
    }

    // Legacy XStream JSON: one-element lists collapsed, unescaped keys, strings for
    // numbers, a bare `@enabled` bool, no instanceId.
    let legacy = EurekaClient::new(EurekaConfig {
        urls: vec![format!("http://{addr}/eureka/")],
        username: None,
        password: None,
        zone: None,
    })
    .unwrap();
    let apps = legacy.apps().await.unwrap();
    assert_eq!(apps.apps_hashcode, "UP_1_");
    let i = &apps.applications[0].instances[0];
    assert_eq!(
        (i.instance_id.as_str(), i.app.as_str()),
        ("legacy-host", "LEGACY")
    );
    assert_eq!((i.port, i.port_enabled), (8080, true));
    assert_eq!(i.lease.duration_secs, 90);
    assert_eq!(i.lease.last_renewal_timestamp, 1_700_000_030_000);
    assert_eq!(i.metadata["weight"], "5");
}

#[tokio::test]
async fn eureka_cache_merges_deltas_and_refetches_on_hash_mismatch() {
    let fx = Fixtures::default();
    fx.json("/eureka/apps/", "eureka/apps.json");
    fx.json("/eureka/apps/delta", "eureka/delta.json");
    let addr = serve_fixtures(&fx).await;
    let client = EurekaClient::new(EurekaConfig {
        urls: vec![format!("http://{addr}/eureka/")],
        username: None,
        password: None,
        zone: None,
    })
    .unwrap();
    let mut cache = AppsCache::new();
    let now = t0();
    cache.refresh(&client, now).await.unwrap();
    let merged = cache
        .refresh(&client, at(now, 30_000))
        .await
        .unwrap()
        .clone();
    assert_eq!(merged.apps_hashcode, "DOWN_1_UP_2_");
    assert_eq!(merged.version_delta, 7);
    let state: Vec<(String, EurekaStatus)> = merged
        .instances()
        .map(|i| (i.instance_id.clone(), i.status))
        .collect();
    assert_eq!(
        state,
        vec![
            ("10.0.0.5:order:8080".to_owned(), EurekaStatus::Down),
            ("i-0abc123".to_owned(), EurekaStatus::Up),
            ("i-0def456".to_owned(), EurekaStatus::Up),
        ]
    );
    assert_eq!((cache.full_fetches(), cache.delta_fetches()), (1, 1));

    // A delta whose hash does not match the merged copy: fetch in full again.
    fx.json("/eureka/apps/delta", "eureka/delta_stale.json");
    let apps = cache.refresh(&client, at(now, 60_000)).await.unwrap();
    assert_eq!(apps.apps_hashcode, "OUT_OF_SERVICE_1_UP_2_");
    assert_eq!((cache.full_fetches(), cache.delta_fetches()), (2, 2));
    // Too long since the last refresh for a delta to be complete: full.
    cache.refresh(&client, at(now, 400_000)).await.unwrap();
    assert_eq!((cache.full_fetches(), cache.delta_fetches()), (3, 2));
}

#[tokio::test]
async fn eureka_client_fails_over_and_speaks_the_write_protocol() {
    let fx = Fixtures::default();
    fx.json("/eureka/apps/", "eureka/apps.json");
    fx.route(
        "PUT",
        "/eureka/apps/ORDER/gone",
        404,
        Vec::new(),
        String::new(),
    );
    fx.route(
        "DELETE",
        "/eureka/apps/ORDER/gone",
        404,
        Vec::new(),
        String::new(),
    );
    let addr = serve_fixtures(&fx).await;
    let dead = closed_port().await;
    let client = EurekaClient::new(EurekaConfig {
        urls: vec![
            format!("http://{dead}/eureka/"),
            format!("http://{addr}/eureka/"),
        ],
        username: Some("svc".into()),
        password: Some("pw".into()),
        zone: Some("zone-a".into()),
    })
    .unwrap();
    let mut connector = Connector::new("tem".into(), Remote::Eureka(client.clone()));
    let desired = ready("order-a", 8080);
    let report = connector
        .converge(std::slice::from_ref(&desired), t0())
        .await;
    assert_eq!(report.outcome, PassOutcome::Converged, "{report:?}");
    assert!(
        client.current_url().contains(&addr.to_string()),
        "failed over"
    );

    let post = fx.seen().into_iter().find(|s| s.method == "POST").unwrap();
    assert_eq!(post.path, "/eureka/apps/ORDER");
    assert_eq!(
        post.headers["authorization"],
        format!("Basic {}", base64(b"svc:pw"))
    );
    assert!(post.headers["content-type"].starts_with("application/json"));
    let body: Value = serde_json::from_str(&post.body).unwrap();
    let i = &body["instance"];
    assert_eq!(i["instanceId"], "order-a");
    assert_eq!(i["app"], "ORDER");
    assert_eq!(i["status"], "UP");
    assert_eq!(i["port"], json!({"$": 8080, "@enabled": "true"}));
    assert_eq!(
        i["dataCenterInfo"]["@class"],
        "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
    );
    assert_eq!(
        i["leaseInfo"],
        json!({"renewalIntervalInSecs": 30, "durationInSecs": 90})
    );
    assert_eq!(i["metadata"]["zone"], "zone-a");
    assert_eq!(i["metadata"]["tideway-managed"], "true");
    assert_eq!(i["vipAddress"], "order");
    assert!(i["lastDirtyTimestamp"].is_string());

    assert_eq!(
        client.renew("order", "gone").await.unwrap(),
        Renewal::NotFound
    );
    assert!(!client.cancel("order", "gone").await.unwrap());
    client
        .set_status_override("order", "order-a", EurekaStatus::OutOfService, Some(42))
        .await
        .unwrap();
    let status = fx
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.method == "PUT")
        .unwrap();
    assert_eq!(status.path, "/eureka/apps/ORDER/order-a/status");
    assert_eq!(status.query, "value=OUT_OF_SERVICE&lastDirtyTimestamp=42");
}

/// Consul checks as the bridge registers them are accepted by the built-in registry's
/// decoder (the same shape real Consul takes), and a non-TTL check is re-registered
/// rather than passed.
#[tokio::test]
async fn consul_ttl_check_round_trips_through_the_agent_api() {
    let server = start().await;
    let Remote::Consul(client) = server.remote(Kind::Consul, None) else {
        unreachable!()
    };
    let mut connector = Connector::new("tem".into(), Remote::Consul(client.clone()));
    let desired = [ready("order-a", 8080)];
    connector.converge(&desired, t0()).await;
    // Someone replaces our TTL check with a (passing) TCP one: passing it fails with
    // Consul's "does not have associated TTL", so the heartbeat re-registers.
    server
        .registry
        .consul_check_register(CheckDefinition {
            id: Some("tideway-ttl:order-a".into()),
            name: None,
            service_id: Some("order-a".into()),
            notes: String::new(),
            status: Some(tideway_registry_bridge::model::CheckStatus::Passing),
            kind: CheckKind::Tcp {
                address: server.consul.to_string(),
            },
            interval: Some(Duration::from_secs(3600)),
            timeout: None,
            deregister_critical_after: None,
        })
        .unwrap();
    let report = connector.converge(&desired, at(t0(), 31_000)).await;
    assert_eq!(report.heartbeats.reregistered, 1, "{report:?}");
    let checks = get_json(format!("http://{}/v1/agent/checks", server.consul)).await;
    assert_eq!(checks["tideway-ttl:order-a"]["Type"], "ttl");
    assert!(report.ops.is_empty(), "{:?}", report.ops);
    server.stop().await;
}

/// The ACL token travels as `X-Consul-Token`; a wrong one is denied and the connector
/// backs off instead of hammering the agent.
#[tokio::test]
async fn consul_acl_token_is_sent_and_denial_backs_off() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = serve(
        Registry::new(RegistryConfig {
            consul_acl_token: Some("s3cr3t".into()),
            ..RegistryConfig::default()
        }),
        any,
        any,
    )
    .await;
    let with_token = |token: &str| {
        Remote::Consul(
            ConsulClient::new(ConsulConfig {
                addresses: vec![server.consul.to_string()],
                token: Some(token.into()),
                datacenter: Some("dc1".into()),
            })
            .unwrap(),
        )
    };
    let desired = [ready("order-a", 8080)];
    let t = t0();
    let mut good = Connector::new("tem".into(), with_token("s3cr3t"));
    let report = good.converge(&desired, t).await;
    assert_eq!(report.outcome, PassOutcome::Converged, "{report:?}");
    assert_eq!(statuses(&server.registry).len(), 1);

    let mut bad = Connector::new("tem".into(), with_token("wrong"));
    let report = bad.converge(&desired, t).await;
    assert_eq!(report.outcome, PassOutcome::Failed);
    assert_eq!(report.error.as_ref().unwrap().code, "denied");
    assert_eq!(report.next_retry, Some(at(t, 500)));
    assert_eq!(
        bad.converge(&desired, at(t, 100)).await.outcome,
        PassOutcome::BackingOff
    );
    server.stop().await;
}
