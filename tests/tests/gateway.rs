//! The gateway end to end, through the real binary: host, domain and prefix routing;
//! weighted, rule-based and sticky splits; failures and draining under load; WebSocket and
//! h2c; route changes going live; activation from zero; per-second metrics.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tideway_e2e::{deploy_hello, pack_dir, repo_root, wait_until, Backend, TestServer};

const APPS: &str = "/api/v1/namespaces/default/apps";

async fn ready_versions(s: &TestServer, app: &str) -> Vec<u64> {
    let r = s.get(&format!("{APPS}/{app}/instances")).await;
    let mut v: Vec<u64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "ready")
        .map(|i| i["version"].as_u64().unwrap())
        .collect();
    v.sort_unstable();
    v
}

async fn put_traffic(s: &TestServer, app: &str, policy: Value) -> reqwest::StatusCode {
    s.call(Method::PUT, &format!("{APPS}/{app}/traffic"), Some(policy))
        .await
        .status
}

/// A GET through the gateway for `host`.
async fn through(
    client: &reqwest::Client,
    s: &TestServer,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = client
        .get(format!("{}{path}", s.gateway_url))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn version_of(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["version"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_by_host_domain_and_prefix() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "shop", 1, 1).await;
    let client = reqwest::Client::new();
    let r = through(
        &client,
        &s,
        "shop.default.localhost",
        "/",
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert_eq!(version_of(r).await, "1");

    let r = s
        .call(
            Method::PATCH,
            &format!("{APPS}/shop"),
            Some(json!({"domains": ["shop.example.com"], "path_prefixes": ["/shop"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_until("domain route", Duration::from_secs(2), || async {
        through(&client, &s, "shop.example.com", "/", &[])
            .await
            .status()
            == StatusCode::OK
    })
    .await;
    let r = through(&client, &s, "anything.else", "/shop/cart", &[]).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["path"], "/shop/cart", "prefixes are not stripped");

    // Another app may not claim the same domain.
    s.post(APPS, json!({"name": "other"})).await;
    let r = s
        .call(
            Method::PATCH,
            &format!("{APPS}/other"),
            Some(json!({"domains": ["shop.example.com"]})),
        )
        .await;
    assert_eq!(r.code(), "route_taken");
    let r = s
        .call(
            Method::PATCH,
            &format!("{APPS}/other"),
            Some(json!({"domains": ["x.localhost"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    let r = through(
        &client,
        &s,
        "nobody.default.localhost",
        "/",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
    // An app with no ready instance answers 503 with Retry-After (once its route is live:
    // `other` was created a moment ago, and the table follows within a rebuild).
    wait_until("the route of `other`", Duration::from_secs(2), || async {
        through(&client, &s, "other.default.localhost", "/", &[])
            .await
            .status()
            != StatusCode::NOT_FOUND
    })
    .await;
    let r = through(&client, &s, "other.default.localhost", "/", &[]).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    let r = through(
        &client,
        &s,
        "other.default.localhost",
        "/",
        &[("accept", "text/html")],
    )
    .await;
    assert!(r.text().await.unwrap().contains("<html"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_rule_and_sticky_splits() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "split", 2, 1).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // Validation first: weights must sum to 100 and name existing versions.
    let bad = put_traffic(
        &s,
        "split",
        json!({"weights": [{"version": 1, "weight": 90}]}),
    )
    .await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = put_traffic(
        &s,
        "split",
        json!({"weights": [{"version": 1, "weight": 50}, {"version": 9, "weight": 50}]}),
    )
    .await;
    assert_eq!(bad, StatusCode::UNPROCESSABLE_ENTITY);

    let policy = json!({
        "weights": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}],
        "rules": [
            {"header": {"name": "x-canary", "exact": "true"}, "version": 2},
            {"cookie": {"name": "canary", "value": "always"}, "version": 2},
            {"query": {"name": "lane", "value": "stable"}, "version": 1}
        ],
        "sticky": {"header": "x-user"}
    });
    assert_eq!(put_traffic(&s, "split", policy).await, StatusCode::OK);
    // A version given weight is kept running.
    wait_until("v2 instance", Duration::from_secs(30), || async {
        ready_versions(&s, "split").await == [1, 2]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let total = 10_000;
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<String, u32>::new()));
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, counts, next) = (client.clone(), counts.clone(), next.clone());
        let url = s.gateway_url.clone();
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                let r = client
                    .get(format!("{url}/"))
                    .header("host", "split.default.localhost")
                    .send()
                    .await
                    .unwrap();
                let v = version_of(r).await;
                *counts.lock().unwrap().entry(v).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    let v2 = f64::from(*counts.get("2").unwrap_or(&0)) / f64::from(total) * 100.0;
    println!("FIGURE 90/10 split over {total} requests: v2 got {v2:.2} %");
    assert!((8.0..=12.0).contains(&v2), "{counts:?}");

    for (headers, expected) in [
        (vec![("x-canary", "true")], "2"),
        (vec![("cookie", "theme=dark; canary=always")], "2"),
    ] {
        for _ in 0..200 {
            let r = through(&client, &s, "split.default.localhost", "/", &headers).await;
            assert_eq!(version_of(r).await, expected, "{headers:?}");
        }
    }
    for _ in 0..200 {
        let r = through(&client, &s, "split.default.localhost", "/?lane=stable", &[]).await;
        assert_eq!(version_of(r).await, "1");
    }
    // Sticky: each user stays on one version; over many users both versions are used.
    let mut seen = HashMap::new();
    for user in 0..100 {
        let id = format!("user-{user}");
        let first = version_of(
            through(
                &client,
                &s,
                "split.default.localhost",
                "/",
                &[("x-user", &id)],
            )
            .await,
        )
        .await;
        for _ in 0..10 {
            let again = version_of(
                through(
                    &client,
                    &s,
                    "split.default.localhost",
                    "/",
                    &[("x-user", &id)],
                )
                .await,
            )
            .await;
            assert_eq!(again, first, "{id} moved");
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert!(seen.len() == 2, "{seen:?}");

    // Per-second metrics reflect the load, per version.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = s.get(&format!("{APPS}/split/metrics?step=60")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let total_seen: u64 = r.body["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().iter())
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert!(total_seen >= u64::from(total), "{total_seen} {}", r.text);
    let series_versions: Vec<u64> = r.body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_u64().unwrap())
        .collect();
    assert!(series_versions.contains(&1) && series_versions.contains(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_are_live_within_100ms() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "flip", 2, 1).await;
    let both = json!({"weights": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}],
                      "rules": [{"header": {"name": "x-warm", "exact": "1"}, "version": 2}]});
    assert_eq!(put_traffic(&s, "flip", both).await, StatusCode::OK);
    wait_until("v2 instance", Duration::from_secs(30), || async {
        ready_versions(&s, "flip").await == [1, 2]
    })
    .await;
    let client = reqwest::Client::new();
    let mut worst = Duration::ZERO;
    for (to, weights) in [("2", [0, 100]), ("1", [100, 0]), ("2", [0, 100])] {
        let policy = json!({"weights": [{"version": 1, "weight": weights[0]}, {"version": 2, "weight": weights[1]}],
                            "rules": [{"header": {"name": "x-warm", "exact": "1"}, "version": 2}]});
        assert_eq!(put_traffic(&s, "flip", policy).await, StatusCode::OK);
        let took = wait_until("the new split", Duration::from_secs(2), || async {
            version_of(through(&client, &s, "flip.default.localhost", "/", &[]).await).await == to
        })
        .await;
        worst = worst.max(took);
    }
    println!(
        "FIGURE route change live after the API call returned: worst {} ms",
        worst.as_millis()
    );
    assert!(worst < Duration::from_millis(100), "{worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failed_requests_when_an_instance_dies_or_drains() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "steady", 1, 2).await;
    wait_until("2 ready", Duration::from_secs(30), || async {
        ready_versions(&s, "steady").await == [1, 1]
    })
    .await;
    let client = reqwest::Client::new();

    // Load from 16 clients while one instance is killed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, stop, url) = (client.clone(), stop.clone(), s.gateway_url.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client
                    .get(format!("{url}/"))
                    .header("host", "steady.default.localhost")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == StatusCode::OK => ok += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = s.get(&format!("{APPS}/steady/instances")).await;
    let pid = r.body["items"][0]["pid"].as_i64().unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    println!(
        "FIGURE requests during kill -9 of an instance: {ok} ok, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    // Draining: a slow request in flight on v1 finishes while v1 is replaced by v2.
    let artifact = pack_dir(&repo_root().join("examples/hello"));
    let r = s.upload("steady", artifact, "application/gzip").await;
    assert_eq!(r.body["number"], 2);
    let slow = {
        let (client, url) = (client.clone(), s.gateway_url.clone());
        tokio::spawn(async move {
            let r = client
                .get(format!("{url}/?delay_ms=1500"))
                .header("host", "steady.default.localhost")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s
        .post(
            &format!("{APPS}/steady/releases"),
            json!({"target_version": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (status, body) = slow.await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "the in-flight request survived draining"
    );
    assert_eq!(body["version"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_h2c_pass_through() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    s.post(APPS, json!({"name": "ws"})).await;
    let r = s
        .upload(
            "ws",
            pack_dir(&repo_root().join("tests/fixtures/ws-echo")),
            "application/gzip",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .post(&format!("{APPS}/ws/releases"), json!({"target_version": 1}))
        .await;
    let id = r.body["id"].as_i64().unwrap();
    wait_until("release", Duration::from_secs(30), || async {
        s.get(&format!("{APPS}/ws/releases/{id}")).await.body["state"] == "succeeded"
    })
    .await;

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
    let ws_url = s.gateway_url.replace("http://", "ws://") + "/socket";
    let mut request = ws_url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "ws.default.localhost".parse().unwrap());
    let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through", "the gateway"] {
        socket.send(Message::text(text)).await.unwrap();
        let echo = socket.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    socket.close(None).await.unwrap();

    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("{}/", s.gateway_url))
        .header("host", "ws.default.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ws-echo\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_from_zero() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "sleepy", 1, 1).await;
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/sleepy/autoscaling"),
            Some(json!({"min": 0, "max": 3, "scale_to_zero": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/sleepy/scale"),
            Some(json!({"replicas": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_until("scale to zero", Duration::from_secs(20), || async {
        ready_versions(&s, "sleepy").await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let r = through(&client, &s, "sleepy.default.localhost", "/", &[]).await;
    let took = started.elapsed();
    println!(
        "FIGURE first request at zero answered after {} ms (cold start)",
        took.as_millis()
    );
    assert_eq!(version_of(r).await, "1");
    let r = s.get("/api/v1/events?app=sleepy&type=AppActivated").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.get(&format!("{APPS}/sleepy/scale")).await.body["replicas"],
        1
    );
}
