//! Test harness for end-to-end tests: starts the real `tideway` binary on a free port with a
//! temporary data dir (and, when `TIDEWAY_TEST_POSTGRES_URL` is set, a fresh PostgreSQL
//! database), and talks to it over HTTP like a user. It owns no product code and must never
//! reach into the control plane's internals.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Which database the server under test uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A fresh database created on the server behind this URL.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when `TIDEWAY_TEST_POSTGRES_URL` is set, else `None` (the test is skipped).
    pub fn postgres() -> Option<Backend> {
        std::env::var("TIDEWAY_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .map(Backend::Postgres)
    }
}

/// The `tideway` binary built by the same `cargo test` run (it sits next to the test
/// executable's `deps/` directory).
pub fn tideway_bin() -> PathBuf {
    if let Ok(path) = std::env::var("TIDEWAY_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    dir.join("tideway")
}

/// A running `tideway server`.
pub struct TestServer {
    child: Option<Child>,
    pub url: String,
    /// Where the gateway serves the apps.
    pub gateway_url: String,
    /// Where remote gateways (`tideway gateway --control-plane`) connect.
    pub grpc_url: String,
    /// Where apps send OTLP metrics.
    pub otlp_url: String,
    /// The built-in registry's Eureka base URL (ends in `/eureka/`).
    pub eureka_url: String,
    /// The built-in registry's Consul HTTP API.
    pub consul_url: String,
    pub token: String,
    pub data_dir: tempfile::TempDir,
    /// The PostgreSQL database URL, when that is the backend.
    pub database_url: Option<String>,
    pg_admin: Option<(String, String)>,
    pub http: reqwest::Client,
    /// Lines the server printed on stdout at its last start.
    pub stdout: Vec<String>,
    extra_args: Vec<String>,
}

/// An HTTP answer with its JSON body (or `Value::Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The stable error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn etag(&self) -> String {
        self.headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

async fn create_pg_database(base: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection as _;
    let name = format!("tw_e2e_{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .context("connecting to TIDEWAY_TEST_POSTGRES_URL")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let (prefix, _) = base
        .rsplit_once('/')
        .context("postgres URL needs a database path")?;
    Ok((format!("{prefix}/{name}"), name))
}

impl TestServer {
    pub async fn start(backend: Backend) -> anyhow::Result<TestServer> {
        Self::start_with(backend, &[]).await
    }

    /// Starts a server with extra `tideway server` flags (limits, timeouts).
    pub async fn start_with(backend: Backend, extra_args: &[&str]) -> anyhow::Result<TestServer> {
        let data_dir = tempfile::tempdir()?;
        let (database_url, pg_admin) = match &backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres(base) => {
                let (url, name) = create_pg_database(base).await?;
                (Some(url), Some((base.clone(), name)))
            }
        };
        let mut server = TestServer {
            child: None,
            url: String::new(),
            gateway_url: String::new(),
            grpc_url: String::new(),
            otlp_url: String::new(),
            eureka_url: String::new(),
            consul_url: String::new(),
            token: String::new(),
            data_dir,
            database_url,
            pg_admin,
            http: reqwest::Client::new(),
            stdout: Vec::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        server.launch().await?;
        server.token = std::fs::read_to_string(server.data_dir.path().join("admin-token"))
            .context("reading the admin token file")?
            .trim()
            .to_owned();
        Ok(server)
    }

    /// Starts the binary on the current data dir and waits until it listens.
    pub async fn launch(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(tideway_bin());
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path());
        // Every listener on a free port, unless the test pins it in its extra arguments.
        for flag in [
            "--api-addr",
            "--gateway-addr",
            "--grpc-addr",
            "--otlp-addr",
            "--eureka-addr",
            "--consul-addr",
        ] {
            if !self.extra_args.iter().any(|a| a == flag) {
                cmd.arg(flag).arg("127.0.0.1:0");
            }
        }
        cmd.args(&self.extra_args)
            .env("TIDEWAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(
                self.data_dir.path().join("server.log"),
            )?)
            .kill_on_drop(true);
        if let Some(url) = &self.database_url {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting {} (run `cargo build --bin tideway` first)",
                tideway_bin().display()
            )
        })?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        self.stdout.clear();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                self.stdout.push(line.clone());
                if let Some(url) = line.strip_prefix("tideway: gateway listening on ") {
                    self.gateway_url = url.trim().to_owned();
                }
                if let Some(url) = line.strip_prefix("tideway: grpc listening on ") {
                    self.grpc_url = url.trim().to_owned();
                }
                if let Some(url) = line.strip_prefix("tideway: otlp listening on ") {
                    self.otlp_url = url.trim().to_owned();
                }
                if let Some(url) = line.strip_prefix("tideway: eureka listening on ") {
                    self.eureka_url = url.trim().to_owned();
                }
                if let Some(url) = line.strip_prefix("tideway: consul listening on ") {
                    self.consul_url = url.trim().to_owned();
                }
                if let Some(url) = line.strip_prefix("tideway: api listening on ") {
                    return anyhow::Ok(Some(url.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await
        .context("server did not start within 30 s")??;
        let Some(url) = found else {
            let status = child.wait().await?;
            bail!(
                "server exited ({status}) before listening; log:\n{}",
                self.log()
            );
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.url = url;
        self.child = Some(child);
        Ok(())
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns its exit code.
    pub async fn stop(&mut self) -> anyhow::Result<Option<i32>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(pid) = child.id() {
            Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await?;
        }
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .context("server did not stop within 20 s of SIGTERM")??;
        Ok(status.code())
    }

    /// Kills the server with SIGKILL, as a crash would; its instances keep running.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Uploads an artifact as a new version of `app` in `default`.
    pub async fn upload(&self, app: &str, artifact: Vec<u8>, content_type: &str) -> Reply {
        self.raw(
            Method::POST,
            &format!("/api/v1/namespaces/default/apps/{app}/versions"),
            content_type,
            artifact,
        )
        .await
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }

    /// A request with the admin token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.token, method, path, body, &[]).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A request with any token (empty: none) and extra headers.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request reaches the server");
        Reply::read(resp).await
    }

    /// A request with a raw body and content type, for malformed-input tests.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request reaches the server");
        Reply::read(resp).await
    }
}

impl Reply {
    async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }
}

/// Polls `check` every 10 ms until it holds; returns how long that took, or panics naming
/// `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Deploys `examples/hello` as `app` in `default` with versions 1..=`versions`, releases v1
/// and waits until the release succeeded (so `replicas` instances of v1 are ready).
pub async fn deploy_hello(s: &TestServer, app: &str, versions: u32, replicas: u32) {
    let apps = "/api/v1/namespaces/default/apps";
    let r = s
        .post(apps, serde_json::json!({"name": app, "replicas": replicas}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let artifact = pack_dir(&repo_root().join("examples/hello"));
    for _ in 0..versions {
        let r = s.upload(app, artifact.clone(), "application/gzip").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = s
        .post(
            &format!("{apps}/{app}/releases"),
            serde_json::json!({"target_version": 1}),
        )
        .await;
    let id = r.body["id"].as_i64().expect("release id");
    wait_until("release", Duration::from_secs(30), || async {
        s.get(&format!("{apps}/{app}/releases/{id}")).await.body["state"] == "succeeded"
    })
    .await;
}

/// The repository root (for `examples/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A tar.gz of `dir`, as `tideway deploy` would upload it.
pub fn pack_dir(dir: &Path) -> Vec<u8> {
    let out = std::process::Command::new("tar")
        .args(["-czf", "-", "--exclude=__pycache__", "-C"])
        .arg(dir)
        .arg(".")
        .output()
        .expect("tar runs");
    assert!(out.status.success(), "tar failed");
    out.stdout
}

/// `examples/hello` packed with extra `[env]` variables (e.g. `HELLO_ERROR_RATE`), so a
/// version can misbehave from its first request.
pub fn pack_hello_with_env(env: &[(&str, &str)]) -> Vec<u8> {
    let src = repo_root().join("examples/hello");
    let dir = tempfile::tempdir().expect("temp dir");
    let app = std::fs::read_to_string(src.join("app.py")).expect("app.py");
    std::fs::write(dir.path().join("app.py"), app).expect("write app.py");
    let mut toml = std::fs::read_to_string(src.join("tideway.toml")).expect("tideway.toml");
    let extra: String = env
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    toml = toml.replace("[env]\n", &format!("[env]\n{extra}"));
    std::fs::write(dir.path().join("tideway.toml"), toml).expect("write tideway.toml");
    pack_dir(dir.path())
}

/// A tar.gz of the given files (path, contents), for small test apps.
pub fn pack_files(files: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("dirs");
        }
        std::fs::write(path, contents).expect("write");
    }
    pack_dir(dir.path())
}

/// Pids of processes that run in or mention `dir`: a test server's instances and shims.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cwd.starts_with(dir) || String::from_utf8_lossy(&cmdline).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Distinct process groups of processes whose working directory is under `dir`: one per
/// instance, whatever shell or children the instance's command runs.
pub fn process_groups_under(dir: &Path) -> usize {
    let mut groups = std::collections::BTreeSet::new();
    for pid in processes_under(dir) {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if !cwd.starts_with(dir) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command: state, ppid, pgrp, …
        if let Some(pgrp) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        {
            groups.insert(pgrp.to_owned());
        }
    }
    groups.len()
}

/// Removes the cgroup directories named after `ids` once the killed `pids` are gone.
fn remove_cgroups(ids: &[String], pids: &[i32]) {
    if ids.is_empty() {
        return;
    }
    for _ in 0..50 {
        if pids
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if ids.contains(&name) {
                let _ = std::fs::remove_dir(&path);
            } else if depth < 6 {
                stack.push((path, depth + 1));
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        // Instances outlive the control plane by design; tests must not leak them, nor the
        // cgroups a driver would have removed after stopping them.
        let instance_ids: Vec<String> =
            std::fs::read_dir(self.data_dir.path().join("runtime/instances"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
        let pids = processes_under(self.data_dir.path());
        for pid in &pids {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        remove_cgroups(&instance_ids, &pids);
        if let Some((base, name)) = self.pg_admin.take() {
            // Best effort: the server is gone, so nothing holds the database open.
            let _ = std::process::Command::new("psql")
                .arg(&base)
                .arg("-qc")
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
