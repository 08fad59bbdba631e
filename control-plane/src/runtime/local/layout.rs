//! The on-disk layout of an instance directory and the files the driver and the shim hand to
//! each other through it.
//!
//! The directory is the only channel between the two: the driver writes `spec.json` (what to
//! run) and `instance.json` (its own supervision state), the shim writes `app.pid` (what it
//! started), `output.log*` (what the app printed) and `exit.json` (how it ended). Every JSON
//! file is written to a temporary name and renamed, so a reader never sees half a file, even
//! when the writer is killed mid-write.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What the shim runs: written by the driver before every (re)start.
pub(crate) const SPEC: &str = "spec.json";
/// The driver's persisted supervision state of the instance.
pub(crate) const INSTANCE: &str = "instance.json";
/// The app's pid and start time, written by the shim once the app is spawned.
pub(crate) const APP_PID: &str = "app.pid";
/// How the app ended, written by the shim after the app's process group is gone.
pub(crate) const EXIT: &str = "exit.json";
/// Present when the driver asked the app to stop: the shim then lets the app's process group
/// finish gracefully instead of killing it as soon as the main process exits.
pub(crate) const STOP: &str = "stop";
/// Captured output, as JSON lines; rotated to `output.log.1` … `.N`.
pub(crate) const OUTPUT: &str = "output.log";
/// The shim's own diagnostics (it has no stderr: it is detached).
pub(crate) const SHIM_LOG: &str = "shim.log";

/// A process identity that survives pid reuse: the pid plus its start time in clock ticks
/// since boot (`/proc/<pid>/stat` field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

/// The contents of `spec.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ShimSpec {
    pub command: String,
    pub cwd: PathBuf,
    /// The app's complete environment (the shim clears its own).
    pub env: BTreeMap<String, String>,
    pub log_max_bytes: u64,
    pub log_files: usize,
    /// `cgroup.procs` files the app joins before the command runs.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// The memory cgroup, read for OOM kills after the app exits.
    #[serde(default)]
    pub memory_cgroup: Option<PathBuf>,
    #[serde(default)]
    pub cgroup_v2: bool,
    /// How long the shim waits for a stopping app's process group before killing it.
    pub stop_grace_ms: u64,
}

/// The contents of `exit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub at: DateTime<Utc>,
    /// Why the app could not be started or observed, when that is what happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExitRecord {
    /// A human sentence for `Instance::message` and event reasons.
    pub fn describe(&self, memory_mb: Option<u32>) -> String {
        if self.oom_killed {
            return match memory_mb {
                Some(mb) => format!("killed: over its memory limit of {mb} MiB"),
                None => "killed: over its memory limit".to_string(),
            };
        }
        if let Some(error) = &self.error {
            return error.clone();
        }
        match (self.code, self.signal) {
            (_, Some(signal)) => format!("killed by signal {signal}"),
            (Some(code), None) => format!("exited with code {code}"),
            (None, None) => "exited with an unknown status".to_string(),
        }
    }
}

/// Paths of one instance directory.
#[derive(Debug, Clone)]
pub(crate) struct InstanceDir(pub PathBuf);

impl InstanceDir {
    pub fn new(root: &Path, id: &str) -> Self {
        InstanceDir(root.join("instances").join(id))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

/// Writes `value` as JSON to `path` through a temporary file and a rename, so readers see the
/// old or the new contents, never a mix.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.write_all(b"\n")?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads a JSON file; `Ok(None)` when it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_files_round_trip_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EXIT);
        assert!(read_json::<ExitRecord>(&path).unwrap().is_none());
        let exit = ExitRecord {
            code: Some(3),
            signal: None,
            oom_killed: false,
            at: Utc::now(),
            error: None,
        };
        write_json_atomic(&path, &exit).unwrap();
        assert_eq!(read_json::<ExitRecord>(&path).unwrap(), Some(exit));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn exit_descriptions() {
        let mut exit = ExitRecord {
            code: Some(3),
            signal: None,
            oom_killed: false,
            at: Utc::now(),
            error: None,
        };
        assert_eq!(exit.describe(None), "exited with code 3");
        exit.signal = Some(9);
        exit.code = None;
        assert_eq!(exit.describe(None), "killed by signal 9");
        exit.oom_killed = true;
        assert_eq!(
            exit.describe(Some(64)),
            "killed: over its memory limit of 64 MiB"
        );
    }
}
