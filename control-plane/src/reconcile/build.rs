//! Runs the `[build] command` of each version still `building`, once, and moves it to
//! `ready` or `build_failed` with an event that carries the exit status and the end of the
//! log. A build interrupted by a restart is still `building` in the store, so the next pass
//! runs it again. The same loop periodically collects artifacts no version refers to.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tideway_api_types::VersionState;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::event::NewEvent;
use crate::intake::Intake;
use crate::layout::Layout;
use crate::store::{Store, StoreError, VersionRecord};

const ACTOR: &str = "builder";
const RESYNC: Duration = Duration::from_secs(1);
const GC_EVERY: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 20;

pub struct BuildReconciler {
    pub store: Arc<dyn Store>,
    pub layout: Layout,
    pub intake: Arc<Intake>,
    pub timeout: Duration,
    pub wake: Arc<Notify>,
    /// Told when a build finished: releases may be waiting for it.
    pub release_wake: Arc<Notify>,
    pub runtime_wake: Arc<Notify>,
    running: Mutex<HashSet<(i64, u32)>>,
    tasks: TaskTracker,
}

impl BuildReconciler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        layout: Layout,
        intake: Arc<Intake>,
        timeout: Duration,
        wake: Arc<Notify>,
        release_wake: Arc<Notify>,
        runtime_wake: Arc<Notify>,
    ) -> Arc<Self> {
        Arc::new(BuildReconciler {
            store,
            layout,
            intake,
            timeout,
            wake,
            release_wake,
            runtime_wake,
            running: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
        })
    }

    /// Starts a build for every `building` version that has none running.
    pub async fn step(self: &Arc<Self>, shutdown: &CancellationToken) -> Result<usize, StoreError> {
        let mut started = 0;
        for record in self.store.versions_in_state(VersionState::Building).await? {
            let key = (record.app_id, record.version.number);
            let fresh = match self.running.lock() {
                Ok(mut running) => running.insert(key),
                Err(_) => false,
            };
            if !fresh {
                continue;
            }
            started += 1;
            let this = self.clone();
            let shutdown = shutdown.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = this.build(&record) => {}
                    // Dropping the build kills it; it reruns after the restart.
                    _ = shutdown.cancelled() => {}
                }
                if let Ok(mut running) = this.running.lock() {
                    running.remove(&key);
                }
            });
        }
        Ok(started)
    }

    async fn build(&self, record: &VersionRecord) {
        let v = &record.version;
        let Some(command) = v.build_command.clone() else {
            return;
        };
        let dir = self.layout.version_dir(record.app_id, v.number);
        let log_path = self.layout.build_log(record.app_id, v.number);
        let started = Instant::now();
        let started_event = NewEvent::new(
            "VersionBuildStarted",
            ACTOR,
            format!("running the build of v{}", v.number),
        )
        .app(&v.namespace, &v.app)
        .details(json!({"version": v.number, "command": command}));
        if let Err(e) = self.store.append_event(started_event).await {
            tracing::warn!(error = %e, "BuildEventError");
        }
        let outcome = run_build(&command, &dir, &log_path, self.timeout).await;
        let tail = log_tail(&log_path, LOG_TAIL_LINES);
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (to, kind, reason) = match &outcome {
            Ok(()) => (
                VersionState::Ready,
                "VersionBuildSucceeded",
                format!("build of v{} succeeded in {elapsed_ms} ms", v.number),
            ),
            Err(why) => (
                VersionState::BuildFailed,
                "VersionBuildFailed",
                format!("build of v{} failed: {why}", v.number),
            ),
        };
        let event = NewEvent::new(kind, ACTOR, reason)
            .app(&v.namespace, &v.app)
            .details(json!({
                "version": v.number,
                "duration_ms": elapsed_ms,
                "log_tail": tail,
            }));
        match self
            .store
            .set_version_state(record.app_id, v.number, VersionState::Building, to, event)
            .await
        {
            Ok(_) => {
                self.release_wake.notify_one();
                self.runtime_wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "BuildStateError"),
        }
    }

    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut last_gc: Option<Instant> = None;
        let this = self.clone();
        super::run_loop("build", self.wake.clone(), RESYNC, shutdown.clone(), || {
            let this = this.clone();
            let shutdown = shutdown.clone();
            let gc_due = last_gc.is_none_or(|at| at.elapsed() >= GC_EVERY);
            if gc_due {
                last_gc = Some(Instant::now());
            }
            async move {
                this.step(&shutdown).await.map_err(|e| e.to_string())?;
                if gc_due {
                    this.intake
                        .collect_garbage()
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        })
        .await;
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Runs `sh -c command` in `dir`, output to `log`, within `timeout`.
async fn run_build(command: &str, dir: &Path, log: &Path, timeout: Duration) -> Result<(), String> {
    let file =
        std::fs::File::create(log).map_err(|e| format!("cannot write the build log: {e}"))?;
    let stderr = file
        .try_clone()
        .map_err(|e| format!("cannot write the build log: {e}"))?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the build: {e}"))?;
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => format!("ended by {status}"),
        }),
        Ok(Err(e)) => Err(format!("waiting for the build failed: {e}")),
        Err(_) => {
            // The whole process group: a build often runs compilers as grandchildren.
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(format!("timed out after {} s", timeout.as_secs()))
        }
    }
}

fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.chars().take(500).collect())
        .collect()
}
