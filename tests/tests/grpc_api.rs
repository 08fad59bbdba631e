//! The gRPC API for tools (`tideway.v1`) end to end, with the generated client against the
//! real server: push-to-deploy by stream, a canary followed with `WatchRelease` to the end,
//! `WatchApp` and `TailLogs`, the error mapping (codes and the stable code in `ErrorInfo`),
//! and reflection listing the services.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tideway_e2e::{pack_dir, repo_root, Backend, TestServer};
use tideway_proto::api::v1::{
    deploy_request, watch_app_response, watch_release_response, CreateAppRequest,
    CreateReleaseRequest, DeployManifest, DeployRequest, GetAppRequest, GetVersionRequest,
    InstanceState, ListVersionsRequest, ReleaseState, TailLogsRequest, VersionState,
    WatchAppRequest, WatchAppResponse, WatchReleaseRequest, WatchReleaseResponse,
};
use tideway_proto::api::{AppServiceClient, ReleaseServiceClient};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

struct Clients {
    apps: AppServiceClient<Authed>,
    releases: ReleaseServiceClient<Authed>,
}

async fn channel(s: &TestServer) -> Channel {
    Channel::from_shared(s.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Clients that send `token` (empty: no token at all).
async fn clients(s: &TestServer, token: &str) -> Clients {
    let channel = channel(s).await;
    let bearer = Bearer((!token.is_empty()).then(|| format!("Bearer {token}").parse().unwrap()));
    Clients {
        apps: AppServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        releases: ReleaseServiceClient::with_interceptor(channel, bearer),
    }
}

/// The stable code of an error (`ErrorInfo.reason`) and its metadata.
fn reason(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "tideway.dev");
    (info.reason.clone(), info.metadata.clone())
}

/// The deploy stream: the manifest, then the artifact in `chunk`-byte pieces.
fn deploy_messages(manifest: DeployManifest, artifact: &[u8], chunk: usize) -> Vec<DeployRequest> {
    let mut messages = vec![DeployRequest {
        part: Some(deploy_request::Part::Manifest(manifest)),
    }];
    messages.extend(artifact.chunks(chunk).map(|c| DeployRequest {
        part: Some(deploy_request::Part::Chunk(c.to_vec())),
    }));
    messages
}

fn manifest(app: &str) -> DeployManifest {
    DeployManifest {
        namespace: "default".into(),
        app: app.into(),
        content_type: "application/gzip".into(),
        ..DeployManifest::default()
    }
}

/// Everything a `WatchRelease` stream sent, until it ended on its own.
async fn watch_release_to_end(c: &mut Clients, app: &str, id: i64) -> Vec<WatchReleaseResponse> {
    let mut stream = c
        .releases
        .watch_release(WatchReleaseRequest {
            namespace: "default".into(),
            app: app.into(),
            id,
            after_event_id: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let collect = async {
        while let Some(message) = stream.next().await {
            seen.push(message.unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("WatchRelease ends when the release does");
    seen
}

/// The snapshots and the events of a release watch, in order.
fn split(
    messages: &[WatchReleaseResponse],
) -> (Vec<tideway_proto::api::v1::Release>, Vec<(String, Value)>) {
    let mut releases = Vec::new();
    let mut events = Vec::new();
    for m in messages {
        match m.update.clone().unwrap() {
            watch_release_response::Update::Release(r) => releases.push(r),
            watch_release_response::Update::Event(e) => {
                events.push((e.r#type, serde_json::from_str(&e.details_json).unwrap()));
            }
        }
    }
    (releases, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_by_stream_then_watch_a_canary_logs_and_the_app() {
    deploy_watch_and_tail(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_by_stream_then_watch_a_canary_logs_and_the_app_on_postgres() {
    match Backend::postgres() {
        Some(backend) => deploy_watch_and_tail(backend).await,
        None => eprintln!("skipped: TIDEWAY_TEST_POSTGRES_URL is not set"),
    }
}

async fn deploy_watch_and_tail(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let mut c = clients(&s, &s.token).await;

    let app = c
        .apps
        .create_app(CreateAppRequest {
            namespace: "default".into(),
            name: "shop".into(),
            replicas: Some(1),
            ..CreateAppRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((app.name.as_str(), app.replicas), ("shop", 1));

    // The whole history from the start, in the background.
    let mut app_watch = c
        .apps
        .watch_app(WatchAppRequest {
            namespace: "default".into(),
            app: "shop".into(),
            after_event_id: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let (app_tx, mut app_rx) = tokio::sync::mpsc::unbounded_channel::<WatchAppResponse>();
    tokio::spawn(async move {
        while let Some(Ok(message)) = app_watch.next().await {
            if app_tx.send(message).is_err() {
                return;
            }
        }
    });

    // v1 by stream, released at once.
    let artifact = pack_dir(&repo_root().join("examples/hello"));
    let t0 = Instant::now();
    let deployed = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            DeployManifest {
                start_release: true,
                ..manifest("shop")
            },
            &artifact,
            1024,
        )))
        .await
        .unwrap()
        .into_inner();
    let v1 = deployed.version.unwrap();
    println!(
        "FIGURE grpc deploy of {} bytes in {} chunks: {} ms",
        artifact.len(),
        artifact.len().div_ceil(1024),
        t0.elapsed().as_millis()
    );
    assert_eq!(v1.number, 1);
    assert_eq!(v1.state(), VersionState::Ready);
    assert_eq!(v1.run_command, "python3 app.py");
    let first = deployed.release.expect("the manifest asked for a release");
    assert_eq!(first.target_version, 1);
    let (releases, _) = split(&watch_release_to_end(&mut c, "shop", first.id).await);
    assert_eq!(
        releases.last().unwrap().state(),
        ReleaseState::Succeeded,
        "{releases:?}"
    );
    println!(
        "FIGURE grpc deploy → v1 serving: {} ms",
        t0.elapsed().as_millis()
    );

    // v2 by stream without a release; the version is there and ready.
    let v2 = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            manifest("shop"),
            &artifact,
            64 * 1024,
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(v2.release.is_none());
    let v2 = c
        .apps
        .get_version(GetVersionRequest {
            namespace: "default".into(),
            app: "shop".into(),
            number: v2.version.unwrap().number,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v2.number, v2.state()), (2, VersionState::Ready));
    let listed = c
        .apps
        .list_versions(ListVersionsRequest {
            namespace: "default".into(),
            app: "shop".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.versions[0].number, 2, "newest first");
    assert!(!listed.next_page_token.is_empty());

    // A canary of v2; a second release meanwhile is refused with the 409 mapping.
    let canary = c
        .releases
        .create_release(CreateReleaseRequest {
            namespace: "default".into(),
            app: "shop".into(),
            target_version: 2,
            strategy_json:
                r#"{"type":"canary","steps":[{"set_weight":50},{"pause":{"duration_secs":2}}]}"#
                    .into(),
            supersede: false,
        })
        .await
        .unwrap()
        .into_inner();
    let busy = c
        .releases
        .create_release(CreateReleaseRequest {
            namespace: "default".into(),
            app: "shop".into(),
            target_version: 1,
            ..CreateReleaseRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
    assert_eq!(reason(&busy).0, "release_in_progress");

    let t0 = Instant::now();
    let watched = watch_release_to_end(&mut c, "shop", canary.id).await;
    println!(
        "FIGURE grpc WatchRelease of a 50% + 2 s canary: {} messages, ended {} ms after start",
        watched.len(),
        t0.elapsed().as_millis()
    );
    let (releases, events) = split(&watched);
    // Snapshots: in order, never going back, ending succeeded; the 50% step was seen.
    let rank = |s: ReleaseState| match s {
        ReleaseState::Pending => 0,
        ReleaseState::Progressing | ReleaseState::Paused => 1,
        _ => 2,
    };
    for pair in releases.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a.generation < b.generation, "{releases:?}");
        assert!(rank(a.state()) <= rank(b.state()), "{releases:?}");
        let step = |r: &tideway_proto::api::v1::Release| r.progress.as_ref().unwrap().step;
        assert!(step(a) <= step(b), "{releases:?}");
    }
    let last = releases.last().unwrap();
    assert_eq!(last.state(), ReleaseState::Succeeded, "{last:?}");
    assert!(
        releases.iter().any(|r| {
            let p = r.progress.as_ref().unwrap();
            r.state() == ReleaseState::Progressing && p.weight == 50 && p.pause_until.is_some()
        }),
        "the 2 s pause at 50% was seen: {releases:?}"
    );
    // Events: every transition of this release once, in order: created, started, the 50%
    // weight, the pause step, succeeded.
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds[..2],
        ["ReleaseCreated", "ReleaseStarted"],
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"ReleaseSucceeded"), "{kinds:?}");
    let weight_set = events
        .iter()
        .position(|(k, d)| k == "ReleaseWeightSet" && d["weight"] == 50)
        .unwrap_or_else(|| panic!("no 50% step in {events:?}"));
    let pause = events
        .iter()
        .position(|(k, d)| k == "ReleaseStepStarted" && d["step"] == 1)
        .unwrap_or_else(|| panic!("no pause step in {events:?}"));
    assert!(weight_set < pause, "{kinds:?}");
    let steps: Vec<i64> = events
        .iter()
        .filter_map(|(_, d)| d["step"].as_i64())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    assert!(events.iter().all(|(_, d)| d["release"] == canary.id));
    let served = c
        .apps
        .get_app(GetAppRequest {
            namespace: "default".into(),
            app: "shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.current_version, Some(2));

    // TailLogs: a request through the gateway shows up as the app's log line.
    let mut logs = c
        .apps
        .tail_logs(TailLogsRequest {
            namespace: "default".into(),
            app: "shop".into(),
            tail: Some(0),
            ..TailLogsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let probe = http
        .get(format!("{}/grpc-tail-probe", s.gateway_url))
        .header("host", "shop.default.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = logs.next().await {
            let line = line.unwrap();
            if line.line.contains("GET /grpc-tail-probe 200") {
                return line;
            }
        }
        panic!("the log stream ended");
    })
    .await
    .expect("the request's log line arrives");
    println!(
        "FIGURE grpc TailLogs: request → its log line in {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(line.version, 2);

    // WatchApp saw the app, its instances becoming ready, and its history in order.
    let mut kinds = Vec::new();
    let mut ids = Vec::new();
    let mut first_is_app = None;
    let mut ready_v2 = false;
    let collect = async {
        while let Some(message) = app_rx.recv().await {
            match message.update.unwrap() {
                watch_app_response::Update::App(a) => {
                    first_is_app.get_or_insert(true);
                    assert_eq!(a.name, "shop");
                }
                watch_app_response::Update::Instances(list) => {
                    first_is_app.get_or_insert(false);
                    ready_v2 |= list
                        .instances
                        .iter()
                        .any(|i| i.version == 2 && i.state() == InstanceState::Ready);
                }
                watch_app_response::Update::Event(e) => {
                    first_is_app.get_or_insert(false);
                    ids.push(e.id);
                    kinds.push(e.r#type);
                }
            }
            if ready_v2 && kinds.iter().filter(|k| *k == "ReleaseSucceeded").count() == 2 {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .unwrap_or_else(|_| panic!("WatchApp saw {kinds:?}, v2 ready: {ready_v2}"));
    assert_eq!(first_is_app, Some(true));
    // Once each; causally related events (below) in order.
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "each event once: {ids:?}");
    let at = |kind: &str| kinds.iter().position(|k| k == kind).unwrap_or(usize::MAX);
    assert_eq!(at("AppCreated"), 0, "{kinds:?}");
    assert!(at("VersionCreated") < at("ReleaseCreated"), "{kinds:?}");
    assert!(at("ReleaseCreated") < at("ReleaseSucceeded"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "InstanceReady"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_grpc_codes_and_stable_reasons_and_reflection_lists_the_services() {
    let s = TestServer::start_with(Backend::Sqlite, &["--max-artifact-mb", "1"])
        .await
        .unwrap();
    let mut c = clients(&s, &s.token).await;
    let get_shop = || GetAppRequest {
        namespace: "default".into(),
        app: "shop".into(),
    };

    // Authentication.
    for token in ["", "not-a-token"] {
        let mut anonymous = clients(&s, token).await;
        let e = anonymous.apps.get_app(get_shop()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert_eq!(reason(&e).0, "unauthenticated");
    }

    // Unknown app: NotFound with the kind, for reads, watches and deploys alike.
    let e = c.apps.get_app(get_shop()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let (code, metadata) = reason(&e);
    assert_eq!(
        (code.as_str(), metadata["kind"].as_str()),
        ("not_found", "app")
    );
    let e = c
        .apps
        .watch_app(WatchAppRequest {
            namespace: "default".into(),
            app: "shop".into(),
            after_event_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let artifact = pack_dir(&repo_root().join("examples/hello"));
    let e = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            manifest("shop"),
            &artifact,
            4096,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Malformed names and fields: InvalidArgument, before anything else.
    let e = c
        .apps
        .get_app(GetAppRequest {
            namespace: "default".into(),
            app: "Not_A_Name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(reason(&e).0, "invalid_name");

    c.apps
        .create_app(CreateAppRequest {
            name: "shop".into(),
            ..CreateAppRequest::default()
        })
        .await
        .unwrap();
    let e = c
        .apps
        .create_app(CreateAppRequest {
            name: "shop".into(),
            ..CreateAppRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(reason(&e).0, "already_exists");

    // An invalid strategy names its field, in ErrorInfo and as a BadRequest violation; a
    // deploy checks it before reading the artifact.
    let bad = r#"{"type":"canary","steps":[{"set_weight":150}]}"#;
    let e = c
        .releases
        .create_release(CreateReleaseRequest {
            namespace: "default".into(),
            app: "shop".into(),
            target_version: 1,
            strategy_json: bad.into(),
            supersede: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let (code, metadata) = reason(&e);
    assert_eq!(code, "validation_failed");
    assert_eq!(metadata["field"], "strategy.steps[0].set_weight");
    let violations = e.get_error_details().bad_request().unwrap().clone();
    assert_eq!(
        violations.field_violations[0].field,
        "strategy.steps[0].set_weight"
    );
    let e = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            DeployManifest {
                start_release: true,
                strategy_json: bad.into(),
                ..manifest("shop")
            },
            &artifact,
            4096,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(reason(&e).1["field"], "strategy.steps[0].set_weight");
    let e = c
        .releases
        .create_release(CreateReleaseRequest {
            namespace: "default".into(),
            app: "shop".into(),
            target_version: 1,
            strategy_json: "{not json".into(),
            supersede: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(reason(&e).1["field"], "strategy_json");
    let no_versions = c
        .apps
        .list_versions(ListVersionsRequest {
            namespace: "default".into(),
            app: "shop".into(),
            ..ListVersionsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        no_versions.versions.is_empty(),
        "refused deploys stored nothing"
    );

    // The deploy protocol: a manifest first, chunks of at most 1 MiB, an artifact within
    // the server's limit (1 MiB here).
    let e = c
        .apps
        .deploy(futures_util::stream::iter(vec![DeployRequest {
            part: Some(deploy_request::Part::Chunk(b"data".to_vec())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            manifest("shop"),
            &vec![0u8; 3 << 20],
            (1 << 20) + 1,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e).0, "chunk_too_large");
    // Far beyond: the same answer, not a transport error.
    let e = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            manifest("shop"),
            &vec![0u8; 5 << 20],
            5 << 20,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e).0, "chunk_too_large");
    let e = c
        .apps
        .deploy(futures_util::stream::iter(deploy_messages(
            manifest("shop"),
            &vec![0u8; 2 << 20],
            512 << 10,
        )))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(reason(&e).0, "artifact_too_large");

    // A viewer may read but not deploy.
    let viewer = s
        .post(
            "/api/v1/tokens",
            serde_json::json!({"name": "ide", "role": "viewer"}),
        )
        .await;
    let mut viewer = clients(&s, viewer.body["token"].as_str().unwrap()).await;
    viewer.apps.get_app(get_shop()).await.unwrap();
    let e = viewer
        .releases
        .create_release(CreateReleaseRequest {
            namespace: "default".into(),
            app: "shop".into(),
            target_version: 1,
            ..CreateReleaseRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(reason(&e).0, "forbidden");

    // Reflection, v1 and v1alpha, lists every service.
    let expected = [
        "tideway.v1.AppService",
        "tideway.v1.ReleaseService",
        "tideway.gateway.v1.GatewaySync",
    ];
    let (v1, files) = reflection_v1(&s).await;
    let v1alpha = reflection_v1alpha_services(&s).await;
    for name in expected {
        assert!(v1.iter().any(|s| s == name), "{v1:?}");
        assert!(v1alpha.iter().any(|s| s == name), "{v1alpha:?}");
    }
    assert!(v1
        .iter()
        .any(|s| s == "grpc.reflection.v1.ServerReflection"));
    // Describing a service works: its file and everything it imports are served.
    assert_eq!(files.len(), 3);
    let starts = |file: &[u8], name: &str| {
        // Field 1 (`name`), length-delimited: tag 0x0a, then the length.
        file.len() > name.len() + 2 && &file[2..2 + name.len()] == name.as_bytes()
    };
    assert!(starts(&files[0], "tideway/v1/releases.proto"));
    assert!(starts(&files[1], "tideway/v1/resources.proto"));
    assert!(starts(&files[2], "google/protobuf/timestamp.proto"));
}

/// The services reflection v1 lists, and the files a client describing `ReleaseService`
/// fetches: the one defining it, then its imports by name (encoded descriptors, which name
/// their files).
async fn reflection_v1(s: &TestServer) -> (Vec<String>, Vec<Vec<u8>>) {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel(s).await);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "tideway.v1.ReleaseService".into(),
        )),
        ask(MessageRequest::FileByFilename(
            "tideway/v1/resources.proto".into(),
        )),
        ask(MessageRequest::FileByFilename(
            "google/protobuf/timestamp.proto".into(),
        )),
    ];
    let mut answers = client
        .server_reflection_info(futures_util::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let services = match answers.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("{other:?}"),
    };
    let mut files = Vec::new();
    while let Some(answer) = answers.next().await {
        match answer.unwrap().message_response {
            Some(MessageResponse::FileDescriptorResponse(found)) => {
                files.extend(found.file_descriptor_proto)
            }
            other => panic!("{other:?}"),
        }
    }
    (services, files)
}

async fn reflection_v1alpha_services(s: &TestServer) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel(s).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures_util::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    match answers.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("{other:?}"),
    }
}
