//! Backup and restore of the metadata store, across backends (local directory ↔ HBase).
//!
//! A backup is a directory: `manifest.json` (format, source store, store version, and per
//! resource its path, version, size and SHA-256) and `resources/`, one file per resource at
//! its path (`resources/cube_desc/ssb_cube.json`). It is written into a temp directory next
//! to the target and renamed into place, so a backup directory is complete or absent.
//!
//! The stores have no snapshot read, so a backup reads everything, then checks that nothing
//! moved (the store version, the list of paths and every resource's version, read again) and
//! starts over when something did: what it writes is the store as it was at one moment.
//!
//! A backup holds metadata only. Segment data stays in `kylin.storage.url`; cube instances in
//! the backup name their segments, so the restored store is queried with a storage URL that
//! holds those segments (the same one, or a copy of it). The job-engine lease (`/lease/`), the
//! audit log (`/audit/`) and the query history (`/query_history/`) are runtime state and are
//! left out.
//!
//! Restore writes into an empty store only, after verifying every checksum; versions start
//! again at 1 there.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{validate_path, Resource, ResourceStore};
use crate::error::{Error, Result};
use crate::fsutil::{sync_dir, sync_tree, write_atomic_with};

pub const MANIFEST_FILE: &str = "manifest.json";
const RESOURCES_DIR: &str = "resources";
const FORMAT: &str = "qilin-metadata-backup";
const FORMAT_VERSION: u32 = 1;
/// How many times a backup starts over because the store changed while it read.
const MAX_READ_ATTEMPTS: usize = 20;
/// Folders of runtime state, not backed up (and ignored when checking a store is empty): the
/// lease, the audit log and the query history (appended to by every server without moving the
/// store version, so they could never be read at one moment).
const RUNTIME_FOLDERS: [&str; 3] = ["/lease/", "/audit/", "/query_history/"];
/// Restore order: what later resources refer to first, so a server watching the store while
/// it fills sees cubes after their models and tables.
const RESTORE_ORDER: [&str; 5] = [
    "/project/",
    "/table/",
    "/model_desc/",
    "/cube_desc/",
    "/cube/",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The store backed up (`local:/path`, `TABLE@hbase://HOST:PORT`).
    pub source: String,
    /// Its store version when read.
    pub store_version: u64,
    pub created_utc: String,
    pub resources: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub path: String,
    /// The resource's version in the source store.
    pub version: u64,
    pub size: u64,
    pub sha256: String,
}

/// A resource's path and bytes, as read from a backup.
pub type BackedUpResource = (String, Vec<u8>);

/// What a backup or restore did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub store_version: u64,
    pub resources: usize,
    pub bytes: u64,
}

fn is_runtime(path: &str) -> bool {
    RUNTIME_FOLDERS.iter().any(|f| path.starts_with(f))
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Every resource (runtime state aside) as of one moment, with that moment's store version.
fn consistent_read(store: &dyn ResourceStore) -> Result<(u64, Vec<(String, Resource)>)> {
    'attempt: for attempt in 1..=MAX_READ_ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(std::time::Duration::from_millis(20 * attempt as u64));
        }
        let version = store.store_version()?;
        let paths: Vec<String> = store
            .list_all()?
            .into_iter()
            .filter(|p| !is_runtime(p))
            .collect();
        let mut read = Vec::with_capacity(paths.len());
        for p in &paths {
            match store.get(p)? {
                Some(r) => read.push((p.clone(), r)),
                None => continue 'attempt, // deleted while we read
            }
        }
        // Versions only grow, so a resource whose version is the same now as when it was
        // read had that content the whole time in between: all of them did at once.
        if store.store_version()? != version {
            continue;
        }
        let again: Vec<String> = store
            .list_all()?
            .into_iter()
            .filter(|p| !is_runtime(p))
            .collect();
        if again != paths {
            continue;
        }
        for (p, r) in &read {
            if store.get(p)?.map(|now| now.version) != Some(r.version) {
                continue 'attempt;
            }
        }
        return Ok((version, read));
    }
    Err(Error::Refused(format!(
        "{} kept changing during {MAX_READ_ATTEMPTS} attempts to read it consistently; retry when it is quieter",
        store.describe()
    )))
}

/// Writes a backup of `store` into `dir`, which must not exist or be empty.
pub fn backup(store: &dyn ResourceStore, dir: &Path) -> Result<Summary> {
    let what = || format!("backup directory {}", dir.display());
    if dir.exists() {
        let empty = fs::read_dir(dir)
            .map_err(|e| Error::io_path("read", dir, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::invalid(
                what(),
                "exists and is not empty; give a new directory",
            ));
        }
    }
    let name = dir
        .file_name()
        .ok_or_else(|| Error::invalid(what(), "has no directory name"))?
        .to_string_lossy()
        .to_string();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io_path("create directory", &parent, e))?;

    let (store_version, resources) = consistent_read(store)?;
    let mut entries = Vec::with_capacity(resources.len());
    let tmp = parent.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        for (path, r) in &resources {
            write_atomic_with(&tmp.join(RESOURCES_DIR).join(&path[1..]), &r.data, false)?;
            entries.push(ManifestEntry {
                path: path.clone(),
                version: r.version,
                size: r.data.len() as u64,
                sha256: sha256_hex(&r.data),
            });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            source: store.describe(),
            store_version,
            created_utc: chrono::Utc::now().to_rfc3339(),
            resources: entries.clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_atomic_with(&tmp.join(MANIFEST_FILE), &json, false)?;
        sync_tree(&tmp)?;
        if dir.exists() {
            fs::remove_dir(dir).map_err(|e| Error::io_path("replace empty directory", dir, e))?;
        }
        fs::rename(&tmp, dir).map_err(|e| Error::io_path("rename backup into", dir, e))?;
        sync_dir(&parent)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result?;
    Ok(Summary {
        store_version,
        resources: entries.len(),
        bytes: entries.iter().map(|e| e.size).sum(),
    })
}

/// Reads a backup and checks it whole: the manifest, every file's size and SHA-256, and that
/// no file is missing or extra. Returns the manifest and the resources' bytes.
pub fn verify(dir: &Path) -> Result<(Manifest, Vec<BackedUpResource>)> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = fs::read(&manifest_path).map_err(|e| Error::io_path("read", &manifest_path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        what: manifest_path.display().to_string(),
        source,
    })?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        return Err(Error::invalid(
            manifest_path.display().to_string(),
            format!(
                "format {} version {} is not a Qilin metadata backup ({FORMAT} version {FORMAT_VERSION})",
                manifest.format, manifest.format_version
            ),
        ));
    }
    let mut data = Vec::with_capacity(manifest.resources.len());
    for e in &manifest.resources {
        validate_path(&e.path)?;
        let file = dir.join(RESOURCES_DIR).join(&e.path[1..]);
        let what = || format!("backup {} resource {}", dir.display(), e.path);
        let bytes = match fs::read(&file) {
            Ok(b) => b,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::corrupt(
                    what(),
                    format!("{} is missing", file.display()),
                ))
            }
            Err(err) => return Err(Error::io_path("read", &file, err)),
        };
        if bytes.len() as u64 != e.size || sha256_hex(&bytes) != e.sha256 {
            return Err(Error::corrupt(
                what(),
                format!(
                    "{} does not match the manifest (size {} vs {}, or SHA-256)",
                    file.display(),
                    bytes.len(),
                    e.size
                ),
            ));
        }
        data.push((e.path.clone(), bytes));
    }
    let mut on_disk = Vec::new();
    list_files(&dir.join(RESOURCES_DIR), "", &mut on_disk)?;
    if let Some(extra) = on_disk
        .iter()
        .find(|p| !manifest.resources.iter().any(|e| &e.path == *p))
    {
        return Err(Error::corrupt(
            format!("backup {}", dir.display()),
            format!("resource file {extra} is not in the manifest"),
        ));
    }
    Ok((manifest, data))
}

fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io_path("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io_path("list", dir, e))?;
        let path = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() {
            list_files(&entry.path(), &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Restores a backup into `store`, which must hold no resource (runtime state aside). Every
/// checksum is verified before the first write; a failed write removes what was written.
pub fn restore(store: &dyn ResourceStore, dir: &Path) -> Result<Summary> {
    let (manifest, mut resources) = verify(dir)?;
    let existing: Vec<String> = store
        .list_all()?
        .into_iter()
        .filter(|p| !is_runtime(p))
        .collect();
    if let Some(first) = existing.first() {
        return Err(Error::Refused(format!(
            "{} is not empty: it holds {first}{}; restore only into an empty metadata store",
            store.describe(),
            match existing.len() {
                1 => String::new(),
                n => format!(" and {} more resource(s)", n - 1),
            }
        )));
    }
    let rank = |p: &str| {
        RESTORE_ORDER
            .iter()
            .position(|f| p.starts_with(f))
            .unwrap_or(RESTORE_ORDER.len())
    };
    resources.sort_by(|(a, _), (b, _)| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let mut written: Vec<(String, u64)> = Vec::new();
    for (path, data) in &resources {
        match store.check_and_put(path, data, None) {
            Ok(v) => written.push((path.clone(), v)),
            Err(e) => {
                for (p, v) in written.iter().rev() {
                    if let Err(undo) = store.check_and_delete(p, Some(*v)) {
                        log::error!("restore failed ({e}); could not remove {p} again: {undo}");
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(Summary {
        store_version: manifest.store_version,
        resources: resources.len(),
        bytes: resources.iter().map(|(_, d)| d.len() as u64).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::LocalResourceStore;

    #[test]
    fn backup_round_trips_and_restore_refuses_damage_and_a_non_empty_store() {
        let tmp = tempfile::tempdir().unwrap();
        let src = LocalResourceStore::open(tmp.path().join("src")).unwrap();
        src.put("/project/p.json", b"{\"name\":\"p\"}").unwrap();
        src.put("/cube/c.json", b"one").unwrap();
        src.put("/cube/c.json", b"two").unwrap();
        src.put("/lease/job_engine.json", b"lease").unwrap();
        src.put("/audit/current.jsonl", b"{}\n").unwrap();
        src.put("/query_history/p/c/current.jsonl", b"{}\n")
            .unwrap();
        let dir = tmp.path().join("backup");
        let s = backup(&src, &dir).unwrap();
        assert_eq!(s.resources, 2);
        let (m, _) = verify(&dir).unwrap();
        assert_eq!(m.store_version, src.store_version().unwrap());
        assert_eq!(
            m.resources
                .iter()
                .map(|e| (e.path.as_str(), e.version))
                .collect::<Vec<_>>(),
            vec![("/cube/c.json", 2), ("/project/p.json", 1)]
        );
        // A second backup into the same (non-empty) directory is refused.
        assert!(backup(&src, &dir)
            .unwrap_err()
            .to_string()
            .contains("not empty"));

        let dst = LocalResourceStore::open(tmp.path().join("dst")).unwrap();
        restore(&dst, &dir).unwrap();
        assert_eq!(dst.get("/cube/c.json").unwrap().unwrap().data, b"two");
        assert_eq!(
            dst.list_all().unwrap(),
            vec!["/cube/c.json", "/project/p.json"]
        );
        let err = restore(&dst, &dir).unwrap_err().to_string();
        assert!(
            err.contains("not empty") && err.contains("/cube/c.json"),
            "{err}"
        );

        fs::write(dir.join("resources/cube/c.json"), b"tww").unwrap();
        let empty = LocalResourceStore::open(tmp.path().join("empty")).unwrap();
        let err = restore(&empty, &dir).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("/cube/c.json"), "{err}");
        assert!(empty.list_all().unwrap().is_empty());
    }
}
