//! `deploy` and `logs` against a small in-process mock of the API, checking the exact
//! requests the CLI sends and how it reacts to the answers.

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
    HealthCheck, Instance, InstanceState, LogLine, LogStream, Release, ReleaseState, Resources,
    RunSpec, Strategy, Version, VersionState,
};

use crate::client::ApiClient;
use crate::deploy::{self, Deploy};
use crate::logs::{self, Since};
use crate::Format;

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
