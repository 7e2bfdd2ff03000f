//! Run-folder files written safely: atomically (temp file + link), never over an existing
//! file, into disk space held in reserve; and the size limits of what a run folder holds
//! (reading them is `crate::bounded_file`'s).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};

/// The largest result file vbench reads (a 100,000-request result is about 200 MB).
pub const MAX_RESULT_BYTES: u64 = 1 << 30;

/// The largest record (plan, environment, manifest copy) vbench reads from a run folder.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// A generous size of one result file: per request its record and the vLLM arrays
/// (inter-token gaps twice, ~24 bytes each as JSON) plus 1 KiB.
pub fn result_size_estimate(requests: u64, output_tokens: u64) -> u64 {
    requests.saturating_mul(output_tokens.saturating_mul(2 * 24).saturating_add(1024))
}

/// Bytes available to this user on the file system that holds `path` (`None` if unknown).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Whether `err` comes from a file system that is full or a disk quota that is spent
/// (`ENOSPC`, `EDQUOT` anywhere in its chain), or is a [`DiskFull`].
pub fn is_disk_full(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind;
    let full = |kind: ErrorKind| matches!(kind, ErrorKind::StorageFull | ErrorKind::QuotaExceeded);
    err.chain().any(|e| {
        e.is::<DiskFull>()
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| full(io.kind()))
            // serde_json keeps the io error's kind but does not chain to it.
            || e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                .is_some_and(full)
    })
}

/// The results' file system is full; `what` says what was kept and what was not.
#[derive(Debug, thiserror::Error)]
#[error("no space left on the file system of {}: {what}", dir.display())]
pub struct DiskFull {
    pub dir: std::path::PathBuf,
    pub what: String,
}

/// Space held on a file system for the one write a full disk must not cost: a result just
/// measured. An unnamed file (`O_TMPFILE`, or created and unlinked at once) whose blocks are
/// allocated up front (`posix_fallocate`: taken, not just promised); [`SpaceReserve::release`]
/// closes it, which gives them back. Having no name, it is freed however the process ends and
/// never shows in a folder. Best effort on file systems that compress or deduplicate zeros,
/// where an allocation may hold less than its size.
#[derive(Debug)]
pub struct SpaceReserve {
    file: std::sync::Mutex<Option<std::fs::File>>,
    bytes: u64,
}

impl SpaceReserve {
    /// Allocate `bytes` on the file system of `dir`.
    pub fn hold(dir: &Path, bytes: u64) -> anyhow::Result<SpaceReserve> {
        use std::os::fd::AsRawFd;
        let file = tempfile::tempfile_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        let len = libc::off_t::try_from(bytes).context("reserve size")?;
        // SAFETY: allocating blocks for a file descriptor we own; returns an errno value.
        let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if code != 0 {
            return Err(
                anyhow::Error::new(std::io::Error::from_raw_os_error(code)).context(format!(
                    "reserving {} MiB in {}",
                    bytes >> 20,
                    dir.display()
                )),
            );
        }
        Ok(SpaceReserve {
            file: std::sync::Mutex::new(Some(file)),
            bytes,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Free the reserved space; `true` the first time.
    pub fn release(&self) -> bool {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.take().is_some()
    }
}

/// [`write_json_new`], and should the disk be full, again into the space `reserve` held:
/// `Ok(true)` when the value went into the reserve (none is left, and the caller should stop
/// writing). An `Err` means the value is not on disk.
pub fn write_json_new_reserved<T: serde::Serialize>(
    path: &Path,
    value: &T,
    reserve: Option<&SpaceReserve>,
) -> anyhow::Result<bool> {
    match write_json_new(path, value) {
        Ok(()) => Ok(false),
        Err(e) if is_disk_full(&e) && reserve.is_some_and(SpaceReserve::release) => {
            write_json_new(path, value).map_err(|again| {
                again.context(format!(
                    "no room even in the {} MiB held in reserve",
                    reserve.map_or(0, |r| r.bytes() >> 20)
                ))
            })?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Check that files can be created in `dir` (creating it if needed), by creating one.
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("{} is not writable", dir.display()))?;
    Ok(())
}

/// Write `value` as pretty JSON to `path`, atomically, refusing to replace an existing file.
///
/// The temp file lives in the same folder so the final step is a same-filesystem link;
/// `hard_link` (unlike `rename`) fails when the destination exists, which is what makes
/// "never overwrite" race-free.
pub fn write_json_new<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    // Streamed into the temp file: a 100,000-request result never exists twice in memory.
    write_new_with(path, |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer_pretty(&mut w, value)?;
        w.flush()?;
        Ok(())
    })
}

/// Like [`write_json_new`] for raw bytes.
pub fn write_bytes_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_new_with(path, |mut file| Ok(file.write_all(bytes)?))
}

/// Temp files of a write in progress start with this; one that stays behind was cut short (a
/// SIGKILL mid-write) and holds nothing anyone reads (`vbench clean` removes it).
const PARTIAL_PREFIX: &str = ".vbench-partial-";

/// Whether a file name is an unfinished write's temp file.
pub fn is_partial_write(name: &str) -> bool {
    name.starts_with(PARTIAL_PREFIX)
}

/// The shared mechanism: fill a temp file beside `path`, fsync it, link it into place.
fn write_new_with(
    path: &Path,
    fill: impl FnOnce(&std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if path.exists() {
        bail!("refusing to overwrite existing file {}", path.display());
    }
    let tmp = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    fill(tmp.as_file())
        .and_then(|_| Ok(tmp.as_file().sync_all()?))
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::hard_link(tmp.path(), path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("refusing to overwrite existing file {}", path.display())
        } else {
            anyhow::Error::new(e).context(format!("writing {}", path.display()))
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_write_to_same_path_is_refused_and_keeps_first_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_json_new(&path, &serde_json::json!({"a": 1})).unwrap();
        let err = write_json_new(&path, &serde_json::json!({"a": 2})).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["a"], 1);
        // no temp files left behind
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_reserve_takes_its_blocks_without_a_name_and_gives_them_back_once() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let reserve = SpaceReserve::hold(dir.path(), 3 << 20).unwrap();
        let meta = reserve
            .file
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .metadata()
            .unwrap();
        assert_eq!(meta.len(), 3 << 20);
        assert!(meta.blocks() * 512 >= 3 << 20, "allocated, not sparse");
        assert_eq!(meta.nlink(), 0, "unnamed: freed however the process ends");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(reserve.release());
        assert!(reserve.file.lock().unwrap().is_none(), "closed");
        assert!(!reserve.release(), "only once");
    }

    #[test]
    fn a_full_disk_is_recognised_through_context_and_serde() {
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = anyhow::Error::new(serde_json::Error::io(enospc)).context("writing r.json");
        assert!(is_disk_full(&e));
        let quota = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EDQUOT));
        assert!(is_disk_full(&quota.context("x")));
        let other = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(!is_disk_full(&other));
        let typed = anyhow::Error::new(DiskFull {
            dir: "/r".into(),
            what: "x".into(),
        });
        assert!(is_disk_full(&typed.context("y")));
    }
}
