//! Results as clients receive them. DataFusion produces string and binary *view* arrays,
//! which older Arrow clients (the JDBC driver, pyarrow before 16, many BI connectors) cannot
//! read; we send the classic `Utf8`/`Binary` layouts instead, and every field carries the
//! Flight SQL column metadata (see `columns`). The schemas a FlightInfo or a prepared
//! statement announces and the schema of the stream all come from [`client_schema`], so they
//! are equal, metadata and nullability included (ADBC checks). Encoding splits batches so that
//! no gRPC message exceeds what clients accept; results are encoded as they are computed.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::FlightData;
use futures::{Stream, StreamExt};
use qilin_engine::query::BatchStream;
use tonic::Status;

use crate::columns::{with_column_metadata, ColumnSource};

/// Largest request we accept. Parameter uploads (DoPut) and statement handles that carry
/// them can exceed tonic's 4 MiB default; results are split into small messages anyway.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Largest FlightData message we send: well under the 16 MiB the Go and Java clients accept
/// by default (and leaving room for IPC framing).
pub const MAX_FLIGHT_DATA_BYTES: usize = 2 * 1024 * 1024;

pub type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// The type a client receives for `t`.
fn client_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

/// `schema` with view types replaced by their classic layouts and the Flight SQL column
/// metadata on every field.
pub fn client_schema(schema: &Schema) -> Schema {
    client_schema_of(schema, None)
}

/// [`client_schema`] of a table's schema: the metadata also names the table.
pub fn client_table_schema(schema: &Schema, source: &ColumnSource) -> Schema {
    client_schema_of(schema, Some(source))
}

fn client_schema_of(schema: &Schema, source: Option<&ColumnSource>) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let field = f
                .as_ref()
                .clone()
                .with_data_type(client_type(f.data_type()));
            with_column_metadata(field, source)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// `batch` in the layout of `schema` (a [`client_schema`]).
pub fn client_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "result has {} columns, its schema {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
}

/// Encodes a complete result as a DoGet stream (see [`encode_stream`]).
pub fn encode_result(schema: &Schema, batches: Vec<RecordBatch>) -> FlightDataStream {
    encode_stream(
        schema,
        Box::pin(futures::stream::iter(batches.into_iter().map(Ok))),
    )
}

/// Encodes a result as a DoGet stream, each batch as it arrives. The schema message is sent
/// first, even for an empty result (some clients need it to show column names). An error in
/// the middle ends the stream with the engine error's status, so a client never mistakes a
/// failed query for a short result.
pub fn encode_stream(schema: &Schema, batches: BatchStream) -> FlightDataStream {
    let schema: SchemaRef = Arc::new(client_schema(schema));
    let target = schema.clone();
    let batches = batches.map(move |b| match b {
        Ok(b) => client_batch(&b, &target).map_err(FlightError::Arrow),
        Err(e) => Err(FlightError::Tonic(Box::new(crate::status::from_engine(&e)))),
    });
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MAX_FLIGHT_DATA_BYTES)
        .build(batches)
        .map(|r| {
            r.map_err(|e| match e {
                FlightError::Tonic(status) => *status,
                e => crate::status::internal("encoding the result", e),
            })
        });
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, Int32Array, StringViewArray};

    #[test]
    fn view_types_become_classic_layouts() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("n", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringViewArray::from(vec![Some("a"), None])),
                Arc::new(Int32Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let target = Arc::new(client_schema(&schema));
        assert_eq!(target.field(0).data_type(), &DataType::Utf8);
        assert!(target.field(0).is_nullable());
        assert!(!target.field(1).is_nullable());
        let out = client_batch(&batch, &target).unwrap();
        assert_eq!(out.column(0).as_string::<i32>().value(0), "a");
        assert!(out.column(0).is_null(1));
    }
}
