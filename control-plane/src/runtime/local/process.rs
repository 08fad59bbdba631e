//! Facts about processes read from `/proc`, and signals to process groups.
//!
//! Instances outlive the driver, so a pid alone says nothing: after a restart of the control
//! plane the pid may belong to anything. A process is "ours" only while its start time still
//! matches the one recorded when it was spawned.

use std::collections::HashMap;
use std::path::Path;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::layout::ProcId;

/// Clock ticks per second of `/proc/<pid>/stat` times. Linux fixes `USER_HZ` at 100 on every
/// architecture it exports it to user space.
pub(crate) const CLOCK_TICKS: u64 = 100;

/// The fields of `/proc/<pid>/stat` the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: i32,
    /// User + system time, in clock ticks.
    pub cpu_ticks: u64,
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces and parentheses,
/// so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 of proc(5).
    let field = |n: usize| fields.get(n - 3).copied();
    let number = |n: usize| field(n)?.parse::<u64>().ok();
    Some(ProcStat {
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        pgrp: field(5)?.parse().ok()?,
        cpu_ticks: number(14)? + number(15)?,
        start_time: number(22)?,
    })
}

pub(crate) fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The identity of a running process, for recording it.
pub(crate) fn identify(pid: u32) -> Option<ProcId> {
    let stat = read_stat(pid)?;
    Some(ProcId {
        pid,
        start_time: stat.start_time,
    })
}

/// Whether the recorded process still runs: same pid, same start time, not a zombie.
pub(crate) fn is_alive(id: &ProcId) -> bool {
    match read_stat(id.pid) {
        Some(stat) => stat.start_time == id.start_time && !matches!(stat.state, 'Z' | 'X' | 'x'),
        None => false,
    }
}

/// Sends `signal` to the process group led by `leader` (the app is started as its own group
/// leader, so its pid is its group id). A group that is already gone is not an error.
pub(crate) fn signal_group(leader: u32, signal: Signal) -> nix::Result<()> {
    let Ok(raw) = i32::try_from(leader) else {
        return Ok(());
    };
    if raw <= 1 {
        // Never signal group 0 (our own) or 1: a corrupt record must not take the host down.
        return Ok(());
    }
    match killpg(Pid::from_raw(raw), signal) {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Resident memory of one process in bytes, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (ns) and resident memory (bytes) summed over every process of each of the given
/// process groups: the fallback when no cgroup accounts for an instance. One scan of `/proc`
/// serves all instances.
pub(crate) fn group_usage(groups: &[u32]) -> HashMap<u32, (u64, u64)> {
    let mut usage: HashMap<u32, (u64, u64)> = HashMap::new();
    if groups.is_empty() {
        return usage;
    }
    let Ok(entries) = std::fs::read_dir(Path::new("/proc")) else {
        return usage;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(stat) = read_stat(pid) else { continue };
        let Ok(pgrp) = u32::try_from(stat.pgrp) else {
            continue;
        };
        if !groups.contains(&pgrp) {
            continue;
        }
        let slot = usage.entry(pgrp).or_default();
        slot.0 += stat.cpu_ticks * (1_000_000_000 / CLOCK_TICKS);
        slot.1 += rss_bytes(pid).unwrap_or(0);
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let text = "1234 (we ird) (name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 1234);
        assert_eq!(stat.cpu_ticks, 300);
        assert_eq!(stat.start_time, 987654);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn our_own_process_is_alive_and_a_changed_start_time_is_not() {
        let me = identify(std::process::id()).unwrap();
        assert!(is_alive(&me));
        let impostor = ProcId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!is_alive(&impostor));
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
