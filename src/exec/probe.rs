//! Short external queries (`vllm --version`, `nvidia-smi`, `hostname`, `git`): each runs with
//! a time limit, so a wedged driver or a slow Python import can never hold a run (or its
//! Ctrl-C) hostage.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::process::kill_group;

/// How long a query may take before it is killed and counted as unanswered.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Run `cmd` (stdin and stderr closed) for at most `limit`, or until `stop()` says so; its
/// trimmed stdout when it exits with success, else `None`. A query that overruns is killed
/// with its whole process group.
pub fn output(cmd: Command, limit: Duration, stop: &dyn Fn() -> bool) -> Option<String> {
    answer(cmd, limit, stop).ok()
}

/// [`output`], saying why there is no answer (for a message to the user).
pub fn answer(
    mut cmd: Command,
    limit: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<String, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{program} not found"),
        _ => format!("{program} could not run ({e})"),
    })?;
    let mut stdout = child.stdout.take().ok_or("no pipe")?;
    // Read on the side, so a chatty command cannot block on a full pipe while we wait.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.by_ref().take(1 << 20).read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline && !stop() => {
                std::thread::sleep(Duration::from_millis(20))
            }
            waited => {
                kill_group(child.id() as i32);
                let _ = child.wait();
                break Err(match waited {
                    Err(e) => format!("{program}: {e}"),
                    _ if stop() => format!("{program} stopped"),
                    _ => format!("{program} gave no answer within {} s", limit.as_secs()),
                });
            }
        }
    };
    // Whatever the query left behind in its own group goes too (and with it any hold on the
    // pipe).
    kill_group(child.id() as i32);
    let text = reader.join().unwrap_or_default();
    match status? {
        s if s.success() => Ok(String::from_utf8_lossy(&text).trim().to_owned()),
        s => Err(format!("{program} failed ({s})")),
    }
}

/// Tells queries running on other threads to give up: raised by [`StopFlag::raise`] or when
/// dropped, so an early return or a cancelled future cannot leave a query (and the thread
/// waiting on it) running.
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag(Arc::new(AtomicBool::new(false)))
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// What a query on another thread asks: whether to give up.
    pub fn watcher(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let flag = self.0.clone();
        move || flag.load(Ordering::Relaxed)
    }
}

impl Default for StopFlag {
    fn default() -> Self {
        StopFlag::new()
    }
}

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.raise();
    }
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

    #[test]
    fn an_unanswered_query_says_why() {
        let e = answer(Command::new("no-such-program-vbench"), LIMIT, &|| false).unwrap_err();
        assert_eq!(e, "no-such-program-vbench not found");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let e = answer(cmd, LIMIT, &|| false).unwrap_err();
        assert!(e.starts_with("sh failed (exit status: 3"), "{e}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        let e = answer(cmd, Duration::from_millis(100), &|| false).unwrap_err();
        assert_eq!(e, "sh gave no answer within 0 s");
    }

    #[test]
    fn a_dropped_stop_flag_stops_a_query_on_another_thread() {
        let flag = StopFlag::new();
        let stop = flag.watcher();
        let query = std::thread::spawn(move || {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "sleep 30"]);
            let t0 = Instant::now();
            (output(cmd, LIMIT, &stop), t0.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(flag);
        let (answer, took) = query.join().unwrap();
        assert_eq!(answer, None);
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
