//! An HBase Thrift1 server emulator: a **test double** for CI, where no HBase can be
//! installed. It serves the `Hbase` service of HBase's Thrift1 gateway (`hbase thrift
//! start`) with the same transport and protocol defaults (buffered transport, binary
//! protocol) from an in-memory store, so Qilin's HBase client can be tested end to end.
//!
//! What it emulates: table administration (create/delete/enable/disable, names, column
//! descriptors, one region per table), row mutations (puts and deletes, also the `*Ts`
//! variants), gets (`get`, `getRow(s)`, `getRow(s)WithColumns`, and their `Ts` variants),
//! scanners (`scannerOpen*`, `scannerGet`, `scannerGetList`, `scannerClose`; rows in unsigned
//! byte order, stop row exclusive), `checkAndPut`, `atomicIncrement`, `increment(Rows)`,
//! `append`, `deleteAll(Row)`, with HBase's errors (IOError for TableNotFound /
//! TableNotEnabled / TableNotDisabled / NoSuchColumnFamily, AlreadyExists, IllegalArgument)
//! and HBase's leniency about absent arguments (see [`lenient`]). With `--snapshot PATH`
//! every acknowledged change is logged before the call returns, so the data survives a
//! `kill -9` and restart (not a machine crash: there is no fsync; see [`log`]).
//!
//! What it does **not** emulate: regions and splits (one region covers each table),
//! multiple versions (only the latest version of each cell is kept; see [`store`]), time to
//! live, filters other than `PrefixFilter` in `TScan.filterString`, reversed scans, batch
//! sizes (whole rows are returned), security (grant/revoke), the Thrift2 service, and the
//! framed/compact transports and protocols. Scanners do not survive a restart and read the
//! live table (no snapshot isolation).

pub mod handler;
pub mod lenient;
pub mod log;
pub mod store;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use hbase_thrift::hbase::HbaseSyncProcessor;
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};
use thrift::TransportErrorKind;

use self::handler::Handler;
use self::lenient::{Idl, LenientProcessor};
use self::log::SnapshotLog;
use self::store::{Record, Store};

/// The line printed (to stdout) once the socket is bound, followed by `HOST:PORT`.
pub const LISTENING_PREFIX: &str = "hbase-thrift-emulator listening on ";

/// The emulated cluster: the store, and the snapshot log if there is one.
pub struct Emulator {
    inner: Mutex<Inner>,
}

struct Inner {
    store: Store,
    log: Option<SnapshotLog>,
}

/// Milliseconds since the Unix epoch (HBase's cell timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Emulator {
    /// An emulator whose data lives in memory only (`None`) or is also logged to the
    /// snapshot file `PATH` (replayed and compacted first if it exists).
    pub fn open(snapshot: Option<PathBuf>) -> io::Result<Emulator> {
        let (store, log) = match snapshot {
            Some(path) => {
                let (store, log) = SnapshotLog::open(&path)?;
                (store, Some(log))
            }
            None => (Store::new(), None),
        };
        Ok(Emulator {
            inner: Mutex::new(Inner { store, log }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a read against the store.
    pub fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        f(&self.lock().store)
    }

    /// Runs an operation that may change scanners (never table data).
    pub fn scanners<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.lock().store)
    }

    /// Plans a change with `f` and commits its records: each is appended to the snapshot
    /// log (if any) and then applied, all under the lock, so the log order is the apply
    /// order. A log failure is reported as an IOError and nothing more is applied.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<(T, Vec<Record>)>,
    ) -> store::Result<T> {
        let mut inner = self.lock();
        let (out, records) = f(&inner.store)?;
        let Inner { store, log } = &mut *inner;
        for r in &records {
            if let Some(log) = log.as_mut() {
                log.append(r)
                    .map_err(|e| store::Error::Io(format!("java.io.IOException: {e}")))?;
            }
            store.apply(r);
        }
        Ok(out)
    }
}

/// Serves the Thrift1 `Hbase` service on `listener` until the process ends: one thread per
/// connection, each processing calls until its client disconnects.
pub fn serve(listener: TcpListener, emulator: Arc<Emulator>) -> io::Result<()> {
    let local = listener.local_addr()?;
    let idl = Idl::hbase();
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hbase-thrift-emulator: accept failed: {e}");
                continue;
            }
        };
        let emulator = emulator.clone();
        let idl = idl.clone();
        std::thread::Builder::new()
            .name("hbase-emulator-conn".into())
            .spawn(move || connection(stream, local, emulator, idl))?;
    }
    Ok(())
}

fn connection(stream: TcpStream, local: SocketAddr, emulator: Arc<Emulator>, idl: Arc<Idl>) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let read_half = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hbase-thrift-emulator: {peer}: {e}");
            return;
        }
    };
    let handler = Handler::new(emulator, local.ip().to_string(), local.port());
    let processor = LenientProcessor::new(HbaseSyncProcessor::new(handler), idl);
    // Like HBase's server: strict writes, and reads that accept old unversioned messages.
    let mut i_prot = TBinaryInputProtocol::new(TBufferedReadTransport::new(read_half), false);
    let mut o_prot = TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true);
    loop {
        if let Err(e) = processor.process(&mut i_prot, &mut o_prot) {
            let quiet = match &e {
                thrift::Error::Transport(t) => matches!(
                    t.kind,
                    TransportErrorKind::EndOfFile | TransportErrorKind::NotOpen
                ),
                _ => false,
            };
            if !quiet {
                eprintln!("hbase-thrift-emulator: {peer}: closing the connection: {e}");
            }
            return;
        }
    }
}
