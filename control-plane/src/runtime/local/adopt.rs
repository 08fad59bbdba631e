//! Finding the instances a previous driver left behind, so that a restarted control plane
//! neither starts anything twice nor orphans anything.
//!
//! Every instance directory with a valid `instance.json` is taken over as it is: a live app is
//! adopted (its state comes from a fresh health probe), a dead one is handled as exited. A
//! directory without a valid record cannot be supervised: whatever runs in it is killed and
//! the directory removed. The driver writes `instance.json` before it starts anything, so in
//! practice such a directory never has a process.

use std::path::Path;

use nix::sys::signal::Signal;

use super::layout::{self, InstanceDir, ProcId, APP_PID, INSTANCE};
use super::process;
use super::record::InstanceRecord;

/// Records of the instances found under `root`; broken directories are cleaned up.
pub(crate) fn load(root: &Path) -> Vec<InstanceRecord> {
    let instances = root.join("instances");
    let Ok(entries) = std::fs::read_dir(&instances) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        match layout::read_json::<InstanceRecord>(&path.join(INSTANCE)) {
            Ok(Some(mut rec)) if rec.id == name => {
                reconcile_with_app_pid(&InstanceDir(path), &mut rec);
                records.push(rec);
            }
            other => {
                let why = match other {
                    Ok(Some(rec)) => format!("it records instance {}", rec.id),
                    Ok(None) => format!("it has no {INSTANCE}"),
                    Err(e) => format!("its {INSTANCE} is unreadable: {e}"),
                };
                tracing::warn!(
                    dir = %path.display(),
                    reason = %why,
                    "RuntimeInstanceDirDiscarded"
                );
                discard(&InstanceDir(path));
            }
        }
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    records
}

/// The driver records a run's shim only after spawning it, so a crash in between leaves a
/// record that does not know its running app. `app.pid` (written by the shim) is the truth;
/// the shim is the app's parent.
fn reconcile_with_app_pid(dir: &InstanceDir, rec: &mut InstanceRecord) {
    let Ok(Some(app)) = layout::read_json::<ProcId>(&dir.file(APP_PID)) else {
        return;
    };
    if rec.app_proc == Some(app) || !process::is_alive(&app) {
        return;
    }
    tracing::info!(instance = %rec.id, pid = app.pid, "RuntimeUnrecordedRunFound");
    rec.app_proc = Some(app);
    rec.shim = process::read_stat(app.pid)
        .map(|s| s.ppid)
        .filter(|&ppid| is_shim_of(ppid, dir))
        .and_then(process::identify);
    rec.exited_at = None;
}

/// Whether `pid` is `tideway shim --dir <dir>` (an orphaned app's parent is init or a
/// subreaper, which must never be mistaken for its shim).
fn is_shim_of(pid: u32, dir: &InstanceDir) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    let dir = dir.path().as_os_str().as_encoded_bytes();
    args.windows(3)
        .any(|w| w[0] == b"shim" && w[1] == b"--dir" && w[2] == dir)
}

/// Kills whatever app still runs in a directory nobody can supervise, and removes it.
fn discard(dir: &InstanceDir) {
    if let Ok(Some(app)) = layout::read_json::<ProcId>(&dir.file(APP_PID)) {
        if process::is_alive(&app) {
            let _ = process::signal_group(app.pid, Signal::SIGKILL);
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir.path()) {
        tracing::warn!(dir = %dir.path().display(), error = %e, "RuntimeInstanceDirRemoveError");
    }
}
