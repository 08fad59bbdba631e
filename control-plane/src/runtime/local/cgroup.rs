//! Memory and CPU limits through cgroups (v1 or v2), and the usage counters they keep.
//!
//! Each instance gets `tideway/<instance id>` under every controller it needs. The `tideway`
//! directory is created beneath the cgroup the control plane itself runs in (when that path
//! is visible), not at the hierarchy root: apps then stay inside whatever limits and
//! accounting the host put around the control plane, and a delegated subtree is enough. When
//! nothing can be created the runtime runs instances without limits and says so on every
//! instance; it never claims a limit it did not apply.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tideway_api_types::Resources;

/// Where the standard cgroup hierarchies are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

const PERIOD_US: u64 = 100_000;
/// The kernel rejects CFS quotas under 1 ms.
const MIN_QUOTA_US: u64 = 1_000;

/// What this host lets the runtime do, detected once at start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CgroupSupport {
    /// Base directories (each ending in `tideway`) per controller.
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        /// The same directory as `cpu` where the two controllers are mounted together.
        cpuacct: PathBuf,
    },
    V2 {
        base: PathBuf,
    },
    Unavailable(String),
}

/// The cgroups of one instance, persisted in `instance.json` so a restarted driver can sample
/// and remove them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstanceCgroups {
    pub v2: bool,
    pub memory: PathBuf,
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
}

impl InstanceCgroups {
    /// Every distinct directory, in creation order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.memory.clone()];
        for d in [&self.cpu, &self.cpuacct] {
            if !dirs.contains(d) {
                dirs.push(d.clone());
            }
        }
        dirs
    }

    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }
}

/// The cgroup path of this process for a v1 controller (`"memory"`), or for v2 (`None`), from
/// the text of `/proc/self/cgroup`.
pub(crate) fn own_path(self_cgroup: &str, controller: Option<&str>) -> Option<String> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match controller {
            Some(c) => controllers.split(',').any(|x| x == c),
            None => controllers.is_empty(),
        };
        matches.then(|| path.to_string())
    })
}

/// The `tideway` base under a controller's mount: beneath our own cgroup when that directory
/// is visible in the mount, else at the mount's root (a container without a cgroup namespace
/// shows host paths that do not exist in its own mount).
pub(crate) fn base_dir(mount: &Path, own: Option<&str>, exists: impl Fn(&Path) -> bool) -> PathBuf {
    let own = own.map(|p| p.trim_start_matches('/')).unwrap_or("");
    let parent = mount.join(own);
    if !own.is_empty() && exists(&parent) {
        parent.join("tideway")
    } else {
        mount.join("tideway")
    }
}

/// The directories of one instance under the detected bases.
pub(crate) fn instance_paths(support: &CgroupSupport, id: &str) -> Option<InstanceCgroups> {
    match support {
        CgroupSupport::V1 {
            memory,
            cpu,
            cpuacct,
        } => Some(InstanceCgroups {
            v2: false,
            memory: memory.join(id),
            cpu: cpu.join(id),
            cpuacct: cpuacct.join(id),
        }),
        CgroupSupport::V2 { base } => Some(InstanceCgroups {
            v2: true,
            memory: base.join(id),
            cpu: base.join(id),
            cpuacct: base.join(id),
        }),
        CgroupSupport::Unavailable(_) => None,
    }
}

/// The CFS quota for a CPU limit in millicores, per 100 ms period.
pub(crate) fn cpu_quota_us(cpu_millis: u32) -> u64 {
    (u64::from(cpu_millis) * PERIOD_US / 1000).max(MIN_QUOTA_US)
}

/// Finds out whether cgroups can be used, creating the `tideway` base directories.
pub(crate) fn detect() -> CgroupSupport {
    let root = Path::new(CGROUP_ROOT);
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if root.join("cgroup.controllers").exists() {
        return detect_v2(root, &self_cgroup);
    }
    let (memory_mount, cpu_mount, cpuacct_mount) =
        (root.join("memory"), root.join("cpu"), root.join("cpuacct"));
    if !memory_mount.is_dir() || !cpu_mount.is_dir() {
        return CgroupSupport::Unavailable(format!(
            "cgroups not writable: no cgroup v2 and no v1 memory and cpu controllers under {CGROUP_ROOT}"
        ));
    }
    let exists = |p: &Path| p.is_dir();
    let memory = base_dir(
        &memory_mount,
        own_path(&self_cgroup, Some("memory")).as_deref(),
        exists,
    );
    let cpu = base_dir(
        &cpu_mount,
        own_path(&self_cgroup, Some("cpu")).as_deref(),
        exists,
    );
    // cpu and cpuacct are often one hierarchy (`cpu,cpuacct`) reachable under both names.
    let same_mount = match (cpu_mount.canonicalize(), cpuacct_mount.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let cpuacct = if same_mount || !cpuacct_mount.is_dir() {
        cpu.clone()
    } else {
        base_dir(
            &cpuacct_mount,
            own_path(&self_cgroup, Some("cpuacct")).as_deref(),
            exists,
        )
    };
    for dir in [&memory, &cpu, &cpuacct] {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return CgroupSupport::Unavailable(format!(
                "cgroups not writable: cannot create {}: {e}",
                dir.display()
            ));
        }
    }
    CgroupSupport::V1 {
        memory,
        cpu,
        cpuacct,
    }
}

fn detect_v2(root: &Path, self_cgroup: &str) -> CgroupSupport {
    let own = own_path(self_cgroup, None);
    let base = base_dir(root, own.as_deref(), |p| p.is_dir());
    let Some(parent) = base.parent().map(Path::to_path_buf) else {
        return CgroupSupport::Unavailable("cgroups not writable: no parent cgroup".into());
    };
    let unavailable =
        |what: String| CgroupSupport::Unavailable(format!("cgroups not writable: {what}"));
    if let Err(e) = std::fs::create_dir_all(&base) {
        return unavailable(format!("cannot create {}: {e}", base.display()));
    }
    // Children only get a controller their parent enables; a parent that still holds
    // processes cannot enable any (the "no internal processes" rule), which is why this
    // fails when the control plane shares its cgroup with others and is not delegated one.
    for dir in [&parent, &base] {
        let control = dir.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control).unwrap_or_default();
        if enabled.split_whitespace().any(|c| c == "memory")
            && enabled.split_whitespace().any(|c| c == "cpu")
        {
            continue;
        }
        if let Err(e) = std::fs::write(&control, "+memory +cpu") {
            return unavailable(format!(
                "cannot enable the memory and cpu controllers in {}: {e}",
                control.display()
            ));
        }
    }
    CgroupSupport::V2 { base }
}

/// Creates (or reuses) an instance's cgroups and writes its limits. On error the caller runs
/// the instance without cgroups.
pub(crate) fn prepare(cg: &InstanceCgroups, resources: &Resources) -> Result<(), String> {
    for dir in cg.dirs() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let write = |dir: &Path, file: &str, value: String| -> Result<(), String> {
        std::fs::write(dir.join(file), &value)
            .map_err(|e| format!("cannot write {value} to {}: {e}", dir.join(file).display()))
    };
    if cg.v2 {
        let memory = resources
            .memory_mb
            .map(|mb| (u64::from(mb) * 1024 * 1024).to_string())
            .unwrap_or_else(|| "max".into());
        write(&cg.memory, "memory.max", memory.clone())?;
        // Without this, swap would let the app grow past its limit unnoticed.
        if cg.memory.join("memory.swap.max").exists() {
            let swap = if resources.memory_mb.is_some() {
                "0"
            } else {
                "max"
            };
            let _ = write(&cg.memory, "memory.swap.max", swap.into());
        }
        let cpu = resources
            .cpu_millis
            .map(|m| format!("{} {PERIOD_US}", cpu_quota_us(m)))
            .unwrap_or_else(|| format!("max {PERIOD_US}"));
        write(&cg.cpu, "cpu.max", cpu)?;
    } else {
        match resources.memory_mb {
            Some(mb) => {
                let bytes = (u64::from(mb) * 1024 * 1024).to_string();
                // memsw (memory + swap) must stay >= the memory limit: writing it before and
                // after the limit works whether the limit goes up or down. Limiting it too
                // keeps swap from hiding the limit; it is best effort (swap accounting may be
                // off).
                let has_memsw = cg.memory.join("memory.memsw.limit_in_bytes").exists();
                if has_memsw {
                    let _ = write(&cg.memory, "memory.memsw.limit_in_bytes", bytes.clone());
                }
                write(&cg.memory, "memory.limit_in_bytes", bytes.clone())?;
                if has_memsw {
                    let _ = write(&cg.memory, "memory.memsw.limit_in_bytes", bytes);
                }
            }
            None => {
                if cg.memory.join("memory.memsw.limit_in_bytes").exists() {
                    let _ = write(&cg.memory, "memory.memsw.limit_in_bytes", "-1".into());
                }
                write(&cg.memory, "memory.limit_in_bytes", "-1".into())?;
            }
        }
        write(&cg.cpu, "cpu.cfs_period_us", PERIOD_US.to_string())?;
        let quota = resources
            .cpu_millis
            .map(|m| cpu_quota_us(m).to_string())
            .unwrap_or_else(|| "-1".into());
        write(&cg.cpu, "cpu.cfs_quota_us", quota)?;
    }
    Ok(())
}

/// Removes an instance's cgroups, killing anything still in them first (an app that escaped
/// its process group must not outlive its instance). Returns the directories that could not
/// be removed yet.
pub(crate) fn remove(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if pid > 1 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        if std::fs::remove_dir(dir).is_err() {
            left.push(dir.clone());
        }
    }
    left
}

/// Total CPU time used by the cgroup, in nanoseconds.
pub(crate) fn cpu_usage_ns(cg: &InstanceCgroups) -> Option<u64> {
    if cg.v2 {
        let stat = std::fs::read_to_string(cg.cpu.join("cpu.stat")).ok()?;
        let usec: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        Some(usec * 1000)
    } else {
        read_u64(&cg.cpuacct.join("cpuacct.usage"))
    }
}

/// Memory charged to the cgroup, in bytes.
pub(crate) fn memory_usage(cg: &InstanceCgroups) -> Option<u64> {
    let file = if cg.v2 {
        "memory.current"
    } else {
        "memory.usage_in_bytes"
    };
    read_u64(&cg.memory.join(file))
}

/// Counters that tell an OOM kill apart from any other SIGKILL. Both are cumulative over the
/// cgroup's life, so the shim compares them before and after a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OomCounters {
    pub oom_kills: u64,
    pub failcnt: u64,
}

pub(crate) fn oom_counters(memory: &Path, v2: bool) -> OomCounters {
    let (file, key) = if v2 {
        ("memory.events", "oom_kill")
    } else {
        ("memory.oom_control", "oom_kill")
    };
    let oom_kills = std::fs::read_to_string(memory.join(file))
        .ok()
        .and_then(|text| keyed_value(&text, key))
        .unwrap_or(0);
    let failcnt = if v2 {
        0
    } else {
        read_u64(&memory.join("memory.failcnt")).unwrap_or(0)
    };
    OomCounters { oom_kills, failcnt }
}

/// Whether a run that ended with `signal` was an OOM kill, from the counters around it.
pub(crate) fn was_oom_killed(before: OomCounters, after: OomCounters, signal: Option<i32>) -> bool {
    after.oom_kills > before.oom_kills
        || (after.failcnt > before.failcnt && signal == Some(nix::libc::SIGKILL))
}

fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == key).then_some(())?;
        parts.next()?.parse().ok()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELF_V1: &str = "9:name=systemd:/\n4:memory:/sandbox/abc\n2:cpu,cpuacct:/svc\n0::/\n";

    #[test]
    fn own_cgroup_paths_per_controller() {
        assert_eq!(
            own_path(SELF_V1, Some("memory")).as_deref(),
            Some("/sandbox/abc")
        );
        assert_eq!(own_path(SELF_V1, Some("cpuacct")).as_deref(), Some("/svc"));
        assert_eq!(own_path(SELF_V1, Some("pids")), None);
        assert_eq!(own_path(SELF_V1, None).as_deref(), Some("/"));
    }

    #[test]
    fn base_dir_nests_under_our_own_cgroup_when_visible() {
        let mount = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            base_dir(mount, Some("/sandbox/abc"), |_| true),
            PathBuf::from("/sys/fs/cgroup/memory/sandbox/abc/tideway")
        );
        assert_eq!(
            base_dir(mount, Some("/sandbox/abc"), |_| false),
            PathBuf::from("/sys/fs/cgroup/memory/tideway")
        );
        assert_eq!(
            base_dir(mount, Some("/"), |_| true),
            PathBuf::from("/sys/fs/cgroup/memory/tideway")
        );
    }

    #[test]
    fn instance_paths_per_version() {
        let v1 = CgroupSupport::V1 {
            memory: "/m/tideway".into(),
            cpu: "/c/tideway".into(),
            cpuacct: "/c/tideway".into(),
        };
        let cg = instance_paths(&v1, "web-v1-abcde").unwrap();
        assert_eq!(cg.memory, PathBuf::from("/m/tideway/web-v1-abcde"));
        assert_eq!(
            cg.procs_files(),
            vec![
                PathBuf::from("/m/tideway/web-v1-abcde/cgroup.procs"),
                PathBuf::from("/c/tideway/web-v1-abcde/cgroup.procs"),
            ]
        );
        let v2 = CgroupSupport::V2 {
            base: "/u/tideway".into(),
        };
        let cg = instance_paths(&v2, "web-v1-abcde").unwrap();
        assert!(cg.v2);
        assert_eq!(cg.dirs(), vec![PathBuf::from("/u/tideway/web-v1-abcde")]);
        assert!(instance_paths(&CgroupSupport::Unavailable("x".into()), "i").is_none());
    }

    #[test]
    fn cpu_quota_and_oom_counters() {
        assert_eq!(cpu_quota_us(500), 50_000);
        assert_eq!(cpu_quota_us(2000), 200_000);
        assert_eq!(cpu_quota_us(1), MIN_QUOTA_US);
        assert_eq!(
            keyed_value("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "oom_kill"),
            Some(2)
        );
        let before = OomCounters {
            oom_kills: 1,
            failcnt: 5,
        };
        let same = before;
        assert!(!was_oom_killed(before, same, Some(9)));
        let kill = OomCounters {
            oom_kills: 2,
            ..before
        };
        assert!(was_oom_killed(before, kill, None));
        let fail = OomCounters {
            failcnt: 6,
            ..before
        };
        assert!(was_oom_killed(before, fail, Some(9)));
        assert!(!was_oom_killed(before, fail, Some(15)));
    }
}
