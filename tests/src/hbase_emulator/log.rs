//! The snapshot file (`--snapshot PATH`): an append-only log of [`Record`]s.
//!
//! Layout: the 8-byte magic `QHBEMU01`, then records, each `u32` payload length (big
//! endian), `u32` CRC-32 (IEEE) of the payload, payload. Every acknowledged change is
//! appended with one `write` before the call returns, without fsync: the data survives a
//! `kill -9` of the emulator (it is in the kernel's page cache) but not a machine crash.
//!
//! On open the file is replayed; a truncated final record (or a final record whose CRC does
//! not match, i.e. a torn write) is dropped with a warning on stderr, while a CRC failure
//! followed by more data is an error. The state is then compacted: written in full to
//! `PATH.tmp` and renamed over `PATH`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::store::{Family, Op, Record, Store};

const MAGIC: &[u8; 8] = b"QHBEMU01";

/// Largest record accepted on replay (a sanity bound against garbage lengths).
const MAX_RECORD: u32 = 1 << 30;

pub struct SnapshotLog {
    file: File,
    len: u64,
    path: PathBuf,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl SnapshotLog {
    /// Replays `path` (if it exists) into a new store, compacts the file and opens it for
    /// appending.
    pub fn open(path: &Path) -> io::Result<(Store, SnapshotLog)> {
        let mut store = Store::new();
        match File::open(path) {
            Ok(f) => replay(path, f, &mut store)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut w = BufWriter::new(File::create(&tmp)?);
            w.write_all(MAGIC)?;
            store.for_each_record(|r| w.write_all(&frame(r)))?;
            w.flush()?;
        }
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok((
            store,
            SnapshotLog {
                file,
                len,
                path: path.to_path_buf(),
            },
        ))
    }

    /// Appends `record` (one write). On failure the file is cut back to its previous length
    /// so that a later append does not follow a torn record.
    pub fn append(&mut self, record: &Record) -> io::Result<()> {
        let buf = frame(record);
        match self.file.write_all(&buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot append to {}: {e}", self.path.display()),
                ))
            }
        }
    }
}

fn replay(path: &Path, file: File, store: &mut Store) -> io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    match r.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => {}
        Ok(()) => {
            return Err(invalid(format!(
                "{} is not an hbase-thrift-emulator snapshot",
                path.display()
            )))
        }
        // An empty or torn header: nothing was ever acknowledged.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut count = 0u64;
    loop {
        let mut header = [0u8; 8];
        match read_full(&mut r, &mut header)? {
            0 => return Ok(()),
            8 => {}
            n => {
                warn_torn(path, count, &format!("{n}-byte header"));
                return Ok(());
            }
        }
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_be_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(invalid(format!(
                "{}: record {count} claims {len} bytes",
                path.display()
            )));
        }
        let mut payload = vec![0u8; len as usize];
        let got = read_full(&mut r, &mut payload)?;
        if got < payload.len() {
            warn_torn(path, count, &format!("{got} of {len} bytes"));
            return Ok(());
        }
        if crc32(&payload) != crc {
            if r.fill_buf()?.is_empty() {
                warn_torn(path, count, "CRC mismatch in the final record");
                return Ok(());
            }
            return Err(invalid(format!(
                "{}: CRC mismatch in record {count} (not the last one); the snapshot is corrupt",
                path.display()
            )));
        }
        let record = decode(&payload)
            .map_err(|e| invalid(format!("{}: record {count}: {e}", path.display())))?;
        store.apply(&record);
        count += 1;
    }
}

fn warn_torn(path: &Path, count: u64, what: &str) {
    eprintln!(
        "hbase-thrift-emulator: WARN {}: dropping a torn final record after {count} records ({what})",
        path.display()
    );
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A record with its length and CRC header.
pub fn frame(record: &Record) -> Vec<u8> {
    let mut payload = Vec::new();
    encode(record, &mut payload);
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

// ---- encoding ---------------------------------------------------------------------------

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn encode(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::CreateTable {
            name,
            families,
            created,
        } => {
            out.push(1);
            put_bytes(out, name);
            put_i64(out, *created);
            out.extend_from_slice(&(families.len() as u32).to_be_bytes());
            for f in families {
                put_bytes(out, &f.name);
                put_i32(out, f.max_versions);
                put_bytes(out, f.compression.as_bytes());
                out.push(f.in_memory as u8);
                put_bytes(out, f.bloom_filter_type.as_bytes());
                out.push(f.block_cache_enabled as u8);
                put_i32(out, f.time_to_live);
            }
        }
        Record::DeleteTable { name } => {
            out.push(2);
            put_bytes(out, name);
        }
        Record::SetEnabled { name, enabled } => {
            out.push(3);
            put_bytes(out, name);
            out.push(*enabled as u8);
        }
        Record::Mutate { table, row, ops } => {
            out.push(4);
            put_bytes(out, table);
            put_bytes(out, row);
            out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
            for op in ops {
                match op {
                    Op::Put {
                        family,
                        qualifier,
                        value,
                        ts,
                    } => {
                        out.push(1);
                        put_bytes(out, family);
                        put_bytes(out, qualifier);
                        put_bytes(out, value);
                        put_i64(out, *ts);
                    }
                    Op::DeleteColumn {
                        family,
                        qualifier,
                        max_ts,
                    } => {
                        out.push(2);
                        put_bytes(out, family);
                        put_bytes(out, qualifier);
                        put_i64(out, *max_ts);
                    }
                    Op::DeleteFamily { family, max_ts } => {
                        out.push(3);
                        put_bytes(out, family);
                        put_i64(out, *max_ts);
                    }
                    Op::DeleteRow { max_ts } => {
                        out.push(4);
                        put_i64(out, *max_ts);
                    }
                }
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("record ends early".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, String> {
        Ok(self.u8()? != 0)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?).map_err(|e| e.to_string())
    }
}

pub fn decode(payload: &[u8]) -> Result<Record, String> {
    let mut r = Reader(payload);
    let record = match r.u8()? {
        1 => {
            let name = r.bytes()?;
            let created = r.i64()?;
            let n = r.u32()?;
            let mut families = Vec::new();
            for _ in 0..n {
                families.push(Family {
                    name: r.bytes()?,
                    max_versions: r.i32()?,
                    compression: r.string()?,
                    in_memory: r.bool()?,
                    bloom_filter_type: r.string()?,
                    block_cache_enabled: r.bool()?,
                    time_to_live: r.i32()?,
                });
            }
            Record::CreateTable {
                name,
                families,
                created,
            }
        }
        2 => Record::DeleteTable { name: r.bytes()? },
        3 => Record::SetEnabled {
            name: r.bytes()?,
            enabled: r.bool()?,
        },
        4 => {
            let table = r.bytes()?;
            let row = r.bytes()?;
            let n = r.u32()?;
            let mut ops = Vec::new();
            for _ in 0..n {
                ops.push(match r.u8()? {
                    1 => Op::Put {
                        family: r.bytes()?,
                        qualifier: r.bytes()?,
                        value: r.bytes()?,
                        ts: r.i64()?,
                    },
                    2 => Op::DeleteColumn {
                        family: r.bytes()?,
                        qualifier: r.bytes()?,
                        max_ts: r.i64()?,
                    },
                    3 => Op::DeleteFamily {
                        family: r.bytes()?,
                        max_ts: r.i64()?,
                    },
                    4 => Op::DeleteRow { max_ts: r.i64()? },
                    t => return Err(format!("unknown op tag {t}")),
                });
            }
            Record::Mutate { table, row, ops }
        }
        t => return Err(format!("unknown record tag {t}")),
    };
    if !r.0.is_empty() {
        return Err(format!("{} trailing bytes", r.0.len()));
    }
    Ok(record)
}

// ---- CRC-32 (IEEE 802.3, as zlib) -------------------------------------------------------

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("snap");
        let (store, mut log) = SnapshotLog::open(&path).unwrap();
        let create = store
            .plan_create_table(b"t", vec![Family::named(b"f")], 7)
            .unwrap();
        log.append(&create).unwrap();
        for (row, v) in [(&b"a"[..], &b"1"[..]), (b"b", b"2")] {
            log.append(&Record::Mutate {
                table: b"t".to_vec(),
                row: row.to_vec(),
                ops: vec![Op::Put {
                    family: b"f".to_vec(),
                    qualifier: b"q".to_vec(),
                    value: v.to_vec(),
                    ts: 9,
                }],
            })
            .unwrap();
        }
        path
    }

    fn rows(store: &Store) -> usize {
        store.table(b"t").map_or(0, |t| t.rows.len())
    }

    #[test]
    fn replays_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let (store, _) = SnapshotLog::open(&path).unwrap();
        assert_eq!(rows(&store), 2);
        // Compacted: reopening gives the same state.
        let (store, _) = SnapshotLog::open(&path).unwrap();
        assert_eq!(rows(&store), 2);
        // Cut the last record short.
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (store, _) = SnapshotLog::open(&path).unwrap();
        assert_eq!(rows(&store), 1);
    }

    #[test]
    fn crc_failure_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        // The last byte of the first record's payload (the CreateTable).
        let first_len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        bytes[8 + 8 + first_len - 1] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        assert!(SnapshotLog::open(&path).is_err());
    }
}
