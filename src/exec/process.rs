//! Supervised processes: each component runs in its own process group with its output in a
//! log file, and is stopped as a group (SIGTERM, grace period, SIGKILL), because vLLM's engine
//! and worker processes outlive a kill of the API server and keep holding GPU memory.
//!
//! A `Supervised` that is dropped without `stop` kills its group, so an early return or a
//! panic still leaves no orphan.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::manifest::{EnvMap, EnvValue};

/// What to run for one component.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSpec {
    /// Component name, e.g. `prefill-0`; also the log file's stem.
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// Extra environment on top of vbench's own.
    pub env: BTreeMap<String, String>,
    /// Environment taken from vbench's own at launch (variable → the name it has in vbench's
    /// environment): the manifest's `{ env = "NAME" }` values, never resolved in a record.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_from: BTreeMap<String, String>,
}

impl ProcessSpec {
    /// The command as one shell-quoted line (for deployment.json and error messages).
    pub fn command_line(&self) -> String {
        let env = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .chain(
                self.env_from
                    .iter()
                    .map(|(k, from)| format!("{k}=\"${from}\"")),
            );
        let argv = std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(a));
        env.chain(argv).collect::<Vec<_>>().join(" ")
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Split a manifest's environment into values to set and values to take from vbench's own
/// environment at launch ([`ProcessSpec::env`] and [`ProcessSpec::env_from`]).
pub fn split_env(env: &EnvMap) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut literal = BTreeMap::new();
    let mut from = BTreeMap::new();
    for (k, v) in env {
        match v {
            EnvValue::Literal(v) => literal.insert(k.clone(), v.clone()),
            EnvValue::FromEnv(name) => from.insert(k.clone(), name.clone()),
        };
    }
    (literal, from)
}

/// The `{ env = "NAME" }` values of `env` whose variable is not set in this process's
/// environment, as `VAR = { env = "NAME" }` for an error message.
pub fn unset_sources(env: &EnvMap) -> Vec<String> {
    env.iter()
        .filter_map(|(k, v)| {
            let from = v.source_var()?;
            std::env::var_os(from)
                .is_none()
                .then(|| format!("{k} = {{ env = \"{from}\" }}"))
        })
        .collect()
}

/// `env` with every reference resolved from this process's environment (an unset one is left
/// out), for a command vbench runs itself and records nowhere.
pub fn resolve_env(env: &EnvMap) -> BTreeMap<String, String> {
    env.iter()
        .filter_map(|(k, v)| {
            let value = match v {
                EnvValue::Literal(v) => v.clone(),
                EnvValue::FromEnv(from) => std::env::var(from).ok()?,
            };
            Some((k.clone(), value))
        })
        .collect()
}

/// A running component.
pub struct Supervised {
    pub name: String,
    pub log: PathBuf,
    child: tokio::process::Child,
    pgid: i32,
    exit: Option<ExitStatus>,
    stopped: bool,
    fatal: Option<LogWatch>,
    /// Known to be dead though its process may live on (a fatal line, a wedged `/health`).
    dead: bool,
}

/// How a component ended when it was stopped.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StopReport {
    pub name: String,
    /// True when the group had to be SIGKILLed after the grace period.
    pub killed: bool,
    /// Exit status of the group leader, if it had exited by itself before the stop.
    pub exited_early: Option<String>,
    pub seconds: f64,
}

impl Supervised {
    /// Start `spec` in a new process group, stdout and stderr appended to `log`. `run_mark`
    /// (the run folder's mark) goes into its environment so that a later `apply --resume` or
    /// `vbench clean` can find it should this vbench and its reaper both die.
    pub fn spawn(spec: &ProcessSpec, log: &Path, run_mark: Option<&str>) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(&spec.env)
            .env(super::leftovers::COMPONENT_VAR, &spec.name)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // Own group: one signal reaches every descendant; Ctrl-C in the terminal does not
            // reach it directly, so vbench decides the order of teardown.
            .process_group(0);
        for (var, from) in &spec.env_from {
            let value = std::env::var_os(from).with_context(|| {
                format!(
                    "{}: {var} = {{ env = \"{from}\" }}, but {from} is not set",
                    spec.name
                )
            })?;
            cmd.env(var, value);
        }
        if let Some(mark) = run_mark {
            cmd.env(super::leftovers::RUN_MARK_VAR, mark);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}: {}", spec.name, spec.command_line()))?;
        let pid = child.id().context("child has no pid")? as i32;
        // Should vbench die without stopping it, the reaper will.
        super::reaper::watch(&super::reaper::Watched::Group(pid));
        Ok(Supervised {
            name: spec.name.clone(),
            log: log.to_owned(),
            child,
            pgid: pid,
            exit: None,
            stopped: false,
            fatal: None,
            dead: false,
        })
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The exit status if the group leader has exited (a crash while it should be serving).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// SIGTERM the whole group, wait up to `grace` for every member to be gone, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) -> StopReport {
        let started = Instant::now();
        let exited_early = self.exited().map(|s| s.to_string());
        signal_group(self.pgid, libc::SIGTERM);
        let deadline = started + grace;
        let mut killed = false;
        loop {
            // Reap the leader so it does not linger as a zombie that keeps the group "alive".
            let _ = self.exited();
            if !group_alive(self.pgid) {
                break;
            }
            if Instant::now() >= deadline {
                signal_group(self.pgid, libc::SIGKILL);
                killed = true;
                let hard = Instant::now() + Duration::from_secs(10);
                while group_alive(self.pgid) && Instant::now() < hard {
                    let _ = self.exited();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.wait().await;
        self.stopped = true;
        if !group_alive(self.pgid) {
            super::reaper::release(&super::reaper::Watched::Group(self.pgid));
        }
        StopReport {
            name: self.name.clone(),
            killed,
            exited_early,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// Watch the log for `patterns` ([`Supervised::fatal_line`]).
    pub fn watch_log(&mut self, patterns: Vec<String>) {
        self.fatal = (!patterns.is_empty()).then_some(LogWatch {
            offset: 0,
            patterns,
        });
    }

    /// The first log line written since the last call that holds a watched pattern: the
    /// component is dead though its process may live on (vLLM's API server outlives a failed
    /// engine).
    pub fn fatal_line(&mut self) -> Option<String> {
        let line = self.fatal.as_mut()?.scan(&self.log);
        if line.is_some() {
            self.dead = true;
        }
        line
    }

    /// The component is dead to vbench though its process lives (e.g. its `/health` hangs).
    pub fn mark_dead(&mut self) {
        self.dead = true;
    }

    /// It logged a fatal line or was [marked dead](Self::mark_dead): nothing it holds is worth
    /// a long grace period at teardown.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The last `n` lines of the component's log, for error messages.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// The log's length now: where a later [`Self::errors_since`] starts reading.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// The error lines the log gained after `offset` (at most [`ERRORS_SCAN_BYTES`] read).
    pub fn errors_since(&self, offset: u64) -> LogErrors {
        errors_in(&self.log, offset)
    }

    /// The first `max_bytes` of the log (start-up lines say which paths a server chose).
    pub fn log_start(&self, max_bytes: u64) -> String {
        use std::io::Read;
        let mut bytes = Vec::new();
        if let Ok(file) = File::open(&self.log) {
            let _ = file.take(max_bytes).read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The error lines of one stretch of a log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogErrors {
    pub lines: u64,
    /// The first, cut at [`LogWatch::MAX_SHOWN`] characters, colour codes removed.
    pub first: Option<String>,
    /// The stretch was longer than what was read: there may be more.
    pub cut: bool,
}

/// How much of a log [`Supervised::errors_since`] reads after its offset.
pub const ERRORS_SCAN_BYTES: u64 = 64 << 20;

fn errors_in(path: &Path, offset: u64) -> LogErrors {
    use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
    let mut out = LogErrors::default();
    let Ok(mut file) = File::open(path) else {
        return out;
    };
    let len = file.metadata().map_or(0, |m| m.len());
    if offset >= len || file.seek(SeekFrom::Start(offset)).is_err() {
        return out;
    }
    out.cut = len - offset > ERRORS_SCAN_BYTES;
    let mut reader = BufReader::new(file.take(ERRORS_SCAN_BYTES));
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line is read up to its end but kept to 64 KiB: a megabyte-long line costs no
        // more than that.
        match reader.by_ref().take(64 << 10).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            let _ = reader.skip_until(b'\n');
        }
        let text = strip_ansi(&String::from_utf8_lossy(&line));
        if is_error_line(&text) {
            out.lines += 1;
            if out.first.is_none() {
                out.first = Some(text.trim().chars().take(LogWatch::MAX_SHOWN).collect());
            }
        }
    }
    out
}

/// A line at error level: vLLM's `ERROR 12-01 16:13:01 [file.py:12] ...` (after an optional
/// `(EngineCore pid=…)` prefix), LMCache's `[date] LMCache ERROR: ...`, a Python traceback's
/// first line.
pub fn is_error_line(line: &str) -> bool {
    line.split_whitespace()
        .take(6)
        .any(|w| w == "ERROR" || w == "ERROR:")
        || line.starts_with("Traceback (most recent call last)")
}

/// `line` without terminal colour codes (`ESC [ ... m`), as LMCache writes its level names.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a log has been read up to, and what to look for in it.
struct LogWatch {
    offset: u64,
    patterns: Vec<String>,
}

impl LogWatch {
    /// At most this much of the log is read per look (a chatty log is read over several).
    const MAX_READ: u64 = 1 << 20;
    /// A line is shown up to this many characters.
    const MAX_SHOWN: usize = 500;

    fn scan(&mut self, log: &Path) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = File::open(log).ok()?;
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut bytes = Vec::new();
        file.take(Self::MAX_READ).read_to_end(&mut bytes).ok()?;
        // Only whole lines; a partial last line is read again next time, unless it fills the
        // whole read (then it is taken as it is).
        let end = match bytes.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if bytes.len() as u64 == Self::MAX_READ => bytes.len(),
            None => return None,
        };
        self.offset += end as u64;
        String::from_utf8_lossy(&bytes[..end])
            .lines()
            .find(|line| self.patterns.iter().any(|p| line.contains(p.as_str())))
            .map(|line| line.trim().chars().take(Self::MAX_SHOWN).collect())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pgid, libc::SIGKILL);
            let _ = self.child.start_kill();
            // Left registered: the reaper makes sure, should a member outlive the SIGKILL.
        }
    }
}

/// The last `n` lines of a log, read from at most its last [`TAIL_BYTES`]: a log of many
/// gigabytes (a server in a logging loop) costs no more than a small one.
pub fn log_tail(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(TAIL_BYTES).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        // The first line read is probably cut.
        lines.remove(0);
    }
    let lines: Vec<String> = lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(TAIL_LINE_CHARS).collect())
        .collect();
    lines.join("\n")
}

/// How much of a log's end [`log_tail`] reads...
const TAIL_BYTES: u64 = 256 << 10;
/// ...and how much of each line it shows.
const TAIL_LINE_CHARS: usize = 2000;

/// SIGKILL a whole process group now (a second Ctrl-C during teardown).
pub fn kill_group(pgid: i32) {
    signal_group(pgid, libc::SIGKILL);
}

pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Whether any process of the group still exists.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(-pgid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_lines_after_an_offset_are_counted_in_vllm_s_and_lmcache_s_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let before = "(EngineCore pid=1) ERROR 12-01 16:13:01 [core.py:1510] before the cell\n";
        std::fs::write(&path, before).unwrap();
        let offset = before.len() as u64;
        let during = "(APIServer pid=9) INFO 12-01 16:20:00 [logger.py:1] an ERROR in a prompt\n\
            (EngineCore pid=1) \u{1b}[31;20m[2026-12-01 16:20:01,000] LMCache ERROR:\u{1b}[0m \
            Failed to allocate memory for the transfer buffer\n\
            ERROR 12-01 16:20:02 [serving.py:90] Error in the request\n\
            Traceback (most recent call last):\n";
        std::fs::write(&path, format!("{before}{during}")).unwrap();
        let e = errors_in(&path, offset);
        assert_eq!(e.lines, 3, "{e:?}");
        assert_eq!(
            e.first.as_deref(),
            Some(
                "(EngineCore pid=1) [2026-12-01 16:20:01,000] LMCache ERROR: Failed to allocate \
                 memory for the transfer buffer"
            )
        );
        assert!(!e.cut);
        // Nothing new, or no log at all: nothing.
        assert_eq!(errors_in(&path, 10_000), LogErrors::default());
        assert_eq!(errors_in(&dir.path().join("none"), 0), LogErrors::default());
    }

    #[test]
    fn a_huge_log_s_tail_reads_only_its_end_and_cuts_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let mut text = "x".repeat(3 << 20);
        text.push_str("\nnext to last\n");
        text.push_str(&"y".repeat(5000));
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let tail = super::log_tail(&path, 3);
        let lines: Vec<&str> = tail.lines().collect();
        // The 3 MiB line starts before the bytes read: it is dropped, not shown cut.
        assert_eq!(lines.len(), 2, "{}", tail.len());
        assert_eq!(lines[0], "next to last");
        assert_eq!(lines[1], "y".repeat(super::TAIL_LINE_CHARS));
        assert_eq!(super::log_tail(&dir.path().join("none.log"), 3), "");
    }

    use super::*;

    fn spec(script: &str) -> ProcessSpec {
        ProcessSpec {
            name: "t".into(),
            program: "bash".into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::new(),
            env_from: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn stop_reaches_grandchildren_that_ignore_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Supervised::spawn(
            &spec("sleep 300 & sleep 300 & wait"),
            &dir.path().join("t.log"),
            None,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(group_alive(p.pgid()));
        let r = p.stop(Duration::from_secs(5)).await;
        assert!(!r.killed, "SIGTERM was enough");
        assert!(!group_alive(p.pgid()), "no member of the group survives");
    }

    #[tokio::test]
    async fn stop_kills_a_group_that_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        // The grandchild ignores SIGTERM, like a stuck engine process.
        let mut p = Supervised::spawn(
            &spec("bash -c 'trap \"\" TERM; while true; do sleep 0.1; done' & wait"),
            &dir.path().join("t.log"),
            None,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = p.stop(Duration::from_millis(500)).await;
        assert!(r.killed);
        assert!(!group_alive(p.pgid()));
    }

    #[tokio::test]
    async fn drop_without_stop_leaves_no_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let p =
            Supervised::spawn(&spec("sleep 300 & wait"), &dir.path().join("t.log"), None).unwrap();
        let pgid = p.pgid();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(p);
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!group_alive(pgid));
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_crashes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/c.log");
        let mut p =
            Supervised::spawn(&spec("echo hello; echo oops >&2; exit 3"), &log, None).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = p.exited().expect("exited");
        assert_eq!(status.code(), Some(3));
        assert_eq!(p.log_tail(5), "hello\noops");
        let r = p.stop(Duration::from_secs(1)).await;
        assert!(r.exited_early.is_some());
    }

    #[test]
    fn command_line_is_shell_quoted() {
        let mut s = spec("echo 'a b'");
        s.env.insert("X".into(), "1 2".into());
        assert_eq!(s.command_line(), "X='1 2' bash -c 'echo '\\''a b'\\'''");
    }
}
