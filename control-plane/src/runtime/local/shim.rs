//! The per-instance shim: `tideway shim --dir <instance dir>`.
//!
//! The shim is what lets instances outlive the control plane. The driver starts one detached
//! shim per app run; the shim starts the app, captures its output into rotating files,
//! waits for it and records how it ended. The driver only reads those files, so a driver that
//! crashes and comes back finds every instance still running and can adopt it.
//!
//! It is plain synchronous code on purpose (no tokio): it is small, runs once per instance and
//! must not depend on anything that can fail at a distance. It runs in its own session and
//! ignores the signals a terminal or an init system sends to a whole session or group; the
//! driver stops apps by signalling the app's own process group, never the shim.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use tideway_api_types::LogStream;

use super::cgroup;
use super::layout::{self, ExitRecord, ProcId, ShimSpec, APP_PID, EXIT, SHIM_LOG, SPEC, STOP};
use super::logs::{LineSplitter, LogRecord, LogWriter};
use super::process;

/// Joins the cgroups named as arguments, then replaces itself with the app's command (`$0`),
/// so not one instruction of the app runs outside its limits. Failing to join is fatal: the
/// driver has told the user the limits are enforced.
const JOIN_AND_EXEC: &str = r#"for f in "$@"; do echo $$ > "$f" || { echo "tideway: cannot join cgroup $f" >&2; exit 125; }; done; exec /bin/sh -c "$0""#;

/// How long the output readers may take to drain after the app's process group is gone.
const DRAIN_READERS: Duration = Duration::from_secs(1);
/// After killing the group, how long to reap stragglers before giving up on them.
const REAP_AFTER_KILL: Duration = Duration::from_secs(2);

/// Runs the shim until the app has exited. Never panics; problems go to `shim.log`.
pub fn run(dir: PathBuf) -> ExitCode {
    match supervise(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(&dir, &format!("shim failed: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Appends a diagnostic line to `shim.log` (the shim has no stderr).
fn note(dir: &Path, message: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(SHIM_LOG))
    {
        let _ = writeln!(f, "{} {message}", Utc::now().to_rfc3339());
    }
}

fn supervise(dir: &Path) -> Result<(), String> {
    let spec: ShimSpec = layout::read_json(&dir.join(SPEC))
        .map_err(|e| format!("cannot read {SPEC}: {e}"))?
        .ok_or_else(|| format!("{SPEC} is missing"))?;

    // Our own session: a hangup of the driver's terminal or session never reaches us.
    if let Err(e) = nix::unistd::setsid() {
        note(dir, &format!("setsid failed: {e}"));
    }
    // Blocked rather than ignored: std resets the signal mask of the processes it spawns, so
    // the app still gets default handling, while ignored dispositions would be inherited.
    let mut blocked = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGPIPE,
        Signal::SIGQUIT,
    ] {
        blocked.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .map_err(|e| format!("cannot block signals: {e}"))?;
    // Descendants the app leaves behind are reparented to us, so we can reap them and know
    // when the whole app is gone.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        note(dir, &format!("cannot become a child subreaper: {e}"));
    }

    let writer = Arc::new(Mutex::new(
        LogWriter::open(dir, spec.log_max_bytes, spec.log_files)
            .map_err(|e| format!("cannot open the output log: {e}"))?,
    ));
    let oom_before = spec
        .memory_cgroup
        .as_deref()
        .map(|m| cgroup::oom_counters(m, spec.cgroup_v2));

    let mut command = Command::new("/bin/sh");
    if spec.cgroup_procs.is_empty() {
        command.arg("-c").arg(&spec.command);
    } else {
        command
            .arg("-c")
            .arg(JOIN_AND_EXEC)
            .arg(&spec.command)
            .args(&spec.cgroup_procs);
    }
    command
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The app leads its own process group, so the driver can signal all of it at once.
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("cannot start `{}`: {e}", spec.command);
            append(&writer, LogStream::Stderr, format!("tideway: {message}"));
            return write_exit(
                dir,
                &ExitRecord {
                    code: None,
                    signal: None,
                    oom_killed: false,
                    at: Utc::now(),
                    error: Some(message),
                },
            );
        }
    };
    let pid = child.id();
    let id = process::identify(pid).unwrap_or(ProcId { pid, start_time: 0 });
    if let Err(e) = layout::write_json_atomic(&dir.join(APP_PID), &id) {
        note(dir, &format!("cannot write {APP_PID}: {e}"));
    }

    let (done_tx, done_rx) = mpsc::channel();
    let mut readers = 0;
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, LogStream::Stdout, writer.clone(), done_tx.clone());
        readers += 1;
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, LogStream::Stderr, writer.clone(), done_tx.clone());
        readers += 1;
    }
    drop(done_tx);
    // The child is reaped through waitpid below, together with the app's orphans.
    drop(child);

    let (code, signal) = wait_for_app(dir, pid, Duration::from_millis(spec.stop_grace_ms));

    let deadline = Instant::now() + DRAIN_READERS;
    for _ in 0..readers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }

    let oom_killed = match (&spec.memory_cgroup, oom_before) {
        (Some(memory), Some(before)) => {
            let after = cgroup::oom_counters(memory, spec.cgroup_v2);
            cgroup::was_oom_killed(before, after, signal)
        }
        _ => false,
    };
    write_exit(
        dir,
        &ExitRecord {
            code,
            signal,
            oom_killed,
            at: Utc::now(),
            error: None,
        },
    )
}

fn write_exit(dir: &Path, exit: &ExitRecord) -> Result<(), String> {
    layout::write_json_atomic(&dir.join(EXIT), exit)
        .map_err(|e| format!("cannot write {EXIT}: {e}"))
}

fn append(writer: &Mutex<LogWriter>, stream: LogStream, line: String) {
    let record = LogRecord {
        t: Utc::now(),
        s: stream,
        l: line,
    };
    // A poisoned lock only means another reader panicked mid-write; keep logging.
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    let _ = w.append(&record);
}

fn spawn_reader(
    mut source: impl Read + Send + 'static,
    stream: LogStream,
    writer: Arc<Mutex<LogWriter>>,
    done: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = [0u8; 8192];
        let mut lines = Vec::new();
        loop {
            match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    splitter.push(&buf[..n], &mut lines);
                    for line in lines.drain(..) {
                        append(&writer, stream, line);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if let Some(rest) = splitter.finish() {
            append(&writer, stream, rest);
        }
        let _ = done.send(());
    });
}

/// Waits for the app's main process, then for the rest of its process group: returns the
/// main process's exit code or signal.
///
/// When the driver asked for a stop (the `stop` file), the group gets `grace` to finish on its
/// own (the main process is often `sh`, which dies at once on SIGTERM while the real server
/// drains). Otherwise the app died by itself and whatever it left behind is killed at once,
/// so that nothing keeps its port or memory while it is restarted.
fn wait_for_app(dir: &Path, pid: u32, grace: Duration) -> (Option<i32>, Option<i32>) {
    let Ok(raw) = i32::try_from(pid) else {
        return (None, None);
    };
    let app = Pid::from_raw(raw);
    let mut status = (None, None);
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p == app => {
                status = (Some(code), None);
                break;
            }
            Ok(WaitStatus::Signaled(p, signal, _)) if p == app => {
                status = (None, Some(signal as i32));
                break;
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }

    let kill_at = if dir.join(STOP).exists() {
        Instant::now() + grace + Duration::from_secs(1)
    } else {
        Instant::now()
    };
    let mut killed_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if killed_at.is_none() && now >= kill_at {
            let _ = process::signal_group(pid, Signal::SIGKILL);
            killed_at = Some(now);
        }
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if killed_at.is_some_and(|k| now.duration_since(k) > REAP_AFTER_KILL) {
                    // Left over in another process group; the cgroup removal kills those.
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(_) | Err(Errno::EINTR) => continue,
            // ECHILD: every descendant is gone.
            Err(_) => break,
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::cgroup::OomCounters;
    use super::*;

    #[test]
    fn join_script_runs_the_command_after_joining() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("procs");
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(JOIN_AND_EXEC)
            .arg("echo ran $FOO")
            .arg(&target)
            .env("FOO", "bar")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran bar\n");
        let pid: u32 = std::fs::read_to_string(&target)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(pid > 1);

        let fail = Command::new("/bin/sh")
            .arg("-c")
            .arg(JOIN_AND_EXEC)
            .arg("echo never")
            .arg(dir.path().join("missing/dir/procs"))
            .output()
            .unwrap();
        assert_eq!(fail.status.code(), Some(125));
        assert!(fail.stdout.is_empty());
    }

    #[test]
    fn oom_counters_default_to_zero_without_a_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            cgroup::oom_counters(dir.path(), false),
            OomCounters::default()
        );
    }
}
