//! Local-directory resource store. Each resource is one file under `<root>/res/` holding a
//! small header (magic, version, CRC-32 of the content) and the content; writes are atomic
//! (temp file + fsync + rename) and serialized between threads and processes by an exclusive
//! lock on `<root>/.lock`. Reads take no lock: a rename is atomic, so they see a whole file.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::{validate_path, Resource, ResourceStore};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;

const MAGIC: &[u8; 4] = b"QRS1";
const HEADER_LEN: usize = 4 + 8 + 4;

#[derive(Debug)]
pub struct LocalResourceStore {
    root: PathBuf,
}

impl LocalResourceStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join("res"))
            .map_err(|e| Error::io_path("create metadata directory", &root, e))?;
        Ok(LocalResourceStore { root })
    }

    fn file_of(&self, path: &str) -> Result<PathBuf> {
        validate_path(path)?;
        Ok(self.root.join("res").join(&path[1..]))
    }

    /// Runs `f` holding the store's exclusive write lock.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock_path = self.root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io_path("open lock file", &lock_path, e))?;
        lock.lock()
            .map_err(|e| Error::io_path("lock", &lock_path, e))?;
        let out = f();
        drop(lock); // closing the file releases the lock
        out
    }

    fn read_file(&self, path: &str, file: &Path) -> Result<Option<Resource>> {
        let bytes = match fs::read(file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io_path("read", file, e)),
        };
        decode(path, &bytes).map(Some)
    }

    fn bump_store_version(&self) -> Result<u64> {
        let next = self.read_store_version()? + 1;
        write_atomic(&self.root.join(".version"), next.to_string().as_bytes())?;
        Ok(next)
    }

    fn read_store_version(&self) -> Result<u64> {
        let p = self.root.join(".version");
        match fs::read_to_string(&p) {
            Ok(s) => s.trim().parse().map_err(|_| {
                Error::corrupt(
                    format!("store version file {}", p.display()),
                    format!("{s:?} is not a number"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io_path("read", &p, e)),
        }
    }
}

fn encode(version: u64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn decode(path: &str, bytes: &[u8]) -> Result<Resource> {
    let what = || format!("metadata resource {path}");
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(Error::corrupt(what(), "bad header"));
    }
    let version = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let data = &bytes[HEADER_LEN..];
    if crc32fast::hash(data) != crc {
        return Err(Error::corrupt(what(), "checksum mismatch"));
    }
    Ok(Resource {
        data: data.to_vec(),
        version,
    })
}

impl ResourceStore for LocalResourceStore {
    fn get(&self, path: &str) -> Result<Option<Resource>> {
        let file = self.file_of(path)?;
        self.read_file(path, &file)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        let dir = if prefix.is_empty() {
            self.root.join("res")
        } else {
            self.file_of(prefix)?
        };
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("list", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io_path("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || entry.path().is_dir() {
                continue;
            }
            out.push(format!("{prefix}/{name}"));
        }
        out.sort();
        Ok(out)
    }

    fn list_all(&self) -> Result<Vec<String>> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io_path("list", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io_path("list", dir, e))?;
                let name = entry.file_name().to_string_lossy().to_string();
                // Temp files of writes in progress start with '.'.
                if name.starts_with('.') {
                    continue;
                }
                let path = format!("{prefix}/{name}");
                if entry.path().is_dir() {
                    walk(&entry.path(), &path, out)?;
                } else {
                    out.push(path);
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(&self.root.join("res"), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    fn check_and_put(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        let file = self.file_of(path)?;
        self.locked(|| {
            let actual = self.read_file(path, &file)?.map(|r| r.version);
            if actual != expected {
                return Err(Error::Conflict {
                    path: path.to_string(),
                    expected,
                    actual,
                });
            }
            let version = actual.unwrap_or(0) + 1;
            write_atomic(&file, &encode(version, data))?;
            if super::moves_store_version(path) {
                self.bump_store_version()?;
            }
            Ok(version)
        })
    }

    fn check_and_delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        let file = self.file_of(path)?;
        self.locked(|| {
            let actual = self.read_file(path, &file)?.map(|r| r.version);
            if actual.is_none() {
                return Ok(());
            }
            if expected.is_some() && actual != expected {
                return Err(Error::Conflict {
                    path: path.to_string(),
                    expected,
                    actual,
                });
            }
            fs::remove_file(&file).map_err(|e| Error::io_path("delete", &file, e))?;
            if let Some(dir) = file.parent() {
                crate::fsutil::sync_dir(dir)?;
            }
            if super::moves_store_version(path) {
                self.bump_store_version()?;
            }
            Ok(())
        })
    }

    fn store_version(&self) -> Result<u64> {
        self.read_store_version()
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn put_get_list_delete_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalResourceStore::open(dir.path()).unwrap();
        assert_eq!(s.get("/cube/a.json").unwrap(), None);
        let v0 = s.store_version().unwrap();
        assert_eq!(s.check_and_put("/cube/a.json", b"1", None).unwrap(), 1);
        assert_eq!(s.put("/cube/a.json", b"2").unwrap(), 2);
        s.put("/cube/b.json", b"x").unwrap();
        s.put("/model_desc/m.json", b"y").unwrap();
        assert_eq!(
            s.get("/cube/a.json").unwrap(),
            Some(Resource {
                data: b"2".to_vec(),
                version: 2
            })
        );
        assert_eq!(
            s.list("/cube").unwrap(),
            vec!["/cube/a.json", "/cube/b.json"]
        );
        assert!(s.store_version().unwrap() >= v0 + 4);
        let err = s.check_and_put("/cube/a.json", b"3", Some(1)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    actual: Some(2),
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            s.check_and_delete("/cube/a.json", Some(1)),
            Err(Error::Conflict { .. })
        ));
        s.check_and_delete("/cube/a.json", Some(2)).unwrap();
        assert_eq!(s.get("/cube/a.json").unwrap(), None);
        assert_eq!(s.list("/cube").unwrap(), vec!["/cube/b.json"]);
    }

    #[test]
    fn hostile_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalResourceStore::open(dir.path()).unwrap();
        for p in [
            "",
            "cube/a",
            "/../x",
            "/cube/../../etc/passwd",
            "/cube//a",
            "/.lock",
            "/a b",
        ] {
            let err = s.put(p, b"x").unwrap_err();
            assert!(matches!(err, Error::InvalidName { .. }), "{p}: {err}");
        }
        let long = format!("/{}", "a".repeat(10_000));
        assert!(s.get(&long).is_err());
    }

    #[test]
    fn corrupt_resource_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalResourceStore::open(dir.path()).unwrap();
        s.put("/cube/a.json", b"hello").unwrap();
        let f = dir.path().join("res/cube/a.json");
        let mut bytes = fs::read(&f).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&f, bytes).unwrap();
        let err = s.get("/cube/a.json").unwrap_err().to_string();
        assert!(
            err.contains("/cube/a.json") && err.contains("checksum"),
            "{err}"
        );
    }

    #[test]
    fn racing_check_and_put_has_exactly_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(LocalResourceStore::open(dir.path()).unwrap());
        s.put("/cube/race.json", b"start").unwrap();
        for _round in 0..20 {
            let base = s.get("/cube/race.json").unwrap().unwrap().version;
            let n = 8;
            let barrier = Arc::new(Barrier::new(n));
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let s = s.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        s.check_and_put("/cube/race.json", format!("w{i}").as_bytes(), Some(base))
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let winners: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(winners.len(), 1, "{results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert!(matches!(e, Error::Conflict { .. }), "{e}");
                }
            }
            let now = s.get("/cube/race.json").unwrap().unwrap();
            assert_eq!(now.version, base + 1);
            assert_eq!(now.data, format!("w{}", winners[0]).into_bytes());
        }
    }
}
