//! Progress as plain text lines, for logs and output that is not a terminal.

use std::sync::{Arc, Mutex};

use crate::engine::Observer;
use crate::job::Job;

/// An observer that emits one line per step change, per 10% of progress and at the end:
/// `job ID STATUS step I/N NAME: P% MESSAGE`.
pub fn progress_lines(emit: impl Fn(String) + Send + Sync + 'static) -> Observer {
    let last = Mutex::new((usize::MAX, -1i64));
    Arc::new(move |j: &Job| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let step = j.current_step();
        let decile = (j.progress * 10.0).floor() as i64;
        if (step, decile) != *last || j.status.is_final() {
            *last = (step, decile);
            let name = j.steps.get(step).map(|s| s.name.as_str()).unwrap_or("");
            emit(format!(
                "job {} {} step {}/{} {name}: {:.0}% {}",
                j.id,
                j.status,
                step + 1,
                j.steps.len(),
                j.progress * 100.0,
                j.message
            ));
        }
    })
}
