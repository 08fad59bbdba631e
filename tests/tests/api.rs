//! The REST API end to end: the real binary, over HTTP, on SQLite and (when
//! `TIDEWAY_TEST_POSTGRES_URL` is set) PostgreSQL. Every case runs against both backends.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tideway_e2e::{pack_dir, pack_files, repo_root, tideway_bin, Backend, TestServer};

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    match Backend::postgres() {
                        Some(backend) => super::$case(backend).await,
                        None => eprintln!("skipped: TIDEWAY_TEST_POSTGRES_URL is not set"),
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    system_endpoints,
    authentication_and_roles,
    namespaces,
    apps_crud_and_validation,
    malformed_requests_never_500,
    versions_releases_and_scale,
    autoscaling_policy,
    events_log,
    concurrent_writers,
    restart_keeps_state,
    cli_drives_the_api,
);

const APPS: &str = "/api/v1/namespaces/default/apps";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

async fn start(backend: Backend) -> TestServer {
    TestServer::start(backend).await.expect("server starts")
}

async fn create_app(s: &TestServer, name: &str) -> Value {
    let r = s.post(APPS, json!({"name": name})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body
}

async fn system_endpoints(backend: Backend) {
    let s = start(backend).await;
    let r = s.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ok");
    let r = s.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "ready");

    // Metrics are labelled by route template and status.
    s.get(&format!("{APPS}/missing")).await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains(
            "tideway_api_requests_total{route=\"/api/v1/namespaces/{ns}/apps/{app}\",method=\"GET\",status=\"404\"} 1"
        ),
        "{}",
        r.text
    );
    assert!(r
        .text
        .contains("# TYPE tideway_api_request_duration_seconds histogram"));

    let r = s.get("/api/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    let paths = r.body["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/namespaces",
        "/api/v1/namespaces/{ns}",
        "/api/v1/namespaces/{ns}/apps",
        "/api/v1/namespaces/{ns}/apps/{app}",
        "/api/v1/namespaces/{ns}/apps/{app}/versions",
        "/api/v1/namespaces/{ns}/apps/{app}/versions/{version}",
        "/api/v1/namespaces/{ns}/apps/{app}/releases",
        "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}",
        "/api/v1/namespaces/{ns}/apps/{app}/versions/{version}/build-log",
        "/api/v1/namespaces/{ns}/apps/{app}/instances",
        "/api/v1/namespaces/{ns}/apps/{app}/logs",
        "/api/v1/namespaces/{ns}/apps/{app}/scale",
        "/api/v1/namespaces/{ns}/apps/{app}/autoscaling",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/whoami",
        "/api/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    assert!(r.body["components"]["securitySchemes"]["bearer"].is_object());

    let r = s.get("/no/such/thing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let r = s.call(Method::PUT, "/api/v1/events", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
}

async fn authentication_and_roles(backend: Backend) {
    let s = start(backend).await;
    // The first start printed the admin token once and wrote it with mode 0600.
    assert!(s
        .stdout
        .iter()
        .any(|l| l == &format!("tideway: admin token: {}", s.token)));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.data_dir.path().join("admin-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    for token in ["", "tw_wrong", "Basic abc"] {
        let r = s
            .call_as(token, Method::GET, "/api/v1/namespaces", None, &[])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert_eq!(r.code(), "unauthenticated");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }

    let r = s.post("/api/v1/namespaces", json!({"name": "dev"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mint = |name: &str, role: &str, namespaces: Option<Vec<&str>>| {
        let mut body = json!({"name": name, "role": role});
        if let Some(ns) = namespaces {
            body["namespaces"] = json!(ns);
        }
        body
    };
    let r = s
        .post("/api/v1/tokens", mint("reader", "viewer", None))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let viewer = r.body["token"].as_str().unwrap().to_owned();
    let viewer_id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.body["role"], "viewer");
    let r = s
        .post("/api/v1/tokens", mint("ci", "deployer", Some(vec!["dev"])))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let deployer = r.body["token"].as_str().unwrap().to_owned();

    let r = s
        .post("/api/v1/tokens", mint("reader", "viewer", None))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "already_exists");
    let r = s
        .post("/api/v1/tokens", mint("Bad Name", "viewer", None))
        .await;
    assert_eq!(r.code(), "invalid_name");
    let r = s.post("/api/v1/tokens", mint("x", "root", None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_body");
    let r = s
        .post("/api/v1/tokens", mint("x", "viewer", Some(vec![])))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Listing never shows secrets.
    let r = s.get("/api/v1/tokens").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains(&viewer) && !r.text.contains("secret"));
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3);

    // Viewer: reads, never writes.
    let r = s.call_as(&viewer, Method::GET, APPS, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .call_as(&viewer, Method::POST, APPS, Some(json!({"name": "a"})), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "forbidden");
    let r = s
        .call_as(&viewer, Method::GET, "/api/v1/tokens", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Namespace-restricted deployer: writes in dev only, sees only dev.
    let r = s
        .call_as(
            &deployer,
            Method::POST,
            "/api/v1/namespaces/dev/apps",
            Some(json!({"name": "svc"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .call_as(
            &deployer,
            Method::POST,
            APPS,
            Some(json!({"name": "svc"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = s
        .call_as(&deployer, Method::GET, "/api/v1/namespaces", None, &[])
        .await;
    let names: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev"]);
    let r = s
        .call_as(
            &deployer,
            Method::GET,
            "/api/v1/events?limit=500",
            None,
            &[],
        )
        .await;
    assert!(r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["namespace"] == "dev"));
    let r = s
        .call_as(
            &deployer,
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"name": "other"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The mutation is recorded with the token's name as actor.
    let r = s.get("/api/v1/events?namespace=dev&type=AppCreated").await;
    assert_eq!(r.body["items"][0]["actor"], "ci");

    // Revocation takes effect at once.
    let r = s
        .call(Method::DELETE, &format!("/api/v1/tokens/{viewer_id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["revoked_at"].is_string());
    let r = s.call_as(&viewer, Method::GET, APPS, None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s.call(Method::DELETE, "/api/v1/tokens/999999", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.call(Method::DELETE, "/api/v1/tokens/abc", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

async fn namespaces(backend: Backend) {
    let s = start(backend).await;
    let r = s.get("/api/v1/namespaces/default").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .post(
            "/api/v1/namespaces",
            json!({"name": "staging", "labels": {"tier": "pre"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["labels"]["tier"], "pre");
    let r = s
        .post("/api/v1/namespaces", json!({"name": "staging"}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "already_exists");
    for bad in ["UPPER", "-x", "a_b", &"x".repeat(64), ""] {
        let r = s.post("/api/v1/namespaces", json!({"name": bad})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.code(), "invalid_name", "{bad}");
    }
    let r = s.get("/api/v1/namespaces/Nope").await;
    assert_eq!(r.code(), "invalid_name");
    let r = s.get("/api/v1/namespaces/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Optimistic concurrency.
    let r = s.get("/api/v1/namespaces/staging").await;
    let tag = r.etag();
    assert_eq!(tag, "\"1\"");
    let patch = |tag: &str| {
        let tag = tag.to_owned();
        let s = &s;
        async move {
            s.call_as(
                &s.token,
                Method::PATCH,
                "/api/v1/namespaces/staging",
                Some(json!({"labels": {"tier": "qa"}})),
                &[("if-match", &tag)],
            )
            .await
        }
    };
    let r = patch(&tag).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["labels"]["tier"], "qa");
    assert_eq!(r.etag(), "\"2\"");
    let r = patch(&tag).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.code(), "precondition_failed");
    assert_eq!(r.body["error"]["details"]["current"], 2);

    // Not while it has apps; never the default namespace.
    let r = s
        .post("/api/v1/namespaces/staging/apps", json!({"name": "a"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s
        .call(Method::DELETE, "/api/v1/namespaces/staging", None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "namespace_not_empty");
    s.call(Method::DELETE, "/api/v1/namespaces/staging/apps/a", None)
        .await;
    let r = s
        .call(Method::DELETE, "/api/v1/namespaces/staging", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s
        .call(Method::DELETE, "/api/v1/namespaces/default", None)
        .await;
    assert_eq!(r.code(), "namespace_protected");

    // Pagination walks every namespace once.
    for i in 0..5 {
        s.post("/api/v1/namespaces", json!({"name": format!("p{i}")}))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/namespaces?limit=2&cursor={c}"),
            None => "/api/v1/namespaces?limit=2".to_owned(),
        };
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::OK);
        let items = r.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|n| n["name"].as_str().unwrap().to_owned()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["default", "p0", "p1", "p2", "p3", "p4"]);
}

async fn apps_crud_and_validation(backend: Backend) {
    let s = start(backend).await;
    let r = s
        .post(
            APPS,
            json!({"name": "shop", "description": "the shop", "labels": {"team": "web"}, "replicas": 3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["replicas"], 3);
    assert_eq!(r.body["generation"], 1);
    let r = s.post(APPS, json!({"name": "shop"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.code(), "already_exists");
    let r = s.post(APPS, json!({"name": "Shop!"})).await;
    assert_eq!(r.code(), "invalid_name");
    let r = s.post(APPS, json!({"name": "x", "replicas": 100000})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["details"]["field"], "replicas");
    let r = s
        .post(APPS, json!({"name": "x", "labels": {"bad key": "v"}}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.post(APPS, json!({"name": "x", "colour": "red"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_body");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let r = s
        .post("/api/v1/namespaces/ghost/apps", json!({"name": "x"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = s.get(&format!("{APPS}/shop")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["description"], "the shop");
    let tag = r.etag();
    assert_eq!(tag, "\"1\"");

    let patch = |body: Value, tag: Option<String>| {
        let s = &s;
        async move {
            let headers: Vec<(&str, &str)> = match &tag {
                Some(t) => vec![("if-match", t.as_str())],
                None => vec![],
            };
            s.call_as(
                &s.token,
                Method::PATCH,
                &format!("{APPS}/shop"),
                Some(body),
                &headers,
            )
            .await
        }
    };
    let r = patch(json!({"description": "new"}), Some(tag.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["description"], "new");
    assert_eq!(r.body["labels"]["team"], "web", "absent fields are kept");
    assert_eq!(r.etag(), "\"2\"");
    let r = patch(json!({"description": "stale"}), Some(tag)).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = patch(json!({"description": "w"}), Some("W/\"2\"".into())).await;
    assert_eq!(r.status, StatusCode::OK, "weak tags compare by value");
    let r = patch(json!({"description": "x"}), Some("garbage".into())).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = patch(json!({"description": "star"}), Some("*".into())).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = patch(json!({"replicas": 2}), None).await;
    assert_eq!(r.code(), "invalid_body", "replicas change through /scale");
    let r = s.get(&format!("{APPS}/shop")).await;
    assert_eq!(
        r.body["description"], "star",
        "rejected patches changed nothing"
    );

    for i in 0..4 {
        create_app(&s, &format!("a{i}")).await;
    }
    let r = s.get(&format!("{APPS}?limit=3")).await;
    let first: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, ["a0", "a1", "a2"]);
    let cursor = r.body["next_cursor"].as_str().unwrap().to_owned();
    let r = s.get(&format!("{APPS}?limit=3&cursor={cursor}")).await;
    let rest: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rest, ["a3", "shop"]);
    assert!(r.body.get("next_cursor").is_none());

    let r = s
        .call_as(
            &s.token,
            Method::DELETE,
            &format!("{APPS}/shop"),
            None,
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = s.call(Method::DELETE, &format!("{APPS}/shop"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.get(&format!("{APPS}/shop")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
    let r = s.call(Method::DELETE, &format!("{APPS}/shop"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn malformed_requests_never_500(backend: Backend) {
    let s = start(backend).await;
    create_app(&s, "m").await;
    let r = s
        .raw(
            Method::POST,
            APPS,
            "application/json",
            b"{\"name\":".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "malformed_json");
    let r = s
        .raw(Method::POST, APPS, "application/json", b"[1,2]".to_vec())
        .await;
    assert_eq!(r.code(), "invalid_body");
    let r = s
        .raw(
            Method::POST,
            APPS,
            "text/plain",
            b"{\"name\":\"a\"}".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.code(), "unsupported_media_type");
    // Just past the 1 MiB limit: the server answers 413 without reading the rest, so a far
    // larger body would race the connection close on the client side.
    let huge = format!(
        "{{\"name\":\"a\",\"description\":\"{}\"}}",
        "x".repeat((1 << 20) + 1024)
    );
    let r = s
        .raw(Method::POST, APPS, "application/json", huge.into_bytes())
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "payload_too_large");
    let r = s
        .raw(
            Method::POST,
            APPS,
            "application/json",
            vec![0xff, 0xfe, 0x00],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for path in [
        format!("{APPS}?limit=0"),
        format!("{APPS}?limit=-1"),
        format!("{APPS}?limit=abc"),
        format!("{APPS}?bogus=1"),
        format!("{APPS}/m/versions?cursor=notanumber"),
        format!("{APPS}/m/versions/0"),
        format!("{APPS}/m/versions/v-1"),
        format!("{APPS}/m/releases/99999999999999999999999"),
        "/api/v1/events?after=-5".to_owned(),
        "/api/v1/events?namespace=BAD".to_owned(),
        "/api/v1/events?limit=100000".to_owned(),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text);
        assert!(r.body["error"]["code"].is_string(), "{path}");
    }
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/m/scale"),
            Some(json!({"replicas": -1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .call(
            Method::PUT,
            &format!("{APPS}/m/scale"),
            Some(json!({"replicas": "two"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.get("/metrics").await;
    assert!(!r.text.contains("status=\"500\""), "{}", r.text);
}

async fn versions_releases_and_scale(backend: Backend) {
    let s = start(backend).await;
    create_app(&s, "web").await;
    let versions = format!("{APPS}/web/versions");
    let r = s
        .post(
            &versions,
            json!({"artifact_digest": digest('a'), "run": {"command": "x"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "artifact_required");
    let bad = pack_files(&[(
        "tideway.toml",
        "[run]\ncommand = \"python3 app.py\"\n[env]\nPORT = \"1\"\n",
    )]);
    let r = s.upload("web", bad, "application/gzip").await;
    assert_eq!(r.code(), "invalid_manifest");
    assert_eq!(r.body["error"]["details"]["field"], "env.PORT");

    let hello = pack_dir(&repo_root().join("examples/hello"));
    let r = s.upload("web", hello.clone(), "application/gzip").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["number"], 1);
    assert_eq!(r.body["state"], "ready");
    assert!(r.body["artifact_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let first_digest = r.body["artifact_digest"].clone();
    let r = s.upload("web", hello, "application/octet-stream").await;
    assert_eq!(r.body["number"], 2);
    assert_eq!(
        r.body["artifact_digest"], first_digest,
        "same bytes, same digest"
    );
    let stored = std::fs::read_dir(s.data_dir.path().join("artifacts/sha256"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "same bytes stored once");
    let r = s.get(&format!("{versions}/v1")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["env"]["GREETING"], "hello");
    assert_eq!(r.body["resources"]["memory_mb"], 128);
    assert_eq!(r.body["health"]["http"], "/healthz");
    assert_eq!(s.get(&format!("{versions}/2")).await.body["number"], 2);
    assert_eq!(
        s.get(&format!("{versions}/9")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = s.get(&versions).await;
    let numbers: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1], "newest first");

    let releases = format!("{APPS}/web/releases");
    let r = s.post(&releases, json!({"target_version": 7})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["details"]["field"], "target_version");
    let r = s
        .post(
            &releases,
            json!({"target_version": 1, "strategy": {"type": "yolo"}}),
        )
        .await;
    assert_eq!(r.code(), "invalid_body");
    let r = s
        .post(
            &releases,
            json!({"target_version": 1, "strategy": {"type": "immediate"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    let release = wait_for_release(&s, &releases, id).await;
    assert_eq!(release["state"], "succeeded", "{release}");
    assert_eq!(release["from_versions"], json!([]));
    let r = s.get(&format!("{APPS}/web")).await;
    assert_eq!(r.body["current_version"], 1);

    let r = s.post(&releases, json!({"target_version": 2})).await;
    let id2 = r.body["id"].as_i64().unwrap();
    let release = wait_for_release(&s, &releases, id2).await;
    assert_eq!(release["from_versions"], json!([1]));
    let r = s.get(&releases).await;
    let ids: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [id2, id]);
    let r = s.get("/api/v1/events?app=web&type=ReleaseSucceeded").await;
    let event = &r.body["items"][0];
    assert_eq!(event["actor"], "release-controller");
    assert_eq!(event["details"]["release"], id);
    let r = s
        .get(&format!("/api/v1/namespaces/dev/apps/web/releases/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Scale, with its own optimistic concurrency on the app's generation.
    let scale = format!("{APPS}/web/scale");
    let r = s.get(&scale).await;
    assert_eq!(r.body["replicas"], 1);
    let tag = r.etag();
    let r = s
        .call_as(
            &s.token,
            Method::PUT,
            &scale,
            Some(json!({"replicas": 2})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["replicas"], 2);
    let r = s
        .call_as(
            &s.token,
            Method::PUT,
            &scale,
            Some(json!({"replicas": 5})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = s
        .call(Method::PUT, &scale, Some(json!({"replicas": 1001})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s.get(&scale).await.body["replicas"], 2);
    let r = s.get("/api/v1/events?app=web&type=AppScaled").await;
    assert_eq!(r.body["items"][0]["details"], json!({"from": 1, "to": 2}));

    let r = s.get(&format!("{APPS}/web/instances")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["items"].is_array());
    let r = s.get(&format!("{APPS}/nope/instances")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn wait_for_release(s: &TestServer, releases: &str, id: i64) -> Value {
    for _ in 0..600 {
        let r = s.get(&format!("{releases}/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        if r.body["state"] != "pending" && r.body["state"] != "progressing" {
            return r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("release {id} did not finish");
}

async fn autoscaling_policy(backend: Backend) {
    let s = start(backend).await;
    create_app(&s, "api").await;
    let path = format!("{APPS}/api/autoscaling");
    let r = s.get(&path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let put = |body: Value, tag: Option<&str>| {
        let s = &s;
        let path = path.clone();
        let tag = tag.map(str::to_owned);
        async move {
            let headers: Vec<(&str, &str)> = match &tag {
                Some(t) => vec![("if-match", t.as_str())],
                None => vec![],
            };
            s.call_as(&s.token, Method::PUT, &path, Some(body), &headers)
                .await
        }
    };
    let cases = [
        (json!({"min": 5, "max": 2}), "min"),
        (json!({"min": 0, "max": 2}), "min"),
        (
            json!({"min": 1, "max": 2, "stable_window_secs": 1}),
            "stable_window_secs",
        ),
        (
            json!({"min": 1, "max": 2, "metrics": [{"type": "cpu", "target": 300}]}),
            "metrics[0].target",
        ),
        (
            json!({"min": 1, "max": 2, "metrics": [{"type": "custom", "target": 3}]}),
            "metrics[0].name",
        ),
    ];
    for (body, field) in cases {
        let r = put(body, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    let r = put(
        json!({"min": 1, "max": 3, "metrics": [{"type": "magic", "target": 1}]}),
        None,
    )
    .await;
    assert_eq!(r.code(), "invalid_body");

    let policy = json!({
        "min": 1, "max": 10,
        "metrics": [{"type": "concurrency", "target": 10}, {"type": "cpu", "target": 70}],
        "schedules": [{"cron": "0 9 * * 1-5", "timezone": "Asia/Shanghai", "duration_secs": 36000, "min": 3, "max": 10}]
    });
    let r = put(policy.clone(), Some("\"0\"")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["generation"], 1);
    assert_eq!(
        r.body["policy"]["stable_window_secs"], 60,
        "defaults filled"
    );
    let r = put(policy.clone(), Some("\"0\"")).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = s.get(&path).await;
    assert_eq!(r.etag(), "\"1\"");
    assert_eq!(r.body["policy"]["metrics"][1]["type"], "cpu");
    assert_eq!(
        r.body["policy"]["schedules"][0]["timezone"],
        "Asia/Shanghai"
    );
    let r = put(json!({"min": 2, "max": 4}), Some("\"1\"")).await;
    assert_eq!(r.body["generation"], 2);
    let r = s
        .get("/api/v1/events?app=api&type=AutoscalingPolicyUpdated")
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
}

async fn events_log(backend: Backend) {
    let s = start(backend).await;
    for i in 0..5 {
        create_app(&s, &format!("e{i}")).await;
    }
    s.call(Method::DELETE, &format!("{APPS}/e0"), None).await;
    let r = s.get("/api/v1/events?app=e0").await;
    let kinds: Vec<_> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["AppCreated", "AppDeleted"],
        "the log outlives the app"
    );

    // Cursor pagination: every event once, in id order.
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let r = s
            .get(&format!(
                "/api/v1/events?type=AppCreated&limit=2&after={after}"
            ))
            .await;
        let items = r.body["items"].as_array().unwrap().clone();
        ids.extend(items.iter().map(|e| e["id"].as_i64().unwrap()));
        match r.body["next_cursor"].as_str() {
            Some(c) => after = c.parse().unwrap(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 5);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let r = s
        .get("/api/v1/events?namespace=default&type=AppCreated")
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 5);
    assert_eq!(r.body["items"][0]["actor"], "admin");
    assert_eq!(r.body["items"][0]["reason"], "created through the API");
    let r = s.get("/api/v1/events?namespace=other").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
}

async fn concurrent_writers(backend: Backend) {
    let s = std::sync::Arc::new(start(backend).await);
    create_app(&s, "race").await;
    let path = format!("{APPS}/race");

    // Twenty writers with the same If-Match: exactly one wins, the rest get 412.
    let tag = s.get(&path).await.etag();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, path, tag) = (s.clone(), path.clone(), tag.clone());
        tasks.push(tokio::spawn(async move {
            s.call_as(
                &s.token,
                Method::PATCH,
                &path,
                Some(json!({"description": format!("writer {i}")})),
                &[("if-match", &tag)],
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
            .count(),
        19
    );

    // Unconditional writers all land: none is lost, each is one generation and one event.
    let before = s.get(&path).await.body["generation"].as_i64().unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, path) = (s.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            s.call(
                Method::PATCH,
                &path,
                Some(json!({"labels": {"writer": format!("{i}")}})),
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let after = s.get(&path).await.body["generation"].as_i64().unwrap();
    assert_eq!(after - before, 20);
    let r = s
        .get("/api/v1/events?app=race&type=AppUpdated&limit=500")
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 21);
}

async fn restart_keeps_state(backend: Backend) {
    let mut s = start(backend).await;
    create_app(&s, "keep").await;
    let token = s.token.clone();
    let code = s.stop().await.unwrap();
    assert_eq!(code, Some(0), "SIGTERM is a clean shutdown");
    s.launch().await.unwrap();
    assert!(
        !s.stdout.iter().any(|l| l.contains("admin token:")),
        "no second admin token: {:?}",
        s.stdout
    );
    let saved = std::fs::read_to_string(s.data_dir.path().join("admin-token")).unwrap();
    assert_eq!(saved.trim(), token);
    let r = s.get(&format!("{APPS}/keep")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .get("/api/v1/events?namespace=default&type=NamespaceCreated")
        .await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        1,
        "the default namespace is created once"
    );
}

async fn cli_drives_the_api(backend: Backend) {
    let s = start(backend).await;
    let config_home = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], with_env: bool| {
        let mut cmd = std::process::Command::new(tideway_bin());
        cmd.args(args)
            .env("XDG_CONFIG_HOME", config_home.path())
            .env_remove("TIDEWAY_URL")
            .env_remove("TIDEWAY_TOKEN")
            .env_remove("TIDEWAY_NAMESPACE");
        if with_env {
            cmd.env("TIDEWAY_URL", &s.url)
                .env("TIDEWAY_TOKEN", &s.token);
        }
        cmd.output().unwrap()
    };
    let out = cli(&["apps", "create", "cli-app", "--replicas", "2"], true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["apps", "list", "-o", "json"], true);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["items"][0]["name"], "cli-app");
    assert_eq!(listed["items"][0]["replicas"], 2);
    let out = cli(&["apps", "list"], true);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("NAME") && table.contains("cli-app"),
        "{table}"
    );

    // Without env or login the CLI says what to do.
    let out = cli(&["apps", "list"], false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tideway login"));
    let out = cli(&["login", "--url", &s.url, "--token", &s.token], false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["apps", "show", "cli-app", "-o", "json"], false);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["name"], "cli-app");

    let out = cli(&["apps", "show", "ghost"], false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_found"));
    let out = cli(&["apps", "delete", "cli-app"], false);
    assert!(out.status.success());
    let out = cli(&["events", "-o", "json", "--type", "AppDeleted"], false);
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(events["items"][0]["app"], "cli-app");
    let out = cli(&["login", "--url", &s.url, "--token", "tw_bad"], false);
    assert!(!out.status.success());
}

/// A database written by a newer Tideway is refused with a clear message.
#[tokio::test]
async fn newer_schema_is_refused() {
    use sqlx::Connection as _;
    let mut s = TestServer::start(Backend::Sqlite).await.unwrap();
    s.stop().await.unwrap();
    let db = s.data_dir.path().join("tideway.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', TRUE, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = s.launch().await.unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}
