//! The autoscaler end to end with real processes: a load step on `examples/hello` scales it
//! out within two ticks, it scales back after the stable window, and with scale to zero it
//! reaches zero and the next request is still served.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tideway_e2e::{deploy_hello, wait_until, Backend, TestServer};

const APPS: &str = "/api/v1/namespaces/default/apps";

async fn desired(s: &TestServer, app: &str) -> u64 {
    s.get(&format!("{APPS}/{app}/scale")).await.body["replicas"]
        .as_u64()
        .unwrap()
}

async fn ready(s: &TestServer, app: &str) -> usize {
    let r = s.get(&format!("{APPS}/{app}/instances")).await;
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] == "ready")
        .count()
}

/// Stores `policy` as the app's autoscaling policy.
async fn put_policy(s: &TestServer, app: &str, policy: Value) {
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/{app}/autoscaling"),
            Some(policy),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// `clients` concurrent loops of `GET /?delay_ms=100` through the gateway until `stop`.
fn load(s: &TestServer, host: &str, clients: usize, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let failures = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    for _ in 0..clients {
        let (client, stop, failures) = (client.clone(), stop.clone(), failures.clone());
        let url = format!("{}/?delay_ms=100", s.gateway_url);
        let host = host.to_string();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = client
                    .get(&url)
                    .header("host", &host)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_step_scales_out_fast_and_back_after_the_stable_window() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "busy", 1, 1).await;
    put_policy(
        &s,
        "busy",
        json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 5}],
            "stable_window_secs": 10
        }),
    )
    .await;
    // Let the autoscaler see idle seconds first, as in production.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(desired(&s, "busy").await, 1);

    let stop = Arc::new(AtomicBool::new(false));
    let step = Instant::now();
    let failures = load(&s, "busy.default.localhost", 40, stop.clone());
    let reached = wait_until("desired ≥ 8", Duration::from_secs(10), || async {
        desired(&s, "busy").await >= 8
    })
    .await;
    println!("FIGURE load step → desired ≥ 8: {} ms", reached.as_millis());
    assert!(
        reached <= Duration::from_secs(2),
        "desired reached 8 only after {reached:?}"
    );
    let ready_after = wait_until("8 ready instances", Duration::from_secs(30), || async {
        ready(&s, "busy").await >= 8
    })
    .await;
    println!(
        "FIGURE load step → 8 instances ready: {} ms",
        (step.elapsed().min(ready_after + reached)).as_millis()
    );

    // Why did it scale? The status and the event carry the reason.
    let status = s.get(&format!("{APPS}/busy/autoscaling/status")).await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_eq!(status.body["enabled"], true);
    let decision = &status.body["decisions"][0];
    assert!(decision["to"].as_u64().unwrap() >= 2, "{decision}");
    let metric = &decision["reason"]["metrics"][0];
    assert_eq!(metric["type"], "concurrency");
    assert!(metric["panic"].as_f64().unwrap() > 5.0, "{decision}");
    let events = s.get("/api/v1/events?app=busy&type=Autoscaled").await;
    assert!(!events.body["items"].as_array().unwrap().is_empty());

    stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    let down = wait_until("scale back to 1", Duration::from_secs(60), || async {
        desired(&s, "busy").await == 1
    })
    .await;
    println!(
        "FIGURE load stop → desired back to 1: {} ms",
        down.as_millis()
    );
    assert!(
        stopped.elapsed() >= Duration::from_secs(9),
        "scaled down to 1 before a stable window passed"
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0, "requests failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_and_back_on_the_next_request() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "nap", 1, 1).await;
    put_policy(
        &s,
        "nap",
        json!({
            "min": 0, "max": 3, "scale_to_zero": true,
            "metrics": [{"type": "rps", "target": 50}],
            "stable_window_secs": 6, "scale_to_zero_grace_secs": 2
        }),
    )
    .await;
    let idle = wait_until("scale to zero", Duration::from_secs(40), || async {
        desired(&s, "nap").await == 0 && ready(&s, "nap").await == 0
    })
    .await;
    println!("FIGURE idle → zero instances: {} ms", idle.as_millis());
    // The drained instance keeps running for the drain delay (a request racing the route
    // change is still served by it); the next request must find nothing running.
    wait_until(
        "the last instance stopped",
        Duration::from_secs(20),
        || async {
            let r = s.get(&format!("{APPS}/nap/instances")).await;
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["state"] == "stopped")
        },
    )
    .await;
    assert!(
        idle >= Duration::from_secs(7),
        "reached zero after only {idle:?}"
    );

    let client = reqwest::Client::new();
    let started = Instant::now();
    let r = client
        .get(format!("{}/", s.gateway_url))
        .header("host", "nap.default.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], "1");
    println!(
        "FIGURE first request at zero served after {} ms",
        started.elapsed().as_millis()
    );
    let activated = s.get("/api/v1/events?app=nap&type=AppActivated").await;
    assert_eq!(activated.body["items"].as_array().unwrap().len(), 1);
    assert!(desired(&s, "nap").await >= 1);
}

/// An app's instance exporting `queue_length` with the real OpenTelemetry SDK, tagged with
/// the instance id the platform gives it (`service.instance.id`).
fn queue_exporter(
    otlp_url: &str,
    instance: &str,
    value: f64,
) -> opentelemetry_sdk::metrics::SdkMeterProvider {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(otlp_url)
        .with_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(Duration::from_millis(500))
        .build();
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name("worker")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance.to_owned(),
        ))
        .build();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    let meter = provider.meter("worker");
    let _gauge = meter
        .f64_observable_gauge("queue_length")
        .with_callback(move |g| g.observe(value, &[]))
        .build();
    provider
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metric_over_otlp_drives_the_count() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "worker", 1, 1).await;
    let instances = s.get(&format!("{APPS}/worker/instances")).await;
    let instance = instances.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    put_policy(
        &s,
        "worker",
        json!({
            "min": 1, "max": 6,
            "metrics": [{"type": "custom", "name": "queue_length", "target": 10}],
            "stable_window_secs": 10
        }),
    )
    .await;
    // A queue of 35 items at 10 per instance asks for 4 instances.
    let provider = queue_exporter(&s.otlp_url, &instance, 35.0);
    let took = wait_until(
        "desired 4 from the custom metric",
        Duration::from_secs(30),
        || async { desired(&s, "worker").await == 4 },
    )
    .await;
    println!(
        "FIGURE custom metric exported → desired 4: {} ms",
        took.as_millis()
    );
    let status = s.get(&format!("{APPS}/worker/autoscaling/status")).await;
    let reading = &status.body["decisions"][0]["reason"]["metrics"][0];
    assert_eq!(reading["type"], "custom");
    assert_eq!(reading["name"], "queue_length");
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_errors_name_the_field() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let r = s.post(APPS, json!({"name": "strict"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    for (policy, field) in [
        (json!({"min": 5, "max": 2}), "min"),
        (
            json!({"min": 1, "max": 2, "stable_window_secs": 2}),
            "stable_window_secs",
        ),
        (
            json!({"min": 1, "max": 2, "metrics": [{"type": "latency", "target": 1}]}),
            "",
        ),
        (
            json!({"min": 1, "max": 2, "schedules": [{"cron": "0 25 * * *", "timezone": "UTC", "duration_secs": 3600, "min": 1, "max": 2}]}),
            "schedules[0].cron",
        ),
        (
            json!({"min": 1, "max": 2, "schedules": [{"cron": "0 9 * * 1-5", "timezone": "Mars/Olympus", "duration_secs": 3600, "min": 1, "max": 2}]}),
            "schedules[0].timezone",
        ),
    ] {
        let r = s
            .call(
                Method::PUT,
                &format!("{APPS}/strict/autoscaling"),
                Some(policy.clone()),
            )
            .await;
        assert!(
            r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::BAD_REQUEST,
            "{policy}: {} {}",
            r.status,
            r.text
        );
        if !field.is_empty() {
            assert_eq!(r.body["error"]["details"]["field"], field, "{}", r.text);
        }
    }
}

/// The benchmark of the real system's reaction (run by `bench/autoscaler.sh`, not CI):
/// over several load steps, the time from the step to the first scale-up decision and to
/// the first new instance being ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with bench/autoscaler.sh"]
async fn reaction_time_over_runs() {
    let runs: usize = std::env::var("TIDEWAY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "bench", 1, 1).await;
    put_policy(
        &s,
        "bench",
        json!({
            "min": 1, "max": 10,
            "metrics": [{"type": "concurrency", "target": 5}],
            "stable_window_secs": 10
        }),
    )
    .await;
    let (mut decisions, mut readies) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        wait_until(
            "back to one ready instance",
            Duration::from_secs(90),
            || async { desired(&s, "bench").await == 1 && ready(&s, "bench").await == 1 },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let step = Instant::now();
        load(&s, "bench.default.localhost", 40, stop.clone());
        let decided = wait_until("a scale-up decision", Duration::from_secs(10), || async {
            desired(&s, "bench").await > 1
        })
        .await;
        let first_ready = wait_until("a new instance ready", Duration::from_secs(30), || async {
            ready(&s, "bench").await > 1
        })
        .await;
        println!(
            "run {run}: load step → decision {} ms, → first new instance ready {} ms",
            decided.as_millis(),
            (decided + first_ready).as_millis()
        );
        let _ = step;
        decisions.push(decided);
        readies.push(decided + first_ready);
        stop.store(true, Ordering::Relaxed);
    }
    decisions.sort();
    readies.sort();
    let median = |v: &[Duration]| v[v.len() / 2].as_millis();
    println!(
        "reaction over {runs} runs: decision median {} ms (max {} ms); first new instance ready median {} ms (max {} ms) — Knative decides every 2 s, HPA every 15 s",
        median(&decisions),
        decisions.last().unwrap().as_millis(),
        median(&readies),
        readies.last().unwrap().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_canary_scales_on_its_own_traffic() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    deploy_hello(&s, "lanes", 2, 1).await;
    put_policy(
        &s,
        "lanes",
        json!({
            "min": 1, "max": 8,
            "metrics": [{"type": "concurrency", "target": 5}],
            "stable_window_secs": 10
        }),
    )
    .await;
    // Only requests carrying the header reach v2.
    let r = s
        .post(
            &format!("{APPS}/lanes/releases"),
            json!({"target_version": 2, "strategy": {"type": "gray", "rules": [{"header": {"name": "x-canary", "exact": "true"}}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    wait_until("gray phase", Duration::from_secs(30), || async {
        s.get(&format!("{APPS}/lanes/releases/{id}")).await.body["state"] == "paused"
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    for _ in 0..30 {
        let (client, stop) = (client.clone(), stop.clone());
        let url = format!("{}/?delay_ms=100", s.gateway_url);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .get(&url)
                    .header("host", "lanes.default.localhost")
                    .header("x-canary", "true")
                    .send()
                    .await;
            }
        });
    }
    let version_desired = |body: &Value, v: u64| {
        body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["version"] == v)
            .and_then(|x| x["desired"].as_u64())
    };
    wait_until("the canary scales out", Duration::from_secs(15), || async {
        let st = s
            .get(&format!("{APPS}/lanes/autoscaling/status"))
            .await
            .body;
        version_desired(&st, 2).is_some_and(|d| d >= 4)
    })
    .await;
    let st = s
        .get(&format!("{APPS}/lanes/autoscaling/status"))
        .await
        .body;
    assert_eq!(
        version_desired(&st, 1),
        Some(1),
        "the idle stable stays at 1: {st}"
    );
    wait_until(
        "canary instances ready",
        Duration::from_secs(30),
        || async {
            let r = s.get(&format!("{APPS}/lanes/instances")).await;
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["version"] == 2 && i["state"] == "ready")
                .count()
                >= 4
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
}
