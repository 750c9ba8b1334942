//! Process-global Prometheus metrics (std only: atomics for plain counters and gauges, a
//! mutex for labelled families and the query histogram), rendered in the Prometheus text
//! exposition format 0.0.4 by [`Metrics::render`] and served on `/metrics` by
//! [`crate::http::serve_http`].
//!
//! Every family is always rendered (zeros until something happens), except `qilin_jobs`,
//! which appears once [`Metrics::set_job_counts`] has been called, and the sample of
//! `qilin_instance_info`, which appears once [`Metrics::set_instance`] has been called.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Upper bounds (seconds) of the `qilin_query_duration_seconds` buckets, as rendered in
/// `le`, without the final `+Inf`.
pub const QUERY_DURATION_BUCKETS: [(f64, &str); 13] = [
    (0.001, "0.001"),
    (0.0025, "0.0025"),
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.025, "0.025"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1"),
    (2.5, "2.5"),
    (5.0, "5"),
    (10.0, "10"),
];

/// Query outcomes rendered even before the first query.
const QUERY_OUTCOMES: [&str; 3] = ["ok", "error", "rejected"];
/// Job statuses `qilin_jobs_finished_total` renders even before the first job ends.
const FINISHED_STATUSES: [&str; 4] = ["SUCCEED", "ERROR", "STOPPED", "DISCARDED"];

/// The metrics of this process; see [`global`].
pub struct Metrics {
    instance: Mutex<Option<(String, String)>>,
    queries: Mutex<QueryStats>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    notifications_sent: AtomicU64,
    notifications_failed: AtomicU64,
    notifications_accepted: AtomicU64,
    notifications_refused: AtomicU64,
    reloads: AtomicU64,
    store_version: AtomicU64,
    lease_held: AtomicU64,
    lease_epoch: AtomicU64,
    /// `None` until [`Metrics::set_job_counts`] is called.
    job_counts: Mutex<Option<Vec<(String, u64)>>>,
    jobs_finished: Mutex<BTreeMap<String, u64>>,
}

struct QueryStats {
    by_outcome: BTreeMap<String, u64>,
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; QUERY_DURATION_BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

/// The process-wide registry.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry (tests; the process uses [`global`]).
    pub fn new() -> Metrics {
        Metrics {
            instance: Mutex::new(None),
            queries: Mutex::new(QueryStats {
                by_outcome: QUERY_OUTCOMES.iter().map(|o| (o.to_string(), 0)).collect(),
                buckets: [0; QUERY_DURATION_BUCKETS.len() + 1],
                sum_seconds: 0.0,
                count: 0,
            }),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            notifications_sent: AtomicU64::new(0),
            notifications_failed: AtomicU64::new(0),
            notifications_accepted: AtomicU64::new(0),
            notifications_refused: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            store_version: AtomicU64::new(0),
            lease_held: AtomicU64::new(0),
            lease_epoch: AtomicU64::new(0),
            job_counts: Mutex::new(None),
            jobs_finished: Mutex::new(
                FINISHED_STATUSES
                    .iter()
                    .map(|s| (s.to_string(), 0))
                    .collect(),
            ),
        }
    }

    /// `qilin_instance_info{mode="query",addr="127.0.0.1:7070"} 1` (replaces an earlier call).
    pub fn set_instance(&self, mode: &str, addr: &str) {
        *lock(&self.instance) = Some((mode.to_string(), addr.to_string()));
    }

    /// One query ended: `qilin_queries_total{outcome}` (`"ok"`, `"error"` or `"rejected"`) and
    /// the `qilin_query_duration_seconds` histogram.
    pub fn query_finished(&self, elapsed: Duration, outcome: &str) {
        let secs = elapsed.as_secs_f64();
        let bucket = QUERY_DURATION_BUCKETS
            .iter()
            .position(|(le, _)| secs <= *le)
            .unwrap_or(QUERY_DURATION_BUCKETS.len());
        let mut q = lock(&self.queries);
        *q.by_outcome.entry(outcome.to_string()).or_insert(0) += 1;
        q.buckets[bucket] += 1;
        q.sum_seconds += secs;
        q.count += 1;
    }

    /// `qilin_query_cache_hits_total`.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// `qilin_query_cache_misses_total`.
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// `qilin_notifications_sent_total`: a peer acknowledged a notification.
    pub fn notification_sent(&self) {
        self.notifications_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// `qilin_notifications_failed_total`: a peer given up on after retries.
    pub fn notification_failed(&self) {
        self.notifications_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// `qilin_notifications_received_total{result="accepted"|"refused"}`.
    pub fn notification_received(&self, accepted: bool) {
        let c = if accepted {
            &self.notifications_accepted
        } else {
            &self.notifications_refused
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// `qilin_metadata_reloads_total`.
    pub fn reload(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Gauge `qilin_metadata_store_version`.
    pub fn set_store_version(&self, v: u64) {
        self.store_version.store(v, Ordering::Relaxed);
    }

    /// Gauge `qilin_job_engine_lease_held` (0 or 1).
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.store(u64::from(held), Ordering::Relaxed);
    }

    /// Gauge `qilin_job_engine_lease_epoch`.
    pub fn set_lease_epoch(&self, epoch: u64) {
        self.lease_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Gauge `qilin_jobs{status}`: replaces the previous set entirely (statuses missing from
    /// `counts` disappear).
    pub fn set_job_counts(&self, counts: &[(&str, u64)]) {
        *lock(&self.job_counts) = Some(counts.iter().map(|(s, n)| (s.to_string(), *n)).collect());
    }

    /// Counter `qilin_jobs_finished_total{status}`.
    pub fn job_finished(&self, status: &str) {
        *lock(&self.jobs_finished)
            .entry(status.to_string())
            .or_insert(0) += 1;
    }

    /// Everything in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);

        family(
            &mut out,
            "qilin_instance_info",
            "gauge",
            "Mode and address of this instance (always 1).",
        );
        if let Some((mode, addr)) = lock(&self.instance).clone() {
            sample(
                &mut out,
                "qilin_instance_info",
                &[("mode", &mode), ("addr", &addr)],
                1,
            );
        }

        {
            let q = lock(&self.queries);
            family(
                &mut out,
                "qilin_queries_total",
                "counter",
                "Queries finished, by outcome (ok, error, rejected).",
            );
            for (outcome, n) in &q.by_outcome {
                sample(&mut out, "qilin_queries_total", &[("outcome", outcome)], *n);
            }
            family(
                &mut out,
                "qilin_query_duration_seconds",
                "histogram",
                "Time from receiving a query to its end, in seconds.",
            );
            let mut cumulative = 0;
            for (i, n) in q.buckets.iter().enumerate() {
                cumulative += n;
                let le = QUERY_DURATION_BUCKETS.get(i).map_or("+Inf", |(_, s)| s);
                sample(
                    &mut out,
                    "qilin_query_duration_seconds_bucket",
                    &[("le", le)],
                    cumulative,
                );
            }
            let _ = writeln!(out, "qilin_query_duration_seconds_sum {}", q.sum_seconds);
            let _ = writeln!(out, "qilin_query_duration_seconds_count {}", q.count);
        }

        counter(
            &mut out,
            "qilin_query_cache_hits_total",
            "Queries answered from the result cache.",
            load(&self.cache_hits),
        );
        counter(
            &mut out,
            "qilin_query_cache_misses_total",
            "Cacheable queries not found in the result cache.",
            load(&self.cache_misses),
        );
        counter(
            &mut out,
            "qilin_notifications_sent_total",
            "Metadata-change notifications acknowledged by a peer.",
            load(&self.notifications_sent),
        );
        counter(
            &mut out,
            "qilin_notifications_failed_total",
            "Peers given up on after retrying a metadata-change notification.",
            load(&self.notifications_failed),
        );
        family(
            &mut out,
            "qilin_notifications_received_total",
            "counter",
            "Metadata-change notifications received, by result (accepted, refused).",
        );
        sample(
            &mut out,
            "qilin_notifications_received_total",
            &[("result", "accepted")],
            load(&self.notifications_accepted),
        );
        sample(
            &mut out,
            "qilin_notifications_received_total",
            &[("result", "refused")],
            load(&self.notifications_refused),
        );
        counter(
            &mut out,
            "qilin_metadata_reloads_total",
            "Reloads of the metadata from the store.",
            load(&self.reloads),
        );
        gauge(
            &mut out,
            "qilin_metadata_store_version",
            "Store-wide metadata version this instance has loaded.",
            load(&self.store_version),
        );
        gauge(
            &mut out,
            "qilin_job_engine_lease_held",
            "1 if this instance holds the job engine lease, else 0.",
            load(&self.lease_held),
        );
        gauge(
            &mut out,
            "qilin_job_engine_lease_epoch",
            "Epoch of the job engine lease last seen by this instance.",
            load(&self.lease_epoch),
        );

        if let Some(counts) = lock(&self.job_counts).as_ref() {
            family(
                &mut out,
                "qilin_jobs",
                "gauge",
                "Jobs in the store, by status.",
            );
            for (status, n) in counts {
                sample(&mut out, "qilin_jobs", &[("status", status)], *n);
            }
        }
        family(
            &mut out,
            "qilin_jobs_finished_total",
            "counter",
            "Job runs this instance ended, by final status.",
        );
        for (status, n) in lock(&self.jobs_finished).iter() {
            sample(
                &mut out,
                "qilin_jobs_finished_total",
                &[("status", status)],
                *n,
            );
        }
        out
    }
}

/// A poisoned lock still holds consistent numbers (every update is a single step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    sample(out, name, &[], value);
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "gauge", help);
    sample(out, name, &[], value);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and line feeds (exposition format 0.0.4).
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn has(text: &str, line: &str) {
        assert!(
            lines(text).contains(&line),
            "missing line {line:?} in:\n{text}"
        );
    }

    /// A parsed sample line: name, unescaped labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// A minimal exposition-format line parser: `name[{k="v",...}] value` (returns the name,
    /// the unescaped labels and the value) or `None` for a comment.
    fn parse_line(line: &str) -> Option<Sample> {
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let kw = parts.next().unwrap();
            assert!(kw == "HELP" || kw == "TYPE", "unknown comment {line:?}");
            let name = parts.next().expect("comment names a metric");
            assert!(valid_name(name), "bad metric name in {line:?}");
            let rest = parts.next().expect("comment has text");
            if kw == "TYPE" {
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&rest),
                    "bad type in {line:?}"
                );
            }
            return None;
        }
        let mut chars = line.char_indices().peekable();
        let mut name_end = line.len();
        while let Some(&(i, c)) = chars.peek() {
            if c == '{' || c == ' ' {
                name_end = i;
                break;
            }
            chars.next();
        }
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name in {line:?}");
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut s = after;
            loop {
                if let Some(r) = s.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = s
                    .find("=\"")
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                let key = &s[..eq];
                assert!(
                    valid_name(key) && !key.contains(':'),
                    "bad label name {line:?}"
                );
                let mut value = String::new();
                let mut it = s[eq + 2..].char_indices();
                let end = loop {
                    match it.next() {
                        Some((i, '"')) => break eq + 2 + i + 1,
                        Some((_, '\\')) => match it.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line:?}"),
                        },
                        Some((_, '\n')) => panic!("raw newline in {line:?}"),
                        Some((_, c)) => value.push(c),
                        None => panic!("unterminated label value in {line:?}"),
                    }
                };
                labels.push((key.to_string(), value));
                s = &s[end..];
                s = s.strip_prefix(',').unwrap_or(s);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        Some((name.to_string(), labels, v))
    }

    fn valid_name(n: &str) -> bool {
        let mut cs = n.chars();
        matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn parse_all(text: &str) -> Vec<Sample> {
        assert!(text.ends_with('\n'), "exposition ends with a line feed");
        text.lines().filter_map(parse_line).collect()
    }

    #[test]
    fn empty_registry_renders_every_family_with_zeros() {
        let m = Metrics::new();
        let text = m.render();
        parse_all(&text);
        for family in [
            "qilin_instance_info",
            "qilin_queries_total",
            "qilin_query_duration_seconds",
            "qilin_query_cache_hits_total",
            "qilin_query_cache_misses_total",
            "qilin_notifications_sent_total",
            "qilin_notifications_failed_total",
            "qilin_notifications_received_total",
            "qilin_metadata_reloads_total",
            "qilin_metadata_store_version",
            "qilin_job_engine_lease_held",
            "qilin_job_engine_lease_epoch",
            "qilin_jobs_finished_total",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
        assert!(!text.contains("qilin_jobs "), "no job counts yet:\n{text}");
        assert!(!text.contains("# TYPE qilin_jobs gauge"));
        assert!(!text.contains("qilin_instance_info{"));
        has(&text, r#"qilin_queries_total{outcome="ok"} 0"#);
        has(&text, r#"qilin_queries_total{outcome="error"} 0"#);
        has(&text, r#"qilin_queries_total{outcome="rejected"} 0"#);
        has(&text, r#"qilin_query_duration_seconds_bucket{le="+Inf"} 0"#);
        has(&text, "qilin_query_duration_seconds_sum 0");
        has(&text, "qilin_query_duration_seconds_count 0");
        has(&text, "qilin_query_cache_hits_total 0");
        has(
            &text,
            r#"qilin_notifications_received_total{result="refused"} 0"#,
        );
        has(&text, "qilin_job_engine_lease_held 0");
        has(&text, r#"qilin_jobs_finished_total{status="SUCCEED"} 0"#);
    }

    #[test]
    fn render_after_calls() {
        let m = Metrics::new();
        m.set_instance("query", "127.0.0.1:7070");
        m.query_finished(Duration::from_micros(500), "ok"); // <= 0.001
        m.query_finished(Duration::from_millis(1), "ok"); // exactly 0.001
        m.query_finished(Duration::from_millis(30), "error"); // <= 0.05
        m.query_finished(Duration::from_secs(3), "rejected"); // <= 5
        m.query_finished(Duration::from_secs(60), "ok"); // +Inf only
        m.cache_hit();
        m.cache_hit();
        m.cache_miss();
        m.notification_sent();
        m.notification_sent();
        m.notification_sent();
        m.notification_failed();
        m.notification_received(true);
        m.notification_received(false);
        m.notification_received(true);
        m.reload();
        m.set_store_version(12);
        m.set_lease_held(true);
        m.set_lease_epoch(7);
        m.set_job_counts(&[("RUNNING", 1), ("READY", 2)]);
        m.job_finished("SUCCEED");
        m.job_finished("SUCCEED");
        m.job_finished("ERROR");
        let text = m.render();
        parse_all(&text);

        has(
            &text,
            r#"qilin_instance_info{mode="query",addr="127.0.0.1:7070"} 1"#,
        );
        has(&text, r#"qilin_queries_total{outcome="ok"} 3"#);
        has(&text, r#"qilin_queries_total{outcome="error"} 1"#);
        has(&text, r#"qilin_queries_total{outcome="rejected"} 1"#);
        for (le, n) in [
            ("0.001", 2),
            ("0.0025", 2),
            ("0.005", 2),
            ("0.01", 2),
            ("0.025", 2),
            ("0.05", 3),
            ("0.1", 3),
            ("0.25", 3),
            ("0.5", 3),
            ("1", 3),
            ("2.5", 3),
            ("5", 4),
            ("10", 4),
            ("+Inf", 5),
        ] {
            has(
                &text,
                &format!(r#"qilin_query_duration_seconds_bucket{{le="{le}"}} {n}"#),
            );
        }
        has(&text, "qilin_query_duration_seconds_count 5");
        let sum = parse_all(&text)
            .into_iter()
            .find(|(n, _, _)| n == "qilin_query_duration_seconds_sum")
            .unwrap()
            .2;
        assert!((sum - 63.0315).abs() < 1e-9, "sum {sum}");
        has(&text, "qilin_query_cache_hits_total 2");
        has(&text, "qilin_query_cache_misses_total 1");
        has(&text, "qilin_notifications_sent_total 3");
        has(&text, "qilin_notifications_failed_total 1");
        has(
            &text,
            r#"qilin_notifications_received_total{result="accepted"} 2"#,
        );
        has(
            &text,
            r#"qilin_notifications_received_total{result="refused"} 1"#,
        );
        has(&text, "qilin_metadata_reloads_total 1");
        has(&text, "qilin_metadata_store_version 12");
        has(&text, "qilin_job_engine_lease_held 1");
        has(&text, "qilin_job_engine_lease_epoch 7");
        has(&text, "# TYPE qilin_jobs gauge");
        has(&text, r#"qilin_jobs{status="RUNNING"} 1"#);
        has(&text, r#"qilin_jobs{status="READY"} 2"#);
        has(&text, r#"qilin_jobs_finished_total{status="SUCCEED"} 2"#);
        has(&text, r#"qilin_jobs_finished_total{status="ERROR"} 1"#);
        has(&text, r#"qilin_jobs_finished_total{status="DISCARDED"} 0"#);

        // The histogram's buckets are cumulative and end with +Inf == _count.
        let buckets: Vec<f64> = parse_all(&text)
            .into_iter()
            .filter(|(n, _, _)| n == "qilin_query_duration_seconds_bucket")
            .map(|(_, _, v)| v)
            .collect();
        assert_eq!(buckets.len(), QUERY_DURATION_BUCKETS.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));

        // A new set of job counts replaces the old one entirely.
        m.set_job_counts(&[("ERROR", 4)]);
        let text = m.render();
        has(&text, r#"qilin_jobs{status="ERROR"} 4"#);
        assert!(!text.contains(r#"qilin_jobs{status="RUNNING"}"#), "{text}");
        m.set_lease_held(false);
        has(&m.render(), "qilin_job_engine_lease_held 0");
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let m = Metrics::new();
        m.set_instance("all", "h:1");
        m.set_job_counts(&[("RUNNING", 0)]);
        let text = m.render();
        let mut typed: Vec<(String, String)> = Vec::new();
        let mut helped = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    helped.contains(&name.to_string()),
                    "HELP before TYPE: {line}"
                );
                assert!(
                    !typed.iter().any(|(n, _)| n == name),
                    "family {name} declared twice"
                );
                typed.push((name.to_string(), kind.to_string()));
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.push(rest.split_once(' ').unwrap().0.to_string());
            } else {
                let (name, _, _) = parse_line(line).unwrap();
                let (family, kind) = typed.last().expect("sample after a TYPE line");
                let ok = if kind == "histogram" {
                    [
                        format!("{family}_bucket"),
                        format!("{family}_sum"),
                        format!("{family}_count"),
                    ]
                    .contains(&name)
                } else {
                    &name == family
                };
                assert!(ok, "sample {line:?} outside its family {family}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.set_instance("qu\"ery", "a\\b\nc");
        m.job_finished("WEIRD\"}\n 1");
        let text = m.render();
        has(
            &text,
            r#"qilin_instance_info{mode="qu\"ery",addr="a\\b\nc"} 1"#,
        );
        has(
            &text,
            r#"qilin_jobs_finished_total{status="WEIRD\"}\n 1"} 1"#,
        );
        let samples = parse_all(&text);
        let info = samples
            .iter()
            .find(|(n, _, _)| n == "qilin_instance_info")
            .unwrap();
        assert_eq!(
            info.1,
            vec![
                ("mode".to_string(), "qu\"ery".to_string()),
                ("addr".to_string(), "a\\b\nc".to_string())
            ]
        );
        let weird = samples
            .iter()
            .find(|(_, l, _)| l.first().is_some_and(|(_, v)| v.starts_with("WEIRD")))
            .unwrap();
        assert_eq!(weird.1[0].1, "WEIRD\"}\n 1");
        assert_eq!(weird.2, 1.0);
    }

    #[test]
    fn concurrent_updates_are_all_counted() {
        let m = std::sync::Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.cache_hit();
                        m.query_finished(Duration::from_millis(2), "ok");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render();
        has(&text, "qilin_query_cache_hits_total 4000");
        has(&text, r#"qilin_queries_total{outcome="ok"} 4000"#);
        has(
            &text,
            r#"qilin_query_duration_seconds_bucket{le="0.0025"} 4000"#,
        );
        has(
            &text,
            r#"qilin_query_duration_seconds_bucket{le="0.001"} 0"#,
        );
    }

    #[test]
    fn global_is_one_registry() {
        assert!(std::ptr::eq(global(), global()));
        assert!(global()
            .render()
            .contains("# TYPE qilin_queries_total counter"));
    }
}
