//! Durable file writes: a temp file in the target's directory, fsync, rename, fsync the
//! directory. A reader sees the old file or the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `data` to `path` atomically and durably, creating parent directories.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, true)
}

/// Like [`write_atomic`]; with `durable = false` skips the fsyncs (the caller syncs later, as
/// segment builds do before a segment turns READY).
pub fn write_atomic_with(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        Error::io_path(
            "no parent directory for",
            path,
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    fs::create_dir_all(dir).map_err(|e| Error::io_path("create directory", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{}-{}", name, uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io_path("create", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| Error::io_path("write", &tmp, e))?;
        if durable {
            f.sync_all().map_err(|e| Error::io_path("fsync", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| Error::io_path("rename onto", path, e))?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so that renames and creations in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io_path("fsync directory", dir, e))
}

/// fsyncs every file and directory under `root` (used before a segment turns READY).
pub fn sync_tree(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(root).map_err(|e| Error::io_path("read directory", root, e))? {
        let entry = entry.map_err(|e| Error::io_path("read directory", root, e))?;
        let p = entry.path();
        let ty = entry
            .file_type()
            .map_err(|e| Error::io_path("stat", &p, e))?;
        if ty.is_dir() {
            sync_tree(&p)?;
        } else {
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io_path("fsync", &p, e))?;
        }
    }
    sync_dir(root)
}

/// The directory a local store URL names: a plain path or `file://PATH`. Other schemes are
/// refused with a message naming the key.
pub fn local_dir_of_url<'a>(key: &str, url: &'a str) -> Result<&'a str> {
    if let Some((scheme, _)) = url.split_once("://") {
        if scheme != "file" && !scheme.contains(['/', '@']) {
            return Err(Error::invalid(
                format!("{key}={url}"),
                format!("unknown scheme {scheme}://; use a directory, file://PATH or TABLE@hbase://HOST:PORT"),
            ));
        }
    }
    Ok(url.strip_prefix("file://").unwrap_or(url))
}
