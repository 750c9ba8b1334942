//! Stateless statement handles and tickets: they carry the query itself (SQL and bound
//! parameters), so any instance behind a load balancer can serve a DoGet or a prepared
//! statement, and the server keeps nothing between calls.
//!
//! Layout (version 1): `b"QLN1"`, SQL length as u32 little endian, the SQL in UTF-8, then the
//! parameters as an Arrow IPC stream (absent when nothing is bound). A client can forge a
//! handle, but that gives it nothing it could not send as a plain statement.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use tonic::Status;

const MAGIC: &[u8; 4] = b"QLN1";

/// A query as a handle or ticket carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementHandle {
    pub sql: String,
    /// The bound parameters (the engine binds the first row).
    pub params: Option<RecordBatch>,
}

impl StatementHandle {
    pub fn new(sql: impl Into<String>) -> Self {
        StatementHandle {
            sql: sql.into(),
            params: None,
        }
    }

    pub fn with_params(mut self, params: Option<RecordBatch>) -> Self {
        self.params = params;
        self
    }

    pub fn encode(&self) -> Result<Bytes, Status> {
        let sql = self.sql.as_bytes();
        let len = u32::try_from(sql.len())
            .map_err(|_| Status::invalid_argument("SQL text longer than 4 GiB"))?;
        let mut out = Vec::with_capacity(8 + sql.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(sql);
        if let Some(params) = &self.params {
            let encode_err = |e| crate::status::internal("encoding bound parameters", e);
            let mut w = StreamWriter::try_new(&mut out, &params.schema()).map_err(encode_err)?;
            w.write(params).map_err(encode_err)?;
            w.finish().map_err(encode_err)?;
        }
        Ok(Bytes::from(out))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Status> {
        let bad = |why: &str| {
            Status::invalid_argument(format!(
                "invalid statement handle ({why}); it must come from this server's \
                 CreatePreparedStatement or GetFlightInfo"
            ))
        };
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("unknown format"))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        let (sql, ipc) = rest.split_at(len);
        let sql = std::str::from_utf8(sql).map_err(|_| bad("SQL is not UTF-8"))?;
        let params = if ipc.is_empty() {
            None
        } else {
            let reader =
                StreamReader::try_new(Cursor::new(ipc), None).map_err(|_| bad("parameters"))?;
            let schema = reader.schema();
            let batches = reader
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad("parameters"))?;
            Some(concat_batches(&schema, &batches).map_err(|_| bad("parameters"))?)
        };
        Ok(StatementHandle {
            sql: sql.to_string(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn round_trips_with_and_without_parameters() {
        let h = StatementHandle::new("select 1");
        assert_eq!(StatementHandle::decode(&h.encode().unwrap()).unwrap(), h);
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Utf8, true),
        ]));
        let params = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1993])),
                Arc::new(StringArray::from(vec!["ASIA"])),
            ],
        )
        .unwrap();
        let h = StatementHandle::new("select $1, $2 -- ünïcode").with_params(Some(params));
        assert_eq!(StatementHandle::decode(&h.encode().unwrap()).unwrap(), h);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let good = StatementHandle::new("select 1").encode().unwrap();
        for bad in [
            &b""[..],
            b"QLN1",
            b"QLN1\xff\xff\xff\xff",
            b"XXXX\x00\x00\x00\x00",
            &good[..good.len() - 1],
        ] {
            let e = StatementHandle::decode(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
        let mut trailing = good.to_vec();
        trailing.extend_from_slice(b"not ipc");
        assert!(StatementHandle::decode(&trailing).is_err());
    }
}
