//! Locust's `stats` report, made from what the worker's engines recorded since the last
//! report (a [`reports::Delta`]): one entry per request step (`http_req_duration` and
//! `http_req_failed` per journey and step), per device journey's connects and heartbeats
//! (`WS`/`TCP`), and per tracked sender's deliveries (`DELIVERY`: `delivery_latency`, lost
//! pushes as failures), with Locust's error table from `http_errors` and
//! `connections_failed`.
//!
//! Response times travel as Locust keeps them: milliseconds, in a dict of rounded buckets
//! (`locust.stats.bucket_response_time`: whole ms below 100 ms, then 10 ms, 100 ms and 1 s
//! steps, Python's `round`, which halves to even). They are read out of the worker's
//! HdrHistograms (3 significant digits, so a sample within 0.1 % of a bucket edge can land in
//! the neighbour); the exact histograms travel in the `pushbench_delta` message. Per-second
//! counts are keyed by Unix second: the worker's run starts on a whole second, so its metric
//! seconds map onto Unix seconds one to one. Locust's `total_content_length` is not measured
//! and not sent (the master shows 0).

use std::collections::{BTreeMap, HashMap};

use reports::delta::DeltaValues;
use reports::{Delta, MetricKey};
use serde::Serialize;

use crate::delivery::names as delivery;
use crate::engine::swarm::names as swarm;
use crate::journey::names as http;
use crate::plan::Plan;
use crate::scenario::Step;

/// One Locust stats entry (`StatsEntry.serialize()`), values in ms and Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Entry {
    /// The entry's name (Locust's "Name" column).
    pub name: String,
    /// Its type (Locust's "Type" column): the HTTP method, `WS`, `TCP`, `DELIVERY`.
    pub method: String,
    /// Unix time (s) of the last sample's second.
    pub last_request_timestamp: Option<f64>,
    /// Unix time (s) this report's period started.
    pub start_time: f64,
    /// Samples, with failures.
    pub num_requests: u64,
    /// Samples without a response time (failed connects, lost pushes).
    pub num_none_requests: u64,
    /// Failures.
    pub num_failures: u64,
    /// Sum of response times, ms.
    pub total_response_time: f64,
    /// Largest response time, ms.
    pub max_response_time: f64,
    /// Smallest response time, ms.
    pub min_response_time: Option<f64>,
    /// Rounded response time (ms) → samples.
    pub response_times: BTreeMap<i64, u64>,
    /// Unix second → samples.
    pub num_reqs_per_sec: BTreeMap<i64, u64>,
    /// Unix second → failures.
    pub num_fail_per_sec: BTreeMap<i64, u64>,
}

impl Entry {
    fn new(name: &str, method: &str, start_time: f64) -> Entry {
        Entry {
            name: name.to_string(),
            method: method.to_string(),
            start_time,
            ..Entry::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.num_requests == 0 && self.num_failures == 0
    }

    fn saw(&mut self, second: i64) {
        let t = second as f64;
        self.last_request_timestamp = Some(self.last_request_timestamp.map_or(t, |l| l.max(t)));
    }

    /// Adds one second's histogram of response times (µs).
    fn add_histogram(&mut self, second: i64, h: &hdrhistogram::Histogram<u64>) {
        let n = h.len();
        if n == 0 {
            return;
        }
        self.num_requests += n;
        *self.num_reqs_per_sec.entry(second).or_default() += n;
        for v in h.iter_recorded() {
            let count = v.count_at_value();
            // The mean as HdrHistogram takes it (each bucket at its middle); the Locust bucket
            // from the bucket's lowest value, so a tie such as 2.500 ms rounds as Python does.
            let mid = h.median_equivalent(v.value_iterated_to());
            self.total_response_time += mid as f64 / 1e3 * count as f64;
            let low = h.lowest_equivalent(v.value_iterated_to());
            *self.response_times.entry(bucket_ms(low)).or_default() += count;
        }
        let (min, max) = (h.min() as f64 / 1e3, h.max() as f64 / 1e3);
        self.min_response_time = Some(self.min_response_time.map_or(min, |m| m.min(min)));
        self.max_response_time = self.max_response_time.max(max);
        self.saw(second);
    }

    /// Adds failures; `without_time` of them also count as samples without a response time.
    fn add_failures(&mut self, second: i64, n: u64, without_time: bool) {
        if n == 0 {
            return;
        }
        self.num_failures += n;
        *self.num_fail_per_sec.entry(second).or_default() += n;
        if without_time {
            self.num_requests += n;
            self.num_none_requests += n;
            *self.num_reqs_per_sec.entry(second).or_default() += n;
        }
        self.saw(second);
    }

    /// Adds `other` into this entry (Locust's `StatsEntry.extend`).
    fn extend(&mut self, other: &Entry) {
        self.num_requests += other.num_requests;
        self.num_none_requests += other.num_none_requests;
        self.num_failures += other.num_failures;
        self.total_response_time += other.total_response_time;
        self.max_response_time = self.max_response_time.max(other.max_response_time);
        self.min_response_time = match (self.min_response_time, other.min_response_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (map, theirs) in [
            (&mut self.response_times, &other.response_times),
            (&mut self.num_reqs_per_sec, &other.num_reqs_per_sec),
            (&mut self.num_fail_per_sec, &other.num_fail_per_sec),
        ] {
            for (k, v) in theirs {
                *map.entry(*k).or_default() += v;
            }
        }
        if let Some(t) = other.last_request_timestamp {
            self.saw(t as i64);
        }
    }
}

/// Locust's response-time bucket (ms) of `us` microseconds: `bucket_response_time(us / 1000)`
/// computed on the integer, so Python's round-half-to-even ties come out the same.
pub fn bucket_ms(us: u64) -> i64 {
    let step = match us {
        0..100_000 => 1_000,
        100_000..1_000_000 => 10_000,
        1_000_000..10_000_000 => 100_000,
        _ => 1_000_000,
    };
    let (q, r) = (us / step, us % step);
    let q = if r > step / 2 || (r == step / 2 && q % 2 == 1) {
        q + 1
    } else {
        q
    };
    i64::try_from(q * (step / 1_000)).unwrap_or(i64::MAX)
}

/// One error row (`StatsError.serialize()`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRow {
    /// The entry's name.
    pub name: String,
    /// The entry's type.
    pub method: String,
    /// What went wrong (our `cause`).
    pub error: String,
    /// How often.
    pub occurrences: u64,
    /// Unix second first seen in this period.
    pub first_seen: Option<f64>,
    /// Unix second last seen in this period.
    pub last_seen: Option<f64>,
}

/// The `data` of Locust's `stats` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Entries with samples.
    pub stats: Vec<Entry>,
    /// Every entry together (`Aggregated`).
    pub stats_total: Entry,
    /// Errors by key.
    pub errors: BTreeMap<String, ErrorRow>,
    /// Users running now.
    pub user_count: u64,
    /// Users running now by class.
    pub user_classes_count: BTreeMap<String, u64>,
}

/// Turns recorder deltas into Locust entries: knows each request step's HTTP method.
#[derive(Debug, Clone, Default)]
pub struct Mapper {
    methods: HashMap<(String, String), String>,
}

impl Mapper {
    /// The mapper of `plan`'s journeys.
    pub fn new(plan: &Plan) -> Mapper {
        let mut methods = HashMap::new();
        for s in &plan.scenario.senders {
            for step in &s.steps {
                if let Step::Request(r) = step {
                    methods.insert(
                        (s.name.clone(), r.name.clone()),
                        r.method.as_str().to_string(),
                    );
                }
            }
        }
        Mapper { methods }
    }

    /// Where a metric goes: `(type, name, what)`; `None` for metrics Locust does not show.
    fn place(&self, key: &MetricKey) -> Option<(String, String, Part)> {
        let journey = key.tags.get("journey")?;
        let step = key.tags.get("step");
        let part = match key.name.as_str() {
            http::HTTP_REQ_DURATION => Part::Times,
            http::HTTP_REQ_FAILED => Part::Failed,
            http::HTTP_ERRORS => Part::Errors,
            swarm::WS_CONNECTING | swarm::TCP_CONNECTING => Part::Times,
            swarm::CONNECTIONS_FAILED => Part::FailedWithoutTime,
            swarm::HEARTBEAT_RTT => Part::Times,
            delivery::DELIVERY_LATENCY | delivery::BROADCAST_COMPLETION => Part::Times,
            delivery::DELIVERY_LOST => Part::FailedWithoutTime,
            _ => return None,
        };
        let (method, name) = match key.name.as_str() {
            http::HTTP_REQ_DURATION | http::HTTP_REQ_FAILED | http::HTTP_ERRORS => {
                let step = step?;
                let method = self
                    .methods
                    .get(&(journey.clone(), step.clone()))
                    .cloned()
                    .unwrap_or_else(|| "HTTP".into());
                (method, format!("{journey}: {step}"))
            }
            swarm::WS_CONNECTING => ("WS".into(), format!("{journey}: connect")),
            swarm::TCP_CONNECTING => ("TCP".into(), format!("{journey}: connect")),
            // Failed connects and sessions, whatever the device's protocol.
            swarm::CONNECTIONS_FAILED => ("WS".into(), format!("{journey}: connect")),
            swarm::HEARTBEAT_RTT => ("WS".into(), format!("{journey}: heartbeat")),
            delivery::BROADCAST_COMPLETION => (
                "DELIVERY".into(),
                format!("{journey}: broadcast completion"),
            ),
            _ => ("DELIVERY".into(), journey.clone()),
        };
        // Keys of failures without a cause tag are zero-count placeholders (present for
        // `count == 0` thresholds); error rows need the cause. Lost pushes have none.
        if matches!(part, Part::Errors | Part::FailedWithoutTime)
            && key.name != delivery::DELIVERY_LOST
        {
            key.tags.get("cause")?;
        }
        Some((method, name, part))
    }

    /// The Locust report of `delta`, whose second 0 is Unix second `epoch0`; the period
    /// started at `start_time` (Unix s).
    pub fn report(
        &self,
        delta: &Delta,
        epoch0: i64,
        start_time: f64,
        users: BTreeMap<String, u64>,
    ) -> Report {
        let mut entries: BTreeMap<(String, String), Entry> = BTreeMap::new();
        let mut errors: BTreeMap<String, ErrorRow> = BTreeMap::new();
        for m in &delta.metrics {
            let Some((method, name, part)) = self.place(&m.key) else {
                continue;
            };
            let entry = entries
                .entry((method.clone(), name.clone()))
                .or_insert_with(|| Entry::new(&name, &method, start_time));
            match (&m.values, part) {
                (DeltaValues::Histogram(seconds), Part::Times) => {
                    for (t, text) in seconds {
                        // A histogram that does not decode is left out of Locust's view; the
                        // exact record names it (Recorder::from_delta).
                        if let Ok(h) = reports::hist::decode(text) {
                            entry.add_histogram(epoch0 + i64::from(*t), &h);
                        }
                    }
                }
                (DeltaValues::Counter(seconds), Part::Failed) => {
                    for (t, value, _) in seconds {
                        entry.add_failures(epoch0 + i64::from(*t), *value, false);
                    }
                }
                (DeltaValues::Counter(seconds), Part::FailedWithoutTime | Part::Errors) => {
                    let cause = m.key.tags.get("cause").map_or("lost", String::as_str);
                    if part == Part::FailedWithoutTime {
                        for (t, value, _) in seconds {
                            entry.add_failures(epoch0 + i64::from(*t), *value, true);
                        }
                    }
                    add_error(&mut errors, &method, &name, cause, epoch0, seconds);
                }
                _ => {}
            }
        }
        let stats: Vec<Entry> = entries.into_values().filter(|e| !e.is_empty()).collect();
        let mut total = Entry::new("Aggregated", "", start_time);
        for e in &stats {
            total.extend(e);
        }
        Report {
            stats,
            stats_total: total,
            errors,
            user_count: users.values().sum(),
            user_classes_count: users,
        }
    }
}

/// What a metric adds to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Response times (a histogram).
    Times,
    /// Failures of samples that have a response time (`http_req_failed`).
    Failed,
    /// Failures that are samples of their own, without a response time, and error rows.
    FailedWithoutTime,
    /// Error rows only.
    Errors,
}

fn add_error(
    errors: &mut BTreeMap<String, ErrorRow>,
    method: &str,
    name: &str,
    cause: &str,
    epoch0: i64,
    seconds: &[(u32, u64, u64)],
) {
    let n: u64 = seconds.iter().map(|s| s.1).sum();
    if n == 0 {
        return;
    }
    let seen = seconds
        .iter()
        .filter(|s| s.1 > 0)
        .map(|s| (epoch0 + i64::from(s.0)) as f64);
    let first = seen.clone().reduce(f64::min);
    let last = seen.reduce(f64::max);
    // Every worker names an error the same way, so the master adds them up.
    let row = errors
        .entry(format!("{method}.{name}.{cause}"))
        .or_insert_with(|| ErrorRow {
            name: name.to_string(),
            method: method.to_string(),
            error: cause.to_string(),
            occurrences: 0,
            first_seen: None,
            last_seen: None,
        });
    row.occurrences += n;
    row.first_seen = match (row.first_seen, first) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    row.last_seen = match (row.last_seen, last) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn buckets_round_as_locust_rounds() {
        // (µs, Locust's bucket_response_time(µs / 1000) as Python 3 computes it)
        for (us, ms) in [
            (0, 0),
            (499, 0),
            (500, 0),
            (1_500, 2),
            (2_500, 2),
            (2_501, 3),
            (99_499, 99),
            (99_500, 100),
            (99_999, 100),
            (100_000, 100),
            (145_000, 140),
            (155_000, 160),
            (147_300, 150),
            (999_999, 1000),
            (3_432_000, 3400),
            (3_450_000, 3400),
            (3_550_000, 3600),
            (58_760_000, 59000),
        ] {
            assert_eq!(bucket_ms(us), ms, "{us} µs");
        }
    }

    #[test]
    fn a_delta_becomes_entries_errors_and_a_total() {
        let origin = Instant::now();
        let mut r = reports::Recorder::new(origin);
        let step = |n: &str| {
            MetricKey::new(n)
                .with_tag("journey", "unicast")
                .with_tag("step", "push")
        };
        r.record(step(http::HTTP_REQ_DURATION), origin, 1_200);
        r.record(step(http::HTTP_REQ_DURATION), origin, 2_500);
        r.count(step(http::HTTP_REQ_FAILED), origin, false);
        r.count(step(http::HTTP_REQ_FAILED), origin, true);
        r.add(
            step(http::HTTP_ERRORS).with_tag("cause", "status 503"),
            origin,
            1,
        );
        let dev = MetricKey::new(delivery::DELIVERY_LOST).with_tag("journey", "unicast");
        r.add(&dev, origin, 2);
        let mut mapper = Mapper::default();
        mapper
            .methods
            .insert(("unicast".into(), "push".into()), "POST".into());
        let users = BTreeMap::from([("unicast".to_string(), 3)]);
        let report = mapper.report(&r.to_delta(), 1_000, 999.5, users);
        let push = &report.stats[1];
        assert_eq!(
            (push.method.as_str(), push.name.as_str()),
            ("POST", "unicast: push")
        );
        assert_eq!((push.num_requests, push.num_failures), (2, 1));
        assert_eq!(push.response_times, BTreeMap::from([(1, 1), (2, 1)]));
        assert_eq!(push.num_reqs_per_sec, BTreeMap::from([(1_000, 2)]));
        // 2.500 ms sits in HdrHistogram's [2500, 2501] µs bucket, whose middle is 2.501.
        assert!((push.total_response_time - 3.701).abs() < 1e-9);
        assert_eq!(
            (push.min_response_time, push.max_response_time),
            (Some(1.2), 2.501)
        );
        let lost = &report.stats[0];
        assert_eq!(
            (lost.method.as_str(), lost.name.as_str()),
            ("DELIVERY", "unicast")
        );
        assert_eq!(
            (lost.num_requests, lost.num_none_requests, lost.num_failures),
            (2, 2, 2)
        );
        assert_eq!(report.stats_total.num_requests, 4);
        assert_eq!(report.stats_total.num_failures, 3);
        assert_eq!(report.user_count, 3);
        let row = &report.errors["POST.unicast: push.status 503"];
        assert_eq!((row.error.as_str(), row.occurrences), ("status 503", 1));
        assert_eq!(report.errors.len(), 2);
    }
}
