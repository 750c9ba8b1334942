//! Auto-merge planning: which adjacent READY segments a cube's `auto_merge_time_ranges`
//! (days) ask to merge now. The rule is Kylin's (`Segments.autoMergeCubeSegments` and
//! `findMergeOffsetsByDateRange`), with days for milliseconds:
//!
//! 1. Candidates are the READY segments with a range, by start, minus those a NEW segment is
//!    already replacing (a running merge or refresh: its range contains them, or it lists
//!    them in `replaces`). So the same segments are never merged twice, and a segment under
//!    refresh leaves a hole.
//! 2. For each range R, largest first, and each candidate C in order, the window is
//!    `[C.start, C.start + R)`. From C on, collect the candidates that overlap the window,
//!    stopping at the first one longer than R or not adjacent to the previous one (a hole).
//! 3. If at least two were collected and they span at least R days, merge
//!    `[first.start, last.end)`. The last segment may reach past the window's end (Kylin does
//!    the same), so a merged segment can be longer than R.
//!
//! One merge is planned at a time; the job engine plans again after each segment turns READY,
//! so merges cascade (seven daily segments make a week, four weeks then make 28 days).
//! Kylin's `volatile_range` and `kylin.cube.max-segment-merge.span` have no Qilin
//! counterpart yet.

use chrono::Duration;

use super::{Segment, SegmentRange, SegmentStatus};
use crate::error::{Error, Result};

/// Longest auto-merge range accepted: 100 years (a longer one could never fill).
pub const MAX_AUTO_MERGE_DAYS: u32 = 36_525;

/// Checks a cube's `auto_merge_time_ranges`: each between 1 and [`MAX_AUTO_MERGE_DAYS`]
/// days, strictly ascending (smallest first, as Kylin writes them).
pub fn validate_auto_merge(cube: &str, ranges: &[u32]) -> Result<()> {
    let what = || format!("cube {cube}: auto_merge_time_ranges {ranges:?}");
    for &r in ranges {
        if r == 0 || r > MAX_AUTO_MERGE_DAYS {
            return Err(Error::invalid(
                what(),
                format!("each range is a number of days from 1 to {MAX_AUTO_MERGE_DAYS}, got {r} (Qilin counts days, not Kylin's milliseconds)"),
            ));
        }
    }
    if let Some(w) = ranges.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::invalid(
            what(),
            format!(
                "ranges must be strictly ascending, smallest first ({} then {})",
                w[0], w[1]
            ),
        ));
    }
    Ok(())
}

/// The range to merge now under `ranges` (days), or `None` when no window is filled. Pure:
/// reads only the segments it is given (see the module documentation for the rule).
pub fn plan_auto_merge(segments: &[Segment], ranges: &[u32]) -> Option<SegmentRange> {
    let being_replaced = |s: &Segment, r: &SegmentRange| {
        segments.iter().any(|n| {
            n.status == SegmentStatus::New
                && (n.replaces.contains(&s.id)
                    || n.range
                        .is_some_and(|nr| nr.start <= r.start && r.end <= nr.end))
        })
    };
    let mut candidates: Vec<SegmentRange> = segments
        .iter()
        .filter(|s| s.status == SegmentStatus::Ready)
        .filter_map(|s| s.range.filter(|r| !being_replaced(s, r)))
        .collect();
    candidates.sort();

    let mut ranges = ranges.to_vec();
    ranges.sort_unstable();
    for &days in ranges.iter().rev() {
        let span = Duration::days(i64::from(days));
        for (i, first) in candidates.iter().enumerate() {
            let window_end = first.start + span;
            let mut run: Vec<&SegmentRange> = Vec::new();
            for seg in &candidates[i..] {
                if !(seg.start < window_end && first.start < seg.end) {
                    continue;
                }
                if seg.end - seg.start > span {
                    break;
                }
                if run.last().is_some_and(|last| last.end != seg.start) {
                    break;
                }
                run.push(seg);
            }
            if let (Some(a), Some(b)) = (run.first(), run.last()) {
                if run.len() >= 2 && b.end - a.start >= span {
                    return Some(SegmentRange {
                        start: a.start,
                        end: b.end,
                    });
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    /// Day `n` counted from 2020-01-01 (Kylin's tests use milliseconds from 0; 1000 ms is a
    /// day here).
    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + Duration::days(n)
    }

    fn seg(id: &str, start: i64, end: i64, status: SegmentStatus) -> Segment {
        Segment {
            id: id.into(),
            name: id.into(),
            range: Some(SegmentRange::new(day(start), day(end)).unwrap()),
            status,
            job_id: None,
            replaces: vec![],
            created_ms: 0,
            ready_ms: None,
            source_rows: 0,
            size_bytes: 0,
            cuboids: vec![],
            descriptor_signature: None,
            snapshots: vec![],
            table_index: None,
        }
    }

    fn ready(start: i64, end: i64) -> Segment {
        seg(&format!("s{start}-{end}"), start, end, SegmentStatus::Ready)
    }

    fn range(start: i64, end: i64) -> Option<SegmentRange> {
        Some(SegmentRange::new(day(start), day(end)).unwrap())
    }

    // Kylin's CubeManagerTest.testAutoMergeNormal: ranges {2000, 6000}, [0,1000) + [1000,2000).
    #[test]
    fn two_segments_filling_the_small_range_merge() {
        let segs = [ready(0, 1), ready(1, 2)];
        assert_eq!(plan_auto_merge(&segs, &[2, 6]), range(0, 2));
    }

    // Kylin's testAutoMergeWithGap, step by step.
    #[test]
    fn a_hole_stops_a_window_until_it_is_filled() {
        let mut segs = vec![ready(0, 1), ready(2, 4)];
        assert_eq!(plan_auto_merge(&segs, &[2, 6]), None, "hole at [1, 2)");
        segs.push(ready(4, 8));
        assert_eq!(
            plan_auto_merge(&segs, &[2, 6]),
            range(2, 8),
            "6 days from day 2; the last segment reaches the window's end"
        );
        segs.push(ready(1, 2));
        assert_eq!(
            plan_auto_merge(&segs, &[2, 6]),
            range(0, 8),
            "the largest range wins, from the first segment; [4, 8) crosses day 6"
        );
    }

    // Kylin's testAutoMergeWithMaxSegmentMergeSpan without the span limit (Qilin has none):
    // a 4-day segment is too long for a 2-day range.
    #[test]
    fn segments_longer_than_the_range_are_never_merged() {
        let mut segs = vec![ready(0, 1), ready(1, 5), ready(5, 6)];
        assert_eq!(plan_auto_merge(&segs, &[2]), None);
        segs.push(ready(7, 8));
        assert_eq!(plan_auto_merge(&segs, &[2]), None);
        segs.push(ready(6, 7));
        assert_eq!(plan_auto_merge(&segs, &[2]), range(5, 7));
    }

    #[test]
    fn daily_segments_make_a_week_then_four_weeks_make_28_days() {
        let mut segs: Vec<Segment> = (0..6).map(|d| ready(d, d + 1)).collect();
        assert_eq!(plan_auto_merge(&segs, &[7, 28]), None, "six days only");
        segs.push(ready(6, 7));
        assert_eq!(plan_auto_merge(&segs, &[7, 28]), range(0, 7));

        let mut weeks = vec![ready(0, 7), ready(7, 14), ready(14, 21)];
        assert_eq!(
            plan_auto_merge(&weeks, &[7, 28]),
            None,
            "a week is one segment per 7-day window"
        );
        weeks.push(ready(21, 28));
        assert_eq!(plan_auto_merge(&weeks, &[7, 28]), range(0, 28));
        // The order of the ranges and of the segments does not matter.
        weeks.reverse();
        assert_eq!(plan_auto_merge(&weeks, &[28, 7]), range(0, 28));
    }

    #[test]
    fn a_merged_run_can_reach_past_the_window() {
        // Kylin keeps a segment that overlaps the window even when it ends after it.
        let segs = [ready(0, 5), ready(5, 10)];
        assert_eq!(plan_auto_merge(&segs, &[7]), range(0, 10));
    }

    #[test]
    fn segments_being_merged_or_refreshed_are_skipped() {
        let mut segs: Vec<Segment> = (0..7).map(|d| ready(d, d + 1)).collect();
        // A running merge of days 0..7 covers all of them: nothing left to plan.
        let mut merging = seg("m", 0, 7, SegmentStatus::New);
        merging.replaces = segs.iter().map(|s| s.id.clone()).collect();
        segs.push(merging);
        assert_eq!(plan_auto_merge(&segs, &[7]), None);
        segs.pop();

        // A refresh of day 3 (same range, NEW) leaves a hole; days 4..11 still fill a week.
        segs.push(seg("r", 3, 4, SegmentStatus::New));
        assert_eq!(plan_auto_merge(&segs, &[7]), None);
        segs.extend((7..11).map(|d| ready(d, d + 1)));
        assert_eq!(plan_auto_merge(&segs, &[7]), range(4, 11));
    }

    #[test]
    fn a_new_build_next_to_ready_segments_does_not_block_them() {
        let mut segs: Vec<Segment> = (0..7).map(|d| ready(d, d + 1)).collect();
        segs.push(seg("b", 7, 8, SegmentStatus::New));
        assert_eq!(plan_auto_merge(&segs, &[7]), range(0, 7));
    }

    #[test]
    fn nothing_to_plan_without_ranges_or_ranged_segments() {
        let segs: Vec<Segment> = (0..7).map(|d| ready(d, d + 1)).collect();
        assert_eq!(plan_auto_merge(&segs, &[]), None);
        let mut full = ready(0, 1);
        full.range = None;
        assert_eq!(plan_auto_merge(&[full.clone(), full], &[1]), None);
        assert_eq!(plan_auto_merge(&[ready(0, 1)], &[1]), None, "one segment");
    }

    #[test]
    fn validation_names_the_cube_and_the_bad_value() {
        assert!(validate_auto_merge("c", &[]).is_ok());
        assert!(validate_auto_merge("c", &[7, 28]).is_ok());
        let err = validate_auto_merge("c", &[604_800_000]).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { .. }) && err.to_string().contains("604800000"),
            "{err}"
        );
        assert!(err.to_string().contains("milliseconds"), "{err}");
        let err = validate_auto_merge("c", &[0]).unwrap_err().to_string();
        assert!(err.contains("cube c") && err.contains("got 0"), "{err}");
        let err = validate_auto_merge("c", &[28, 7]).unwrap_err().to_string();
        assert!(err.contains("ascending"), "{err}");
        assert!(validate_auto_merge("c", &[7, 7]).is_err());
    }
}
