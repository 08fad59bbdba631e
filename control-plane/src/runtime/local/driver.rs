//! [`LocalDriver`]: the [`RuntimeDriver`] that runs instances as local processes.
//!
//! One supervisor task owns all instance state and converges it every 100 ms (level
//! triggered): it reads what the shims wrote, restarts dead apps in place with backoff, runs
//! health probes, starts and drains instances to match the declared replicas, samples CPU and
//! memory, and publishes a snapshot that [`RuntimeDriver::instances`] clones. The control
//! plane is not the data plane: when the supervisor stops (shutdown or crash), instances keep
//! running, and the next driver on the same root adopts them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use rand::Rng;
use serde_json::json;
use tideway_api_types::{Instance, InstanceState, LogLine};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cgroup::{self, CgroupSupport};
use super::layout::{
    self, ExitRecord, InstanceDir, ProcId, ShimSpec, APP_PID, EXIT, INSTANCE, SHIM_LOG, SPEC, STOP,
};
use super::logs::{self, Cursor, LogRecord};
use super::process;
use super::record::{InstanceRecord, RunTemplate};
use super::sample::{self, ResourceSample, SampleRing};
use super::supervise::{self, HealthVerdict, LiveInstance, NextAction, ProbeCounts, ScaleOp};
use super::{adopt, health};
use crate::clock::{Clock, SystemClock};
use crate::runtime::{
    LogFeed, LogQuery, RuntimeDriver, RuntimeError, RuntimeEvent, Workload, WorkloadKey,
};

/// How often the supervisor converges.
const TICK: Duration = Duration::from_millis(100);
/// How often CPU and memory are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How often a followed log is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(150);
/// Events buffered per subscriber.
const EVENT_CAPACITY: usize = 1024;
/// Log lines attached to an exit event.
const EXIT_LOG_LINES: usize = 10;
/// Host variables an app inherits; nothing else of the control plane's environment (which
/// may hold secrets such as database URLs) reaches it.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Configuration of the local runtime.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Where instance directories live, e.g. `<data-dir>/runtime`.
    pub root: PathBuf,
    /// The `tideway` binary, started as `tideway shim --dir <instance dir>`.
    pub shim_exe: PathBuf,
    /// How long a stopping app may take after SIGTERM before it is killed.
    pub stop_grace: Duration,
    /// Size at which an instance's `output.log` is rotated.
    pub log_max_bytes: u64,
    /// Rotated output files kept per instance.
    pub log_files: usize,
    /// How long a drained instance keeps running (out of the gateway and the registries)
    /// before SIGTERM, like a Kubernetes preStop sleep.
    pub drain_delay: Duration,
    /// Variables the platform gives every instance it starts (e.g. the OTLP endpoint).
    /// Not part of a workload's definition, so changing them never restarts instances.
    pub platform_env: BTreeMap<String, String>,
}

impl LocalConfig {
    /// A configuration with the default grace period (10 s) and log limits (3 × 10 MiB).
    pub fn new(root: PathBuf, shim_exe: PathBuf) -> Self {
        LocalConfig {
            root,
            shim_exe,
            stop_grace: Duration::from_secs(10),
            log_max_bytes: 10 * 1024 * 1024,
            log_files: 3,
            drain_delay: Duration::ZERO,
            platform_env: BTreeMap::new(),
        }
    }
}

/// The local process runtime. See the module documentation.
pub struct LocalDriver {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// State shared between the driver handle, the supervisor task and log feeds. Locks are held
/// only to copy values in or out, never across an await.
struct Shared {
    root: PathBuf,
    events: broadcast::Sender<RuntimeEvent>,
    /// Created with the channel, so the first subscriber also gets the events of adoption,
    /// emitted before anyone could subscribe.
    first_subscriber: Mutex<Option<broadcast::Receiver<RuntimeEvent>>>,
    /// The latest declaration, until the supervisor takes it.
    pending: Mutex<Option<Vec<Workload>>>,
    wake: Notify,
    snapshot: RwLock<Vec<Instance>>,
    samples: Mutex<HashMap<String, SampleRing>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

impl LocalDriver {
    /// Starts the runtime: takes the root's lock, adopts the instances a previous driver left
    /// there and spawns the supervisor, which runs until `shutdown` is cancelled. Instances
    /// are never stopped on shutdown. Must be called within a tokio runtime.
    ///
    /// Nothing is stopped before the first [`RuntimeDriver::apply`]: the caller should
    /// declare the desired workloads right after starting, and every adopted instance not
    /// declared then is drained.
    pub fn start(
        mut config: LocalConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<LocalDriver>, RuntimeError> {
        let instances = config.root.join("instances");
        std::fs::create_dir_all(&instances)
            .map_err(io_error(format!("creating {}", instances.display())))?;
        // Shims get absolute paths (they run elsewhere), and adoption matches them exactly.
        config.root = std::fs::canonicalize(&config.root)
            .map_err(io_error(format!("resolving {}", config.root.display())))?;
        let lock_path = config.root.join("driver.lock");
        let lock_file = File::create(&lock_path)
            .map_err(io_error(format!("opening {}", lock_path.display())))?;
        let lock =
            Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                RuntimeError::Io {
                    context: format!(
                        "locking {} (is another control plane using this data directory?)",
                        lock_path.display()
                    ),
                    source: std::io::Error::from(errno),
                }
            })?;
        let client = health::client()
            .map_err(|e| io_error("building the health-check client")(std::io::Error::other(e)))?;

        let cgroups = cgroup::detect();
        match &cgroups {
            CgroupSupport::Unavailable(reason) => {
                tracing::warn!(%reason, "RuntimeCgroupsUnavailable")
            }
            other => tracing::info!(cgroups = ?other, "RuntimeCgroupsDetected"),
        }

        let (events, first) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            root: config.root.clone(),
            events,
            first_subscriber: Mutex::new(Some(first)),
            pending: Mutex::new(None),
            wake: Notify::new(),
            snapshot: RwLock::new(Vec::new()),
            samples: Mutex::new(HashMap::new()),
        });
        let tracker = TaskTracker::new();
        let (probe_tx, probe_rx) = mpsc::unbounded_channel();
        let mut supervisor = Supervisor {
            shared: shared.clone(),
            config,
            clock: Arc::new(SystemClock),
            cgroups,
            desired: None,
            slots: BTreeMap::new(),
            probe_tx,
            probe_rx,
            client,
            tracker: tracker.clone(),
            next_sample: Instant::now(),
            leftover_cgroups: Vec::new(),
            _lock: lock,
        };
        supervisor.adopt(adopt::load(&shared.root));
        supervisor.publish();
        tracker.spawn(supervisor.run(shutdown.clone()));
        Ok(Arc::new(LocalDriver {
            shared,
            tracker,
            shutdown,
        }))
    }

    /// The last [`sample::SAMPLES_KEPT`] CPU/memory samples of an instance, oldest first.
    pub fn samples(&self, instance: &str) -> Vec<ResourceSample> {
        lock(&self.shared.samples)
            .get(instance)
            .map(SampleRing::to_vec)
            .unwrap_or_default()
    }

    /// Waits until the supervisor and every task it spawned have stopped, after `shutdown`
    /// was cancelled. Instances keep running.
    pub async fn stopped(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[async_trait]
impl RuntimeDriver for LocalDriver {
    async fn apply(&self, desired: Vec<Workload>) -> Result<(), RuntimeError> {
        validate(&desired)?;
        *lock(&self.shared.pending) = Some(desired);
        self.shared.wake.notify_one();
        Ok(())
    }

    fn instances(&self) -> Vec<Instance> {
        self.shared
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first subscriber receives every event since [`LocalDriver::start`] (adoptions and
    /// restarts that happened before anyone could subscribe); later ones receive events from
    /// the moment they subscribe.
    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        lock(&self.shared.first_subscriber)
            .take()
            .unwrap_or_else(|| self.shared.events.subscribe())
    }

    /// Reads in a background task; a followed feed ends when the receiver is dropped or the
    /// runtime shuts down.
    async fn logs(&self, query: LogQuery) -> Result<LogFeed, RuntimeError> {
        let (tx, rx) = mpsc::channel(1024);
        self.tracker.spawn(feed_logs(
            self.shared.clone(),
            query,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

fn validate(desired: &[Workload]) -> Result<(), RuntimeError> {
    let mut keys = HashSet::new();
    for w in desired {
        let name = format!("{}/{} v{}", w.namespace, w.app, w.version);
        for (what, value) in [("namespace", &w.namespace), ("app", &w.app)] {
            if let Some(why) = tideway_api_types::name::dns_label_error(value) {
                return Err(RuntimeError::InvalidWorkload(format!(
                    "{name}: {what} {why}"
                )));
            }
        }
        if w.command.trim().is_empty() {
            return Err(RuntimeError::InvalidWorkload(format!(
                "{name}: empty command"
            )));
        }
        if !keys.insert(w.key()) {
            return Err(RuntimeError::InvalidWorkload(format!(
                "{name}: declared twice"
            )));
        }
    }
    Ok(())
}

/// Why the supervisor is stopping an instance's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopIntent {
    /// For good: the instance is removed once the app is gone.
    Drain,
    /// To restart it in place (it failed its health checks).
    Restart,
}

#[derive(Debug, Clone, Copy)]
struct Stop {
    intent: StopIntent,
    term_sent: Option<Instant>,
    killed: bool,
    /// A drained instance gets SIGTERM only from here on: the gateway and the service
    /// registries take it out first, so no consumer calls it while it stops.
    term_after: Option<Instant>,
}

/// Where the current run of an instance is, derived from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// The shim was started; it has not reported the app's pid yet.
    Launching,
    Running,
    /// Nothing runs; the instance waits for its restart.
    Down,
}

/// The supervisor's view of one instance.
struct Slot {
    rec: InstanceRecord,
    dir: InstanceDir,
    state: InstanceState,
    message: Option<String>,
    updated_at: DateTime<Utc>,
    /// When the current run was started (or adopted), for the startup time.
    run_started: Instant,
    /// Increases with every run, so probe results of a previous run are ignored.
    generation: u64,
    probe: ProbeCounts,
    probe_in_flight: bool,
    next_probe: Instant,
    last_probe_error: Option<String>,
    stop: Option<Stop>,
    /// Adopted from a previous driver; announced with the first probe result.
    adopted: bool,
    cpu_prev: Option<(Instant, u64)>,
    cpu_percent: Option<f64>,
    memory_bytes: Option<u64>,
}

impl Slot {
    /// A slot for a record; only what differs between a new and an adopted run is passed.
    fn new(
        rec: InstanceRecord,
        dir: InstanceDir,
        state: InstanceState,
        message: Option<String>,
        adopted: bool,
        now: DateTime<Utc>,
        mono: Instant,
    ) -> Slot {
        Slot {
            rec,
            dir,
            state,
            message,
            updated_at: now,
            run_started: mono,
            generation: 0,
            probe: ProbeCounts::default(),
            probe_in_flight: false,
            next_probe: mono,
            last_probe_error: None,
            stop: None,
            adopted,
            cpu_prev: None,
            cpu_percent: None,
            memory_bytes: None,
        }
    }

    fn run(&self) -> Run {
        if self.rec.app_proc.is_some() {
            Run::Running
        } else if self.rec.shim.is_some() {
            Run::Launching
        } else {
            Run::Down
        }
    }

    fn set_state(&mut self, state: InstanceState, now: DateTime<Utc>) {
        if self.state != state {
            self.state = state;
            self.updated_at = now;
        }
    }

    fn persist(&self) {
        if let Err(e) = layout::write_json_atomic(&self.dir.file(INSTANCE), &self.rec) {
            tracing::warn!(instance = %self.rec.id, error = %e, "RuntimeInstanceRecordWriteError");
        }
    }

    fn to_instance(&self) -> Instance {
        let running = self.run() == Run::Running;
        Instance {
            id: self.rec.id.clone(),
            namespace: self.rec.namespace.clone(),
            app: self.rec.app.clone(),
            version: self.rec.version,
            state: self.state,
            address: Some(format!("127.0.0.1:{}", self.rec.port)),
            pid: self.rec.app_proc.map(|p| p.pid),
            restarts: self.rec.restarts,
            message: self.message.clone(),
            cpu_percent: self.cpu_percent.filter(|_| running),
            memory_bytes: self.memory_bytes.filter(|_| running),
            limits_enforced: self.rec.limits_enforced,
            limits_note: self.rec.limits_note.clone(),
            created_at: self.rec.created_at,
            updated_at: self.updated_at,
        }
    }
}

struct ProbeResult {
    id: String,
    generation: u64,
    outcome: Result<(), String>,
}

struct Supervisor {
    shared: Arc<Shared>,
    config: LocalConfig,
    /// Wall-clock time for records, events and backoff deadlines (persisted, so they must
    /// survive a restart of the control plane, which monotonic time does not).
    clock: Arc<dyn Clock>,
    cgroups: CgroupSupport,
    /// `None` until the first `apply`: until then nothing is started or drained for scale.
    desired: Option<BTreeMap<WorkloadKey, Workload>>,
    slots: BTreeMap<String, Slot>,
    probe_tx: mpsc::UnboundedSender<ProbeResult>,
    probe_rx: mpsc::UnboundedReceiver<ProbeResult>,
    client: reqwest::Client,
    tracker: TaskTracker,
    next_sample: Instant,
    /// Cgroups of stopped instances that could not be removed yet.
    leftover_cgroups: Vec<PathBuf>,
    /// Held while the supervisor runs: one driver per root.
    _lock: Flock<File>,
}

impl Supervisor {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                _ = self.shared.wake.notified() => {}
            }
            self.step();
        }
        // The control plane is not the data plane: instances keep running, to be adopted by
        // the next driver on this root.
        tracing::info!(instances = self.slots.len(), "RuntimeSupervisorStopped");
    }

    /// One pass of convergence. Never sleeps; the I/O is small local files and signals.
    fn step(&mut self) {
        let now = self.clock.now();
        let mono = Instant::now();
        if let Some(workloads) = lock(&self.shared.pending).take() {
            self.desired = Some(workloads.into_iter().map(|w| (w.key(), w)).collect());
        }
        while let Ok(result) = self.probe_rx.try_recv() {
            self.apply_probe(result, now, mono);
        }
        for id in self.ids() {
            self.observe(&id, now);
        }
        for id in self.ids() {
            self.progress_stop(&id, now, mono);
        }
        for id in self.ids() {
            self.restart_if_due(&id, now, mono);
        }
        if self.desired.is_some() {
            self.converge(now, mono);
        }
        self.schedule_probes(now, mono);
        if mono >= self.next_sample {
            self.sample(now, mono);
            self.next_sample = mono + SAMPLE_EVERY;
        }
        if !self.leftover_cgroups.is_empty() {
            self.leftover_cgroups = cgroup::remove(&self.leftover_cgroups);
        }
        self.publish();
    }

    fn ids(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    fn publish(&self) {
        let instances: Vec<Instance> = self.slots.values().map(Slot::to_instance).collect();
        *self
            .shared
            .snapshot
            .write()
            .unwrap_or_else(|p| p.into_inner()) = instances;
    }

    fn emit(
        &self,
        rec: &InstanceRecord,
        kind: &'static str,
        reason: String,
        details: serde_json::Value,
    ) {
        // Whoever reacts to the event must find the snapshot at least as new as it.
        self.publish();
        tracing::info!(
            event = kind,
            instance = %rec.id,
            app = %rec.app,
            version = rec.version,
            %reason,
            "RuntimeInstanceEvent"
        );
        let _ = self.shared.events.send(RuntimeEvent {
            namespace: rec.namespace.clone(),
            app: rec.app.clone(),
            version: rec.version,
            instance: rec.id.clone(),
            kind,
            reason,
            details,
        });
    }

    // ---- adoption ------------------------------------------------------------------------

    fn adopt(&mut self, records: Vec<InstanceRecord>) {
        let now = self.clock.now();
        let mono = Instant::now();
        for rec in records {
            // A run whose shim still lives is adopted too, even if the shim had not reported
            // the app's pid yet when the previous driver died.
            let alive = rec.app_proc.as_ref().is_some_and(process::is_alive)
                || rec.shim.as_ref().is_some_and(process::is_alive);
            let message = rec
                .last_exit
                .as_ref()
                .map(|e| e.describe(rec.template.resources.memory_mb));
            let dir = InstanceDir::new(&self.config.root, &rec.id);
            let state = supervise::not_ready_state(&rec);
            let slot = Slot::new(rec, dir, state, message, alive, now, mono);
            tracing::info!(
                instance = %slot.rec.id,
                alive,
                "RuntimeInstanceFound"
            );
            self.slots.insert(slot.rec.id.clone(), slot);
        }
    }

    // ---- observing runs ------------------------------------------------------------------

    /// Reads what the shim reported and notices ended runs.
    fn observe(&mut self, id: &str, now: DateTime<Utc>) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if slot.run() == Run::Down {
            return;
        }
        // Checked before exit.json: a shim that exits right after writing it is then seen
        // with its exit recorded, never as lost.
        let shim_alive = slot.rec.shim.as_ref().is_some_and(process::is_alive);
        if slot.rec.app_proc.is_none() {
            if let Ok(Some(app)) = layout::read_json::<ProcId>(&slot.dir.file(APP_PID)) {
                slot.rec.app_proc = Some(app);
                slot.persist();
            }
        }
        let exit = match layout::read_json::<ExitRecord>(&slot.dir.file(EXIT)) {
            Ok(exit) => exit,
            Err(e) => Some(ExitRecord {
                code: None,
                signal: None,
                oom_killed: false,
                at: now,
                error: Some(format!("its exit status is unreadable: {e}")),
            }),
        };
        if let Some(exit) = exit {
            self.run_ended(id, exit, now);
            return;
        }
        if shim_alive {
            return;
        }
        let app_alive = slot.rec.app_proc.as_ref().is_some_and(process::is_alive);
        let error = if app_alive {
            // Without its shim the app's output goes nowhere and its exit would go unseen.
            if let Some(app) = slot.rec.app_proc {
                let _ = process::signal_group(app.pid, Signal::SIGKILL);
            }
            "killed: its shim died".to_string()
        } else {
            let shim_note = last_line(&slot.dir.file(SHIM_LOG));
            match shim_note {
                Some(note) => format!("ended without an exit status ({note})"),
                None => "ended without an exit status (its shim is gone)".to_string(),
            }
        };
        self.run_ended(
            id,
            ExitRecord {
                code: None,
                signal: None,
                oom_killed: false,
                at: now,
                error: Some(error),
            },
            now,
        );
    }

    /// The app of an instance is gone: finish a drain, or count the failure and schedule the
    /// restart.
    fn run_ended(&mut self, id: &str, exit: ExitRecord, now: DateTime<Utc>) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        slot.rec.shim = None;
        slot.rec.app_proc = None;
        slot.rec.last_exit = Some(exit.clone());
        slot.generation += 1;
        slot.probe = ProbeCounts::default();
        slot.probe_in_flight = false;
        slot.cpu_prev = None;
        let stop = slot.stop.take();
        if stop.is_some_and(|s| s.intent == StopIntent::Drain) {
            self.finish_stop(id, &exit);
            return;
        }
        let memory_mb = slot.rec.template.resources.memory_mb;
        let mut reason = exit.describe(memory_mb);
        if stop.is_some() {
            let why = slot
                .last_probe_error
                .clone()
                .unwrap_or_else(|| "failing health checks".into());
            reason = format!("restarted for failing health checks ({why}); {reason}");
        }
        let outcome = supervise::on_exit(&slot.rec);
        slot.rec.consecutive_failures = outcome.consecutive_failures;
        slot.rec.restarts = slot.rec.restarts.saturating_add(1);
        // The shim's time when it has one: an app that died while no driver ran has already
        // served (part of) its backoff.
        slot.rec.exited_at = Some(exit.at.min(now));
        slot.message = Some(reason.clone());
        let state = supervise::not_ready_state(&slot.rec);
        slot.set_state(state, now);
        slot.persist();

        let lines: Vec<String> = logs::tail(slot.dir.path(), EXIT_LOG_LINES)
            .into_iter()
            .map(|r| r.l)
            .collect();
        let exit_details = json!({
            "code": exit.code,
            "signal": exit.signal,
            "oom_killed": exit.oom_killed,
            "error": exit.error,
            "memory_limit_mb": memory_mb,
        });
        let mut details = exit_details.clone();
        details["logs"] = json!(lines);
        details["restarts"] = json!(slot.rec.restarts);
        details["consecutive_failures"] = json!(outcome.consecutive_failures);
        let kind = if exit.oom_killed {
            "InstanceOomKilled"
        } else {
            "InstanceExited"
        };
        let backoff_ms = u64::try_from(outcome.backoff.as_millis()).unwrap_or(u64::MAX);
        let rec = slot.rec.clone();
        self.emit(&rec, kind, reason.clone(), details);
        self.emit(
            &rec,
            "InstanceRestarting",
            if backoff_ms == 0 {
                "restarting now".to_string()
            } else {
                format!(
                    "restarting in {} after {} failures in a row",
                    human(outcome.backoff),
                    outcome.consecutive_failures
                )
            },
            json!({
                "backoff_ms": backoff_ms,
                "restarts": rec.restarts,
                "consecutive_failures": outcome.consecutive_failures,
            }),
        );
        if outcome.entered_crash_loop {
            self.emit(
                &rec,
                "InstanceCrashLoop",
                format!(
                    "failed {} times in a row without becoming ready; last: {reason}",
                    outcome.consecutive_failures
                ),
                json!({
                    "last_exit": exit_details,
                    "backoff_ms": backoff_ms,
                    "consecutive_failures": outcome.consecutive_failures,
                }),
            );
        }
    }

    // ---- stopping ------------------------------------------------------------------------

    fn begin_drain(&mut self, id: &str, reason: String, now: DateTime<Utc>, mono: Instant) {
        let drain_delay = self.config.drain_delay;
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        slot.stop = Some(match slot.stop {
            // Already being stopped for a restart: keep the signals already sent.
            Some(stop) => Stop {
                intent: StopIntent::Drain,
                ..stop
            },
            None => Stop {
                intent: StopIntent::Drain,
                term_sent: None,
                killed: false,
                term_after: Some(mono + drain_delay),
            },
        });
        slot.set_state(InstanceState::Draining, now);
        slot.message = Some(reason.clone());
        let rec = slot.rec.clone();
        self.emit(
            &rec,
            "InstanceDraining",
            reason,
            json!({ "pid": rec.app_proc.map(|p| p.pid) }),
        );
    }

    /// Sends SIGTERM to a stopping app's process group, SIGKILL after the grace period.
    fn progress_stop(&mut self, id: &str, now: DateTime<Utc>, mono: Instant) {
        let grace = self.config.stop_grace;
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        let Some(mut stop) = slot.stop else { return };
        match slot.run() {
            Run::Down => {
                if stop.intent == StopIntent::Drain {
                    let exit = slot.rec.last_exit.clone().unwrap_or(ExitRecord {
                        code: None,
                        signal: None,
                        oom_killed: false,
                        at: now,
                        error: None,
                    });
                    self.finish_stop(id, &exit);
                }
                return;
            }
            // The shim reports the app's pid within milliseconds; signal it then.
            Run::Launching => return,
            Run::Running => {}
        }
        let Some(app) = slot.rec.app_proc else { return };
        match stop.term_sent {
            None if stop.term_after.is_some_and(|t| mono < t) => {}
            None => {
                // Tells the shim to let the group finish instead of killing it when the main
                // process (often `sh`) exits first.
                if let Err(e) = std::fs::write(slot.dir.file(STOP), b"") {
                    tracing::warn!(instance = %id, error = %e, "RuntimeStopMarkerWriteError");
                }
                if let Err(e) = process::signal_group(app.pid, Signal::SIGTERM) {
                    tracing::warn!(instance = %id, error = %e, "RuntimeSignalError");
                }
                stop.term_sent = Some(mono);
            }
            Some(sent) if !stop.killed && mono.duration_since(sent) >= grace => {
                tracing::info!(instance = %id, grace_ms = grace.as_millis() as u64, "RuntimeInstanceKilledAfterGrace");
                if let Err(e) = process::signal_group(app.pid, Signal::SIGKILL) {
                    tracing::warn!(instance = %id, error = %e, "RuntimeSignalError");
                }
                stop.killed = true;
            }
            Some(_) => {}
        }
        slot.stop = Some(stop);
    }

    /// A drained instance's app is gone: announce it and remove everything it had.
    fn finish_stop(&mut self, id: &str, exit: &ExitRecord) {
        let Some(slot) = self.slots.remove(id) else {
            return;
        };
        lock(&self.shared.samples).remove(id);
        if let Some(cg) = &slot.rec.cgroups {
            self.leftover_cgroups.extend(cgroup::remove(&cg.dirs()));
        }
        if let Err(e) = std::fs::remove_dir_all(slot.dir.path()) {
            tracing::warn!(instance = %id, error = %e, "RuntimeInstanceDirRemoveError");
        }
        self.emit(
            &slot.rec,
            "InstanceStopped",
            format!(
                "stopped: {}",
                exit.describe(slot.rec.template.resources.memory_mb)
            ),
            json!({ "code": exit.code, "signal": exit.signal }),
        );
    }

    // ---- starting ------------------------------------------------------------------------

    fn restart_if_due(&mut self, id: &str, now: DateTime<Utc>, mono: Instant) {
        let Some(slot) = self.slots.get(id) else {
            return;
        };
        if slot.stop.is_some() || slot.run() != Run::Down {
            return;
        }
        if supervise::next_action(&slot.rec, now) == NextAction::Restart {
            self.launch(id, now, mono);
        }
    }

    fn converge(&mut self, now: DateTime<Utc>, mono: Instant) {
        let Some(desired) = &self.desired else { return };
        let replicas: BTreeMap<WorkloadKey, u32> = desired
            .iter()
            .map(|(k, w)| (k.clone(), w.replicas))
            .collect();
        let live: Vec<LiveInstance> = self
            .slots
            .values()
            .filter(|s| !s.stop.is_some_and(|st| st.intent == StopIntent::Drain))
            .map(|s| LiveInstance {
                id: s.rec.id.clone(),
                key: s.rec.key(),
                state: s.state,
                created_at: s.rec.created_at,
            })
            .collect();
        for op in supervise::plan_scale(&replicas, &live) {
            match op {
                ScaleOp::Start(key) => {
                    if let Some(w) = self.desired.as_ref().and_then(|d| d.get(&key)).cloned() {
                        self.create(&w, now, mono);
                    }
                }
                ScaleOp::Drain(id) => {
                    let reason = match self.slots.get(&id).map(|s| s.rec.key()) {
                        Some(key) => match replicas.get(&key) {
                            Some(n) => format!("scaled down to {n} replicas"),
                            None => format!("version {} is no longer declared", key.version),
                        },
                        None => continue,
                    };
                    self.begin_drain(&id, reason, now, mono);
                }
            }
        }
    }

    /// A new instance of a workload: its directory, record, port, and first run.
    fn create(&mut self, w: &Workload, now: DateTime<Utc>, mono: Instant) {
        let id = self.new_id(w);
        let port = match w.port {
            Some(port) => port,
            None => match self.free_port() {
                Ok(port) => port,
                Err(e) => {
                    tracing::warn!(app = %w.app, error = %e, "RuntimeNoFreePort");
                    return;
                }
            },
        };
        let dir = InstanceDir::new(&self.config.root, &id);
        if let Err(e) = std::fs::create_dir_all(dir.path()) {
            tracing::warn!(instance = %id, error = %e, "RuntimeInstanceDirCreateError");
            return;
        }
        let rec = InstanceRecord {
            id: id.clone(),
            namespace: w.namespace.clone(),
            app: w.app.clone(),
            version: w.version,
            port,
            created_at: now,
            restarts: 0,
            consecutive_failures: 0,
            exited_at: None,
            last_exit: None,
            shim: None,
            app_proc: None,
            template: RunTemplate::from_workload(w),
            cgroups: None,
            limits_enforced: false,
            limits_note: None,
        };
        let slot = Slot::new(rec, dir, InstanceState::Starting, None, false, now, mono);
        // Recorded before anything runs, so a crash right after never leaves an unknown
        // process behind.
        slot.persist();
        self.slots.insert(id.clone(), slot);
        self.launch(&id, now, mono);
    }

    fn new_id(&self, w: &Workload) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::thread_rng();
        loop {
            let suffix: String = (0..5)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect();
            let id = format!("{}-v{}-{suffix}", w.app, w.version);
            if !self.slots.contains_key(&id)
                && !InstanceDir::new(&self.config.root, &id).path().exists()
            {
                return id;
            }
        }
    }

    /// A port nothing listens on now, and that no instance of ours has.
    fn free_port(&self) -> std::io::Result<u16> {
        let taken: HashSet<u16> = self.slots.values().map(|s| s.rec.port).collect();
        for _ in 0..20 {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
                .local_addr()?
                .port();
            if !taken.contains(&port) {
                return Ok(port);
            }
        }
        Err(std::io::Error::other("no free port after 20 tries"))
    }

    /// Starts a run of an instance: cgroups, `spec.json`, and a detached shim.
    fn launch(&mut self, id: &str, now: DateTime<Utc>, mono: Instant) {
        let root = self.config.root.clone();
        let (shim_exe, stop_grace) = (self.config.shim_exe.clone(), self.config.stop_grace);
        let (log_max_bytes, log_files) = (self.config.log_max_bytes, self.config.log_files);
        let platform_env = self.config.platform_env.clone();
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        // A declared workload may carry a newer definition than the persisted one.
        if let Some(w) = self.desired.as_ref().and_then(|d| d.get(&slot.rec.key())) {
            slot.rec.template = RunTemplate::from_workload(w);
        }
        let resources = slot.rec.template.resources.clone();
        let requested = resources.memory_mb.is_some() || resources.cpu_millis.is_some();
        let (cgroups, enforced, note) = match cgroup::instance_paths(&self.cgroups, id) {
            None => {
                let note = match &self.cgroups {
                    CgroupSupport::Unavailable(reason) if requested => reason.clone(),
                    _ => "no limits requested".to_string(),
                };
                (None, false, Some(note))
            }
            Some(cg) => match cgroup::prepare(&cg, &resources) {
                Ok(()) if requested => (Some(cg), true, None),
                Ok(()) => (Some(cg), false, Some("no limits requested".to_string())),
                Err(e) => {
                    self.leftover_cgroups.extend(cgroup::remove(&cg.dirs()));
                    let note = if requested {
                        format!("cgroups not writable: {e}")
                    } else {
                        "no limits requested".to_string()
                    };
                    (None, false, Some(note))
                }
            },
        };
        if let Some(old) = slot
            .rec
            .cgroups
            .as_ref()
            .filter(|old| Some(*old) != cgroups.as_ref())
        {
            // Created by a driver that ran in another cgroup (or before they became
            // unavailable): nothing of this instance runs there any more.
            self.leftover_cgroups.extend(cgroup::remove(&old.dirs()));
        }
        slot.rec.cgroups = cgroups.clone();
        slot.rec.limits_enforced = enforced;
        slot.rec.limits_note = note;

        let spec = ShimSpec {
            command: slot.rec.template.command.clone(),
            cwd: slot.rec.template.dir.clone(),
            env: app_env(&slot.rec, platform_env),
            log_max_bytes,
            log_files,
            cgroup_procs: cgroups
                .as_ref()
                .map(|c| c.procs_files())
                .unwrap_or_default(),
            memory_cgroup: cgroups.as_ref().map(|c| c.memory.clone()),
            cgroup_v2: cgroups.as_ref().is_some_and(|c| c.v2),
            stop_grace_ms: u64::try_from(stop_grace.as_millis()).unwrap_or(u64::MAX),
        };
        let prepared = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(slot.dir.path())?;
            for stale in [EXIT, APP_PID, STOP] {
                layout::remove_file_if_exists(&slot.dir.file(stale))?;
            }
            layout::write_json_atomic(&slot.dir.file(SPEC), &spec)
        })();
        let spawned = prepared.and_then(|()| {
            tokio::process::Command::new(&shim_exe)
                .arg("shim")
                .arg("--dir")
                .arg(slot.dir.path())
                .current_dir(&root)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let exit = ExitRecord {
                    code: None,
                    signal: None,
                    oom_killed: false,
                    at: now,
                    error: Some(format!("cannot start its shim: {e}")),
                };
                self.run_ended(id, exit, now);
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        // The shim is detached and outlives us; this task only reaps it if it exits while we
        // run. It is deliberately not tracked: shutdown must not wait for instances.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        slot.rec.shim = Some(process::identify(pid).unwrap_or(ProcId { pid, start_time: 0 }));
        slot.rec.app_proc = None;
        slot.rec.exited_at = None;
        slot.run_started = mono;
        slot.generation += 1;
        slot.probe = ProbeCounts::default();
        slot.probe_in_flight = false;
        slot.next_probe = mono + health::STARTING_INTERVAL;
        slot.last_probe_error = None;
        slot.cpu_prev = None;
        let state = supervise::not_ready_state(&slot.rec);
        slot.set_state(state, now);
        slot.persist();
        let rec = slot.rec.clone();
        self.emit(
            &rec,
            "InstanceStarted",
            format!("started on port {}", rec.port),
            json!({
                "port": rec.port,
                "restarts": rec.restarts,
                "shim_pid": pid,
                "limits_enforced": rec.limits_enforced,
                "limits_note": rec.limits_note,
            }),
        );
    }

    // ---- health --------------------------------------------------------------------------

    fn schedule_probes(&mut self, now: DateTime<Utc>, mono: Instant) {
        let mut immediate = Vec::new();
        for slot in self.slots.values_mut() {
            if slot.run() != Run::Running
                || slot.stop.is_some()
                || slot.probe_in_flight
                || mono < slot.next_probe
            {
                continue;
            }
            let health_check = slot.rec.template.health.clone();
            if !health::has_probe(&health_check) {
                // Nothing to probe: a running process is all there is to know.
                immediate.push(ProbeResult {
                    id: slot.rec.id.clone(),
                    generation: slot.generation,
                    outcome: Ok(()),
                });
                continue;
            }
            slot.probe_in_flight = true;
            let result_tx = self.probe_tx.clone();
            let client = self.client.clone();
            let shared = self.shared.clone();
            let (id, generation, port) = (slot.rec.id.clone(), slot.generation, slot.rec.port);
            self.tracker.spawn(async move {
                let outcome = health::probe(&client, &health_check, port).await;
                let _ = result_tx.send(ProbeResult {
                    id,
                    generation,
                    outcome,
                });
                shared.wake.notify_one();
            });
        }
        for result in immediate {
            self.apply_probe(result, now, mono);
        }
    }

    fn apply_probe(&mut self, result: ProbeResult, now: DateTime<Utc>, mono: Instant) {
        let Some(slot) = self.slots.get_mut(&result.id) else {
            return;
        };
        if slot.generation != result.generation {
            return;
        }
        slot.probe_in_flight = false;
        if slot.stop.is_some() || slot.run() != Run::Running {
            return;
        }
        let health_check = slot.rec.template.health.clone();
        let was_ready = slot.state == InstanceState::Ready;
        let ok = result.outcome.is_ok();
        if let Err(e) = &result.outcome {
            slot.last_probe_error = Some(e.clone());
        }
        let (counts, verdict) = supervise::after_probe(was_ready, slot.probe, ok, &health_check);
        slot.probe = counts;
        let ready_now =
            verdict == HealthVerdict::Ready || (was_ready && verdict == HealthVerdict::Unchanged);
        slot.next_probe = mono
            + if ready_now {
                Duration::from_millis(u64::from(health_check.interval_ms.max(1)))
            } else {
                health::STARTING_INTERVAL
            };
        let announce_adoption = std::mem::take(&mut slot.adopted);
        match verdict {
            HealthVerdict::Ready => {
                slot.set_state(InstanceState::Ready, now);
                slot.rec.consecutive_failures = 0;
                if let Some(exit) = &slot.rec.last_exit {
                    let memory_mb = slot.rec.template.resources.memory_mb;
                    slot.message = Some(format!("last exit: {}", exit.describe(memory_mb)));
                }
                slot.persist();
            }
            HealthVerdict::Unhealthy => {
                let error = result.outcome.clone().err().unwrap_or_default();
                slot.set_state(InstanceState::Unhealthy, now);
                slot.message = Some(format!("failing health checks: {error}"));
                // Restarted like an exit: stopped gracefully, then the backoff rules apply.
                slot.stop = Some(Stop {
                    intent: StopIntent::Restart,
                    term_sent: None,
                    killed: false,
                    term_after: None,
                });
            }
            HealthVerdict::Unchanged => {}
        }
        let rec = slot.rec.clone();
        let startup_ms =
            u64::try_from(mono.duration_since(slot.run_started).as_millis()).unwrap_or(u64::MAX);
        let state = slot.state;
        let failures = slot.probe.failures;
        if announce_adoption {
            self.emit(
                &rec,
                "InstanceAdopted",
                format!(
                    "adopted running process {} ({state:?})",
                    rec.app_proc.map(|p| p.pid).unwrap_or(0)
                ),
                json!({
                    "pid": rec.app_proc.map(|p| p.pid),
                    "port": rec.port,
                    "state": state,
                    "restarts": rec.restarts,
                    "probe": result.outcome.as_ref().err(),
                }),
            );
        }
        match verdict {
            HealthVerdict::Ready if !announce_adoption => self.emit(
                &rec,
                "InstanceReady",
                format!("ready after {startup_ms} ms"),
                json!({ "startup_ms": startup_ms, "restarts": rec.restarts }),
            ),
            HealthVerdict::Unhealthy => self.emit(
                &rec,
                "InstanceUnhealthy",
                format!(
                    "failed {failures} health checks in a row: {}",
                    result.outcome.as_ref().err().cloned().unwrap_or_default()
                ),
                json!({
                    "failures": failures,
                    "threshold": health_check.unhealthy_threshold,
                    "error": result.outcome.as_ref().err(),
                }),
            ),
            _ => {}
        }
    }

    // ---- sampling ------------------------------------------------------------------------

    fn sample(&mut self, now: DateTime<Utc>, mono: Instant) {
        let groups: Vec<u32> = self
            .slots
            .values()
            .filter(|s| s.rec.cgroups.is_none())
            .filter_map(|s| s.rec.app_proc.map(|p| p.pid))
            .collect();
        let by_group = process::group_usage(&groups);
        let mut samples = lock(&self.shared.samples);
        for slot in self.slots.values_mut() {
            let Some(app) = slot.rec.app_proc else {
                continue;
            };
            let (cpu_ns, memory) = match &slot.rec.cgroups {
                Some(cg) => (cgroup::cpu_usage_ns(cg), cgroup::memory_usage(cg)),
                None => match by_group.get(&app.pid) {
                    Some(&(cpu, mem)) => (Some(cpu), Some(mem)),
                    None => (None, None),
                },
            };
            let cpu_percent = match (slot.cpu_prev, cpu_ns) {
                (Some((at, prev)), Some(ns)) => {
                    sample::cpu_percent(prev, ns, mono.duration_since(at))
                }
                _ => None,
            };
            slot.cpu_prev = cpu_ns.map(|ns| (mono, ns));
            slot.cpu_percent = cpu_percent;
            slot.memory_bytes = memory;
            samples
                .entry(slot.rec.id.clone())
                .or_default()
                .push(ResourceSample {
                    at: now,
                    cpu_percent,
                    memory_bytes: memory,
                });
        }
    }
}

/// The app's environment: host basics, the version's variables, then the ones the platform
/// owns (a version cannot override those).
fn app_env(rec: &InstanceRecord, platform: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    env.extend(rec.template.env.clone());
    env.extend(platform);
    env.insert("PORT".into(), rec.port.to_string());
    env.insert("TIDEWAY_NAMESPACE".into(), rec.namespace.clone());
    env.insert("TIDEWAY_APP".into(), rec.app.clone());
    env.insert("TIDEWAY_VERSION".into(), rec.version.to_string());
    env.insert("TIDEWAY_INSTANCE".into(), rec.id.clone());
    // Kubernetes-style references: a value may name the instance it runs as (e.g. the
    // registry id a self-registering app is told to use).
    for value in env.values_mut() {
        if value.contains("$(TIDEWAY_INSTANCE)") {
            *value = value.replace("$(TIDEWAY_INSTANCE)", &rec.id);
        }
    }
    // OpenTelemetry SDKs read these: custom metrics arrive tagged with the instance.
    env.insert(
        "OTEL_RESOURCE_ATTRIBUTES".into(),
        format!(
            "service.instance.id={},service.name={},service.namespace={},service.version={}",
            rec.id, rec.app, rec.namespace, rec.version
        ),
    );
    env
}

fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().last().map(str::to_string)
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

// ---- logs --------------------------------------------------------------------------------

/// One instance whose output a feed reads.
struct Followed {
    id: String,
    version: u32,
    dir: PathBuf,
    cursor: Cursor,
}

/// The instances of the query's app, from the latest snapshot.
fn log_targets(shared: &Shared, query: &LogQuery) -> Vec<(String, u32)> {
    shared
        .snapshot
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|i| i.namespace == query.namespace && i.app == query.app)
        .filter(|i| query.instance.as_ref().is_none_or(|only| *only == i.id))
        .map(|i| (i.id.clone(), i.version))
        .collect()
}

fn to_lines(f: &Followed, records: Vec<LogRecord>, since: Option<DateTime<Utc>>) -> Vec<LogLine> {
    records
        .into_iter()
        .filter(|r| since.is_none_or(|s| r.t >= s))
        .map(|r| LogLine {
            time: r.t,
            instance: f.id.clone(),
            version: f.version,
            stream: r.s,
            line: r.l,
        })
        .collect()
}

async fn feed_logs(
    shared: Arc<Shared>,
    query: LogQuery,
    tx: mpsc::Sender<LogLine>,
    shutdown: CancellationToken,
) {
    let root = shared.root.clone();
    let targets: Vec<Followed> = log_targets(&shared, &query)
        .into_iter()
        .map(|(id, version)| Followed {
            dir: InstanceDir::new(&root, &id).path().to_path_buf(),
            id,
            version,
            cursor: Cursor::default(),
        })
        .collect();
    let (since, tail) = (query.since, query.tail);
    let initial = tokio::task::spawn_blocking(move || {
        let mut targets = targets;
        let mut lines = Vec::new();
        for f in &mut targets {
            let mut records = f.cursor.poll(&f.dir);
            if tail.is_none_or(|n| records.len() < n) {
                let mut all = logs::read_rotated(&f.dir);
                all.append(&mut records);
                records = all;
            }
            let mut mine = to_lines(f, records, since);
            if let Some(n) = tail {
                let skip = mine.len().saturating_sub(n);
                mine.drain(..skip);
            }
            lines.append(&mut mine);
        }
        lines.sort_by_key(|l| l.time);
        (targets, lines)
    })
    .await;
    let Ok((mut followed, lines)) = initial else {
        return;
    };
    for line in lines {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    if !query.follow {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        // Instances started since (scale-up) are followed from their first line.
        for (id, version) in log_targets(&shared, &query) {
            if !followed.iter().any(|f| f.id == id) {
                followed.push(Followed {
                    dir: InstanceDir::new(&root, &id).path().to_path_buf(),
                    id,
                    version,
                    cursor: Cursor::default(),
                });
            }
        }
        let polled = tokio::task::spawn_blocking(move || {
            let mut followed = followed;
            let mut lines = Vec::new();
            for f in &mut followed {
                let records = f.cursor.poll(&f.dir);
                lines.extend(to_lines(f, records, since));
            }
            lines.sort_by_key(|l| l.time);
            (followed, lines)
        })
        .await;
        let Ok((back, lines)) = polled else { return };
        followed = back;
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}
