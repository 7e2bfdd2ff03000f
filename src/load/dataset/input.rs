//! Reading dataset files with bounds: every file a dataset comes from (ShareGPT, JSONL prompts,
//! ShareGPT sessions, traces) is opened here. A file must be a regular, non-empty file of at
//! most [`MAX_FILE_BYTES`] (a FIFO, a device such as `/dev/zero` or a huge file would hang or
//! exhaust memory), and line-oriented formats read lines of a bounded length.

use std::io::{BufRead, Read};
use std::path::Path;

use anyhow::{bail, Context};

/// Dataset files larger than this are refused (public ShareGPT and trace files are far
/// smaller).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

/// `path`, checked, as a buffered reader; `what` names the file in errors ("dataset file",
/// "trace file").
pub fn open(path: &Path, what: &str) -> anyhow::Result<std::io::BufReader<std::fs::File>> {
    let (file, meta) = crate::bounded_file::open_bounded(path, MAX_FILE_BYTES)
        .map_err(|why| anyhow::anyhow!("{what} {}: {why}", path.display()))?;
    if meta.len() == 0 {
        bail!("{what} {} is empty", path.display());
    }
    Ok(std::io::BufReader::with_capacity(1 << 20, file))
}

/// A text file's lines, each at most `max_line` bytes.
pub struct BoundedLines<'p> {
    path: &'p Path,
    /// What a file with a longer line is not, for the error ("a mooncake trace").
    kind: String,
    max_line: usize,
    reader: std::io::BufReader<std::fs::File>,
    buf: Vec<u8>,
    line: usize,
}

impl<'p> BoundedLines<'p> {
    /// Open `path` ([`open`]) to read lines of at most `max_line` bytes; `what` names the file,
    /// `kind` what it should be.
    pub fn open(path: &'p Path, what: &str, kind: &str, max_line: usize) -> anyhow::Result<Self> {
        Ok(BoundedLines {
            path,
            kind: kind.to_owned(),
            max_line,
            reader: open(path, what)?,
            buf: Vec::new(),
            line: 0,
        })
    }

    /// The next line (1-based number, text without its line ending); None at the end.
    pub fn next_line(&mut self) -> anyhow::Result<Option<(usize, &str)>> {
        self.buf.clear();
        let path = self.path.display();
        let read = (&mut self.reader)
            .take(self.max_line as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .with_context(|| format!("{path}:{}: cannot read", self.line + 1))?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        if self.buf.strip_suffix(b"\n").unwrap_or(&self.buf).len() > self.max_line {
            bail!(
                "{path}:{line}: line longer than {} bytes; not {}",
                self.max_line,
                self.kind
            );
        }
        let text = std::str::from_utf8(&self.buf)
            .map_err(|_| anyhow::anyhow!("{path}:{line}: not UTF-8 text"))?;
        Ok(Some((line, text.trim_end_matches(['\n', '\r']))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_that_would_hang_or_exhaust_memory_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let e = open(dir.path(), "dataset file").unwrap_err().to_string();
        assert!(e.contains(": not a regular file (a folder)"), "{e}");
        let e = open(Path::new("/dev/zero"), "dataset file")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero: not a regular file (a device)"),
            "{e}"
        );
        // A FIFO: opening it would wait for a writer forever.
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path in our own temp folder.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open(&fifo, "dataset file").unwrap_err().to_string();
        assert!(e.contains("fifo: not a regular file (a FIFO)"), "{e}");
        let empty = dir.path().join("e.json");
        std::fs::write(&empty, "").unwrap();
        let e = open(&empty, "dataset file").unwrap_err().to_string();
        assert!(e.contains("e.json is empty"), "{e}");
        // A sparse file just over the limit: no disk is used.
        let huge = dir.path().join("huge.jsonl");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let e = open(&huge, "dataset file").unwrap_err().to_string();
        assert!(
            e.contains("huge.jsonl: 4096 MiB, more than the 4096 MiB vbench reads"),
            "{e}"
        );
    }

    #[test]
    fn a_line_longer_than_the_bound_is_an_error_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.jsonl");
        std::fs::write(&f, format!("short\r\n{}\nafter\n", "x".repeat(11))).unwrap();
        let mut lines = BoundedLines::open(&f, "dataset file", "a JSONL prompt file", 10).unwrap();
        assert_eq!(lines.next_line().unwrap(), Some((1, "short")));
        let e = lines.next_line().unwrap_err().to_string();
        assert!(
            e.ends_with("p.jsonl:2: line longer than 10 bytes; not a JSONL prompt file"),
            "{e}"
        );
        std::fs::write(&f, "a\nb").unwrap();
        let mut lines = BoundedLines::open(&f, "dataset file", "x", 10).unwrap();
        assert_eq!(lines.next_line().unwrap(), Some((1, "a")));
        assert_eq!(lines.next_line().unwrap(), Some((2, "b")));
        assert_eq!(lines.next_line().unwrap(), None);
    }
}
