//! String group keys as integer ids. Grouping millions of cuboid rows by a string dimension
//! hashes and compares its bytes row by row, and each derived-dimension join on the way copies
//! them; a `UInt32` costs neither. [`StringIds`] numbers the distinct values of one cube
//! dimension in the order queries meet them. The numbers never change while the process runs,
//! so one numbering serves every query and every cached plan. The cuboid scan returns such a
//! dimension as ids, mapping each block's dictionary of distinct values once per block rather
//! than every row, and `qilin_string_of` turns the ids the aggregate emits back into strings.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, StringArray, StringBuilder, UInt32Array,
};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::datatypes::{
    ArrowDictionaryKeyType, ArrowNativeType, DataType, Int32Type, UInt16Type, UInt8Type,
};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use super::string_filter::{check_dictionary_ids, dictionary_key};
use crate::error::{Error, Result};

/// The function that turns ids back into strings.
pub(crate) const STRING_OF: &str = "qilin_string_of";

/// Distinct values past which a dimension's new plans group by the strings themselves: the
/// numbering is never shrunk, so it stays for dimensions whose values fit in memory easily.
pub(crate) const MAX_NUMBERED_VALUES: usize = 1 << 20;

/// The numbering of one dimension's values.
#[derive(Debug)]
pub(crate) struct StringIds {
    /// Unique per numbering made: what cached ids are keyed by.
    id: u64,
    inner: RwLock<Numbered>,
}

impl Default for StringIds {
    fn default() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        StringIds {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inner: RwLock::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Numbered {
    ids: HashMap<Arc<str>, u32>,
    values: Vec<Arc<str>>,
}

impl Numbered {
    fn id(&mut self, value: &str) -> Result<u32> {
        if let Some(&id) = self.ids.get(value) {
            return Ok(id);
        }
        let id = u32::try_from(self.values.len()).map_err(|_| Error::Invalid {
            what: "a string dimension".into(),
            reason: "more than 2^32 distinct values".into(),
        })?;
        let value: Arc<str> = value.into();
        self.values.push(value.clone());
        self.ids.insert(value, id);
        Ok(id)
    }
}

/// The id of a dictionary's null value: its rows are null, the id is never read.
const NULL_VALUE: u32 = u32::MAX;

impl StringIds {
    /// Which numbering this is (ids of different numberings never mix).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many values are numbered.
    pub fn len(&self) -> usize {
        self.inner.read().expect("string ids").values.len()
    }

    /// The ids of `values` in order (`NULL_VALUE` for nulls), numbering the new ones.
    fn ids_of_values(&self, values: &StringArray) -> Result<Vec<u32>> {
        {
            let numbered = self.inner.read().expect("string ids");
            let known: Option<Vec<u32>> = values
                .iter()
                .map(|v| match v {
                    None => Some(NULL_VALUE),
                    Some(v) => numbered.ids.get(v).copied(),
                })
                .collect();
            if let Some(ids) = known {
                return Ok(ids);
            }
        }
        let mut numbered = self.inner.write().expect("string ids");
        values
            .iter()
            .map(|v| match v {
                None => Ok(NULL_VALUE),
                Some(v) => numbered.id(v),
            })
            .collect()
    }

    /// A block's string column as ids: through its dictionary when it has one (one lookup per
    /// distinct value), value by value otherwise.
    pub fn ids_of(&self, column: &ArrayRef) -> Result<UInt32Array> {
        match dictionary_key(column) {
            Some(DataType::UInt8) => self.ids_by_key(column.as_dictionary::<UInt8Type>()),
            Some(DataType::UInt16) => self.ids_by_key(column.as_dictionary::<UInt16Type>()),
            Some(DataType::Int32) => self.ids_by_key(column.as_dictionary::<Int32Type>()),
            _ => {
                let plain = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
                let plain = plain.as_string::<i32>();
                let ids = self.ids_of_values(plain)?;
                Ok(UInt32Array::new(
                    ScalarBuffer::from(ids),
                    plain.nulls().cloned(),
                ))
            }
        }
    }

    fn ids_by_key<K: ArrowDictionaryKeyType>(
        &self,
        dictionary: &DictionaryArray<K>,
    ) -> Result<UInt32Array> {
        let values = datafusion::arrow::compute::cast(dictionary.values(), &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        let remap = self.ids_of_values(values)?;
        let keys = dictionary.keys();
        check_dictionary_ids(keys, remap.len())?;
        // Only a null row's key slot can be out of range; its id is never read.
        let ids: Vec<u32> = keys
            .values()
            .iter()
            .map(|key| remap.get(key.as_usize()).copied().unwrap_or(NULL_VALUE))
            .collect();
        let nulls = if values.null_count() > 0 {
            dictionary.logical_nulls()
        } else {
            keys.nulls().cloned()
        };
        Ok(UInt32Array::new(ScalarBuffer::from(ids), nulls))
    }

    /// The strings of `ids`.
    pub fn strings_of(&self, ids: &UInt32Array) -> Result<StringArray> {
        let numbered = self.inner.read().expect("string ids");
        let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 16);
        for id in ids.iter() {
            match id {
                None => out.append_null(),
                Some(id) => match numbered.values.get(id as usize) {
                    Some(v) => out.append_value(v),
                    None => {
                        return Err(Error::DataFusion(DataFusionError::Internal(format!(
                            "{STRING_OF}: id {id} of {} values",
                            numbered.values.len()
                        ))))
                    }
                },
            }
        }
        Ok(out.finish())
    }
}

/// The numberings of a reader's dimensions, by dimension (see `SegmentReader::string_ids`).
#[derive(Debug, Default)]
pub(crate) struct Numberings {
    by_dimension: Mutex<HashMap<String, Arc<StringIds>>>,
}

impl Numberings {
    pub fn of(&self, dimension: &str) -> Arc<StringIds> {
        self.by_dimension
            .lock()
            .expect("numberings")
            .entry(dimension.to_string())
            .or_default()
            .clone()
    }
}

/// `qilin_string_of(id)`: the string `ids` numbered `id`.
#[derive(Debug)]
struct StringOf {
    ids: Arc<StringIds>,
    signature: Signature,
}

// One function per numbering: equal when the numbering is the same.
impl PartialEq for StringOf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids)
    }
}

impl Eq for StringOf {}

impl Hash for StringOf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.ids).hash(state);
    }
}

impl ScalarUDFImpl for StringOf {
    fn name(&self) -> &str {
        STRING_OF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        let decode = |ids: &ArrayRef| -> datafusion::common::Result<ArrayRef> {
            let ids = ids.as_primitive_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("{STRING_OF} of {}", ids.data_type()))
            })?;
            Ok(Arc::new(
                self.ids.strings_of(ids).map_err(Error::into_datafusion)?,
            ))
        };
        match &args.args[..] {
            [ColumnarValue::Array(ids)] => Ok(ColumnarValue::Array(decode(ids)?)),
            [ColumnarValue::Scalar(id)] => {
                let strings = decode(&id.to_array()?)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    &strings, 0,
                )?))
            }
            _ => Err(DataFusionError::Internal(format!(
                "{STRING_OF} takes one argument"
            ))),
        }
    }
}

/// The function decoding ids of `ids`.
pub(crate) fn string_of(ids: Arc<StringIds>) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(StringOf {
        ids,
        signature: Signature::exact(vec![DataType::UInt32], Volatility::Immutable),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, Int32Array};

    fn dictionary(keys: Vec<Option<i32>>, values: Vec<Option<&str>>) -> ArrayRef {
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(
                Int32Array::from(keys),
                Arc::new(StringArray::from(values)),
            )
            .unwrap(),
        )
    }

    #[test]
    fn blocks_with_different_dictionaries_share_one_numbering() {
        let ids = StringIds::default();
        let a = dictionary(
            vec![Some(0), Some(1), None, Some(1)],
            vec![Some("LIMA"), Some("OSLO")],
        );
        let b = dictionary(
            vec![Some(1), Some(0), Some(2)],
            vec![Some("OSLO"), Some("ROMA"), None],
        );
        let ia = ids.ids_of(&a).unwrap();
        let ib = ids.ids_of(&b).unwrap();
        assert_eq!(ia.value(1), ib.value(1), "OSLO has one id in both blocks");
        assert_eq!(ia.value(1), ia.value(3));
        assert_ne!(ia.value(0), ia.value(1));
        assert!(ia.is_null(2), "a null row stays null");
        assert!(
            ib.is_null(2),
            "a row whose dictionary value is null is null"
        );
        assert_eq!(ids.len(), 3);
        let back = ids.strings_of(&ia).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            vec![Some("LIMA"), Some("OSLO"), None, Some("OSLO")]
        );
        let back = ids.strings_of(&ib).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            vec![Some("ROMA"), Some("OSLO"), None]
        );
        // A plain column numbers the same way.
        let plain: ArrayRef = Arc::new(StringArray::from(vec![Some("ROMA"), None, Some("PARIS")]));
        let ip = ids.ids_of(&plain).unwrap();
        assert_eq!(ip.value(0), ib.value(0));
        assert!(ip.is_null(1));
        assert_eq!(ids.len(), 4);
    }

    /// A dictionary whose keys may be out of range, as a corrupt block could decode to.
    fn unchecked(keys: Int32Array, values: Vec<&str>) -> ArrayRef {
        let values: ArrayRef = Arc::new(StringArray::from(values));
        // SAFETY: the array is only read through `ids_of`, which checks every key.
        Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, values) })
    }

    #[test]
    fn bad_ids_are_errors_not_panics() {
        let ids = StringIds::default();
        let bad = unchecked(Int32Array::from(vec![0, 5]), vec!["LIMA"]);
        assert!(matches!(ids.ids_of(&bad), Err(Error::Corrupt { .. })));
        let negative = unchecked(Int32Array::from(vec![-1]), vec!["LIMA"]);
        assert!(matches!(ids.ids_of(&negative), Err(Error::Corrupt { .. })));
        // A null row's key is never read, whatever it holds.
        let keys = Int32Array::new(ScalarBuffer::from(vec![7]), Some(vec![false].into()));
        let null_row = unchecked(keys, vec!["LIMA"]);
        assert!(ids.ids_of(&null_row).unwrap().is_null(0));
        assert!(ids.strings_of(&UInt32Array::from(vec![9])).is_err());
    }

    #[test]
    fn the_decoding_function_returns_the_strings() {
        let ids = Arc::new(StringIds::default());
        let numbered = ids
            .ids_of(&(Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef))
            .unwrap();
        let f = string_of(ids.clone());
        let field = Arc::new(datafusion::arrow::datatypes::Field::new(
            "s",
            DataType::Utf8,
            true,
        ));
        let out = f
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(numbered))],
                arg_fields: vec![field.clone()],
                number_rows: 2,
                return_field: field,
                config_options: Default::default(),
            })
            .unwrap()
            .into_array(2)
            .unwrap();
        assert_eq!(
            out.as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("a"), Some("b")]
        );
        assert_eq!(*f, *string_of(ids.clone()));
        assert_ne!(*f, *string_of(Arc::new(StringIds::default())));
        // Cached ids are keyed by the numbering's id: no two numberings share one.
        assert_ne!(ids.id(), StringIds::default().id());
    }
}
