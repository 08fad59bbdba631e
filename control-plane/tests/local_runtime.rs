#![allow(clippy::unwrap_used)]
//! The local runtime with real processes: the `tideway` binary as the shim and
//! `examples/hello` as the app. Every test runs in its own temporary root, and a guard kills
//! whatever it started when the test ends, also when it fails.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tideway::runtime::local::{LocalConfig, LocalDriver};
use tideway::runtime::{LogQuery, RuntimeDriver, RuntimeEvent, Workload};
use tideway_api_types::{HealthCheck, Instance, InstanceState, Resources};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const HELLO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/hello");
const SHIM: &str = env!("CARGO_BIN_EXE_tideway");

/// Kills every app and shim recorded under a root, and removes their cgroups, on drop.
struct Cleanup {
    root: PathBuf,
}

impl Cleanup {
    /// Kills what is recorded now; returns the cgroups the instances had.
    fn kill_all(&self) -> Vec<PathBuf> {
        let mut cgroups = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.root.join("instances")) else {
            return cgroups;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let mut pids = Vec::new();
            if let Some(app) = read_value(&dir.join("app.pid")) {
                pids.extend(app["pid"].as_i64());
            }
            if let Some(rec) = read_value(&dir.join("instance.json")) {
                pids.extend(rec["app_proc"]["pid"].as_i64());
                pids.extend(rec["shim"]["pid"].as_i64());
                for key in ["memory", "cpu", "cpuacct"] {
                    if let Some(path) = rec["cgroups"][key].as_str() {
                        cgroups.push(PathBuf::from(path));
                    }
                }
            }
            for pid in pids.into_iter().filter(|&p| p > 1) {
                let pid = Pid::from_raw(pid as i32);
                let _ = killpg(pid, Signal::SIGKILL);
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        cgroups
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Twice: a supervisor that was mid-step when its token was cancelled may have
        // started one more run.
        let mut cgroups = self.kill_all();
        std::thread::sleep(Duration::from_millis(300));
        cgroups.extend(self.kill_all());
        cgroups.sort();
        cgroups.dedup();
        for _ in 0..20 {
            cgroups.retain(|dir| dir.exists() && std::fs::remove_dir(dir).is_err());
            if cgroups.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn read_value(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A started driver; its supervisor is cancelled when this is dropped.
struct Running {
    driver: Arc<LocalDriver>,
    token: CancellationToken,
    events: Events,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

fn start_driver(root: &Path) -> Running {
    let token = CancellationToken::new();
    let mut config = LocalConfig::new(root.to_path_buf(), PathBuf::from(SHIM));
    config.stop_grace = Duration::from_secs(3);
    let driver = LocalDriver::start(config, token.clone()).unwrap();
    let events = Events {
        rx: driver.subscribe(),
        seen: Vec::new(),
    };
    Running {
        driver,
        token,
        events,
    }
}

/// A driver on a fresh root. Fields drop in order: the driver is cancelled first, then its
/// processes are killed, then the directory goes.
struct Harness {
    run: Running,
    root: PathBuf,
    _cleanup: Cleanup,
    _tmp: tempfile::TempDir,
}

impl Harness {
    fn start() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("runtime");
        let cleanup = Cleanup { root: root.clone() };
        Harness {
            run: start_driver(&root),
            root,
            _cleanup: cleanup,
            _tmp: tmp,
        }
    }
}

impl std::ops::Deref for Harness {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.run
    }
}

impl std::ops::DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Running {
        &mut self.run
    }
}

/// Collects runtime events so tests can wait for one and then look at the whole history.
struct Events {
    rx: broadcast::Receiver<RuntimeEvent>,
    seen: Vec<RuntimeEvent>,
}

impl Events {
    async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&RuntimeEvent) -> bool,
    ) -> RuntimeEvent {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Ok(event)) => {
                    self.seen.push(event.clone());
                    if pred(&event) {
                        return event;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(e)) => panic!("event channel closed waiting for {what}: {e}"),
                Err(_) => panic!(
                    "timed out waiting for {what}; events: {:#?}",
                    self.summary()
                ),
            }
        }
    }

    /// Takes in whatever has arrived.
    fn drain(&mut self) {
        while let Ok(event) = self.rx.try_recv() {
            self.seen.push(event);
        }
    }

    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|e| format!("{} {} {} {}", e.instance, e.kind, e.reason, e.details))
            .collect()
    }

    fn of(&self, instance: &str, kind: &str) -> Vec<&RuntimeEvent> {
        self.seen
            .iter()
            .filter(|e| e.instance == instance && e.kind == kind)
            .collect()
    }
}

fn hello(app: &str, replicas: u32) -> Workload {
    Workload {
        namespace: "default".into(),
        app: app.into(),
        version: 1,
        replicas,
        dir: PathBuf::from(HELLO),
        command: "python3 app.py".into(),
        env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
        port: None,
        health: HealthCheck {
            http: Some("/healthz".into()),
            tcp: false,
            ..HealthCheck::default()
        },
        resources: Resources::default(),
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout`.
async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn all_ready(driver: &LocalDriver, app: &str, n: usize, timeout: Duration) -> Vec<Instance> {
    wait_for(&format!("{n} ready instances of {app}"), timeout, || {
        let mine: Vec<Instance> = driver
            .instances()
            .into_iter()
            .filter(|i| i.app == app)
            .collect();
        (mine.len() == n && mine.iter().all(|i| i.state == InstanceState::Ready)).then_some(mine)
    })
    .await
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn instance(driver: &LocalDriver, id: &str) -> Option<Instance> {
    driver.instances().into_iter().find(|i| i.id == id)
}

async fn get_json(address: &str, path: &str) -> serde_json::Value {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{address}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_become_ready_and_answer_with_their_identity() {
    let h = Harness::start();
    h.driver.apply(vec![hello("web", 2)]).await.unwrap();
    let ready = all_ready(&h.driver, "web", 2, Duration::from_secs(15)).await;

    let mut ports = Vec::new();
    for i in &ready {
        assert!(
            i.id.starts_with("web-v1-") && i.id.len() == "web-v1-".len() + 5,
            "{}",
            i.id
        );
        let address = i.address.clone().unwrap();
        ports.push(address.clone());
        let body = get_json(&address, "/").await;
        assert_eq!(body["instance"], i.id.as_str());
        assert_eq!(body["app"], "web");
        assert_eq!(body["namespace"], "default");
        assert_eq!(body["version"], "1");
        assert_eq!(body["greeting"], "hi");
        assert!(i.pid.is_some());
        assert_eq!(i.restarts, 0);
        assert!(!i.limits_enforced);
        assert_eq!(i.limits_note.as_deref(), Some("no limits requested"));
    }
    assert_ne!(ports[0], ports[1]);

    // Samples arrive every second.
    let id = ready[0].id.clone();
    let samples = wait_for("two resource samples", Duration::from_secs(5), || {
        let s = h.driver.samples(&id);
        (s.len() >= 2).then_some(s)
    })
    .await;
    let last = samples.last().unwrap();
    assert!(last.memory_bytes.unwrap_or(0) > 1024 * 1024, "{last:?}");
    assert!(last.cpu_percent.is_some(), "{last:?}");
    let shown = instance(&h.driver, &id).unwrap();
    assert!(shown.memory_bytes.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_app_is_restarted_in_place_fast() {
    let mut h = Harness::start();
    h.driver.apply(vec![hello("web", 2)]).await.unwrap();
    let ready = all_ready(&h.driver, "web", 2, Duration::from_secs(15)).await;
    let (victim, bystander) = (&ready[0], &ready[1]);
    let old_pid = victim.pid.unwrap();

    kill(Pid::from_raw(old_pid as i32), Signal::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let back = wait_for(
        "the killed instance to be ready again",
        Duration::from_secs(5),
        || {
            instance(&h.driver, &victim.id)
                .filter(|i| i.state == InstanceState::Ready && i.pid != Some(old_pid))
        },
    )
    .await;
    let elapsed = killed_at.elapsed();
    println!("restart to ready after kill -9: {} ms", elapsed.as_millis());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(back.restarts, 1);
    assert_eq!(back.address, victim.address);

    let exited = h
        .events
        .wait("InstanceExited", Duration::from_secs(1), |e| {
            e.instance == victim.id && e.kind == "InstanceExited"
        })
        .await;
    assert_eq!(exited.details["signal"], 9, "{exited:?}");
    h.events
        .wait(
            "InstanceReady after the exit",
            Duration::from_secs(1),
            |e| e.instance == victim.id && e.kind == "InstanceReady" && e.details["restarts"] == 1,
        )
        .await;
    let kinds: Vec<&str> = h
        .events
        .seen
        .iter()
        .filter(|e| e.instance == victim.id)
        .map(|e| e.kind)
        .collect();
    let exit_pos = kinds.iter().position(|k| *k == "InstanceExited").unwrap();
    let ready_pos = kinds.iter().rposition(|k| *k == "InstanceReady").unwrap();
    assert!(exit_pos < ready_pos, "{kinds:?}");
    let restarting = h.events.of(&victim.id, "InstanceRestarting");
    assert_eq!(restarting[0].details["backoff_ms"], 0);

    let other = instance(&h.driver, &bystander.id).unwrap();
    assert_eq!(other.pid, bystander.pid);
    assert_eq!(other.restarts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_driver_adopts_running_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runtime");
    let _cleanup = Cleanup { root: root.clone() };

    let a = start_driver(&root);
    a.driver.apply(vec![hello("web", 2)]).await.unwrap();
    let before: HashMap<String, u32> = all_ready(&a.driver, "web", 2, Duration::from_secs(15))
        .await
        .into_iter()
        .map(|i| (i.id, i.pid.unwrap()))
        .collect();
    // The control plane dies: its supervisor stops, nothing is stopped.
    a.token.cancel();
    a.driver.stopped().await;
    drop(a);
    for pid in before.values() {
        assert!(alive(*pid), "instance process {pid} died with the driver");
    }

    let mut b = start_driver(&root);
    // Known at once, before anything is declared.
    let found: HashMap<String, u32> = b
        .driver
        .instances()
        .into_iter()
        .map(|i| (i.id, i.pid.unwrap()))
        .collect();
    assert_eq!(found, before);
    b.driver.apply(vec![hello("web", 2)]).await.unwrap();
    let after = all_ready(&b.driver, "web", 2, Duration::from_secs(5)).await;
    // Let it settle: nothing may start or stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled: HashMap<String, u32> = b
        .driver
        .instances()
        .into_iter()
        .map(|i| (i.id, i.pid.unwrap()))
        .collect();
    assert_eq!(settled, before);
    assert_eq!(after.len(), 2);
    for (id, pid) in &before {
        let adopted = b
            .events
            .wait("InstanceAdopted", Duration::from_secs(2), |e| {
                &e.instance == id && e.kind == "InstanceAdopted"
            })
            .await;
        assert_eq!(adopted.details["pid"], *pid);
        assert!(alive(*pid));
    }
    b.events.drain();
    for kind in ["InstanceStarted", "InstanceExited", "InstanceDraining"] {
        assert!(
            b.events.seen.iter().all(|e| e.kind != kind),
            "unexpected {kind}: {:#?}",
            b.events.summary()
        );
    }
    let apps: Vec<u32> = std::fs::read_dir(root.join("instances"))
        .unwrap()
        .flatten()
        .map(|e| {
            read_value(&e.path().join("app.pid")).unwrap()["pid"]
                .as_u64()
                .unwrap() as u32
        })
        .collect();
    assert_eq!(apps.len(), 2);
    assert!(apps.iter().all(|p| before.values().any(|q| q == p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_command_reaches_crash_loop_with_growing_backoff() {
    let mut h = Harness::start();
    let mut w = hello("boom", 1);
    w.command = "echo boom; exit 3".into();
    w.health = HealthCheck::default(); // tcp
    h.driver.apply(vec![w]).await.unwrap();

    let crash = h
        .events
        .wait("InstanceCrashLoop", Duration::from_secs(15), |e| {
            e.kind == "InstanceCrashLoop"
        })
        .await;
    let id = crash.instance.clone();
    let shown = instance(&h.driver, &id).unwrap();
    // Events are sent after the snapshot is updated.
    assert_eq!(shown.state, InstanceState::CrashLoop);
    assert_eq!(shown.message.as_deref(), Some("exited with code 3"));
    assert_eq!(crash.details["last_exit"]["code"], 3);

    let exits = h.events.of(&id, "InstanceExited");
    assert_eq!(exits.len(), 5, "{:#?}", h.events.summary());
    for exit in &exits {
        assert_eq!(exit.details["code"], 3);
        let logs: Vec<&str> = exit.details["logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(logs.last(), Some(&"boom"), "{logs:?}");
    }
    let backoffs: Vec<u64> = h
        .events
        .of(&id, "InstanceRestarting")
        .iter()
        .map(|e| e.details["backoff_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(backoffs, vec![0, 1000, 2000, 4000, 8000]);
    assert_eq!(crash.details["backoff_ms"], 8000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_over_its_memory_limit_is_oom_killed() {
    let mut h = Harness::start();
    let mut w = hello("hog", 1);
    w.env.insert("HELLO_MEMORY_MB".into(), "200".into());
    w.resources.memory_mb = Some(64);
    h.driver.apply(vec![w]).await.unwrap();
    let first = wait_for("the instance", Duration::from_secs(5), || {
        h.driver.instances().into_iter().next()
    })
    .await;
    if !first.limits_enforced {
        let note = first.limits_note.unwrap_or_default();
        println!("cgroups unavailable here: {note}");
        assert!(note.starts_with("cgroups not writable"), "{note}");
        return;
    }
    let oom = h
        .events
        .wait("an OOM kill", Duration::from_secs(15), |e| {
            e.kind == "InstanceOomKilled"
                || (e.kind == "InstanceExited" && e.details["oom_killed"] == true)
        })
        .await;
    assert_eq!(oom.kind, "InstanceOomKilled");
    assert!(
        oom.reason.contains("memory limit of 64 MiB"),
        "{}",
        oom.reason
    );
    let shown = instance(&h.driver, &oom.instance).unwrap();
    assert!(
        shown
            .message
            .as_deref()
            .unwrap_or("")
            .contains("memory limit of 64 MiB"),
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_drains_one_and_leaves_the_other() {
    let mut h = Harness::start();
    h.driver.apply(vec![hello("web", 2)]).await.unwrap();
    let ready = all_ready(&h.driver, "web", 2, Duration::from_secs(15)).await;

    h.driver.apply(vec![hello("web", 1)]).await.unwrap();
    let draining = h
        .events
        .wait("InstanceDraining", Duration::from_secs(3), |e| {
            e.kind == "InstanceDraining"
        })
        .await;
    let drained_at = Instant::now();
    let stopped = h
        .events
        .wait("InstanceStopped", Duration::from_secs(6), |e| {
            e.kind == "InstanceStopped"
        })
        .await;
    assert_eq!(stopped.instance, draining.instance);
    // hello stops on SIGTERM at once: well within the 3 s grace, so it was not killed.
    let took = drained_at.elapsed();
    assert!(took < Duration::from_secs(2), "drain took {took:?}");

    let gone = ready.iter().find(|i| i.id == draining.instance).unwrap();
    let kept = ready.iter().find(|i| i.id != draining.instance).unwrap();
    assert!(!alive(gone.pid.unwrap()), "drained process still runs");
    assert!(!h.root.join("instances").join(&gone.id).exists());
    let now = h.driver.instances();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id, kept.id);
    assert_eq!(now[0].pid, kept.pid);
    assert_eq!(now[0].state, InstanceState::Ready);
    assert!(alive(kept.pid.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_and_follow() {
    let h = Harness::start();
    h.driver.apply(vec![hello("web", 1)]).await.unwrap();
    let ready = all_ready(&h.driver, "web", 1, Duration::from_secs(15)).await;
    let query = LogQuery {
        namespace: "default".into(),
        app: "web".into(),
        instance: None,
        since: None,
        tail: Some(20),
        follow: false,
    };
    let lines: Vec<_> = h.driver.logs(query.clone()).await.unwrap().collect().await;
    let startup = lines
        .iter()
        .find(|l| l.line.contains("hello listening on"))
        .unwrap_or_else(|| panic!("no startup line in {lines:?}"));
    assert_eq!(startup.instance, ready[0].id);
    assert_eq!(startup.version, 1);

    let mut follow = h
        .driver
        .logs(LogQuery {
            tail: Some(0),
            follow: true,
            ..query
        })
        .await
        .unwrap();
    get_json(ready[0].address.as_deref().unwrap(), "/?marker=followed").await;
    let line = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let line = follow.next().await.unwrap();
            if line.line.contains("marker=followed") {
                return line;
            }
        }
    })
    .await
    .expect("the request's log line while following");
    assert_eq!(line.instance, ready[0].id);

    let none: Vec<_> = h
        .driver
        .logs(LogQuery {
            instance: Some("nope".into()),
            tail: None,
            follow: false,
            namespace: "default".into(),
            app: "web".into(),
            since: None,
        })
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_instance_is_marked_unhealthy_and_restarted() {
    let mut h = Harness::start();
    let mut w = hello("web", 1);
    w.health.interval_ms = 200;
    w.health.timeout_ms = 200;
    w.health.unhealthy_threshold = 2;
    h.driver.apply(vec![w]).await.unwrap();
    let ready = all_ready(&h.driver, "web", 1, Duration::from_secs(15)).await;
    let old = &ready[0];
    // Freeze the whole app: probes time out, and SIGTERM stays pending, so the grace
    // period ends with SIGKILL.
    killpg(Pid::from_raw(old.pid.unwrap() as i32), Signal::SIGSTOP).unwrap();

    let unhealthy = h
        .events
        .wait("InstanceUnhealthy", Duration::from_secs(5), |e| {
            e.kind == "InstanceUnhealthy"
        })
        .await;
    assert_eq!(unhealthy.instance, old.id);
    assert_eq!(unhealthy.details["failures"], 2);
    let exited = h
        .events
        .wait("InstanceExited", Duration::from_secs(6), |e| {
            e.kind == "InstanceExited"
        })
        .await;
    assert_eq!(exited.details["signal"], 9, "{exited:?}");
    assert!(
        exited.reason.contains("failing health checks"),
        "{}",
        exited.reason
    );
    let back = wait_for("the instance ready again", Duration::from_secs(5), || {
        instance(&h.driver, &old.id).filter(|i| i.state == InstanceState::Ready && i.pid != old.pid)
    })
    .await;
    assert_eq!(back.restarts, 1);
    assert!(!alive(old.pid.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_died_while_no_driver_ran_is_restarted_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runtime");
    let _cleanup = Cleanup { root: root.clone() };

    let a = start_driver(&root);
    a.driver.apply(vec![hello("web", 1)]).await.unwrap();
    let old = all_ready(&a.driver, "web", 1, Duration::from_secs(15))
        .await
        .remove(0);
    a.token.cancel();
    a.driver.stopped().await;
    drop(a);

    kill(Pid::from_raw(old.pid.unwrap() as i32), Signal::SIGKILL).unwrap();
    let exit_file = root.join("instances").join(&old.id).join("exit.json");
    wait_for(
        "the shim to record the exit",
        Duration::from_secs(3),
        || exit_file.exists().then_some(()),
    )
    .await;

    // Restarted by the new driver before anything is declared: restarting is not stopping.
    let mut b = start_driver(&root);
    let exited = b
        .events
        .wait("InstanceExited", Duration::from_secs(3), |e| {
            e.kind == "InstanceExited"
        })
        .await;
    assert_eq!(exited.instance, old.id);
    assert_eq!(exited.details["signal"], 9);
    let back = wait_for("the instance ready again", Duration::from_secs(5), || {
        instance(&b.driver, &old.id).filter(|i| i.state == InstanceState::Ready && i.pid != old.pid)
    })
    .await;
    assert_eq!(back.restarts, 1);
    assert_eq!(back.address, old.address);

    b.driver.apply(vec![hello("web", 1)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = b.driver.instances();
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id, old.id);
    assert_eq!(now[0].pid, back.pid);
}
