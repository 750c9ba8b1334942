//! One overall, never-decreasing progress fraction for a build or merge made of phases
//! (lookup snapshots, flat table, cuboids, table index) whose parts run in parallel.
//!
//! Each phase has a fixed weight; its own fraction only ever rises (a report lower than what
//! the phase already reached is a stale one from a parallel worker and adds nothing), and the
//! overall fraction is the weighted sum. Reports reach the sink in order under one lock, so
//! the sink sees a non-decreasing sequence even when cuboids finish on several threads.

use std::sync::{Arc, Mutex};

use super::Progress;
use crate::error::Result;

/// The phases of a build or merge and their shares of the whole. Rough shares of the time a
/// build spends in each (SSB): the flat table read and base cuboid dominate with the other
/// cuboids; snapshots and the table index are small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Snapshots,
    FlatTable,
    Cuboids,
    TableIndex,
}

impl Phase {
    fn weight(self) -> f64 {
        match self {
            Phase::Snapshots => 0.03,
            Phase::FlatTable => 0.35,
            Phase::Cuboids => 0.55,
            Phase::TableIndex => 0.07,
        }
    }
}

struct State {
    /// (phase, weight normalised over the phases present, fraction reached).
    phases: Vec<(Phase, f64, f64)>,
    reported: f64,
}

/// The shared overall progress of one build or merge.
pub struct Tracker {
    state: Mutex<State>,
    sink: Progress,
}

impl Tracker {
    /// A tracker over `phases` (those this build has; their weights are rescaled to sum to
    /// 1) reporting the overall fraction to `sink`.
    pub fn new(sink: Progress, phases: &[Phase]) -> Arc<Tracker> {
        let total: f64 = phases.iter().map(|p| p.weight()).sum();
        Arc::new(Tracker {
            state: Mutex::new(State {
                phases: phases
                    .iter()
                    .map(|&p| (p, p.weight() / total.max(f64::MIN_POSITIVE), 0.0))
                    .collect(),
                reported: 0.0,
            }),
            sink,
        })
    }

    /// Records that `phase` reached `fraction` (of itself; lower than before is ignored) and
    /// reports the overall fraction with `message`. An error from the sink (a discarded job,
    /// a lost lease) is returned so the build stops.
    pub fn report(&self, phase: Phase, fraction: f64, message: &str) -> Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = s.phases.iter_mut().find(|p| p.0 == phase) {
            let f = if fraction.is_finite() {
                fraction.clamp(0.0, 1.0)
            } else {
                0.0
            };
            p.2 = p.2.max(f);
        }
        let overall: f64 = s.phases.iter().map(|p| p.1 * p.2).sum();
        // max(): the sum of rising terms can still wobble in the last bit.
        s.reported = s.reported.max(overall.min(1.0));
        let reported = s.reported;
        (self.sink)(reported, message)
    }

    /// A [`Progress`] callback for one phase: its fraction is of that phase alone (0 to only
    /// say what is happening).
    pub fn phase(self: &Arc<Self>, phase: Phase) -> Progress {
        let t = self.clone();
        Arc::new(move |fraction, message| t.report(phase, fraction, message))
    }

    /// The overall fraction reported so far.
    pub fn fraction(&self) -> f64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> (Progress, Arc<Mutex<Vec<f64>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: Progress = Arc::new(move |f, _| {
            s.lock().unwrap().push(f);
            Ok(())
        });
        (sink, seen)
    }

    fn assert_non_decreasing(v: &[f64]) {
        for w in v.windows(2) {
            assert!(
                w[1] >= w[0],
                "progress went from {} to {}: {v:?}",
                w[0],
                w[1]
            );
        }
    }

    /// What the build did before: a worker that took its cuboid when 1 of 4 were done
    /// reports "1/4" while writing, after another worker already reported "3/4".
    #[test]
    fn a_stale_report_from_a_parallel_worker_does_not_lower_progress() {
        let (sink, seen) = recording();
        let t = Tracker::new(sink, &[Phase::Cuboids]);
        let cuboids = t.phase(Phase::Cuboids);
        cuboids(0.25, "cuboid 1/4").unwrap();
        cuboids(0.75, "cuboid 3/4").unwrap();
        cuboids(0.25, "cuboid 7: 1000 rows written").unwrap(); // stale
        cuboids(1.0, "cuboid 4/4").unwrap();
        let v = seen.lock().unwrap().clone();
        assert_eq!(v, vec![0.25, 0.75, 0.75, 1.0]);
    }

    /// A later phase reporting "0" (it only says what it does) never resets the total.
    #[test]
    fn phases_add_up_by_weight_and_a_new_phase_starts_from_where_the_last_ended() {
        let (sink, seen) = recording();
        let t = Tracker::new(sink, &[Phase::FlatTable, Phase::Cuboids, Phase::TableIndex]);
        t.report(Phase::FlatTable, 1.0, "flat table read").unwrap();
        let after_flat = t.fraction();
        let total = 0.35 + 0.55 + 0.07;
        assert!((after_flat - 0.35 / total).abs() < 1e-9, "{after_flat}");
        t.report(Phase::Cuboids, 1.0, "cuboids").unwrap();
        t.report(Phase::TableIndex, 0.0, "table index: 64 rows")
            .unwrap();
        assert!((t.fraction() - 0.90 / total).abs() < 1e-9);
        t.report(Phase::TableIndex, 1.0, "table index").unwrap();
        assert!((t.fraction() - 1.0).abs() < 1e-9);
        assert_non_decreasing(&seen.lock().unwrap());
        // A phase the build does not have adds nothing.
        t.report(Phase::Snapshots, 1.0, "none").unwrap();
        assert!(t.fraction() <= 1.0);
    }

    /// Many workers finishing units concurrently, each also sending stale partial reports:
    /// the sink's sequence never decreases and ends at 1.
    #[test]
    fn concurrent_workers_produce_a_non_decreasing_sequence() {
        let (sink, seen) = recording();
        let t = Tracker::new(sink, &[Phase::Cuboids]);
        let total = 400;
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| loop {
                    let started = done.load(std::sync::atomic::Ordering::SeqCst);
                    if started >= total {
                        return;
                    }
                    let stale = started as f64 / total as f64;
                    t.report(Phase::Cuboids, stale, "writing").unwrap();
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    if n > total {
                        return;
                    }
                    t.report(Phase::Cuboids, n as f64 / total as f64, "done one")
                        .unwrap();
                });
            }
        });
        let v = seen.lock().unwrap().clone();
        assert_non_decreasing(&v);
        assert_eq!(v.last().copied(), Some(1.0));
    }

    #[test]
    fn an_error_from_the_sink_stops_the_reporter() {
        let sink: Progress = Arc::new(|_, _| Err(crate::Error::Refused("discarded".into())));
        let t = Tracker::new(sink, &[Phase::Cuboids]);
        assert!(t.phase(Phase::Cuboids)(0.5, "x").is_err());
    }
}
