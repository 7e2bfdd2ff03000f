//! The reaper: a small watchdog process that stops everything vbench started when vbench dies
//! without tearing down (SIGKILL, the OOM killer, a cancelled batch job), so no vLLM process is
//! left holding a GPU.
//!
//! vbench starts `vbench reaper` in a session of its own (a Ctrl-C in the terminal does not
//! reach it) with a pipe on its stdin, and tells it, line by line, what to watch:
//! `+group PGID` / `-group PGID` for a component's process group, `+job ID` / `-job ID` for a
//! Slurm allocation vbench made. vbench unregisters each one as it stops it. The pipe closes
//! when vbench exits, however it exits; the reaper then sends SIGTERM to every group still
//! registered, SIGKILL after a grace period, cancels every job still registered, and exits.
//! After a clean run nothing is registered, so nothing is signalled (a process group id that
//! the system has since reused is never touched).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::process::{group_alive, signal_group};

/// What the reaper watches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Watched {
    Group(i32),
    Job(String),
}

impl Watched {
    fn line(&self, register: bool) -> String {
        let sign = if register { '+' } else { '-' };
        match self {
            Watched::Group(pgid) => format!("{sign}group {pgid}\n"),
            Watched::Job(id) => format!("{sign}job {id}\n"),
        }
    }
}

/// The link to this process's reaper, while one runs.
static LINK: Mutex<Option<ChildStdin>> = Mutex::new(None);

/// A running reaper; dropping it (the normal end of `apply`) closes the pipe, and the reaper
/// exits after stopping whatever is still registered (normally nothing).
pub struct Reaper {
    child: Child,
}

impl Reaper {
    /// Start the reaper: `program` is this vbench executable (it runs `program reaper`);
    /// `grace` is how long it waits between SIGTERM and SIGKILL.
    pub fn start(program: &std::path::Path, grace: Duration) -> anyhow::Result<Reaper> {
        let mut cmd = Command::new(program);
        cmd.arg("reaper")
            .arg("--grace-s")
            .arg(grace.as_secs_f64().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: setsid is async-signal-safe; it only detaches the child from the terminal's
        // session, so a Ctrl-C meant for vbench cannot kill the reaper with it.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting the reaper (vbench reaper)")?;
        let stdin = child.stdin.take().context("the reaper has no stdin")?;
        *LINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(stdin);
        Ok(Reaper { child })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Closing the pipe is the signal; then collect the reaper so it is not left a zombie.
        LINK.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = self.child.wait();
    }
}

/// Ask the reaper (if one runs) to stop `what` should vbench die.
pub fn watch(what: &Watched) {
    send(&what.line(true));
}

/// `what` has been stopped by vbench: the reaper forgets it.
pub fn release(what: &Watched) {
    send(&what.line(false));
}

fn send(line: &str) {
    if let Some(stdin) = LINK.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        // A reaper that is gone cannot be helped here; teardown by vbench itself still runs.
        let _ = stdin.write_all(line.as_bytes());
        let _ = stdin.flush();
    }
}

/// The reaper's own loop (`vbench reaper`): follow the registrations on `input` until it
/// closes, then stop what is left: SIGTERM to each group, SIGKILL after `grace`, `scancel`
/// for each job. Returns what it had to stop.
pub fn run(input: impl BufRead, grace: Duration) -> Vec<Watched> {
    // The terminal's signals are vbench's business, not the reaper's.
    // SAFETY: installing SIG_IGN for these signals has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut watched = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (register, rest) = match line.split_at_checked(1) {
            Some(("+", rest)) => (true, rest),
            Some(("-", rest)) => (false, rest),
            _ => continue,
        };
        let what = match rest.split_once(' ') {
            Some(("group", pgid)) => match pgid.trim().parse::<i32>() {
                Ok(p) if p > 1 => Watched::Group(p),
                _ => continue,
            },
            Some(("job", id)) if !id.trim().is_empty() => Watched::Job(id.trim().to_owned()),
            _ => continue,
        };
        if register {
            watched.insert(what);
        } else {
            watched.remove(&what);
        }
    }
    let left: Vec<Watched> = watched.into_iter().collect();
    stop(&left, grace);
    left
}

fn stop(left: &[Watched], grace: Duration) {
    let groups: Vec<i32> = left
        .iter()
        .filter_map(|w| match w {
            Watched::Group(p) => Some(*p),
            Watched::Job(_) => None,
        })
        .collect();
    for &pgid in &groups {
        signal_group(pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while groups.iter().any(|&p| group_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for &pgid in groups.iter().filter(|&&p| group_alive(p)) {
        signal_group(pgid, libc::SIGKILL);
    }
    for w in left {
        if let Watched::Job(id) = w {
            let _ = Command::new("scancel").arg(id).status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_still_registered_when_the_pipe_closes_is_stopped() {
        let input = "+group 4242424\n+group 4242425\n-group 4242424\n+job 77\nnonsense\n+group 1\n+group x\n";
        let left = run(input.as_bytes(), Duration::from_millis(10));
        assert_eq!(left, [Watched::Group(4242425), Watched::Job("77".into())]);
    }
}
