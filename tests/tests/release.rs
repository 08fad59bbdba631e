//! Releases end to end with real processes and `examples/hello`: a healthy canary promotes
//! itself with the split it promised, an unhealthy one rolls itself back, gray rules route
//! exactly, a beta batch waits for confirmation, blue-green previews and rolls back
//! instantly, and a paused canary survives `kill -9` of the control plane.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tideway_e2e::{deploy_hello, pack_hello_with_env, wait_until, Backend, Reply, TestServer};

const APPS: &str = "/api/v1/namespaces/default/apps";

async fn start_release(s: &TestServer, app: &str, version: u32, strategy: Value) -> i64 {
    let r = s
        .post(
            &format!("{APPS}/{app}/releases"),
            json!({"target_version": version, "strategy": strategy}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_i64().unwrap()
}

async fn release(s: &TestServer, app: &str, id: i64) -> Value {
    s.get(&format!("{APPS}/{app}/releases/{id}")).await.body
}

async fn wait_state(s: &TestServer, app: &str, id: i64, state: &str, timeout: Duration) -> Value {
    wait_until(&format!("release {id} {state}"), timeout, || async {
        let r = release(s, app, id).await;
        assert!(
            r["state"] == state
                || r["state"]
                    .as_str()
                    .is_some_and(|s| s == "pending" || s == "progressing" || s == "paused"),
            "release ended as {} ({}) while waiting for {state}",
            r["state"],
            r["reason"]
        );
        r["state"] == state
    })
    .await;
    release(s, app, id).await
}

async fn control(s: &TestServer, app: &str, id: i64, action: &str, body: Value) -> Reply {
    s.post(&format!("{APPS}/{app}/releases/{id}/{action}"), body)
        .await
}

/// The version that answered one request through the gateway, or the failing status.
async fn hit(
    client: &reqwest::Client,
    s: &TestServer,
    app: &str,
    headers: &[(&str, &str)],
) -> Result<String, u16> {
    let mut req = client
        .get(format!("{}/", s.gateway_url))
        .header("host", format!("{app}.default.localhost"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.map_err(|_| 0u16)?;
    if resp.status() != StatusCode::OK {
        return Err(resp.status().as_u16());
    }
    let body: Value = resp.json().await.map_err(|_| 1u16)?;
    Ok(body["version"].as_str().unwrap_or("?").to_owned())
}

/// The version that answered, or the failing status (0: no response).
type Outcome = Result<String, u16>;

/// Background load; records (time, outcome) of every request.
struct Load {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(Instant, Outcome)>>>,
}

impl Load {
    fn start(s: &TestServer, app: &str, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        for _ in 0..clients {
            let (stop, log, client) = (stop.clone(), log.clone(), client.clone());
            let (url, host) = (s.gateway_url.clone(), format!("{app}.default.localhost"));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match client
                        .get(format!("{url}/"))
                        .header("host", &host)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == StatusCode::OK => {
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            Ok(body["version"].as_str().unwrap_or("?").to_owned())
                        }
                        Ok(r) => Err(r.status().as_u16()),
                        Err(_) => Err(0),
                    };
                    log.lock().unwrap().push((Instant::now(), outcome));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }
        Load { stop, log }
    }

    fn since(&self, t: Instant) -> Vec<Result<String, u16>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, o)| o.clone())
            .collect()
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn events_of(s_body: &Value, kind: &str) -> Vec<Value> {
    s_body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_canary_promotes_itself_with_the_promised_split() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "shop", 2, 2).await;
    let id = start_release(
        &s,
        "shop",
        2,
        json!({"type": "canary",
               "steps": [{"set_weight": 20}, {"pause": {"duration_secs": 30}},
                         {"set_weight": 50}, {"pause": {"duration_secs": 2}}],
               "analysis": {"interval_secs": 2, "min_requests": 5}}),
    )
    .await;
    wait_until("weight 20 applied", Duration::from_secs(30), || async {
        let r = release(&s, "shop", id).await;
        r["progress"]["weight"] == 20 && r["progress"]["pause_until"].is_string()
    })
    .await;
    let client = reqwest::Client::new();
    let mut counts: HashMap<String, u32> = HashMap::new();
    let outcomes: Vec<Result<String, u16>> = futures_util::stream::iter(0..5000)
        .map(|_| hit(&client, &s, "shop", &[]))
        .buffer_unordered(16)
        .collect()
        .await;
    for v in outcomes {
        *counts.entry(v.expect("request failed")).or_default() += 1;
    }
    let share = f64::from(counts.get("2").copied().unwrap_or(0)) / 50.0;
    println!("FIGURE canary at 20%: measured {share:.2}% of 5000 requests on v2");
    assert!((18.0..=22.0).contains(&share), "split {counts:?}");
    assert_eq!(
        release(&s, "shop", id).await["progress"]["weight"],
        20,
        "the split was measured at the 20% step"
    );

    let done = wait_state(&s, "shop", id, "succeeded", Duration::from_secs(60)).await;
    assert!(done["progress"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["outcome"] == "passed"));
    for _ in 0..20 {
        assert_eq!(hit(&client, &s, "shop", &[]).await.unwrap(), "2");
    }
    let app = s.get(&format!("{APPS}/shop")).await;
    assert_eq!(app.body["current_version"], 2);
    let events = s.get("/api/v1/events?app=shop&limit=500").await;
    assert!(
        !events_of(&events.body, "ReleaseSucceeded").is_empty(),
        "{}",
        events.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_canary_rolls_itself_back() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "pay", 1, 2).await;
    let r = s
        .upload(
            "pay",
            pack_hello_with_env(&[("HELLO_ERROR_RATE", "0.3")]),
            "application/gzip",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let load = Load::start(&s, "pay", 4);
    let (interval, limit) = (2u64, 2u64);
    let id = start_release(
        &s,
        "pay",
        2,
        json!({"type": "canary", "weights": [50],
               "analysis": {"interval_secs": interval, "failure_limit": limit, "min_requests": 10}}),
    )
    .await;
    // Traffic reaches v2 from the moment its weight is applied.
    let weight_at = {
        let t0 = Instant::now();
        wait_until("v2 takes traffic", Duration::from_secs(30), || async {
            load.since(t0)
                .iter()
                .any(|o| matches!(o, Ok(v) if v == "2") || matches!(o, Err(500)))
        })
        .await;
        Instant::now()
    };
    let aborted = wait_state(&s, "pay", id, "aborted", Duration::from_secs(30)).await;
    let took = weight_at.elapsed();
    println!(
        "FIGURE failing canary: traffic on v2 → aborted in {} ms (bound {} s)",
        took.as_millis(),
        interval * limit + interval
    );
    assert!(
        took <= Duration::from_secs(interval * limit + interval) + Duration::from_millis(1500),
        "aborted after {took:?}"
    );
    assert!(
        aborted["reason"].as_str().unwrap().contains("success rate"),
        "{aborted}"
    );
    let failed = aborted["progress"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "failed")
        .count();
    assert_eq!(failed as u64, limit);

    // All traffic back on stable at once: from here on every request is v1 and succeeds.
    let back = Instant::now();
    let settle = wait_until("no more v2", Duration::from_secs(5), || async {
        let recent = load.since(Instant::now() - Duration::from_millis(200));
        !recent.is_empty() && recent.iter().all(|o| matches!(o, Ok(v) if v == "1"))
    })
    .await;
    println!(
        "FIGURE aborted → all traffic on stable within {} ms",
        settle.as_millis()
    );
    let after = back + settle;
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop();
    let outcomes = load.since(after);
    assert!(outcomes.len() > 50);
    let bad: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok(v) if v == "1"))
        .collect();
    assert!(bad.is_empty(), "after the rollback: {bad:?}");
    let app = s.get(&format!("{APPS}/pay")).await;
    assert_eq!(app.body["current_version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gray_header_rule_routes_exactly() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "gray", 2, 1).await;
    let id = start_release(
        &s,
        "gray",
        2,
        json!({"type": "gray", "rules": [{"header": {"name": "x-canary", "exact": "true"}}]}),
    )
    .await;
    wait_state(&s, "gray", id, "paused", Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    wait_until("rule live", Duration::from_secs(5), || async {
        hit(&client, &s, "gray", &[("x-canary", "true")]).await == Ok("2".into())
    })
    .await;
    for _ in 0..200 {
        assert_eq!(
            hit(&client, &s, "gray", &[("x-canary", "true")])
                .await
                .unwrap(),
            "2"
        );
        assert_eq!(hit(&client, &s, "gray", &[]).await.unwrap(), "1");
    }
    let r = control(&s, "gray", id, "promote", json!({"full": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_state(&s, "gray", id, "succeeded", Duration::from_secs(30)).await;
    // Once promoted, requests without the header reach v2 too. (Under a loaded CI machine
    // one request right at the switch was once answered 503; see the closing note.)
    wait_until("v2 serves everyone", Duration::from_secs(5), || async {
        hit(&client, &s, "gray", &[]).await == Ok("2".into())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_beta_waits_for_confirmation() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "batchy", 2, 2).await;
    let id = start_release(
        &s,
        "batchy",
        2,
        json!({"type": "batch", "batches": 2, "interval_secs": 1, "beta": true}),
    )
    .await;
    let paused = wait_state(&s, "batchy", id, "paused", Duration::from_secs(30)).await;
    assert_eq!(paused["progress"]["target_replicas"], 1, "{paused}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = release(&s, "batchy", id).await;
    assert_eq!(
        still["state"], "paused",
        "the beta batch waits for confirmation"
    );
    let client = reqwest::Client::new();
    let mut seen = HashMap::<String, u32>::new();
    for _ in 0..200 {
        *seen
            .entry(hit(&client, &s, "batchy", &[]).await.unwrap())
            .or_default() += 1;
    }
    assert!(seen.contains_key("1") && seen.contains_key("2"), "{seen:?}");
    let r = control(&s, "batchy", id, "promote", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_state(&s, "batchy", id, "succeeded", Duration::from_secs(60)).await;
    assert_eq!(hit(&client, &s, "batchy", &[]).await.unwrap(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_previews_then_rolls_back_instantly() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "bg", 2, 2).await;
    let id = start_release(
        &s,
        "bg",
        2,
        json!({"type": "blue_green", "keep_old_secs": 120, "preview_host": "preview.bg.localhost"}),
    )
    .await;
    wait_state(&s, "bg", id, "paused", Duration::from_secs(30)).await;
    let client = reqwest::Client::new();
    wait_until("preview live", Duration::from_secs(5), || async {
        hit(&client, &s, "bg", &[("x-tideway-preview", "1")]).await == Ok("2".into())
    })
    .await;
    for _ in 0..50 {
        assert_eq!(
            hit(&client, &s, "bg", &[("x-tideway-preview", "1")])
                .await
                .unwrap(),
            "2"
        );
        assert_eq!(hit(&client, &s, "bg", &[]).await.unwrap(), "1");
    }
    let by_host = client
        .get(format!("{}/", s.gateway_url))
        .header("host", "preview.bg.localhost")
        .send()
        .await
        .unwrap();
    let body: Value = by_host.json().await.unwrap();
    assert_eq!(
        body["version"], "2",
        "the preview host reaches the new version"
    );

    let load = Load::start(&s, "bg", 2);
    let promoted = Instant::now();
    let r = control(&s, "bg", id, "promote", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let switched = wait_until("all traffic on v2", Duration::from_secs(10), || async {
        hit(&client, &s, "bg", &[]).await == Ok("2".into())
    })
    .await;
    println!(
        "FIGURE blue-green promote → gateway serving v2: {} ms",
        switched.as_millis()
    );
    let r = release(&s, "bg", id).await;
    assert!(r["progress"]["keep_old_until"].is_string(), "{r}");

    let r = s.post(&format!("{APPS}/bg/rollback"), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["target_version"], 1);
    let back = wait_until("all traffic on v1", Duration::from_secs(5), || async {
        hit(&client, &s, "bg", &[]).await == Ok("1".into())
    })
    .await;
    println!(
        "FIGURE blue-green rollback → gateway serving v1: {} ms",
        back.as_millis()
    );
    assert!(back < Duration::from_secs(2), "rollback took {back:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    load.stop();
    let failures: Vec<_> = load
        .since(promoted)
        .into_iter()
        .filter(|o| o.is_err())
        .collect();
    assert!(
        failures.is_empty(),
        "requests failed during switch and rollback: {failures:?}"
    );
    assert_eq!(release(&s, "bg", id).await["state"], "superseded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_canary_resumes_after_kill_9() {
    let mut s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "tough", 2, 2).await;
    let id = start_release(
        &s,
        "tough",
        2,
        json!({"type": "canary",
               "steps": [{"set_weight": 30}, {"pause": {"duration_secs": 12}},
                         {"set_weight": 60}, {"pause": {}}]}),
    )
    .await;
    wait_until("timed pause", Duration::from_secs(30), || async {
        release(&s, "tough", id).await["progress"]["pause_until"].is_string()
    })
    .await;
    let before = release(&s, "tough", id).await;
    let until: DateTime<Utc> = before["progress"]["pause_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    s.kill9().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.launch().await.unwrap();
    let after = release(&s, "tough", id).await;
    assert_eq!(
        after["progress"]["step"], before["progress"]["step"],
        "{after}"
    );
    assert_eq!(after["progress"]["weight"], 30);
    assert_eq!(
        after["progress"]["pause_until"],
        before["progress"]["pause_until"]
    );
    // The pause ends when it was due, not earlier, and the next step runs exactly once.
    let paused = wait_state(&s, "tough", id, "paused", Duration::from_secs(40)).await;
    let moved = Utc::now();
    assert!(moved >= until, "left the pause early");
    assert_eq!(paused["progress"]["weight"], 60);
    let events = s.get("/api/v1/events?app=tough&limit=500").await;
    let sixty: Vec<_> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["details"]["release"] == id
                && e["details"]["weight"] == 60
                && e["details"]["to_state"] == "progressing"
        })
        .collect();
    assert!(sixty.len() <= 1, "the 60% step ran twice: {sixty:?}");
    let client = reqwest::Client::new();
    let mut v2 = 0u32;
    for _ in 0..300 {
        if hit(&client, &s, "tough", &[]).await.unwrap() == "2" {
            v2 += 1;
        }
    }
    assert!(
        (130..=230).contains(&v2),
        "about 60% on v2 after the restart, got {v2}/300"
    );
}
