//! Local-directory segment store: `<root>/<segment>/<cuboid>/<block>.arrow` and
//! `<root>/<segment>/<cuboid>/manifest.json`. Each file is written via temp file + rename, so a
//! crash never leaves a torn file; `sync_segment` fsyncs the whole segment before READY.
//!
//! Global dictionaries: `<root>/_dict/<dict>/<object>` and `<root>/_dict/<dict>/manifest`
//! (`_dict` is no segment id, so listing and deleting segments never touch it). The manifest
//! is swapped under an exclusive lock on `<root>/_dict/<dict>/.lock`, which serializes writers
//! of all processes sharing the directory.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{validate_dict_name, validate_segment_id, SegmentStore};
use crate::error::{Error, Result};
use crate::fsutil::{sync_dir, sync_tree, write_atomic, write_atomic_with};
use crate::model::CuboidId;

/// The directory of all global dictionaries (not a valid segment id).
const DICT_DIR: &str = "_dict";
const DICT_MANIFEST: &str = "manifest";

#[derive(Debug)]
pub struct LocalSegmentStore {
    root: PathBuf,
}

impl LocalSegmentStore {
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root)
            .map_err(|e| Error::io_path("create storage directory", &root, e))?;
        Ok(LocalSegmentStore { root })
    }

    fn segment_dir(&self, segment: &str) -> Result<PathBuf> {
        validate_segment_id(segment)?;
        Ok(self.root.join(segment))
    }

    fn cuboid_dir(&self, segment: &str, cuboid: CuboidId) -> Result<PathBuf> {
        Ok(self.segment_dir(segment)?.join(cuboid.to_string()))
    }

    /// The directory of dictionary `dict`, created (durably) on first use.
    fn dict_dir(&self, dict: &str) -> Result<PathBuf> {
        validate_dict_name("dictionary", dict)?;
        let parent = self.root.join(DICT_DIR);
        let dir = parent.join(dict);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| Error::io_path("create directory", &dir, e))?;
            sync_dir(&parent)?;
            sync_dir(&self.root)?;
        }
        Ok(dir)
    }

    fn read(&self, path: &Path, what: impl FnOnce() -> String) -> Result<Vec<u8>> {
        fs::read(path).map_err(|e| missing_or_io("read", path, e, what))
    }

    fn block_path(&self, segment: &str, cuboid: CuboidId, block: u32) -> Result<PathBuf> {
        Ok(self
            .cuboid_dir(segment, cuboid)?
            .join(format!("{block}.arrow")))
    }
}

/// A missing file is [`Error::NotFound`] naming `what`; any other failure an I/O error.
fn missing_or_io(
    action: &'static str,
    path: &Path,
    e: std::io::Error,
    what: impl FnOnce() -> String,
) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound {
            kind: "stored",
            name: what(),
        }
    } else {
        Error::io_path(action, path, e)
    }
}

fn block_name(segment: &str, cuboid: CuboidId, block: u32) -> String {
    format!("block {block} of cuboid {cuboid} in segment {segment}")
}

impl SegmentStore for LocalSegmentStore {
    fn put_block(&self, segment: &str, cuboid: CuboidId, block: u32, data: &[u8]) -> Result<()> {
        write_atomic_with(&self.block_path(segment, cuboid, block)?, data, false)
    }

    fn get_block(&self, segment: &str, cuboid: CuboidId, block: u32) -> Result<Vec<u8>> {
        self.read(&self.block_path(segment, cuboid, block)?, || {
            block_name(segment, cuboid, block)
        })
    }

    fn get_block_ranges(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Bytes>> {
        let p = self.block_path(segment, cuboid, block)?;
        let file = fs::File::open(&p)
            .map_err(|e| missing_or_io("open", &p, e, || block_name(segment, cuboid, block)))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io_path("stat", &p, e))?
            .len();
        ranges
            .iter()
            .map(|&(at, len)| {
                // Past the end comes back short: the caller's checksum names the damage.
                let len = len.min(size.saturating_sub(at));
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, at)
                    .map_err(|e| Error::io_path("read", &p, e))?;
                Ok(Bytes::from(buf))
            })
            .collect()
    }

    fn reads_ranges(&self) -> bool {
        true
    }

    fn put_manifest(&self, segment: &str, cuboid: CuboidId, data: &[u8]) -> Result<()> {
        let p = self.cuboid_dir(segment, cuboid)?.join("manifest.json");
        write_atomic_with(&p, data, false)
    }

    fn get_manifest(&self, segment: &str, cuboid: CuboidId) -> Result<Vec<u8>> {
        let p = self.cuboid_dir(segment, cuboid)?.join("manifest.json");
        self.read(&p, || {
            format!("manifest of cuboid {cuboid} in segment {segment}")
        })
    }

    fn sync_segment(&self, segment: &str) -> Result<()> {
        sync_tree(&self.segment_dir(segment)?)?;
        sync_dir(&self.root)
    }

    fn delete_segment(&self, segment: &str) -> Result<()> {
        let dir = self.segment_dir(segment)?;
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.root),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io_path("delete segment", &dir, e)),
        }
    }

    fn list_segments(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root).map_err(|e| Error::io_path("list", &self.root, e))? {
            let e = e.map_err(|e| Error::io_path("list", &self.root, e))?;
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().is_dir() && validate_segment_id(&name).is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn put_dict_object(&self, dict: &str, name: &str, data: &[u8]) -> Result<()> {
        validate_dict_name("dictionary object", name)?;
        write_atomic(&self.dict_dir(dict)?.join(name), data)
    }

    fn get_dict_object(&self, dict: &str, name: &str) -> Result<Vec<u8>> {
        validate_dict_name("dictionary object", name)?;
        let p = self.dict_dir(dict)?.join(name);
        self.read(&p, || format!("object {name} of dictionary {dict}"))
    }

    fn get_dict_manifest(&self, dict: &str) -> Result<Option<Vec<u8>>> {
        let p = self.dict_dir(dict)?.join(DICT_MANIFEST);
        match self.read(&p, String::new) {
            Ok(b) => Ok(Some(b)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn swap_dict_manifest(&self, dict: &str, expected: Option<&[u8]>, data: &[u8]) -> Result<bool> {
        let dir = self.dict_dir(dict)?;
        let lock_path = dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io_path("open lock file", &lock_path, e))?;
        lock.lock()
            .map_err(|e| Error::io_path("lock", &lock_path, e))?;
        let current = self.get_dict_manifest(dict)?;
        let won = current.as_deref() == expected;
        if won {
            write_atomic(&dir.join(DICT_MANIFEST), data)?;
        }
        drop(lock); // closing the file releases the lock
        Ok(won)
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}
