//! Conformance of the built-in registry with real, unchanged third-party clients
//! (py-eureka-client, eureka-js-client, py-consul, npm `consul`), plus HTTP-level checks
//! of the status codes and headers those clients rely on, and the blocking-query latency.
//!
//! The clients are installed by `conformance/setup.sh` (cached; run once per test binary,
//! under a lock). Each test starts its own `BuiltinRegistry` on `127.0.0.1:0` ports and
//! runs a client script from `conformance/` as a subprocess; the scripts print one
//! `OK <step>` line per verified step and `DONE` at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tideway_registry_bridge::{
    BuiltinRegistry, InstanceStatus, Origin, PlatformInstance, Registry, RegistryConfig,
    RequestStats,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Runs `setup.sh` once per test binary and returns the install directory.
fn install_clients() -> PathBuf {
    static INSTALLED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(dir) = &*installed {
        return dir.clone();
    }
    let output = std::process::Command::new("bash")
        .arg(conformance_dir().join("setup.sh"))
        .output()
        .expect("run setup.sh");
    assert!(
        output.status.success(),
        "setup.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("setup.sh prints its directory")
            .trim(),
    );
    *installed = Some(dir.clone());
    dir
}

async fn clients() -> PathBuf {
    tokio::task::spawn_blocking(install_clients).await.unwrap()
}

struct Server {
    registry: Arc<Registry>,
    eureka: SocketAddr,
    consul: SocketAddr,
    stats: Arc<RequestStats>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tideway_registry_bridge::Error>>,
}

async fn start(config: RegistryConfig) -> Server {
    let registry = Registry::new(config);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let builtin = BuiltinRegistry::bind(Arc::clone(&registry), any, any)
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

impl Server {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("EUREKA_URL", format!("http://{}/eureka/", self.eureka)),
            ("EUREKA_HOST", self.eureka.ip().to_string()),
            ("EUREKA_PORT", self.eureka.port().to_string()),
            ("CONSUL_HOST", self.consul.ip().to_string()),
            ("CONSUL_PORT", self.consul.port().to_string()),
        ]
    }

    fn count_prefix(&self, prefix: &str) -> u64 {
        self.stats
            .counts()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    fn services(&self) -> Vec<String> {
        let mut s: Vec<String> = self
            .registry
            .snapshot()
            .into_iter()
            .map(|i| i.service)
            .collect();
        s.sort();
        s.dedup();
        s
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("registry stops promptly")
            .unwrap()
            .unwrap();
    }
}

enum Lang {
    Python,
    Node,
}

/// Runs a conformance script and returns its stdout; panics with both streams on failure.
async fn run_script(
    server: &Server,
    lang: Lang,
    script: &str,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> String {
    let dir = clients().await;
    let mut cmd = match lang {
        Lang::Python => tokio::process::Command::new(dir.join("venv/bin/python")),
        Lang::Node => {
            let mut c = tokio::process::Command::new("node");
            c.env("NODE_PATH", dir.join("node_modules"));
            c
        }
    };
    cmd.arg(conformance_dir().join(script))
        .args(args)
        .current_dir(conformance_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(server.env())
        .envs(extra_env.iter().copied())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} timed out"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.lines().any(|l| l == "DONE"),
        "{script} {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    println!(
        "{script} {args:?} passed in {:.1}s:\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    stdout
}

fn assert_steps(stdout: &str, steps: &[&str]) {
    for step in steps {
        assert!(
            stdout
                .lines()
                .any(|l| l == format!("OK {step}") || l.starts_with(&format!("OK {step} "))),
            "step {step} missing from:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_eureka_client_basic_calls() {
    let server = start(RegistryConfig::default()).await;
    let out = run_script(&server, Lang::Python, "py_eureka_basic.py", &[], &[]).await;
    assert_steps(
        &out,
        &[
            "register",
            "get_applications",
            "get_application",
            "get_app_instance",
            "get_instance",
            "vips",
            "get_delta",
            "send_heartbeat",
            "status_update",
            "delete_status_override",
            "heartbeat_404",
            "cancel",
        ],
    );
    assert!(server.services().is_empty(), "{:?}", server.services());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_eureka_client_lifecycle() {
    let server = start(RegistryConfig::default()).await;
    let out = run_script(&server, Lang::Python, "py_eureka_lifecycle.py", &[], &[]).await;
    assert_steps(
        &out,
        &[
            "init",
            "registered",
            "heartbeat",
            "discovery_full",
            "discovery_delta",
            "walk_nodes",
            "stop",
        ],
    );
    assert!(
        server.count_prefix("PUT /eureka/apps/LIFECYCLE-PY/") >= 2,
        "{:?}",
        server.stats.counts()
    );
    assert!(server.stats.count("GET", "/eureka/apps/delta") >= 1);
    // Deregistered on stop; the later app is still there.
    assert_eq!(server.services(), vec!["LATE-PY".to_owned()]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eureka_js_client() {
    let server = start(RegistryConfig::default()).await;
    let out = run_script(&server, Lang::Node, "node_eureka.js", &[], &[]).await;
    assert_steps(
        &out,
        &[
            "start",
            "lookup",
            "renew",
            "delta",
            "reregister_on_404",
            "delta_delete",
            "stop",
        ],
    );
    assert!(server.stats.count("GET", "/eureka/v2/apps/delta") >= 1);
    assert!(server.stats.count("GET", "/eureka/v2/apps/") >= 2);
    assert!(server.services().is_empty(), "{:?}", server.services());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_consul_agent_checks_health_catalog() {
    let server = start(RegistryConfig {
        consul_acl_token: Some("s3cret".into()),
        ..RegistryConfig::default()
    })
    .await;
    let out = run_script(
        &server,
        Lang::Python,
        "py_consul_agent.py",
        &[],
        &[("CONSUL_TOKEN", "s3cret")],
    )
    .await;
    assert_steps(
        &out,
        &[
            "acl_write_denied",
            "register",
            "http_tcp_checks",
            "ttl_updates",
            "blocking_query",
            "blocking_timeout",
            "catalog",
            "agent_endpoints",
            "maintenance",
            "checks_fail",
            "deregister",
        ],
    );
    assert!(server.services().is_empty(), "{:?}", server.services());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_consul_lists_health_and_watch() {
    let server = start(RegistryConfig::default()).await;
    let out = run_script(&server, Lang::Node, "node_consul.js", &[], &[]).await;
    assert_steps(
        &out,
        &[
            "register",
            "lists",
            "health",
            "watch_started",
            "watch_idle",
            "watch_change",
            "deregister",
        ],
    );
    let direct: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("HEALTH_CALLS "))
        .and_then(|n| n.trim().parse().ok())
        .expect("HEALTH_CALLS line");
    let total = server.stats.count("GET", "/v1/health/service/nodeweb");
    let watch_requests = total - direct;
    println!(
        "npm consul watch made {watch_requests} requests over a ~3 s idle watch and one change"
    );
    // First fetch, one blocking request through the idle 3 s, the one that sees the
    // change, and the next one: a handful, not a busy loop.
    assert!(
        (2..=6).contains(&watch_requests),
        "watch made {watch_requests} requests"
    );
    assert!(server.services().is_empty(), "{:?}", server.services());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_protocol_visibility() {
    let server = start(RegistryConfig::default()).await;
    server.registry.put_platform(PlatformInstance {
        service: "platform-svc".into(),
        instance_id: "plat-1".into(),
        address: "127.0.0.1".into(),
        port: 9700,
        metadata: BTreeMap::from([("lane".into(), "green".into())]),
        tags: vec!["tideway".into()],
        status: InstanceStatus::Up,
    });
    let py =
        |args: &'static [&'static str]| run_script(&server, Lang::Python, "cross.py", args, &[]);
    let js = |args: &'static [&'static str]| run_script(&server, Lang::Node, "cross.js", args, &[]);

    // Eureka → Consul: an app registered by py-eureka-client, looked up as `cross-py`.
    py(&["eureka-register", "CROSS-PY", "cross-py-1", "9600", "blue"]).await;
    py(&["consul-find", "cross-py", "cross-py-1", "blue"]).await;
    js(&["consul-find", "cross-py", "cross-py-1", "blue"]).await;

    // Consul → Eureka: a py-consul service, looked up as app CROSS-CONSUL.
    py(&[
        "consul-register",
        "cross-consul",
        "cross-consul-1",
        "9601",
        "red",
    ])
    .await;
    py(&["eureka-find", "CROSS-CONSUL", "cross-consul-1", "red"]).await;
    js(&["eureka-find", "CROSS-CONSUL", "cross-consul-1", "red"]).await;

    // The platform's own instance appears in both.
    py(&["eureka-find", "PLATFORM-SVC", "plat-1", "green"]).await;
    js(&["eureka-find", "PLATFORM-SVC", "plat-1", "green"]).await;
    py(&["consul-find", "platform-svc", "plat-1", "green"]).await;
    js(&["consul-find", "platform-svc", "plat-1", "green"]).await;

    let origins: BTreeMap<String, Origin> = server
        .registry
        .snapshot()
        .into_iter()
        .map(|i| (i.instance_id, i.origin))
        .collect();
    assert_eq!(
        origins,
        BTreeMap::from([
            ("cross-consul-1".to_owned(), Origin::Consul),
            ("cross-py-1".to_owned(), Origin::Eureka),
            ("plat-1".to_owned(), Origin::Platform),
        ])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_query_returns_within_100ms_of_a_change() {
    let server = start(RegistryConfig::default()).await;
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for n in 0..5 {
        let index = server.registry.consul_service_index("latency");
        let url = format!(
            "http://{}/v1/health/service/latency?index={index}&wait=10s",
            server.consul
        );
        let waiting = {
            let http = http.clone();
            tokio::spawn(async move {
                let response = http.get(url).send().await.unwrap();
                let arrived = Instant::now();
                let index: u64 = response.headers()["x-consul-index"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let body: Value = response.json().await.unwrap();
                (arrived, index, body)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the query must block");
        let changed_at = Instant::now();
        let register = http
            .put(format!(
                "http://{}/v1/agent/service/register",
                server.consul
            ))
            .json(&json!({"Name": "latency", "ID": format!("latency-{n}"), "Port": 9000 + n}))
            .send()
            .await
            .unwrap();
        assert_eq!(register.status(), 200);
        let (arrived, new_index, body) = waiting.await.unwrap();
        let latency = arrived - changed_at;
        assert!(new_index > index);
        assert_eq!(body.as_array().unwrap().len(), n as usize + 1);
        latencies.push(latency);
    }
    let worst = latencies.iter().max().unwrap();
    println!("blocking query latency after a change (register → response): {latencies:?}, worst {worst:?}");
    assert!(
        *worst < Duration::from_millis(100),
        "worst latency {worst:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_codes_headers_and_acl() {
    let server = start(RegistryConfig {
        consul_acl_token: Some("tok".into()),
        eviction_interval: Duration::from_millis(200),
        ..RegistryConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let eureka = format!("http://{}/eureka", server.eureka);
    let consul = format!("http://{}", server.consul);

    // Eureka: 204 on register (lenient JSON), XML by default, JSON on request.
    let instance = json!({"instance": {"instanceId": "i-1", "app": "order", "hostName": "h", "ipAddr": "10.0.0.1",
        "port": 8080, "vipAddress": "order", "dataCenterInfo": {"name": "MyOwn"},
        "leaseInfo": {"durationInSecs": 1}}});
    let r = http
        .post(format!("{eureka}/v2/apps/order"))
        .json(&instance)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for path in [
        "/apps",
        "/apps/",
        "/v2/apps/ORDER/",
        "/apps/order/i-1",
        "/instances/i-1",
        "/vips/order",
    ] {
        let r = http.get(format!("{eureka}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "application/xml", "{path}");
        assert!(r.text().await.unwrap().starts_with("<?xml"), "{path}");
    }
    let r = http
        .get(format!("{eureka}/apps"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    let apps: Value = r.json().await.unwrap();
    assert_eq!(apps["applications"]["apps__hashcode"], "UP_1_");
    assert_eq!(
        apps["applications"]["application"][0]["instance"][0]["port"],
        json!({"$": 8080, "@enabled": "true"})
    );
    let bad = json!({"instance": {"app": "order", "hostName": "h", "port": 1, "dataCenterInfo": {"name": "MyOwn"}}});
    let r = http
        .post(format!("{eureka}/apps/order"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "Missing ip address".to_owned())
    );
    let r = http
        .put(format!("{eureka}/apps/ORDER/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .put(format!("{eureka}/apps/ORDER/i-1/status?value=BOGUS"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .put(format!("{eureka}/apps/ORDER/i-1/metadata?lane=canary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The 1 s lease is evicted by the running upkeep (eviction every 200 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.registry.eureka_app("ORDER").is_some() {
        assert!(Instant::now() < deadline, "lease not evicted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Consul: X-Consul-Index everywhere, never 0; reads without a token are allowed.
    for path in [
        "/v1/catalog/services",
        "/v1/agent/services",
        "/v1/status/leader",
        "/v1/health/service/none",
    ] {
        let r = http.get(format!("{consul}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let index: u64 = r.headers()["x-consul-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(index >= 1);
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        assert_eq!(r.headers()["x-consul-knownleader"], "true");
    }
    async fn register(req: reqwest::RequestBuilder) -> u16 {
        req.json(&json!({"Name": "acl"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    let url = format!("{consul}/v1/agent/service/register");
    assert_eq!(register(http.put(&url)).await, 403);
    assert_eq!(
        register(http.put(&url).header("X-Consul-Token", "wrong")).await,
        403
    );
    assert_eq!(register(http.put(format!("{url}?token=tok"))).await, 200);
    assert_eq!(
        register(http.put(&url).header("X-Consul-Token", "tok")).await,
        200
    );
    assert_eq!(
        register(http.put(&url).header("Authorization", "Bearer tok")).await,
        200
    );
    let r = http
        .get(format!("{consul}/v1/agent/services"))
        .header("X-Consul-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (403, "ACL not found".to_owned())
    );

    let get = |path: &str| http.get(format!("{consul}{path}")).send();
    assert_eq!(
        get("/v1/health/service/acl?passing=maybe")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        get("/v1/health/service/acl?index=1&wait=soon")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        get("/v1/health/service/acl?index=x")
            .await
            .unwrap()
            .status(),
        400
    );
    let filtered: Value = get("/v1/health/service/acl?filter=Service.ID%20%3D%3D%20%22acl%22")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    let r = http
        .put(format!("{consul}/v1/agent/service/deregister/nope"))
        .header("X-Consul-Token", "tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}
