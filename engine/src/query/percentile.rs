//! Percentiles from PERCENTILE measures: `qilin_tdigest_merge` merges the stored t-digests of
//! the cuboid rows of a group (its intermediate state is the serialized digest, so DataFusion
//! can run it in partial/final mode), and `qilin_tdigest_quantile(digest, p)` estimates the
//! value at quantile `p` from the merged digest. One merge serves every percentile of the
//! same measure in a query (`p50`, `p95` and `p99` read the states once).
//!
//! Also `percentile_approx`, the Hive/Spark/Kylin name of `approx_percentile_cont`, which
//! DataFusion lacks: registered as an alias so queries that fall back to the source tables
//! (pushdown) plan too.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::functions_aggregate::approx_percentile_cont::approx_percentile_cont_udaf;
use datafusion::logical_expr::{
    create_udaf, create_udf, Accumulator, AggregateUDF, ColumnarValue, ScalarUDF, Volatility,
};

use crate::measure::tdigest::TDigest;

pub(crate) const TDIGEST_MERGE: &str = "qilin_tdigest_merge";
pub(crate) const TDIGEST_QUANTILE: &str = "qilin_tdigest_quantile";
/// The alias of `approx_percentile_cont` Hive, Spark and Kylin users write.
pub(crate) const PERCENTILE_APPROX: &str = "percentile_approx";

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Merges t-digest states.
#[derive(Debug, Default)]
struct MergeAccumulator {
    digest: Option<TDigest>,
}

impl Accumulator for MergeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        let states = values[0].as_binary::<i32>();
        for bytes in states.iter().flatten() {
            match &mut self.digest {
                Some(d) => d.merge_bytes(bytes).map_err(external)?,
                None => self.digest = Some(TDigest::from_bytes(bytes).map_err(external)?),
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        if let Some(d) = &mut self.digest {
            d.compress();
        }
        Ok(ScalarValue::Binary(
            self.digest.as_ref().map(|d| d.to_bytes()),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.digest.as_ref().map_or(0, |d| d.memory_size())
    }

    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.update_batch(states)
    }
}

pub(crate) fn tdigest_merge() -> Arc<AggregateUDF> {
    Arc::new(create_udaf(
        TDIGEST_MERGE,
        vec![DataType::Binary],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<MergeAccumulator>::default())),
        Arc::new(vec![DataType::Binary]),
    ))
}

/// `qilin_tdigest_quantile(digest, p)`: NULL for a NULL or empty digest.
pub(crate) fn tdigest_quantile() -> Arc<ScalarUDF> {
    Arc::new(create_udf(
        TDIGEST_QUANTILE,
        vec![DataType::Binary, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let digests = arrays[0].as_binary::<i32>();
            let qs = arrays[1].as_primitive::<Float64Type>();
            let mut out = Vec::with_capacity(digests.len());
            for (bytes, q) in digests.iter().zip(qs.iter()) {
                out.push(match (bytes, q) {
                    (Some(bytes), Some(q)) => {
                        TDigest::from_bytes(bytes).map_err(external)?.quantile(q)
                    }
                    _ => None,
                });
            }
            let out = Float64Array::from(out);
            Ok(
                if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
                } else {
                    ColumnarValue::Array(Arc::new(out))
                },
            )
        }),
    ))
}

/// DataFusion's `approx_percentile_cont`, also under the name `percentile_approx`.
pub(crate) fn approx_percentile_cont_with_alias() -> Arc<AggregateUDF> {
    Arc::new(
        approx_percentile_cont_udaf()
            .as_ref()
            .clone()
            .with_aliases([PERCENTILE_APPROX]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::BinaryArray;

    fn digest(values: impl IntoIterator<Item = i64>) -> Vec<u8> {
        let mut d = TDigest::new(100).unwrap();
        values.into_iter().for_each(|v| d.add(v as f64));
        d.to_bytes()
    }

    fn quantile(bytes: Option<Vec<u8>>, q: f64) -> Option<f64> {
        let f = tdigest_quantile();
        let args = [
            ColumnarValue::Array(Arc::new(BinaryArray::from_iter([bytes]))),
            ColumnarValue::Scalar(ScalarValue::Float64(Some(q))),
        ];
        let arrays = ColumnarValue::values_to_arrays(&args).unwrap();
        let fields = [
            Arc::new(datafusion::arrow::datatypes::Field::new(
                "d",
                DataType::Binary,
                true,
            )),
            Arc::new(datafusion::arrow::datatypes::Field::new(
                "q",
                DataType::Float64,
                true,
            )),
        ];
        let out = f
            .invoke_with_args(datafusion::logical_expr::ScalarFunctionArgs {
                args: args.to_vec(),
                arg_fields: fields.to_vec(),
                number_rows: arrays[0].len(),
                return_field: Arc::new(datafusion::arrow::datatypes::Field::new(
                    "out",
                    DataType::Float64,
                    true,
                )),
                config_options: Arc::new(Default::default()),
            })
            .unwrap();
        let a = out.to_array(1).unwrap();
        let a = a.as_primitive::<Float64Type>();
        a.is_valid(0).then(|| a.value(0))
    }

    #[test]
    fn states_merge_in_two_phases() {
        let states: ArrayRef = Arc::new(BinaryArray::from_iter(vec![
            Some(digest(0..500)),
            None,
            Some(digest(500..1000)),
        ]));
        let mut acc = MergeAccumulator::default();
        acc.update_batch(&[states]).unwrap();
        let partial = acc.state().unwrap()[0].to_array().unwrap();
        let mut fin = MergeAccumulator::default();
        fin.merge_batch(&[partial]).unwrap();
        let ScalarValue::Binary(Some(bytes)) = fin.evaluate().unwrap() else {
            panic!("no digest")
        };
        let median = quantile(Some(bytes), 0.5).unwrap();
        assert!((median - 500.0).abs() <= 10.0, "{median}");
    }

    #[test]
    fn no_rows_and_corrupt_states() {
        assert_eq!(
            MergeAccumulator::default().evaluate().unwrap(),
            ScalarValue::Binary(None)
        );
        assert_eq!(quantile(None, 0.5), None);
        let junk: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"junk".as_slice()]));
        assert!(MergeAccumulator::default().update_batch(&[junk]).is_err());
    }

    #[test]
    fn percentile_approx_is_an_alias() {
        let f = approx_percentile_cont_with_alias();
        assert_eq!(f.name(), "approx_percentile_cont");
        assert!(f.aliases().iter().any(|a| a == PERCENTILE_APPROX));
    }
}
