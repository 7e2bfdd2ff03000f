//! Host-wide exclusive locks: an `flock` on a small file that also carries a line or two
//! about its holder (pid, run), so the process refused can say who has it. The kernel
//! releases a lock however its process ends (SIGKILL included), so nothing stale is ever
//! held; the file itself stays and is reused.
//!
//! Used for the run folder (one `apply` per run), local ports and GPUs (one vbench each).

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// A lock this process holds until it is dropped.
#[derive(Debug)]
pub struct Flock {
    file: std::fs::File,
}

/// What trying a lock found.
#[derive(Debug)]
pub enum Attempt {
    Held(Flock),
    /// Another process (or another open of the file in this one) holds it; `record` is what
    /// that holder wrote.
    Taken {
        record: String,
    },
}

/// Holder records are a few short lines; more is not read.
const RECORD_LIMIT: u64 = 4096;

impl Flock {
    /// Open `path` (creating it) and lock it without waiting. A file another user made and
    /// this one may not write is opened read-only, which still locks: users keep apart too.
    ///
    /// Only a regular file is a lock: a symbolic link is not followed (whatever it points at
    /// would be overwritten by the record) and a FIFO or device is refused (its reads would
    /// block forever), each with an error that names the path.
    pub fn try_take(path: &Path) -> std::io::Result<Attempt> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(flags)
            .open(path)
            .or_else(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => Err(e),
                _ => std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(flags)
                    .open(path),
            })
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link, not a lock file (remove it)",
                        path.display()
                    ),
                ),
                _ => e,
            })?;
        let kind = file.metadata()?.file_type();
        if !kind.is_file() {
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_dir() {
                "a folder"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is {what}, not a lock file (remove it)", path.display()),
            ));
        }
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(Attempt::Taken {
                record: read_record(&file),
            });
        }
        Ok(Attempt::Held(Flock { file }))
    }

    /// What the last holder wrote (this one, once it has written).
    pub fn record(&self) -> String {
        read_record(&self.file)
    }

    /// Replace the record with `text`, flushed to disk.
    pub fn set_record(&mut self, text: &str) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(text.as_bytes())?;
        self.file.sync_all()
    }
}

fn read_record(mut file: &std::fs::File) -> String {
    let mut record = String::new();
    let _ = file.rewind();
    let _ = file.take(RECORD_LIMIT).read_to_string(&mut record);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock path that is a symbolic link is not followed (the file it points at keeps its
    /// bytes), and a FIFO is refused at once instead of blocking the reader forever.
    #[test]
    fn only_a_regular_file_is_taken_as_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("results.json");
        std::fs::write(&victim, "precious").unwrap();
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = Flock::try_take(&link).unwrap_err().to_string();
        assert!(e.contains("link.lock is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let fifo = dir.path().join("fifo.lock");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = Flock::try_take(&fifo).unwrap_err().to_string();
        assert!(e.contains("fifo.lock is a FIFO"), "{e}");
        let folder = dir.path().join("dir.lock");
        std::fs::create_dir(&folder).unwrap();
        assert!(Flock::try_take(&folder).is_err());
    }

    #[test]
    fn a_second_taker_is_refused_and_reads_the_holders_record_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let Attempt::Held(mut first) = Flock::try_take(&path).unwrap() else {
            panic!("a new lock is free");
        };
        first.set_record("pid 1\nrun a\n").unwrap();
        // flock is per open file: a second open in this process conflicts like another's.
        match Flock::try_take(&path).unwrap() {
            Attempt::Taken { record } => assert_eq!(record, "pid 1\nrun a\n"),
            Attempt::Held(_) => panic!("taken twice"),
        }
        drop(first);
        let Attempt::Held(mut again) = Flock::try_take(&path).unwrap() else {
            panic!("released on drop");
        };
        assert_eq!(
            again.record(),
            "pid 1\nrun a\n",
            "the last holder's, until replaced"
        );
        again.set_record("pid 2\n").unwrap();
        assert_eq!(again.record(), "pid 2\n");
    }
}
