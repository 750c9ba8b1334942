//! Measures and their stored, mergeable states.
//!
//! SUM, COUNT, MIN and MAX keep plain numbers inside the build's aggregator. Every other
//! state kind implements [`GroupStates`] in a module of its own, and [`group_states`] is the
//! one place that says which module holds which [`StateKind`].

pub mod bitmap;
pub mod extended;
pub mod hll;
pub mod tdigest;
pub mod topn;

use datafusion::arrow::array::ArrayRef;

use crate::error::Result;
use crate::model::StateKind;

/// The states of one measure for every group of a build's hash aggregation, indexed by group
/// number (0, 1, 2, ... in the order groups were first seen).
pub trait GroupStates: Send {
    /// Appends an empty state (no rows yet) for a new group.
    fn push_empty(&mut self) -> Result<()>;
    /// Folds source values into the groups: row `i` of `input` goes to group `group_of[i]`.
    /// `input` is the measure's flat-table column, or for a measure with several raw inputs
    /// ([`crate::model::ResolvedMeasure::raw_inputs`]) a `StructArray` of them in order.
    fn update_raw(&mut self, input: &ArrayRef, group_of: &[u32]) -> Result<()>;
    /// Merges stored states (a column of this kind's state type) into the groups.
    fn merge(&mut self, states: &ArrayRef, group_of: &[u32]) -> Result<()>;
    /// The state column of groups `groups`, in that order, in the stored format.
    fn finish(&self, groups: &[usize]) -> Result<ArrayRef>;
    /// Heap bytes the states of `groups` hold (the caller samples and scales up).
    fn memory_of(&self, groups: &[usize]) -> usize;
    /// Heap bytes the per-group slots hold regardless of their contents.
    fn fixed_memory(&self) -> usize;
}

/// The per-group states of a state kind that is not a plain number; `None` for SUM, COUNT,
/// MIN and MAX, HLL and bitmaps (the aggregator keeps those itself).
pub fn group_states(kind: StateKind) -> Result<Option<Box<dyn GroupStates>>> {
    match kind {
        StateKind::Percentile(compression) => {
            Ok(Some(Box::new(tdigest::PercentileStates::new(compression)?)))
        }
        StateKind::Extended => Ok(Some(Box::new(extended::ExtendedStates::new()))),
        StateKind::TopN(n) => Ok(Some(Box::new(topn::TopNStates::new(n)))),
        _ => Ok(None),
    }
}
