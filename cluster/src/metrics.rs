//! The process's Prometheus metrics, on the `prometheus` crate: every metric of Qilin is
//! registered in one [`Metrics`] (a registry per instance, so tests start from zero; the
//! process uses [`global`]), recorded only through its methods, and rendered in the text
//! exposition format 0.0.4 by [`Metrics::render`] for `/metrics` ([`crate::http`]).
//!
//! Every family is always rendered (zeros until something happens), except `qilin_jobs`,
//! which appears once [`Metrics::set_job_counts`] has been called, and the sample of
//! `qilin_instance_info`, which appears once [`Metrics::set_instance`] has been called.
//! The `prometheus` crate leaves out families without samples, so the `# HELP`/`# TYPE` lines
//! of an unset `qilin_instance_info` are the one piece written here by hand (families are
//! otherwise rendered in name order, label names of a sample in alphabetical order).

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

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
const QUERY_OUTCOMES: [&str; 4] = ["ok", "error", "rejected", "cancelled"];
/// Job statuses `qilin_jobs_finished_total` renders even before the first job ends.
const FINISHED_STATUSES: [&str; 4] = ["SUCCEED", "ERROR", "STOPPED", "DISCARDED"];

const INSTANCE_INFO: &str = "qilin_instance_info";
const INSTANCE_INFO_HELP: &str = "Mode and address of this instance (always 1).";

/// The metrics of this process; see [`global`].
pub struct Metrics {
    registry: Registry,
    instance: IntGaugeVec,
    queries: IntCounterVec,
    query_duration: Histogram,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    notifications_sent: IntCounter,
    notifications_failed: IntCounter,
    notifications_received: IntCounterVec,
    reloads: IntCounter,
    store_version: IntGauge,
    lease_held: IntGauge,
    lease_epoch: IntGauge,
    jobs: IntGaugeVec,
    jobs_finished: IntCounterVec,
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

/// Registers `metric` in `registry` and returns it. Names, labels and buckets are constants
/// of this file, so a failure is a programming error.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric definitions are valid and registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("valid counter"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid gauge"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid counter family"),
    )
}

impl Metrics {
    /// An empty registry (tests; the process uses [`global`]).
    pub fn new() -> Metrics {
        let r = Registry::new();
        let instance = register(
            &r,
            IntGaugeVec::new(
                Opts::new(INSTANCE_INFO, INSTANCE_INFO_HELP),
                &["mode", "addr"],
            )
            .expect("valid gauge family"),
        );
        let queries = counter_vec(
            &r,
            "qilin_queries_total",
            "Queries finished, by outcome (ok, error, rejected, cancelled: the client stopped reading).",
            "outcome",
        );
        for outcome in QUERY_OUTCOMES {
            queries.with_label_values(&[outcome]);
        }
        let query_duration = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "qilin_query_duration_seconds",
                    "Time from receiving a query to its end, in seconds.",
                )
                .buckets(QUERY_DURATION_BUCKETS.iter().map(|(le, _)| *le).collect()),
            )
            .expect("valid histogram"),
        );
        let notifications_received = counter_vec(
            &r,
            "qilin_notifications_received_total",
            "Metadata-change notifications received, by result (accepted, refused).",
            "result",
        );
        for result in ["accepted", "refused"] {
            notifications_received.with_label_values(&[result]);
        }
        let jobs = register(
            &r,
            IntGaugeVec::new(
                Opts::new("qilin_jobs", "Jobs in the store, by status."),
                &["status"],
            )
            .expect("valid gauge family"),
        );
        let jobs_finished = counter_vec(
            &r,
            "qilin_jobs_finished_total",
            "Job runs this instance ended, by final status.",
            "status",
        );
        for status in FINISHED_STATUSES {
            jobs_finished.with_label_values(&[status]);
        }
        Metrics {
            instance,
            queries,
            query_duration,
            cache_hits: counter(
                &r,
                "qilin_query_cache_hits_total",
                "Queries answered from the result cache.",
            ),
            cache_misses: counter(
                &r,
                "qilin_query_cache_misses_total",
                "Cacheable queries not found in the result cache.",
            ),
            notifications_sent: counter(
                &r,
                "qilin_notifications_sent_total",
                "Metadata-change notifications acknowledged by a peer.",
            ),
            notifications_failed: counter(
                &r,
                "qilin_notifications_failed_total",
                "Peers given up on after retrying a metadata-change notification.",
            ),
            notifications_received,
            reloads: counter(
                &r,
                "qilin_metadata_reloads_total",
                "Reloads of the metadata from the store.",
            ),
            store_version: gauge(
                &r,
                "qilin_metadata_store_version",
                "Store-wide metadata version this instance has loaded.",
            ),
            lease_held: gauge(
                &r,
                "qilin_job_engine_lease_held",
                "1 if this instance holds the job engine lease, else 0.",
            ),
            lease_epoch: gauge(
                &r,
                "qilin_job_engine_lease_epoch",
                "Epoch of the job engine lease last seen by this instance.",
            ),
            jobs,
            jobs_finished,
            registry: r,
        }
    }

    /// `qilin_instance_info{mode="query",addr="127.0.0.1:7070"} 1` (replaces an earlier call).
    pub fn set_instance(&self, mode: &str, addr: &str) {
        // One sample at a time: a concurrent render may see none, never two.
        self.instance.reset();
        self.instance.with_label_values(&[mode, addr]).set(1);
    }

    /// One query ended: `qilin_queries_total{outcome}` (`"ok"`, `"error"`, `"rejected"` or
    /// `"cancelled"`) and the `qilin_query_duration_seconds` histogram.
    pub fn query_finished(&self, elapsed: Duration, outcome: &str) {
        self.queries.with_label_values(&[outcome]).inc();
        self.query_duration.observe(elapsed.as_secs_f64());
    }

    /// `qilin_query_cache_hits_total`.
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// `qilin_query_cache_misses_total`.
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// `qilin_notifications_sent_total`: a peer acknowledged a notification.
    pub fn notification_sent(&self) {
        self.notifications_sent.inc();
    }

    /// `qilin_notifications_failed_total`: a peer given up on after retries.
    pub fn notification_failed(&self) {
        self.notifications_failed.inc();
    }

    /// `qilin_notifications_received_total{result="accepted"|"refused"}`.
    pub fn notification_received(&self, accepted: bool) {
        let result = if accepted { "accepted" } else { "refused" };
        self.notifications_received
            .with_label_values(&[result])
            .inc();
    }

    /// `qilin_metadata_reloads_total`.
    pub fn reload(&self) {
        self.reloads.inc();
    }

    /// Gauge `qilin_metadata_store_version`.
    pub fn set_store_version(&self, v: u64) {
        self.store_version.set(gauge_value(v));
    }

    /// Gauge `qilin_job_engine_lease_held` (0 or 1).
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.set(i64::from(held));
    }

    /// Gauge `qilin_job_engine_lease_epoch`.
    pub fn set_lease_epoch(&self, epoch: u64) {
        self.lease_epoch.set(gauge_value(epoch));
    }

    /// Gauge `qilin_jobs{status}`: replaces the previous set entirely (statuses missing from
    /// `counts` disappear).
    pub fn set_job_counts(&self, counts: &[(&str, u64)]) {
        self.jobs.reset();
        for (status, n) in counts {
            self.jobs.with_label_values(&[status]).set(gauge_value(*n));
        }
    }

    /// Counter `qilin_jobs_finished_total{status}`.
    pub fn job_finished(&self, status: &str) {
        self.jobs_finished.with_label_values(&[status]).inc();
    }

    /// Everything in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(4096);
        if !families.iter().any(|f| f.name() == INSTANCE_INFO) {
            // Declared before its first sample, as every other family (see the module doc).
            out.extend_from_slice(
                format!(
                    "# HELP {INSTANCE_INFO} {INSTANCE_INFO_HELP}\n# TYPE {INSTANCE_INFO} gauge\n"
                )
                .as_bytes(),
            );
        }
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("the text encoding of valid families cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// Gauges are `i64`: a (never seen) value above `i64::MAX` saturates.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
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

    fn sorted(mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
        labels.sort();
        labels
    }

    /// `text` has a sample `name` with exactly these labels (in any order: Prometheus does
    /// not order labels, and the `prometheus` crate renders them sorted by name) and value.
    fn has_sample(text: &str, name: &str, labels: &[(&str, &str)], value: f64) {
        let want = sorted(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        assert!(
            parse_all(text)
                .into_iter()
                .any(|(n, l, v)| n == name && sorted(l) == want && v == value),
            "missing sample {name} {labels:?} {value} in:\n{text}"
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

        has_sample(
            &text,
            "qilin_instance_info",
            &[("mode", "query"), ("addr", "127.0.0.1:7070")],
            1.0,
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
        has_sample(
            &text,
            "qilin_instance_info",
            &[("mode", "qu\"ery"), ("addr", "a\\b\nc")],
            1.0,
        );
        // Label values are escaped in the text (the label order is the crate's: by name).
        assert!(
            text.contains(r#"mode="qu\"ery""#) && text.contains(r#"addr="a\\b\nc""#),
            "{text}"
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
            sorted(info.1.clone()),
            sorted(vec![
                ("mode".to_string(), "qu\"ery".to_string()),
                ("addr".to_string(), "a\\b\nc".to_string())
            ])
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
