//! The registry bridge end to end: `examples/hello` appears in the built-in registry over
//! both protocols with its metadata and lane, is taken out before it stops, registers
//! itself when bound in `self` mode, and reaches an external registry (another `tideway
//! server`) that goes down and comes back.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tideway_e2e::{deploy_hello, wait_until, Backend, TestServer};

const APPS: &str = "/api/v1/namespaces/default/apps";

/// The Eureka instances of `app` in the registry at `eureka` (JSON).
async fn eureka_instances(eureka: &str, app: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{eureka}apps/{}", app.to_uppercase()))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return Vec::new();
    }
    let body: Value = r.json().await.unwrap();
    match &body["application"]["instance"] {
        Value::Array(items) => items.clone(),
        Value::Object(_) => vec![body["application"]["instance"].clone()],
        _ => Vec::new(),
    }
}

/// The Consul health entries of `service`.
async fn consul_entries(consul: &str, service: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{consul}/v1/health/service/{service}"))
        .send()
        .await
        .unwrap();
    r.json::<Vec<Value>>().await.unwrap_or_default()
}

async fn ready_ids(s: &TestServer, app: &str) -> Vec<(String, i64)> {
    let r = s.get(&format!("{APPS}/{app}/instances")).await;
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "ready")
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["pid"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn alive(pid: i64) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_appear_in_both_protocols_with_lane_and_drain_before_stopping() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let started = Instant::now();
    deploy_hello(&s, "hello", 2, 3).await;
    let ready_at = started.elapsed();
    let seen = wait_until("3 instances in Eureka", Duration::from_secs(10), || async {
        eureka_instances(&s.eureka_url, "hello").await.len() == 3
    })
    .await;
    println!(
        "FIGURE instances ready → visible in Eureka: ≤ {} ms after the release succeeded (ready at {} ms)",
        seen.as_millis(),
        ready_at.as_millis()
    );
    let ids: Vec<String> = ready_ids(&s, "hello")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for i in eureka_instances(&s.eureka_url, "hello").await {
        assert_eq!(i["status"], "UP", "{i}");
        let meta = &i["metadata"];
        assert_eq!(meta["tideway-namespace"], "default");
        assert_eq!(meta["tideway-app"], "hello");
        assert_eq!(meta["version"], "1");
        assert_eq!(meta["lane"], "stable");
        assert!(
            ids.contains(&i["instanceId"].as_str().unwrap().to_owned()),
            "{i}"
        );
    }
    let consul = consul_entries(&s.consul_url, "hello").await;
    assert_eq!(consul.len(), 3, "{consul:?}");
    assert_eq!(consul[0]["Service"]["Meta"]["tideway-app"], "hello");
    let passing = reqwest::get(format!("{}/v1/health/service/hello?passing", s.consul_url))
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(passing.len(), 3);

    // A canary instance carries lane=canary.
    let r = s
        .post(
            &format!("{APPS}/hello/releases"),
            json!({"target_version": 2, "strategy": {"type": "canary", "steps": [{"set_weight": 30}, {"pause": {}}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    wait_until("a canary in Eureka", Duration::from_secs(30), || async {
        eureka_instances(&s.eureka_url, "hello")
            .await
            .iter()
            .any(|i| i["metadata"]["lane"] == "canary" && i["metadata"]["version"] == "2")
    })
    .await;
    let id = r.body["id"].as_i64().unwrap();
    let r = s
        .post(&format!("{APPS}/hello/releases/{id}/abort"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_until("the canary gone", Duration::from_secs(30), || async {
        eureka_instances(&s.eureka_url, "hello").await.len() == 3
    })
    .await;

    // Scale-in: the leaving instance is out of service while its process still runs, then
    // deregistered.
    let before = ready_ids(&s, "hello").await;
    let scale_at = Instant::now();
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/hello/scale"),
            Some(json!({"replicas": 2})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let out_of_service = std::sync::Mutex::new(None::<(String, Duration)>);
    wait_until(
        "an instance out of service",
        Duration::from_secs(10),
        || async {
            for i in eureka_instances(&s.eureka_url, "hello").await {
                if i["status"] == "OUT_OF_SERVICE" {
                    let id = i["instanceId"].as_str().unwrap().to_owned();
                    *out_of_service.lock().unwrap() = Some((id, scale_at.elapsed()));
                    return true;
                }
            }
            false
        },
    )
    .await;
    let (leaving, took) = out_of_service.into_inner().unwrap().unwrap();
    let pid = before.iter().find(|(id, _)| *id == leaving).unwrap().1;
    assert!(
        alive(pid),
        "the process stopped before the registry took it out"
    );
    println!(
        "FIGURE drain start → out of service: ≤ {} ms",
        took.as_millis()
    );
    wait_until(
        "deregistered after stopping",
        Duration::from_secs(20),
        || async {
            let ids: Vec<String> = eureka_instances(&s.eureka_url, "hello")
                .await
                .iter()
                .map(|i| i["instanceId"].as_str().unwrap().to_owned())
                .collect();
            ids.len() == 2 && !ids.contains(&leaving)
        },
    )
    .await;
    assert!(!alive(pid), "deregistered only after the process stopped");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_registry_converges_after_an_outage() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut remote = TestServer::start_with(Backend::Sqlite, &["--eureka-addr", &addr])
        .await
        .unwrap();
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let r = s
        .post(
            "/api/v1/namespaces/default/registries",
            json!({"name": "corp", "kind": "eureka", "addresses": [remote.eureka_url.clone()], "password": "secret", "username": "tw"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["has_credentials"], true);
    assert!(r.body.get("password").is_none(), "secrets are write-only");
    let r = s
        .post(APPS, json!({"name": "orders", "replicas": 2, "registries": [{"registry": "corp", "service": "orders"}]}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let artifact = tideway_e2e::pack_dir(&tideway_e2e::repo_root().join("examples/hello"));
    let r = s.upload("orders", artifact, "application/gzip").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s
        .post(
            &format!("{APPS}/orders/releases"),
            json!({"target_version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let visible = wait_until(
        "2 instances in the remote registry",
        Duration::from_secs(40),
        || async { eureka_instances(&remote.eureka_url, "orders").await.len() == 2 },
    )
    .await;
    println!(
        "FIGURE release started → visible in the external Eureka: {} ms",
        visible.as_millis()
    );

    // The remote goes away; meanwhile the app scales out and back in.
    remote.kill9().await.unwrap();
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/orders/scale"),
            Some(json!({"replicas": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_until("3 ready", Duration::from_secs(30), || async {
        ready_ids(&s, "orders").await.len() == 3
    })
    .await;
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/orders/scale"),
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_until("1 ready", Duration::from_secs(30), || async {
        ready_ids(&s, "orders").await.len() == 1
    })
    .await;
    let status = s.get("/api/v1/namespaces/default/registries/corp").await;
    assert!(status.body["status"].is_object(), "{}", status.text);

    // It comes back (empty, as a restarted Eureka is): exactly the one live instance.
    remote.launch().await.unwrap();
    let want: Vec<String> = ready_ids(&s, "orders")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let back = wait_until(
        "converged after the outage",
        Duration::from_secs(60),
        || async {
            let got: Vec<String> = eureka_instances(&remote.eureka_url, "orders")
                .await
                .iter()
                .map(|i| i["instanceId"].as_str().unwrap().to_owned())
                .collect();
            got == want
        },
    )
    .await;
    println!("FIGURE registry back → converged: {} ms", back.as_millis());
    let listed = s
        .get("/api/v1/namespaces/default/registries/corp/instances")
        .await;
    // Instances still draining are listed out of service; exactly one is up.
    let up = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "UP")
        .count();
    assert_eq!(up, 1, "{}", listed.text);
}

/// Installs the third-party registry clients (cached) and returns their directory.
fn conformance_clients() -> std::path::PathBuf {
    let out = std::process::Command::new("bash")
        .arg(tideway_e2e::repo_root().join("registry-bridge/conformance/setup.sh"))
        .output()
        .expect("run setup.sh");
    assert!(
        out.status.success(),
        "setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    std::path::PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("setup.sh prints its directory")
            .trim(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_registering_app_uses_the_injected_id_and_is_drained() {
    let clients = conformance_clients();
    let python = clients.join("venv/bin/python");
    let app_py =
        std::fs::read_to_string(tideway_e2e::repo_root().join("examples/eureka-self/app.py"))
            .unwrap();
    let toml = format!(
        "[run]\ncommand = \"{} app.py\"\n[health]\nhttp = \"/\"\n",
        python.display()
    );
    let artifact = tideway_e2e::pack_files(&[("app.py", &app_py), ("tideway.toml", &toml)]);
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let r = s
        .post(
            APPS,
            json!({"name": "selfie", "replicas": 2, "registries": [{"registry": "builtin", "mode": "self"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s.upload("selfie", artifact, "application/gzip").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .post(
            &format!("{APPS}/selfie/releases"),
            json!({"target_version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    wait_until(
        "2 self-registered, ready instances",
        Duration::from_secs(60),
        || async {
            eureka_instances(&s.eureka_url, "selfie").await.len() == 2
                && ready_ids(&s, "selfie").await.len() == 2
        },
    )
    .await;
    let ready = ready_ids(&s, "selfie").await;
    for i in eureka_instances(&s.eureka_url, "selfie").await {
        let id = i["instanceId"].as_str().unwrap();
        assert!(
            ready.iter().any(|(r, _)| r == id),
            "registered under the injected id: {id} not in {ready:?}"
        );
        assert_eq!(i["metadata"]["lane"], "stable");
        assert!(
            i["metadata"].get("tideway-managed").is_none(),
            "the app registered itself, not the platform"
        );
    }
    // Visible through the Consul API too.
    assert_eq!(consul_entries(&s.consul_url, "selfie").await.len(), 2);

    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/selfie/scale"),
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let leaving = std::sync::Mutex::new(None::<String>);
    wait_until(
        "the leaving instance out of service",
        Duration::from_secs(10),
        || async {
            for i in eureka_instances(&s.eureka_url, "selfie").await {
                if i["status"] == "OUT_OF_SERVICE" {
                    *leaving.lock().unwrap() = Some(i["instanceId"].as_str().unwrap().to_owned());
                    return true;
                }
            }
            false
        },
    )
    .await;
    let leaving = leaving.into_inner().unwrap().unwrap();
    let pid = ready.iter().find(|(id, _)| *id == leaving).unwrap().1;
    assert!(alive(pid), "taken out of the registry while still running");
    wait_until(
        "deregistered by the app on SIGTERM",
        Duration::from_secs(20),
        || async { eureka_instances(&s.eureka_url, "selfie").await.len() == 1 },
    )
    .await;
}

/// The service IDs a Consul agent at `consul` holds for `service`.
async fn consul_ids(consul: &str, service: &str) -> Vec<String> {
    let mut ids: Vec<String> = consul_entries(consul, service)
        .await
        .iter()
        .filter_map(|e| e["Service"]["ID"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_consul_converges_after_an_outage() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut remote = TestServer::start_with(Backend::Sqlite, &["--consul-addr", &addr])
        .await
        .unwrap();
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let r = s
        .post(
            "/api/v1/namespaces/default/registries",
            json!({"name": "mesh", "kind": "consul", "addresses": [remote.consul_url.clone()], "token": "t0ken", "datacenter": "dc1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["has_token"], true);
    assert!(r.body.get("token").is_none(), "secrets are write-only");
    let r = s
        .post(
            APPS,
            json!({"name": "pay", "replicas": 2, "registries": [{"registry": "mesh", "tags": ["v1"]}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let artifact = tideway_e2e::pack_dir(&tideway_e2e::repo_root().join("examples/hello"));
    let r = s.upload("pay", artifact, "application/gzip").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s
        .post(
            &format!("{APPS}/pay/releases"),
            json!({"target_version": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let visible = wait_until(
        "2 instances in the remote Consul",
        Duration::from_secs(40),
        || async { consul_ids(&remote.consul_url, "pay").await.len() == 2 },
    )
    .await;
    println!(
        "FIGURE release started → visible in the external Consul: {} ms",
        visible.as_millis()
    );
    let entry = &consul_entries(&remote.consul_url, "pay").await[0];
    assert_eq!(entry["Service"]["Meta"]["tideway-app"], "pay", "{entry}");
    assert_eq!(entry["Service"]["Meta"]["lane"], "stable", "{entry}");

    remote.kill9().await.unwrap();
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/pay/scale"),
            Some(json!({"replicas": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_until("3 ready", Duration::from_secs(30), || async {
        ready_ids(&s, "pay").await.len() == 3
    })
    .await;
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/pay/scale"),
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_until("1 ready", Duration::from_secs(30), || async {
        ready_ids(&s, "pay").await.len() == 1
    })
    .await;

    remote.launch().await.unwrap();
    let mut want: Vec<String> = ready_ids(&s, "pay")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    want.sort();
    let back = wait_until(
        "converged after the outage",
        Duration::from_secs(60),
        || async { consul_ids(&remote.consul_url, "pay").await == want },
    )
    .await;
    println!("FIGURE Consul back → converged: {} ms", back.as_millis());
}
