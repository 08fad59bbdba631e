//! `deploy`, `logs`, `release` and `rollback` against a small in-process mock of the API,
//! checking the exact requests the CLI sends and how it reacts to the answers.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use serde_json::{json, Value};
use tideway_api_types::{
    AnalysisCheck, CheckFigures, CheckOutcome, HealthCheck, Instance, InstanceState, LogLine,
    LogStream, Release, ReleaseProgress, ReleaseState, Resources, RunSpec, Strategy, Version,
    VersionState,
};

use crate::client::ApiClient;
use crate::deploy::{self, Deploy};
use crate::logs::{self, Since};
use crate::{release, Command, Format};

/// How the mock behaves.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// App exists; the version builds for one poll; the release succeeds on the third poll.
    Happy,
    /// App is new; the build fails.
    BuildFails,
    /// App exists; an instance of the new version crash-loops.
    CrashLoop,
    /// The release never ends.
    Stuck,
    /// The upload is refused on its `Content-Length`, before its body is read.
    TooLarge,
    /// Canary release 7 of v3: progressing, then a passed check, then paused for promote;
    /// release 6 is an older, finished one. Rollbacks start release 8, which succeeds.
    Canary,
    /// Canary release 7 fails its analysis on the second poll.
    CanaryFails,
    /// The first poll of release 7 is a 503; the second finds it succeeded.
    Flaky,
    /// Starting a release is refused: another one is active.
    Busy,
    /// Starting a release is refused: the strategy is invalid.
    Refused,
}

#[derive(Default)]
struct Seen {
    /// `METHOD /path?query` of every request, in order.
    requests: Vec<String>,
    /// Headers and body of the upload.
    upload: Option<(HeaderMap, Bytes)>,
    /// JSON bodies by `METHOD /path`.
    bodies: BTreeMap<String, Value>,
    /// `Accept` of the log request.
    logs_accept: Option<String>,
    version_polls: u32,
    release_polls: u32,
}

struct Mock {
    scenario: Scenario,
    seen: Mutex<Seen>,
}

const PREFIX: &str = "/api/v1/namespaces/default/apps";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn version(state: VersionState) -> Value {
    json!(Version {
        namespace: "default".into(),
        app: "web".into(),
        number: 3,
        artifact_digest: format!("sha256:{}", "cd".repeat(32)),
        run: RunSpec {
            command: "./run.sh".into()
        },
        env: Default::default(),
        port: None,
        health: HealthCheck::default(),
        resources: Resources::default(),
        build_command: Some("make".into()),
        state,
        created_at: now(),
    })
}

fn release(state: ReleaseState, reason: &str) -> Value {
    json!(Release {
        id: 7,
        namespace: "default".into(),
        app: "web".into(),
        from_versions: vec![2],
        target_version: 3,
        strategy: Strategy::Immediate,
        state,
        progress: Default::default(),
        reason: reason.into(),
        created_at: now(),
        updated_at: now(),
        generation: 1,
    })
}

fn instance(id: &str, state: InstanceState, message: Option<&str>) -> Instance {
    Instance {
        id: id.into(),
        namespace: "default".into(),
        app: "web".into(),
        version: 3,
        state,
        address: None,
        pid: None,
        restarts: 0,
        message: message.map(Into::into),
        cpu_percent: None,
        memory_bytes: None,
        limits_enforced: false,
        limits_note: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "details": {}}});
    (status, axum::Json(body)).into_response()
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn handle(State(mock): State<Arc<Mock>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let line = match req.uri().query() {
        Some(q) => format!("{method} {path}?{q}"),
        None => format!("{method} {path}"),
    };
    let headers = req.headers().clone();
    if mock.scenario == Scenario::TooLarge && path.ends_with("/versions") {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "artifact_too_large",
            "the artifact is larger than the limit of 1024 bytes",
        );
    }
    let Ok(body) = to_bytes(req.into_body(), 64 << 20).await else {
        return error(StatusCode::BAD_REQUEST, "bad_body", "unreadable body");
    };
    let mut seen = mock.seen.lock().unwrap();
    seen.requests.push(line);
    if headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()) == Some(b"application/json") {
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        seen.bodies.insert(format!("{method} {path}"), value);
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such route");
    };
    let s = mock.scenario;
    let query = seen
        .requests
        .last()
        .and_then(|l| l.split_once('?'))
        .map(|(_, q)| q.to_owned());
    if let Some(response) = release_route(s, &mut seen, &method, rest, query.as_deref()) {
        return response;
    }
    match (method, rest) {
        (Method::POST, "") if s == Scenario::BuildFails => ok(
            StatusCode::CREATED,
            json!({"namespace": "default", "name": "web", "description": "", "labels": {},
                   "replicas": 1, "created_at": now(), "updated_at": now(), "generation": 1}),
        ),
        (Method::POST, "") => error(
            StatusCode::CONFLICT,
            "already_exists",
            "app \"web\" already exists",
        ),
        (Method::GET, "/web") => ok(
            StatusCode::OK,
            json!({"namespace": "default", "name": "web", "description": "", "labels": {},
                   "replicas": 2, "created_at": now(), "updated_at": now(), "generation": 2}),
        ),
        (Method::POST, "/web/versions") => {
            seen.upload = Some((headers, body));
            ok(StatusCode::CREATED, version(VersionState::Building))
        }
        (Method::GET, "/web/versions/3") => {
            seen.version_polls += 1;
            let state = match (s, seen.version_polls) {
                (_, 1) => VersionState::Building,
                (Scenario::BuildFails, _) => VersionState::BuildFailed,
                _ => VersionState::Ready,
            };
            ok(StatusCode::OK, version(state))
        }
        (Method::GET, "/web/versions/3/build-log") => (
            [(header::CONTENT_TYPE, "text/plain")],
            "$ make\nmake: *** No rule to make target 'all'.  Stop.\n",
        )
            .into_response(),
        (Method::PUT, "/web/scale") => ok(StatusCode::OK, json!({"replicas": 2})),
        (Method::POST, "/web/releases") => ok(
            StatusCode::CREATED,
            release(ReleaseState::Pending, "created"),
        ),
        (Method::GET, "/web/releases/7") => {
            seen.release_polls += 1;
            let state = match (s, seen.release_polls) {
                (Scenario::Happy, n) if n >= 3 => ReleaseState::Succeeded,
                _ => ReleaseState::Progressing,
            };
            ok(StatusCode::OK, release(state, "reason"))
        }
        (Method::GET, "/web/instances") => {
            let mut items = vec![instance("web-3-a", InstanceState::Ready, None)];
            let second = match (s, seen.release_polls) {
                (Scenario::CrashLoop, n) if n >= 1 => instance(
                    "web-3-b",
                    InstanceState::CrashLoop,
                    Some("exited with status 2"),
                ),
                (Scenario::Happy, n) if n >= 3 => instance("web-3-b", InstanceState::Ready, None),
                _ => instance("web-3-b", InstanceState::Starting, None),
            };
            items.push(second);
            ok(StatusCode::OK, json!({ "items": items }))
        }
        (Method::GET, "/web/logs") => {
            seen.logs_accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let line = |stream, text: &str| LogLine {
                time: now(),
                instance: "web-3-a".into(),
                version: 3,
                stream,
                line: text.into(),
            };
            let mut ndjson = Vec::new();
            for l in [
                line(LogStream::Stdout, "hello"),
                line(LogStream::Stderr, "warn"),
            ] {
                ndjson.extend(serde_json::to_vec(&l).unwrap_or_default());
                ndjson.push(b'\n');
            }
            // Chunks that split lines anywhere, as a real stream may.
            let chunks: Vec<Result<Bytes, std::io::Error>> = ndjson
                .chunks(7)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            (
                [(header::CONTENT_TYPE, logs::NDJSON)],
                Body::from_stream(futures_util::stream::iter(chunks)),
            )
                .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

fn check(outcome: CheckOutcome, failures: &[&str]) -> AnalysisCheck {
    let figures = |rate| CheckFigures {
        requests: 120,
        responses_5xx: 0,
        success_rate_percent: Some(rate),
        p99_ms: Some(42.0),
    };
    AnalysisCheck {
        at: now(),
        outcome,
        target: figures(if failures.is_empty() { 100.0 } else { 80.0 }),
        stable: figures(99.5),
        failures: failures.iter().map(|f| (*f).to_owned()).collect(),
    }
}

/// Release 7 of a canary from v2 to v3 at `step` with `weight`.
fn canary(
    state: ReleaseState,
    reason: &str,
    step: u32,
    weight: u32,
    checks: Vec<AnalysisCheck>,
) -> Value {
    json!(Release {
        id: 7,
        namespace: "default".into(),
        app: "web".into(),
        from_versions: vec![2],
        target_version: 3,
        strategy: serde_json::from_value(json!({"type": "canary", "weights": [20, 50],
            "analysis": {"interval_secs": 10}}))
        .unwrap_or(Strategy::Immediate),
        state,
        reason: reason.into(),
        progress: ReleaseProgress {
            step,
            weight,
            target_replicas: 1,
            stable_replicas: 2,
            checks,
            ..ReleaseProgress::default()
        },
        created_at: now(),
        updated_at: now(),
        generation: 1,
    })
}

/// The routes of release scenarios; `None` falls through to the deploy routes.
fn release_route(
    s: Scenario,
    seen: &mut Seen,
    method: &Method,
    rest: &str,
    query: Option<&str>,
) -> Option<Response> {
    use ReleaseState::{Failed, Paused, Pending, Progressing, Succeeded};
    if !matches!(
        s,
        Scenario::Canary
            | Scenario::CanaryFails
            | Scenario::Flaky
            | Scenario::Busy
            | Scenario::Refused
    ) {
        return None;
    }
    let response = match (method.clone(), rest) {
        (Method::POST, "/web/releases") if s == Scenario::Busy => error(
            StatusCode::CONFLICT,
            "release_in_progress",
            "app 'default/web' already has an active release; wait for it or abort it",
        ),
        (Method::POST, "/web/releases") if s == Scenario::Refused => {
            let body = json!({"error": {"code": "validation_failed",
                "message": "strategy.weights: weights must increase",
                "details": {"field": "strategy.weights", "reason": "weights must increase"}}});
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
        }
        (Method::POST, "/web/releases") if query == Some("dry_run=true") => ok(
            StatusCode::OK,
            json!({"target_version": 3, "stable_version": 2,
                   "strategy": {"type": "canary", "weights": [20]},
                   "steps": [
                       {"index": 0, "action": "set weight 20%", "weight": 20,
                        "target_replicas": 1, "stable_replicas": 2, "waits_for": "ready"},
                       {"index": 1, "action": "pause until promoted", "weight": 20,
                        "target_replicas": 1, "stable_replicas": 2, "waits_for": "promote"},
                       {"index": 2, "action": "promote", "weight": 100,
                        "target_replicas": 2, "stable_replicas": 0, "waits_for": "ready"}]}),
        ),
        (Method::POST, "/web/releases") => ok(
            StatusCode::CREATED,
            canary(Pending, "waiting for the release reconciler", 0, 0, vec![]),
        ),
        (Method::GET, "/web/releases") => {
            let mut older = release(Succeeded, "v2 has all 2 instances ready");
            older["id"] = json!(6);
            let newest = canary(Paused, "pause until promoted (step 2 of 5)", 1, 20, vec![]);
            ok(StatusCode::OK, json!({ "items": [newest, older] }))
        }
        (Method::GET, "/web/releases/7") => {
            seen.release_polls += 1;
            let n = seen.release_polls;
            let passed = || vec![check(CheckOutcome::Passed, &[])];
            match (s, n) {
                (Scenario::Flaky, 1) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is not reachable",
                ),
                (Scenario::Flaky, _) => {
                    ok(StatusCode::OK, canary(Succeeded, "done", 4, 100, vec![]))
                }
                (_, 1) => ok(
                    StatusCode::OK,
                    canary(Progressing, "set weight 20% (step 1 of 5)", 0, 20, vec![]),
                ),
                (Scenario::CanaryFails, _) => ok(
                    StatusCode::OK,
                    canary(
                        Failed,
                        "analysis failed 1 time; all traffic back to v2",
                        0,
                        0,
                        vec![check(CheckOutcome::Failed, &["success rate 80.0% < 99.0%"])],
                    ),
                ),
                (_, 2) => ok(
                    StatusCode::OK,
                    canary(Progressing, "set weight 20% (step 1 of 5)", 0, 20, passed()),
                ),
                _ => ok(
                    StatusCode::OK,
                    canary(
                        Paused,
                        "pause until promoted (step 2 of 5)",
                        1,
                        20,
                        passed(),
                    ),
                ),
            }
        }
        (Method::POST, "/web/releases/7/promote") => ok(
            StatusCode::OK,
            canary(
                Progressing,
                "promoted by request; set weight 50% (step 3 of 5)",
                2,
                50,
                vec![],
            ),
        ),
        (Method::POST, "/web/releases/7/pause") => error(
            StatusCode::CONFLICT,
            "release_paused",
            "release 7 is already paused at pause until promoted (step 2 of 5)",
        ),
        (Method::POST, "/web/rollback") => {
            let mut r = release(Pending, "rollback to v2");
            r["id"] = json!(8);
            r["target_version"] = json!(2);
            r["from_versions"] = json!([3]);
            ok(StatusCode::CREATED, r)
        }
        (Method::GET, "/web/releases/8") => {
            let mut r = release(Succeeded, "v2 has all 2 instances ready");
            r["id"] = json!(8);
            r["target_version"] = json!(2);
            ok(StatusCode::OK, r)
        }
        _ => return None,
    };
    Some(response)
}

/// Serves the mock on a free port; returns a client for it and the shared state.
async fn serve(scenario: Scenario) -> (ApiClient, Arc<Mock>) {
    let mock = Arc::new(Mock {
        scenario,
        seen: Mutex::new(Seen::default()),
    });
    let app = Router::new().fallback(handle).with_state(Arc::clone(&mock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = ApiClient::new(&format!("http://{addr}"), "secret").unwrap();
    (client, mock)
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("tideway.toml"),
        "[run]\ncommand = \"./run.sh\"\n",
    )
    .unwrap();
    fs::write(dir.path().join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::write(dir.path().join(".tidewayignore"), "*.tmp\n").unwrap();
    fs::write(dir.path().join("scratch.tmp"), "x").unwrap();
    dir
}

fn deploy_opts(dir: &Path, replicas: Option<u32>, wait: bool, timeout: Duration) -> Deploy {
    Deploy {
        namespace: "default".into(),
        app: "web".into(),
        dir: dir.to_owned(),
        replicas,
        wait,
        timeout,
        format: Format::Table,
        strategy: None,
        strategy_from_flags: true,
    }
}

fn requests(mock: &Mock) -> Vec<String> {
    let mut seen = mock.seen.lock().unwrap().requests.clone();
    // Polls repeat; keep each request once, in first-seen order.
    let mut unique = Vec::new();
    seen.retain(|r| {
        if unique.contains(r) {
            false
        } else {
            unique.push(r.clone());
            true
        }
    });
    seen
}

#[tokio::test]
async fn deploy_uploads_builds_scales_and_waits() {
    let (client, mock) = serve(Scenario::Happy).await;
    let dir = app_dir();
    deploy::run(
        &client,
        deploy_opts(dir.path(), Some(2), true, Duration::from_secs(30)),
    )
    .await
    .unwrap();

    assert_eq!(
        requests(&mock),
        [
            format!("POST {PREFIX}"),
            format!("POST {PREFIX}/web/versions"),
            format!("PUT {PREFIX}/web/scale"),
            format!("GET {PREFIX}/web/versions/3"),
            format!("POST {PREFIX}/web/releases"),
            format!("GET {PREFIX}/web"),
            format!("GET {PREFIX}/web/instances?limit=100"),
            format!("GET {PREFIX}/web/releases/7"),
        ]
    );
    let seen = mock.seen.lock().unwrap();
    assert_eq!(
        seen.bodies[&format!("POST {PREFIX}")],
        json!({"name": "web", "replicas": 2})
    );
    assert_eq!(
        seen.bodies[&format!("PUT {PREFIX}/web/scale")],
        json!({"replicas": 2})
    );
    assert_eq!(
        seen.bodies[&format!("POST {PREFIX}/web/releases")],
        json!({"target_version": 3})
    );

    let (headers, body) = seen.upload.clone().unwrap();
    assert_eq!(headers[header::CONTENT_TYPE], "application/gzip");
    assert_eq!(headers[header::AUTHORIZATION], "Bearer secret");
    assert_eq!(
        headers[header::CONTENT_LENGTH].to_str().unwrap(),
        body.len().to_string()
    );
    let mut names: Vec<String> = tar::Archive::new(GzDecoder::new(&body[..]))
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".tidewayignore", "run.sh", "tideway.toml"]);
    assert!(seen.release_polls >= 3);
}

#[tokio::test]
async fn deploy_shows_the_build_log_when_the_build_fails() {
    let (client, mock) = serve(Scenario::BuildFails).await;
    let dir = app_dir();
    let err = deploy::run(
        &client,
        deploy_opts(dir.path(), None, true, Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "the build of v3 failed");
    let seen = requests(&mock);
    assert!(seen.contains(&format!("GET {PREFIX}/web/versions/3/build-log")));
    // No scale for a new app, and no release after a failed build.
    assert!(!seen
        .iter()
        .any(|r| r.contains("/scale") || r.contains("/releases")));
    let seen = mock.seen.lock().unwrap();
    assert_eq!(
        seen.bodies[&format!("POST {PREFIX}")],
        json!({"name": "web", "replicas": 1})
    );
}

#[tokio::test]
async fn deploy_fails_at_once_on_a_crash_loop() {
    let (client, _mock) = serve(Scenario::CrashLoop).await;
    let dir = app_dir();
    let err = deploy::run(
        &client,
        deploy_opts(dir.path(), None, true, Duration::from_secs(30)),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("web-3-b"), "{err}");
    assert!(err.contains("exited with status 2"), "{err}");
    assert!(err.contains("tideway logs web"), "{err}");
}

#[tokio::test]
async fn deploy_wait_times_out() {
    let (client, _mock) = serve(Scenario::Stuck).await;
    let dir = app_dir();
    let err = deploy::run(
        &client,
        deploy_opts(dir.path(), None, true, Duration::from_millis(600)),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("release 7 is still progressing"), "{err}");
    assert!(err.contains("1/2 instances ready"), "{err}");
}

#[tokio::test]
async fn deploy_explains_an_early_refusal_of_the_upload() {
    let (client, _mock) = serve(Scenario::TooLarge).await;
    let dir = app_dir();
    // Incompressible, so the archive is far bigger than what the server reads before it
    // answers.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..8 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    fs::write(dir.path().join("blob.bin"), noise).unwrap();
    let err = deploy::run(
        &client,
        deploy_opts(dir.path(), None, false, Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    // Which one the client sees is a race: the answer, or a broken pipe when the server
    // closed the connection before the client read the answer.
    let text = format!("{err:#}");
    assert!(
        text == "the artifact is larger than the limit of 1024 bytes (artifact_too_large)"
            || text.starts_with(
                "uploading the archive (8.0 MiB) failed; the server may have refused it \
                 before reading it all, e.g. for being larger than its artifact limit: "
            ),
        "{text}"
    );
}

#[tokio::test]
async fn deploy_without_wait_starts_the_release_only() {
    let (client, mock) = serve(Scenario::Stuck).await;
    let dir = app_dir();
    deploy::run(
        &client,
        deploy_opts(dir.path(), None, false, Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let seen = requests(&mock);
    assert_eq!(seen.last(), Some(&format!("POST {PREFIX}/web/releases")));
}

#[tokio::test]
async fn logs_streams_ndjson_lines() {
    let (client, mock) = serve(Scenario::Happy).await;
    let path = ["namespaces", "default", "apps", "web", "logs"];
    let since = Some(Since::At(now()));
    let query = logs::query(false, Some("web-3-a"), since, Some(10), now());

    let mut out = Vec::new();
    logs::stream(&client, &path, &query, Format::Json, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: LogLine = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first.line, "hello");

    let mut out = Vec::new();
    logs::stream(&client, &path, &query, Format::Table, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with(" web-3-a | hello"), "{text}");
    assert!(lines[1].ends_with(" web-3-a ! warn"), "{text}");

    let seen = mock.seen.lock().unwrap();
    assert_eq!(
        seen.requests[0],
        format!(
            "GET {PREFIX}/web/logs?follow=false&instance=web-3-a&since=2025-06-01T12%3A00%3A00Z&tail=10"
        )
    );
    assert_eq!(seen.logs_accept.as_deref(), Some("application/x-ndjson"));
}

#[tokio::test]
async fn logs_of_a_missing_app_is_an_api_error() {
    let (client, _mock) = serve(Scenario::Happy).await;
    let path = ["namespaces", "default", "apps", "nope", "logs"];
    let err = logs::stream(&client, &path, &[], Format::Table, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no such route (not_found)");
}

/// What a command printed: stdout, then stderr.
struct Printed {
    out: String,
    err: String,
}

/// Runs `tideway <args>` (a `release` or `rollback` command) against the mock, polling
/// every few milliseconds.
async fn tideway(client: &ApiClient, args: &[&str]) -> (anyhow::Result<()>, Printed) {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("tideway").chain(args.iter().copied()),
    )
    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = release::Io {
        out: &mut out,
        err: &mut err,
        poll: Duration::from_millis(5),
    };
    let result = match cli.command {
        Command::Release(args) => release::run(client, args, &mut io).await,
        Command::Rollback(args) => release::rollback(client, args, &mut io).await,
        other => panic!("not a release command: {other:?}"),
    };
    let printed = Printed {
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    };
    (result, printed)
}

#[tokio::test]
async fn release_start_sends_the_strategy_and_follows_it_to_a_pause() {
    let (client, mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(
        &client,
        &[
            "release",
            "start",
            "web",
            "--version",
            "3",
            "--strategy",
            "canary",
            "--steps",
            "20,50",
            "--pause",
            "indefinite",
            "--success-rate",
            "99",
            "--wait",
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(
        requests(&mock),
        [
            format!("POST {PREFIX}/web/releases"),
            format!("GET {PREFIX}/web/releases/7"),
        ]
    );
    let seen = mock.seen.lock().unwrap();
    assert_eq!(
        seen.bodies[&format!("POST {PREFIX}/web/releases")],
        json!({"target_version": 3, "strategy": {"type": "canary", "weights": [20, 50],
               "analysis": {"success_rate_percent": 99.0}}})
    );
    assert_eq!(seen.release_polls, 3);
    // Times are local, so each line is checked after its `HH:MM:SS  `.
    let lines: Vec<&str> = printed.out.lines().collect();
    let untimed: Vec<&str> = lines.iter().map(|l| l.get(10..).unwrap_or(l)).collect();
    assert_eq!(
        lines[0],
        "Started release 7 of default/web: v2 → v3, canary (pending)"
    );
    assert_eq!(
        untimed[1..6],
        [
            "release 7 progressing: set weight 20% (step 1 of 5)",
            "step 1: weight 20%, instances 1 new / 2 stable",
            "check passed: new 120 req, 100.0%, p99 42ms; stable 120 req, 99.5%, p99 42ms",
            "release 7 paused: pause until promoted (step 2 of 5)",
            "step 2: weight 20%, instances 1 new / 2 stable",
        ],
        "{}",
        printed.out
    );
    assert_eq!(
        lines[6],
        "release 7 is paused; promote it with `tideway release promote web` (--full to \
         finish) or abort it with `tideway release abort web`"
    );
    assert_eq!(printed.err, "");
}

#[tokio::test]
async fn release_start_json_keeps_stdout_for_the_final_release() {
    let (client, _mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(
        &client,
        &[
            "release",
            "start",
            "web",
            "--version",
            "3",
            "--strategy",
            "canary",
            "--steps",
            "20",
            "--wait",
            "-o",
            "json",
        ],
    )
    .await;
    result.unwrap();
    let last: Release = serde_json::from_str(&printed.out).unwrap();
    assert_eq!((last.id, last.state), (7, ReleaseState::Paused));
    assert!(
        printed.err.starts_with("Started release 7"),
        "{}",
        printed.err
    );
    assert!(printed.err.contains("release 7 paused"), "{}", printed.err);
}

#[tokio::test]
async fn release_dry_run_prints_the_plan() {
    let (client, mock) = serve(Scenario::Canary).await;
    let args = [
        "release",
        "start",
        "web",
        "--version",
        "3",
        "--strategy",
        "canary",
        "--steps",
        "20",
        "--dry-run",
    ];
    let (result, printed) = tideway(&client, &args).await;
    result.unwrap();
    assert_eq!(
        requests(&mock),
        [format!("POST {PREFIX}/web/releases?dry_run=true")]
    );
    let lines: Vec<&str> = printed.out.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "Plan of v2 → v3 (canary: weights 20%, hold until promoted); nothing was changed:",
            "STEP  ACTION                WEIGHT  TARGET  STABLE  RULES  WAITS FOR",
            "1     set weight 20%        20%     1       2       -      ready",
            "2     pause until promoted  20%     1       2       -      promote",
            "3     promote               100%    2       0       -      ready",
        ]
    );

    let json_args: Vec<&str> = args.iter().copied().chain(["-o", "json"]).collect();
    let (result, printed) = tideway(&client, &json_args).await;
    result.unwrap();
    let plan: Value = serde_json::from_str(&printed.out).unwrap();
    assert_eq!(plan["steps"][1]["waits_for"], "promote");
}

#[tokio::test]
async fn release_start_conflict_shows_code_message_and_a_way_out() {
    let (client, _mock) = serve(Scenario::Busy).await;
    let (result, _) = tideway(&client, &["release", "start", "web", "--version", "3"]).await;
    assert_eq!(
        format!("{:#}", result.unwrap_err()),
        "app 'default/web' already has an active release; wait for it or abort it \
         (release_in_progress)\n\
         hint: pass --supersede to replace it, or follow it with \
         `tideway release status web --watch`"
    );
}

#[tokio::test]
async fn release_start_refusal_names_the_field_and_its_flag() {
    let (client, _mock) = serve(Scenario::Refused).await;
    let args = [
        "release",
        "start",
        "web",
        "--version",
        "3",
        "--strategy",
        "canary",
        "--steps",
        "50,20",
    ];
    let (result, _) = tideway(&client, &args).await;
    assert_eq!(
        format!("{:#}", result.unwrap_err()),
        "strategy.weights: weights must increase (validation_failed)\n\
         hint: strategy.weights is set by --steps"
    );
}

#[tokio::test]
async fn release_status_shows_the_latest_release() {
    let (client, mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(&client, &["release", "status", "web"]).await;
    result.unwrap();
    assert_eq!(
        requests(&mock),
        [format!("GET {PREFIX}/web/releases?limit=1")]
    );
    assert!(printed.out.starts_with("Release:   7\n"), "{}", printed.out);
    assert!(
        printed.out.contains("\nState:     paused\n"),
        "{}",
        printed.out
    );
    assert!(
        printed.out.contains("\nPause:     until promoted\n"),
        "{}",
        printed.out
    );
    assert!(
        printed.out.ends_with(
            "Next: promote it with `tideway release promote web` (--full to finish) or abort \
             it with `tideway release abort web`\n"
        ),
        "{}",
        printed.out
    );
}

#[tokio::test]
async fn release_status_watch_fails_with_the_release() {
    let (client, mock) = serve(Scenario::CanaryFails).await;
    let (result, printed) = tideway(&client, &["release", "status", "web", "--watch"]).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "release 7 failed: analysis failed 1 time; all traffic back to v2"
    );
    assert_eq!(
        requests(&mock),
        [
            format!("GET {PREFIX}/web/releases?limit=1"),
            format!("GET {PREFIX}/web/releases/7"),
        ]
    );
    let lines: Vec<&str> = printed
        .out
        .lines()
        .map(|l| l.get(10..).unwrap_or(l))
        .collect();
    assert_eq!(
        lines[2..],
        [
            "check failed: new 120 req, 80.0%, p99 42ms; stable 120 req, 99.5%, p99 42ms — \
             success rate 80.0% < 99.0%",
            "release 7 failed: analysis failed 1 time; all traffic back to v2",
        ][..],
        "{}",
        printed.out
    );
}

#[tokio::test]
async fn release_status_watch_rides_out_a_server_error() {
    let (client, _mock) = serve(Scenario::Flaky).await;
    let (result, printed) = tideway(&client, &["release", "status", "web", "7", "-w"]).await;
    result.unwrap();
    assert_eq!(
        printed.err,
        "warning: the store is not reachable (unavailable); retrying\n"
    );
    assert!(
        printed.out.ends_with("release 7 succeeded: done\n"),
        "{}",
        printed.out
    );
}

#[tokio::test]
async fn release_promote_finds_the_active_release() {
    let (client, mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(&client, &["release", "promote", "web", "--full"]).await;
    result.unwrap();
    assert_eq!(
        requests(&mock),
        [
            format!("GET {PREFIX}/web/releases?limit=20"),
            format!("POST {PREFIX}/web/releases/7/promote"),
        ]
    );
    assert_eq!(
        mock.seen.lock().unwrap().bodies[&format!("POST {PREFIX}/web/releases/7/promote")],
        json!({"full": true})
    );
    assert_eq!(
        printed.out,
        "Fully promoted release 7 of default/web: progressing at step 3, weight 50%\n\
         promoted by request; set weight 50% (step 3 of 5)\n"
    );
}

#[tokio::test]
async fn release_control_conflicts_show_code_and_message() {
    let (client, mock) = serve(Scenario::Canary).await;
    let (result, _) = tideway(&client, &["release", "pause", "web", "7"]).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "release 7 is already paused at pause until promoted (step 2 of 5) (release_paused)"
    );
    // With an id there is no need to look for the active release.
    assert_eq!(
        requests(&mock),
        [format!("POST {PREFIX}/web/releases/7/pause")]
    );
    assert_eq!(
        mock.seen.lock().unwrap().bodies[&format!("POST {PREFIX}/web/releases/7/pause")],
        json!({})
    );
}

#[tokio::test]
async fn release_list_shows_newest_first() {
    let (client, _mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(&client, &["release", "list", "web"]).await;
    result.unwrap();
    let lines: Vec<&str> = printed.out.lines().map(str::trim_end).collect();
    assert_eq!(lines.len(), 3, "{}", printed.out);
    assert!(
        lines[0].starts_with("ID  STATE      VERSIONS  STRATEGY   STEP"),
        "{}",
        printed.out
    );
    assert!(
        lines[1].starts_with("7   paused     v2 → v3   canary     2     20%"),
        "{}",
        printed.out
    );
    assert!(
        lines[2].starts_with("6   succeeded  v2 → v3   immediate  1     0%"),
        "{}",
        printed.out
    );
}

#[tokio::test]
async fn rollback_posts_the_version_and_waits() {
    let (client, mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(&client, &["rollback", "web", "2", "--wait"]).await;
    result.unwrap();
    assert_eq!(
        requests(&mock),
        [
            format!("POST {PREFIX}/web/rollback"),
            format!("GET {PREFIX}/web/releases/8"),
        ]
    );
    assert_eq!(
        mock.seen.lock().unwrap().bodies[&format!("POST {PREFIX}/web/rollback")],
        json!({"version": 2})
    );
    let lines: Vec<&str> = printed.out.lines().collect();
    assert_eq!(
        lines[0],
        "Rolling back default/web to v2: release 8 (pending)"
    );
    assert!(
        lines[1].ends_with("  release 8 succeeded: v2 has all 2 instances ready"),
        "{}",
        printed.out
    );

    // Without a version the server picks one; the body stays empty.
    let (client, mock) = serve(Scenario::Canary).await;
    let (result, printed) = tideway(&client, &["rollback", "web"]).await;
    result.unwrap();
    assert_eq!(
        mock.seen.lock().unwrap().bodies[&format!("POST {PREFIX}/web/rollback")],
        json!({})
    );
    assert!(
        printed
            .out
            .ends_with("follow it with `tideway release status web --watch`\n"),
        "{}",
        printed.out
    );
}

#[tokio::test]
async fn deploy_sends_the_strategy() {
    let (client, mock) = serve(Scenario::Stuck).await;
    let dir = app_dir();
    let mut opts = deploy_opts(dir.path(), None, false, Duration::from_secs(30));
    opts.strategy = Some(json!({"type": "batch", "batches": 2}));
    deploy::run(&client, opts).await.unwrap();
    assert_eq!(
        mock.seen.lock().unwrap().bodies[&format!("POST {PREFIX}/web/releases")],
        json!({"target_version": 3, "strategy": {"type": "batch", "batches": 2}})
    );
}
