//! `hbase-thrift-emulator`: an HBase Thrift1 server emulator (a test double; see
//! `qilin_tests::hbase_emulator`).
//!
//! ```text
//! hbase-thrift-emulator [--host 127.0.0.1] [--port 9090] [--snapshot PATH]
//! ```
//!
//! Prints `hbase-thrift-emulator listening on HOST:PORT` (the bound port, also for
//! `--port 0`) once it accepts connections, and serves until killed.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use qilin_tests::hbase_emulator::{serve, Emulator, LISTENING_PREFIX};

/// An HBase Thrift1 server emulator (buffered transport, binary protocol) for tests.
#[derive(Parser, Debug)]
#[command(name = "hbase-thrift-emulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the bound one is printed).
    #[arg(long, default_value_t = 9090)]
    port: u16,
    /// Log every change to this file and restore from it at start (survives kill -9).
    #[arg(long)]
    snapshot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let emulator = match Emulator::open(args.snapshot.clone()) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("hbase-thrift-emulator: cannot open the snapshot: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind((args.host.as_str(), args.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "hbase-thrift-emulator: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hbase-thrift-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{LISTENING_PREFIX}{addr}");
        let _ = out.flush();
    }
    match serve(listener, emulator) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hbase-thrift-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
