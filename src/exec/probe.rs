//! Short external queries (`vllm --version`, `nvidia-smi`, `hostname`, `git`): each runs with
//! a time limit, so a wedged driver or a slow Python import can never hold a run (or its
//! Ctrl-C) hostage.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::kill_group;

/// How long a query may take before it is killed and counted as unanswered.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Run `cmd` (stdin and stderr closed) for at most `limit`, or until `stop()` says so; its
/// trimmed stdout when it exits with success, else `None`. A query that overruns is killed
/// with its whole process group.
pub fn output(mut cmd: Command, limit: Duration, stop: &dyn Fn() -> bool) -> Option<String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on the side, so a chatty command cannot block on a full pipe while we wait.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.by_ref().take(1 << 20).read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline && !stop() => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                kill_group(child.id() as i32);
                let _ = child.wait();
                break None;
            }
        }
    };
    // Whatever the query left behind in its own group goes too (and with it any hold on the
    // pipe).
    kill_group(child.id() as i32);
    let text = reader.join().unwrap_or_default();
    status
        .filter(|s| s.success())
        .map(|_| String::from_utf8_lossy(&text).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_that_overruns_is_killed_at_its_limit() {
        let t0 = Instant::now();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        assert_eq!(output(cmd, Duration::from_millis(200), &|| false), None);
        assert!(t0.elapsed() < Duration::from_secs(5));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ok"]);
        assert_eq!(output(cmd, LIMIT, &|| false).as_deref(), Some("ok"));
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        let t0 = Instant::now();
        assert_eq!(output(cmd, LIMIT, &|| true), None, "stopped at once");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
