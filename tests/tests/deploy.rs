//! Running applications end to end: push-to-deploy with the real CLI, supervised local
//! instances, restarts, adoption after a control-plane crash, builds, logs, and the refusal
//! of hostile artifacts. Runtime behaviour does not depend on the database, so these run on
//! SQLite only; the API suites cover both backends.

// Integration tests: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tideway_e2e::{
    pack_files, process_groups_under, repo_root, tideway_bin, wait_until, Backend, TestServer,
};

const APPS: &str = "/api/v1/namespaces/default/apps";

fn cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    std::process::Command::new(tideway_bin())
        .args(args)
        .env("TIDEWAY_URL", &s.url)
        .env("TIDEWAY_TOKEN", &s.token)
        .env_remove("TIDEWAY_NAMESPACE")
        .current_dir(repo_root())
        .output()
        .unwrap()
}

async fn instances(s: &TestServer, app: &str) -> Vec<Value> {
    let r = s.get(&format!("{APPS}/{app}/instances")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["items"].as_array().unwrap().clone()
}

/// Running instances of a server: process groups working in a version directory.
fn app_processes(s: &TestServer) -> usize {
    process_groups_under(&s.data_dir.path().join("apps"))
}

async fn event_kinds(s: &TestServer, app: &str) -> Vec<String> {
    let r = s.get(&format!("/api/v1/events?app={app}&limit=500")).await;
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_restart_and_adopt() {
    let mut s = TestServer::start(Backend::Sqlite).await.unwrap();

    // Push-to-deploy with the CLI, as a user would.
    let started = Instant::now();
    let out = cli(
        &s,
        &[
            "deploy",
            "examples/hello",
            "--app",
            "hello",
            "--replicas",
            "2",
            "--wait",
        ],
    );
    let deploy_time = started.elapsed();
    assert!(
        out.status.success(),
        "deploy failed: {}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    println!(
        "FIGURE deploy --wait to all instances ready: {} ms",
        deploy_time.as_millis()
    );

    let list = instances(&s, "hello").await;
    assert_eq!(list.len(), 2, "{list:?}");
    for i in &list {
        assert_eq!(i["state"], "ready");
        let body: Value = reqwest::get(format!("http://{}/", i["address"].as_str().unwrap()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["instance"], i["id"]);
        assert_eq!(body["version"], "1");
        assert_eq!(body["app"], "hello");
    }

    // kill -9 of one instance: the same instance is ready again, fast.
    let victim = list[0].clone();
    let id = victim["id"].as_str().unwrap().to_owned();
    let old_pid = victim["pid"].as_i64().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &old_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let restart = wait_until(
        "the killed instance to be ready again",
        Duration::from_secs(10),
        || {
            let (s, id) = (&s, id.clone());
            async move {
                instances(s, "hello").await.iter().any(|i| {
                    i["id"] == id.as_str()
                        && i["state"] == "ready"
                        && i["pid"].as_i64() != Some(old_pid)
                })
            }
        },
    )
    .await;
    println!(
        "FIGURE restart-to-ready after kill -9: {} ms",
        restart.as_millis()
    );
    assert!(restart < Duration::from_secs(2), "took {restart:?}");
    let after = instances(&s, "hello").await;
    assert_eq!(after.len(), 2);
    let restarted = after.iter().find(|i| i["id"] == id.as_str()).unwrap();
    assert_eq!(restarted["restarts"], 1);
    let kinds = event_kinds(&s, "hello").await;
    assert!(kinds.contains(&"InstanceExited".to_owned()), "{kinds:?}");

    // kill -9 of the control plane: on restart it adopts the very same processes.
    let before: Vec<(String, i64)> = after
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    s.kill9().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app_processes(&s), 2, "instances survive the control plane");
    s.launch().await.unwrap();
    wait_until(
        "adopted instances to be ready",
        Duration::from_secs(10),
        || {
            let s = &s;
            async move {
                let list = instances(s, "hello").await;
                list.len() == 2 && list.iter().all(|i| i["state"] == "ready")
            }
        },
    )
    .await;
    // Give the reconciler a few passes to (wrongly) start or stop anything.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut adopted: Vec<(String, i64)> = instances(&s, "hello")
        .await
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["pid"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut expected = before.clone();
    adopted.sort();
    expected.sort();
    assert_eq!(adopted, expected, "same instances, same pids");
    assert_eq!(app_processes(&s), 2, "no duplicates, no orphans");
    assert!(event_kinds(&s, "hello")
        .await
        .contains(&"InstanceAdopted".to_owned()));

    // Logs: the captured startup line, through the API and the CLI.
    let r = s.get(&format!("{APPS}/hello/logs?tail=50")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("hello listening on"), "{}", r.text);
    let out = cli(&s, &["logs", "hello", "--tail", "20"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello listening on"));

    // Scale down, then delete: instances stop, files and artifacts go.
    let r = s
        .call(
            reqwest::Method::PUT,
            &format!("{APPS}/hello/scale"),
            Some(json!({"replicas": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    wait_until("scale down to 1", Duration::from_secs(15), || {
        let s = &s;
        async move { instances(s, "hello").await.len() == 1 && app_processes(s) == 1 }
    })
    .await;
    let r = s
        .call(reqwest::Method::DELETE, &format!("{APPS}/hello"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    wait_until(
        "the app's processes to stop",
        Duration::from_secs(15),
        || {
            let s = &s;
            async move { app_processes(s) == 0 }
        },
    )
    .await;
    wait_until(
        "unused artifacts to be collected",
        Duration::from_secs(5),
        || {
            let s = &s;
            async move { stored_artifacts(s.data_dir.path()) == 0 }
        },
    )
    .await;
}

fn stored_artifacts(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("artifacts/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn leftover_files(data_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["artifacts/sha256", "artifacts/tmp", "staging", "apps"] {
        if let Ok(entries) = std::fs::read_dir(data_dir.join(dir)) {
            found.extend(entries.flatten().map(|e| e.path().display().to_string()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let s = TestServer::start_with(
        Backend::Sqlite,
        &[
            "--max-artifact-mb",
            "1",
            "--max-unpacked-mb",
            "1",
            "--max-artifact-entries",
            "50",
        ],
    )
    .await
    .unwrap();
    let r = s.post(APPS, json!({"name": "target"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let dir = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("python3")
        .arg(repo_root().join("tests/fixtures/hostile_archives.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(made.success());
    let cases = [
        ("absolute_path.tar.gz", 400, "unsafe_path"),
        ("dotdot.tar.gz", 400, "unsafe_path"),
        ("nested_dotdot.tar.gz", 400, "unsafe_path"),
        ("symlink_out.tar.gz", 400, "unsafe_link"),
        ("symlink_up.tar.gz", 400, "unsafe_link"),
        ("hardlink_out.tar.gz", 400, "unsafe_link"),
        ("device.tar.gz", 400, "special_file"),
        ("too_many_entries.tar.gz", 400, "too_many_entries"),
        ("bomb.tar.gz", 400, "unpacked_too_large"),
        ("no_manifest.tar.gz", 400, "missing_manifest"),
        ("bad_manifest.tar.gz", 400, "invalid_manifest"),
        ("manifest_sets_port.tar.gz", 400, "invalid_manifest"),
        ("zip_dotdot.zip", 400, "unsafe_path"),
        ("not_an_archive.bin", 400, "unknown_archive_format"),
        ("too_large.bin", 413, "artifact_too_large"),
    ];
    for (file, status, code) in cases {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        let r = s.upload("target", bytes, "application/octet-stream").await;
        assert_eq!(r.status.as_u16(), status, "{file}: {}", r.text);
        assert_eq!(r.code(), code, "{file}: {}", r.text);
        assert!(
            leftover_files(s.data_dir.path()).is_empty(),
            "{file} left {:?}",
            leftover_files(s.data_dir.path())
        );
    }
    let r = s
        .upload(
            "target",
            std::fs::read(dir.path().join("bad_manifest.tar.gz")).unwrap(),
            "application/gzip",
        )
        .await;
    assert_eq!(
        r.body["error"]["details"]["field"], "run.command",
        "{}",
        r.text
    );
    let r = s
        .upload(
            "target",
            std::fs::read(dir.path().join("manifest_sets_port.tar.gz")).unwrap(),
            "application/gzip",
        )
        .await;
    assert_eq!(
        r.body["error"]["details"]["field"], "env.PORT",
        "{}",
        r.text
    );
    assert!(!Path::new("/tmp/tideway-evil").exists());
    let r = s.get(&format!("{APPS}/target/versions")).await;
    assert_eq!(
        r.body["items"].as_array().unwrap().len(),
        0,
        "no version recorded"
    );
    let r = s
        .post(
            &format!("{APPS}/target/versions"),
            json!({"artifact_digest": "x"}),
        )
        .await;
    assert_eq!(r.code(), "artifact_required");
}

const CRASHER: &[(&str, &str)] = &[(
    "tideway.toml",
    "[run]\ncommand = \"echo boom; exit 3\"\n[health]\ntcp = true\n",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_is_reported_with_backoff() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    s.post(APPS, json!({"name": "crasher"})).await;
    let r = s
        .upload("crasher", pack_files(CRASHER), "application/gzip")
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = s
        .post(
            &format!("{APPS}/crasher/releases"),
            json!({"target_version": 1}),
        )
        .await;
    let release = r.body["id"].as_i64().unwrap();
    wait_until("crash_loop", Duration::from_secs(30), || {
        let s = &s;
        async move {
            instances(s, "crasher")
                .await
                .iter()
                .any(|i| i["state"] == "crash_loop")
        }
    })
    .await;
    let r = s
        .get("/api/v1/events?app=crasher&type=InstanceRestarting&limit=500")
        .await;
    let backoffs: Vec<u64> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["backoff_ms"].as_u64().unwrap())
        .collect();
    assert!(backoffs.len() >= 3, "{backoffs:?}");
    assert!(backoffs.windows(2).all(|w| w[1] >= w[0]), "{backoffs:?}");
    assert!(
        backoffs.last().unwrap() > backoffs.first().unwrap(),
        "{backoffs:?}"
    );
    let r = s
        .get("/api/v1/events?app=crasher&type=InstanceExited&limit=5")
        .await;
    let exited = &r.body["items"][0]["details"];
    assert!(exited.to_string().contains('3'), "{exited}");
    assert!(exited.to_string().contains("boom"), "{exited}");
    assert!(event_kinds(&s, "crasher")
        .await
        .contains(&"InstanceCrashLoop".to_owned()));
    let release = wait_until("the release to fail", Duration::from_secs(10), || {
        let s = &s;
        async move {
            s.get(&format!("{APPS}/crasher/releases/{release}"))
                .await
                .body["state"]
                == "failed"
        }
    })
    .await;
    let _ = release;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_step_runs_once_and_failures_fail_the_deploy() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    s.post(APPS, json!({"name": "built"})).await;
    let app_py = "import os, http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        body = open('artifact.txt','rb').read()\n        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\nhttp.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n";
    let good = pack_files(&[
        (
            "tideway.toml",
            "[run]\ncommand = \"python3 app.py\"\n[build]\ncommand = \"echo compiling; echo built-ok > artifact.txt\"\n[health]\nhttp = \"/\"\n",
        ),
        ("app.py", app_py),
    ]);
    let r = s.upload("built", good, "application/gzip").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["state"], "building");
    wait_until("the build", Duration::from_secs(30), || {
        let s = &s;
        async move { s.get(&format!("{APPS}/built/versions/1")).await.body["state"] == "ready" }
    })
    .await;
    let log = s.get(&format!("{APPS}/built/versions/1/build-log")).await;
    assert!(log.text.contains("compiling"), "{}", log.text);
    let r = s
        .post(
            &format!("{APPS}/built/releases"),
            json!({"target_version": 1}),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    wait_until(
        "release of the built version",
        Duration::from_secs(20),
        || {
            let s = &s;
            async move {
                s.get(&format!("{APPS}/built/releases/{id}")).await.body["state"] == "succeeded"
            }
        },
    )
    .await;
    let address = instances(&s, "built").await[0]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = reqwest::get(format!("http://{address}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.trim(), "built-ok");

    // A failing build: the CLI's --wait exits non-zero and shows the build log.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tideway.toml"),
        "[run]\ncommand = \"python3 app.py\"\n[build]\ncommand = \"echo cannot-compile; exit 7\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("app.py"), app_py).unwrap();
    let out = cli(
        &s,
        &[
            "deploy",
            dir.path().to_str().unwrap(),
            "--app",
            "built",
            "--wait",
        ],
    );
    assert!(!out.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("cannot-compile"), "{said}");
    assert_eq!(
        s.get(&format!("{APPS}/built/versions/2")).await.body["state"],
        "build_failed"
    );
    let kinds = event_kinds(&s, "built").await;
    assert!(
        kinds.contains(&"VersionBuildFailed".to_owned()),
        "{kinds:?}"
    );
    // The serving version never went down.
    let body = reqwest::get(format!("http://{address}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.trim(), "built-ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    s.post(APPS, json!({"name": "form"})).await;
    let archive = tideway_e2e::pack_dir(&repo_root().join("examples/hello"));
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored field before the file")
        .part(
            "artifact",
            reqwest::multipart::Part::bytes(archive).file_name("hello.tar.gz"),
        );
    let r = s
        .http
        .post(format!("{}{APPS}/form/versions", s.url))
        .bearer_auth(&s.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let version: Value = r.json().await.unwrap();
    assert_eq!(version["number"], 1);
    assert_eq!(version["run"]["command"], "python3 app.py");
    let form = reqwest::multipart::Form::new().text("note", "no file");
    let r = s
        .http
        .post(format!("{}{APPS}/form/versions", s.url))
        .bearer_auth(&s.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "artifact_required");
}
