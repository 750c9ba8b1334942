//! EXTENDED_COLUMN states: the text of the carried column (`extended`) for each group.
//!
//! The carried column depends on the measure's id column (a dimension), so every fact row of
//! a cuboid row that holds the id carries the same value, and a query grouping by the id can
//! show it without joining the lookup table. The state is the value cast to text (`Utf8`);
//! NULL when every row carried NULL (a LEFT-joined lookup row that is missing).
//!
//! Merging keeps the largest value (byte order of the UTF-8 text). When the id determines the
//! value, as it should, that is the one value there is; when it does not (a lookup row changed
//! between two segments' snapshots, or the id is not the lookup's key), the largest value is
//! what queries show — deterministic whatever the order rows and segments are merged in.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;

use super::GroupStates;
use crate::error::{Error, Result};

/// One optional text value per group.
#[derive(Debug, Default)]
pub struct ExtendedStates {
    values: Vec<Option<String>>,
}

impl ExtendedStates {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the larger of the group's value and `v`.
    fn fold(&mut self, group: u32, v: &str) -> Result<()> {
        let slot = self
            .values
            .get_mut(group as usize)
            .ok_or_else(|| Error::invalid("EXTENDED_COLUMN", format!("no group {group}")))?;
        match slot {
            Some(cur) if cur.as_str() >= v => {}
            _ => *slot = Some(v.to_string()),
        }
        Ok(())
    }

    fn fold_strings(&mut self, values: &StringArray, group_of: &[u32]) -> Result<()> {
        if values.len() != group_of.len() {
            return Err(Error::invalid(
                "EXTENDED_COLUMN",
                format!(
                    "{} values for {} group numbers",
                    values.len(),
                    group_of.len()
                ),
            ));
        }
        for (i, &g) in group_of.iter().enumerate() {
            if values.is_valid(i) {
                self.fold(g, values.value(i))?;
            }
        }
        Ok(())
    }
}

impl GroupStates for ExtendedStates {
    fn push_empty(&mut self) -> Result<()> {
        self.values.push(None);
        Ok(())
    }

    fn update_raw(&mut self, input: &ArrayRef, group_of: &[u32]) -> Result<()> {
        let text = cast(input, &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::invalid("EXTENDED_COLUMN", "input does not cast to text"))?;
        self.fold_strings(text, group_of)
    }

    fn merge(&mut self, states: &ArrayRef, group_of: &[u32]) -> Result<()> {
        // Stored states are text (a reader may hand back a view or large string); a column
        // of any other type is not one of ours.
        let states = match states.data_type() {
            DataType::Utf8View | DataType::LargeUtf8 => cast(states, &DataType::Utf8)?,
            _ => states.clone(),
        };
        let text = states
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                Error::corrupt(
                    "EXTENDED_COLUMN state",
                    format!("expected a Utf8 column, found {}", states.data_type()),
                )
            })?;
        self.fold_strings(text, group_of)
    }

    fn finish(&self, groups: &[usize]) -> Result<ArrayRef> {
        let bytes: usize = groups
            .iter()
            .map(|&g| {
                self.values
                    .get(g)
                    .and_then(|v| v.as_ref())
                    .map_or(0, String::len)
            })
            .sum();
        let mut b = StringBuilder::with_capacity(groups.len(), bytes);
        for &g in groups {
            let v = self
                .values
                .get(g)
                .ok_or_else(|| Error::invalid("EXTENDED_COLUMN", format!("no group {g}")))?;
            b.append_option(v.as_deref());
        }
        Ok(Arc::new(b.finish()))
    }

    fn memory_of(&self, groups: &[usize]) -> usize {
        groups
            .iter()
            .filter_map(|&g| self.values.get(g)?.as_ref())
            .map(String::capacity)
            .sum()
    }

    fn fixed_memory(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<String>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryArray, Int64Array};

    fn strings(a: &ArrayRef) -> Vec<Option<String>> {
        let s = a.as_any().downcast_ref::<StringArray>().unwrap();
        (0..s.len())
            .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
            .collect()
    }

    fn states(n: usize) -> ExtendedStates {
        let mut s = ExtendedStates::new();
        for _ in 0..n {
            s.push_empty().unwrap();
        }
        s
    }

    #[test]
    fn update_keeps_the_value_and_nulls_stay_null() {
        let mut s = states(3);
        let input: ArrayRef = Arc::new(StringArray::from(vec![
            Some("Supplier#1"),
            None,
            Some("Supplier#1"),
            Some("Supplier#2"),
        ]));
        s.update_raw(&input, &[0, 1, 0, 2]).unwrap();
        let out = s.finish(&[0, 1, 2]).unwrap();
        assert_eq!(
            strings(&out),
            vec![Some("Supplier#1".into()), None, Some("Supplier#2".into())]
        );
        assert_eq!(s.finish(&[2, 0]).unwrap().len(), 2);
    }

    #[test]
    fn non_text_input_is_cast_to_text() {
        let mut s = states(2);
        let input: ArrayRef = Arc::new(Int64Array::from(vec![7, 12]));
        s.update_raw(&input, &[0, 1]).unwrap();
        assert_eq!(
            strings(&s.finish(&[0, 1]).unwrap()),
            vec![Some("7".into()), Some("12".into())]
        );
    }

    #[test]
    fn merge_keeps_the_largest_whatever_the_order() {
        let parts: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("b"), None])),
            Arc::new(StringArray::from(vec![Some("a"), Some("x")])),
            Arc::new(StringArray::from(vec![Some("c"), None])),
        ];
        let merged = |order: &[usize]| {
            let mut s = states(2);
            for &i in order {
                s.merge(&parts[i], &[0, 1]).unwrap();
            }
            strings(&s.finish(&[0, 1]).unwrap())
        };
        let want = vec![Some("c".to_string()), Some("x".to_string())];
        assert_eq!(merged(&[0, 1, 2]), want);
        assert_eq!(merged(&[2, 1, 0]), want);
        assert_eq!(merged(&[1, 2, 0]), want);
        // Merging two groups' finished states into one is the same as folding all rows.
        let mut s = states(1);
        s.merge(&parts[0], &[0, 0]).unwrap();
        s.merge(&parts[1], &[0, 0]).unwrap();
        assert_eq!(strings(&s.finish(&[0]).unwrap()), vec![Some("x".into())]);
    }

    #[test]
    fn stored_round_trip() {
        let mut s = states(2);
        let input: ArrayRef = Arc::new(StringArray::from(vec![Some("héllo"), None]));
        s.update_raw(&input, &[0, 1]).unwrap();
        let stored = s.finish(&[0, 1]).unwrap();
        let mut t = states(2);
        t.merge(&stored, &[0, 1]).unwrap();
        assert_eq!(strings(&t.finish(&[0, 1]).unwrap()), strings(&stored));
    }

    #[test]
    fn wrong_state_column_is_corrupt_and_bad_groups_are_errors() {
        let mut s = states(1);
        let bad: ArrayRef = Arc::new(BinaryArray::from(vec![&b"\xff"[..]]));
        assert!(matches!(s.merge(&bad, &[0]), Err(Error::Corrupt { .. })));
        let input: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(s.update_raw(&input, &[5]).is_err());
        assert!(s.update_raw(&input, &[0, 0]).is_err());
        assert!(s.finish(&[3]).is_err());
        assert!(s.memory_of(&[0]) == 0 && s.fixed_memory() > 0);
    }
}
