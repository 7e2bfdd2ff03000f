//! Finding and stopping what a dead `apply` left running.
//!
//! The reaper stops a run's processes when `apply` dies, but the reaper can die too (a
//! `kill -9` of both, a batch system that kills by name, a reboot of the container's init).
//! So every component vbench starts carries its run's mark in its environment,
//! `VBENCH_RUN=<mark>` (and `VBENCH_COMPONENT=<name>`), which vLLM's own engine and worker
//! processes inherit. The next `apply --resume` of the run, or `vbench clean RUN_DIR`, scans
//! `/proc` for processes with that mark, names them and stops their process groups. A mark is
//! random per run folder, so another run's processes (or anything else) are never touched.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::process::{group_alive, signal_group};

/// Environment variable that carries the run's mark into every component.
pub const RUN_MARK_VAR: &str = "VBENCH_RUN";
/// Environment variable that names the component (for the leftover report).
pub const COMPONENT_VAR: &str = "VBENCH_COMPONENT";

/// `/proc/PID/environ` of a vLLM process is a few KiB; more than this is not read.
const MAX_ENVIRON_BYTES: u64 = 1 << 20;
/// A command line is shown up to this many bytes.
const MAX_CMDLINE_BYTES: u64 = 4096;

/// A process that carries a run's mark.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Leftover {
    pub pid: i32,
    pub pgid: i32,
    /// `VBENCH_COMPONENT` of the process (vLLM's children inherit their server's).
    pub component: Option<String>,
    /// The command line, arguments joined by spaces (cut at 4 KiB).
    pub command: String,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({}, group {}): {}",
            self.pid,
            self.component.as_deref().unwrap_or("component unknown"),
            self.pgid,
            self.command
        )
    }
}

/// A fresh mark for a run folder: random enough that two runs never share one.
pub fn new_mark() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// Every process on this host (other than this one) whose environment carries `mark`.
pub fn find(mark: &str) -> Vec<Leftover> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    let wanted = format!("{RUN_MARK_VAR}={mark}");
    let mut found: Vec<Leftover> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let environ = read_capped(&format!("/proc/{pid}/environ"), MAX_ENVIRON_BYTES)?;
            let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
            if !vars.contains(&wanted.as_bytes()) {
                return None;
            }
            let component = vars.iter().find_map(|v| {
                let v = std::str::from_utf8(v).ok()?;
                Some(v.strip_prefix(COMPONENT_VAR)?.strip_prefix('=')?.to_owned())
            });
            let cmdline =
                read_capped(&format!("/proc/{pid}/cmdline"), MAX_CMDLINE_BYTES).unwrap_or_default();
            let command = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            Some(Leftover {
                pid,
                pgid: process_group(pid)?,
                component,
                command,
            })
        })
        .collect();
    found.sort_by_key(|l| l.pid);
    found
}

/// Stop the process groups of `found`: SIGTERM, up to `grace` for them to go, then SIGKILL.
/// Returns the processes still there after that (normally none).
pub fn stop(found: &[Leftover], grace: Duration) -> Vec<Leftover> {
    let mut groups: Vec<i32> = found.iter().map(|l| l.pgid).filter(|&g| g > 1).collect();
    groups.sort_unstable();
    groups.dedup();
    for &g in &groups {
        signal_group(g, libc::SIGTERM);
    }
    for l in found {
        // A process that left its group (setsid) is signalled by itself.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(l.pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while groups.iter().any(|&g| group_alive(g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &g in groups.iter().filter(|&&g| group_alive(g)) {
        signal_group(g, libc::SIGKILL);
    }
    let pids: Vec<i32> = found.iter().map(|l| l.pid).collect();
    for &pid in &pids {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SIGKILL takes effect at once, but a process is listed until its parent reaps it.
    let hard = Instant::now() + Duration::from_secs(5);
    loop {
        let still: Vec<Leftover> = found
            .iter()
            .filter(|l| is_running(l.pid))
            .cloned()
            .collect();
        if still.is_empty() || Instant::now() >= hard {
            return still;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Read at most `cap` bytes of a `/proc` file; `None` when it cannot be read (the process is
/// gone, or belongs to another user).
fn read_capped(path: &str, cap: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(cap)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// Field 5 of `/proc/PID/stat` (after the parenthesised command, which may hold spaces).
pub fn process_group(pid: i32) -> Option<i32> {
    let stat = read_capped(&format!("/proc/{pid}/stat"), 4096)?;
    let stat = String::from_utf8_lossy(&stat);
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `pid` is a running vbench (the same program as this one, by its executable's name):
/// the `apply` a lock record names, still alive.
pub fn is_live_vbench(pid: i32) -> bool {
    let name = |exe: std::path::PathBuf| {
        let name = exe.file_name()?.to_string_lossy().into_owned();
        Some(name.trim_end_matches(" (deleted)").to_owned())
    };
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(name);
    let ours = std::env::current_exe().ok().and_then(name);
    is_running(pid) && theirs.is_some() && theirs == ours
}

/// The process exists and is not a zombie.
fn is_running(pid: i32) -> bool {
    let Some(stat) = read_capped(&format!("/proc/{pid}/stat"), 4096) else {
        return false;
    };
    let stat = String::from_utf8_lossy(&stat);
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].split_whitespace().next() != Some("Z"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_marked_process_group_is_found_named_and_stopped_and_others_are_not() {
        let mark = new_mark();
        let other = new_mark();
        let spawn = |mark: &str, name: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                // A child in the same group, as vLLM's engine core is.
                .arg("sleep 300 & wait")
                .env(RUN_MARK_VAR, mark)
                .env(COMPONENT_VAR, name)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut ours = spawn(&mark, "prefill-0");
        let mut theirs = spawn(&other, "decode-0");
        // Give the shell time to start its child.
        std::thread::sleep(Duration::from_millis(300));

        let found = find(&mark);
        assert_eq!(found.len(), 2, "the shell and its sleep: {found:?}");
        assert!(found.iter().all(|l| l.pgid == ours.id() as i32));
        assert!(found
            .iter()
            .all(|l| l.component.as_deref() == Some("prefill-0")));
        assert!(found.iter().any(|l| l.command.starts_with("sleep 300")));

        let left = stop(&found, Duration::from_secs(2));
        let _ = ours.wait();
        assert!(left.is_empty(), "{left:?}");
        assert!(find(&mark).is_empty());
        assert_eq!(
            find(&other).len(),
            2,
            "another run's processes are untouched"
        );
        signal_group(theirs.id() as i32, libc::SIGKILL);
        let _ = theirs.wait();
    }
}
