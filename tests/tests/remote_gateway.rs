//! `tideway gateway`: the gateway in its own process, fed over gRPC. It follows route
//! changes, reports its metrics to the control plane, keeps serving its last table when the
//! control plane dies, and refuses to start with a token the control plane rejects.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tideway_e2e::{deploy_hello, tideway_bin, wait_until, Backend, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const APPS: &str = "/api/v1/namespaces/default/apps";

/// A `tideway gateway` child process.
struct RemoteGateway {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl RemoteGateway {
    fn spawn(s: &TestServer, token: &str, name: &str) -> (Child, std::path::PathBuf) {
        let log = s.data_dir.path().join(format!("{name}.log"));
        let child = Command::new(tideway_bin())
            .arg("gateway")
            .arg("--control-plane")
            .arg(&s.grpc_url)
            .arg("--token")
            .arg(token)
            .arg("--gateway-addr")
            .arg("127.0.0.1:0")
            .env("TIDEWAY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        (child, log)
    }

    async fn start(s: &TestServer, token: &str, name: &str) -> RemoteGateway {
        let (mut child, log) = Self::spawn(s, token, name);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("tideway: gateway listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("gateway exited before listening");
        })
        .await
        .unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        RemoteGateway { child, url, log }
    }

    async fn get(&self, client: &reqwest::Client, host: &str) -> Option<(StatusCode, Value)> {
        let resp = client
            .get(format!("{}/", self.url))
            .header("host", host)
            .send()
            .await
            .ok()?;
        let status = resp.status();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// The version that answered, when the request succeeded.
    async fn version(&self, client: &reqwest::Client, host: &str) -> Option<String> {
        match self.get(client, host).await? {
            (StatusCode::OK, body) => body["version"].as_str().map(str::to_owned),
            _ => None,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Waits for a gateway started with a refused token to exit on its own.
async fn exits(s: &TestServer, token: &str, name: &str) -> (ExitStatus, String) {
    let (mut child, log) = RemoteGateway::spawn(s, token, name);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("a gateway with a refused token must exit")
        .unwrap();
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

async fn requests_seen(s: &TestServer, app: &str) -> u64 {
    let r = s.get(&format!("{APPS}/{app}/metrics?step=60")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["points"].as_array().unwrap().iter())
        .map(|p| p["requests"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_gateway_follows_routes_reports_metrics_and_survives_the_control_plane() {
    let mut s = TestServer::start(Backend::Sqlite).await.unwrap();
    assert!(
        s.grpc_url.starts_with("http://127.0.0.1:"),
        "{:?}",
        s.stdout
    );
    deploy_hello(&s, "far", 2, 1).await;
    let host = "far.default.localhost";
    let client = reqwest::Client::new();

    // Two gateways in front of one control plane both get the table.
    let gw = RemoteGateway::start(&s, &s.token, "gw1").await;
    let gw2 = RemoteGateway::start(&s, &s.token, "gw2").await;
    for g in [&gw, &gw2] {
        wait_until(
            "the app through a remote gateway",
            Duration::from_secs(10),
            || async { g.version(&client, host).await.as_deref() == Some("1") },
        )
        .await;
    }

    // A traffic policy change reaches the remote gateway.
    let policy = json!({"weights": [{"version": 1, "weight": 0}, {"version": 2, "weight": 100}]});
    let r = s
        .call(Method::PUT, &format!("{APPS}/far/traffic"), Some(policy))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_until(
        "v2 through the remote gateway",
        Duration::from_secs(30),
        || async { gw.version(&client, host).await.as_deref() == Some("2") },
    )
    .await;

    // Requests through the remote gateway show in the control plane's metrics (nothing
    // went through the control plane's own gateway).
    for _ in 0..20 {
        assert_eq!(gw.version(&client, host).await.as_deref(), Some("2"));
    }
    wait_until("remote metrics", Duration::from_secs(10), || async {
        requests_seen(&s, "far").await >= 20
    })
    .await;

    // Tokens the control plane refuses: the gateway exits non-zero and says why.
    let (status, log) = exits(&s, "tw_not_a_token", "bad").await;
    assert!(!status.success(), "{status:?}");
    assert!(log.contains("refused the token"), "{log}");
    let r = s
        .post("/api/v1/tokens", json!({"name": "peek", "role": "viewer"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let viewer = r.body["token"].as_str().unwrap().to_owned();
    let (status, log) = exits(&s, &viewer, "viewer").await;
    assert!(!status.success(), "{status:?}");
    assert!(log.contains("PermissionDenied"), "{log}");

    // The control plane dies: the remote gateway keeps serving its last table.
    s.kill9().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..10 {
        assert_eq!(
            gw.version(&client, host).await.as_deref(),
            Some("2"),
            "{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log().contains("ControlPlaneDisconnected"),
        "{}",
        gw.log()
    );

    // It comes back on the same data dir (a new gRPC port: the old gateways keep retrying
    // the old one and keep serving; a new gateway syncs from the restarted control plane).
    s.launch().await.unwrap();
    let gw3 = RemoteGateway::start(&s, &s.token, "gw3").await;
    wait_until(
        "the app after a restart",
        Duration::from_secs(30),
        || async { gw3.version(&client, host).await.as_deref() == Some("2") },
    )
    .await;

    gw.kill().await;
    gw2.kill().await;
    gw3.kill().await;
    s.stop().await.unwrap();
}
