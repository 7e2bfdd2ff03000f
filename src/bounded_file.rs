//! Opening files that come from outside (datasets, manifests, result files): only regular
//! files of a bounded size, so a FIFO, a device or a huge file can neither hang a reader nor
//! exhaust its memory.

use std::io::Read;
use std::path::Path;

/// `path` opened for reading if it is a regular file (symlinks followed) of at most `limit`
/// bytes, with its metadata; otherwise why not. Opened non-blocking and checked again on the
/// open file, so a FIFO swapped in after the first check cannot block the reader either.
pub fn open_bounded(path: &Path, limit: u64) -> Result<(std::fs::File, std::fs::Metadata), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let check = |meta: &std::fs::Metadata| -> Result<(), String> {
        if !meta.is_file() {
            return Err(format!("not a regular file ({})", kind_of(meta)));
        }
        if meta.len() > limit {
            return Err(format!(
                "{} MiB, more than the {} MiB vbench reads",
                meta.len() >> 20,
                limit >> 20
            ));
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    check(&meta)?;
    Ok((file, meta))
}

/// Read `path` whole if it is a regular file of at most `limit` bytes ([`open_bounded`]).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let (file, meta) = open_bounded(path, limit)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("grew past the {} MiB vbench reads", limit >> 20));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
}

/// The largest small text file vbench reads: a manifest, a template, a simulator profile, a
/// model's config.json.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}
