//! Talking to an HBase Thrift server directly, behind Qilin's back: for tests that damage or
//! inspect what Qilin stored.

use std::collections::BTreeMap;

use hbase_thrift::hbase::{HbaseSyncClient, Mutation, THbaseSyncClient};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{
    ReadHalf, TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel, WriteHalf,
};

pub type RawClient = HbaseSyncClient<
    TBinaryInputProtocol<TBufferedReadTransport<ReadHalf<TTcpChannel>>>,
    TBinaryOutputProtocol<TBufferedWriteTransport<WriteHalf<TTcpChannel>>>,
>;

/// A plain client (buffered transport, binary protocol) connected to `addr` (`host:port`).
pub fn raw_client(addr: &str) -> RawClient {
    let mut channel = TTcpChannel::new();
    channel
        .open(addr)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let (r, w) = channel.split().expect("split channel");
    HbaseSyncClient::new(
        TBinaryInputProtocol::new(TBufferedReadTransport::new(r), true),
        TBinaryOutputProtocol::new(TBufferedWriteTransport::new(w), true),
    )
}

/// Reads one cell.
pub fn get_cell(addr: &str, table: &str, row: &[u8], column: &[u8]) -> Option<Vec<u8>> {
    let mut c = raw_client(addr);
    c.get(table.into(), row.to_vec(), column.to_vec(), BTreeMap::new())
        .expect("get cell")
        .into_iter()
        .next()
        .and_then(|cell| cell.value)
}

/// Flips a byte in the middle of a cell.
pub fn corrupt_cell(addr: &str, table: &str, row: &[u8], column: &[u8]) {
    let mut value = get_cell(addr, table, row, column)
        .unwrap_or_else(|| panic!("no cell {} in row {row:?}", String::from_utf8_lossy(column)));
    let mid = value.len() / 2;
    value[mid] ^= 0xA5;
    raw_client(addr)
        .mutate_row(
            table.into(),
            row.to_vec(),
            vec![Mutation {
                is_delete: Some(false),
                column: Some(column.to_vec()),
                value: Some(value),
                write_to_w_a_l: Some(true),
            }],
            BTreeMap::new(),
        )
        .expect("overwrite cell");
}
