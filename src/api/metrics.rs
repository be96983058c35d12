//! `GET /metrics`: the Prometheus text format (0.0.4), from the dispatcher's published snapshot,
//! its latency histograms, the store's constant-time counts and the process's own figures.
//!
//! Labels are bounded by design: `endpoint` is a configured or stored endpoint's name (`""` for
//! plain URLs, never a URL or host), `outcome` a class, `reason` a dead-letter reason, `state` a
//! message state, `route` a route pattern and `code` a status code the API itself answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::counters::{Labels, Latencies, Snapshot};
use crate::model::Circuit;
use crate::store::Counts;
use crate::verdict::{Class, DeadReason};

/// The content type of the answer.
pub(crate) const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every series, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    attempts: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    dead_letters: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    rate_limited: Family<Labels, Counter>,
    queue: Family<Labels, Gauge>,
    oldest_pending: Family<Labels, Gauge<f64, AtomicU64>>,
    endpoint_state: Family<Labels, Gauge>,
    in_flight: Gauge,
    api_requests: Family<Labels, Counter>,
    rss: Gauge,
    cpu: Counter<f64>,
    open_fds: Gauge,
    /// Encoding sets values first: one scrape at a time.
    scrape: Mutex<()>,
}

fn label(name: &'static str, value: &str) -> (&'static str, String) {
    (name, value.to_owned())
}

impl Metrics {
    pub(crate) fn new(latencies: &Latencies) -> Metrics {
        let mut root = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            attempts: Family::default(),
            deliveries: Family::default(),
            dead_letters: Family::default(),
            retries: Family::default(),
            rate_limited: Family::default(),
            queue: Family::default(),
            oldest_pending: Family::default(),
            endpoint_state: Family::default(),
            in_flight: Gauge::default(),
            api_requests: Family::default(),
            rss: Gauge::default(),
            cpu: Counter::default(),
            open_fds: Gauge::default(),
            scrape: Mutex::new(()),
        };
        let r = root.sub_registry_with_prefix("webhookd");
        r.register(
            "attempts",
            "Delivery attempts by endpoint and outcome",
            m.attempts.clone(),
        );
        r.register(
            "deliveries",
            "Messages delivered, by endpoint",
            m.deliveries.clone(),
        );
        r.register(
            "dead_letters",
            "Messages dead-lettered, by endpoint and reason",
            m.dead_letters.clone(),
        );
        r.register(
            "retries_scheduled",
            "Failed attempts followed by a retry, by endpoint",
            m.retries.clone(),
        );
        r.register(
            "rate_limited",
            "Claim rounds in which an endpoint's due messages waited for its rate limit",
            m.rate_limited.clone(),
        );
        r.register_with_unit(
            "attempt_duration",
            "Duration of delivery attempts, by endpoint",
            Unit::Seconds,
            latencies.attempt.clone(),
        );
        r.register_with_unit(
            "delivery_lag",
            "From a message's due time to the start of its attempt",
            Unit::Seconds,
            latencies.lag.clone(),
        );
        r.register_with_unit(
            "end_to_end",
            "From enqueue to delivery",
            Unit::Seconds,
            latencies.end_to_end.clone(),
        );
        r.register(
            "queue_messages",
            "Messages in the queue, by state",
            m.queue.clone(),
        );
        r.register_with_unit(
            "oldest_pending_age",
            "Age of the oldest pending message (since it was enqueued), overall and by endpoint",
            Unit::Seconds,
            m.oldest_pending.clone(),
        );
        r.register(
            "endpoint_state",
            "Each endpoint's circuit: 0 closed, 1 probing, 2 open, 3 disabled",
            m.endpoint_state.clone(),
        );
        r.register("workers_busy", "Attempts in flight", m.in_flight.clone());
        r.register(
            "api_requests",
            "API requests by route and status code",
            m.api_requests.clone(),
        );
        root.register_with_unit(
            "process_resident_memory",
            "Resident memory",
            Unit::Bytes,
            m.rss.clone(),
        );
        root.register_with_unit(
            "process_cpu",
            "User and system CPU time",
            Unit::Seconds,
            m.cpu.clone(),
        );
        root.register(
            "process_open_fds",
            "Open file descriptors",
            m.open_fds.clone(),
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// Counts one API request.
    pub(crate) fn request(&self, route: &'static str, code: u16) {
        self.api_requests
            .get_or_create(&vec![
                label("route", route),
                label("code", &code.to_string()),
            ])
            .inc();
    }

    /// The text of one scrape.
    /// `oldest`: when the oldest pending message was created, overall (`""`) and per endpoint.
    pub(crate) fn render(
        &self,
        snapshot: &Snapshot,
        counts: &Counts,
        oldest: &[(String, i64)],
        now: i64,
    ) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let name = |id: i64| -> String {
            if id == 0 {
                return String::new();
            }
            snapshot
                .endpoints
                .iter()
                .find(|e| e.id == id)
                .map_or_else(|| format!("#{id}"), |e| e.name.clone())
        };
        let set = |family: &Family<Labels, Counter>, labels: Labels, v: u64| {
            family
                .get_or_create(&labels)
                .inner()
                .store(v, Ordering::Relaxed);
        };
        let c = &snapshot.counters;
        for ((id, class), n) in &c.attempts {
            set(
                &self.attempts,
                vec![
                    label("endpoint", &name(*id)),
                    label("outcome", class_name(*class)),
                ],
                *n,
            );
        }
        for (id, n) in &c.deliveries {
            set(&self.deliveries, vec![label("endpoint", &name(*id))], *n);
        }
        for ((id, reason), n) in &c.dead_letters {
            set(
                &self.dead_letters,
                vec![
                    label("endpoint", &name(*id)),
                    label("reason", reason_name(*reason)),
                ],
                *n,
            );
        }
        for (id, n) in &c.retries {
            set(&self.retries, vec![label("endpoint", &name(*id))], *n);
        }
        for (state, n) in [
            ("pending", counts.pending.saturating_sub(counts.scheduled)),
            ("scheduled", counts.scheduled),
            ("in_flight", counts.in_flight),
            ("waiting", counts.waiting),
            ("delivered", counts.delivered),
            ("dead", counts.dead),
            ("cancelled", counts.cancelled),
        ] {
            self.queue
                .get_or_create(&vec![label("state", state)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        // Only endpoints that have a pending message have an age: older series go.
        self.oldest_pending.clear();
        for (name, created) in oldest {
            let labels = if name.is_empty() {
                Vec::new()
            } else {
                vec![label("endpoint", name)]
            };
            let age = (now - created).max(0) as f64 / 1000.0;
            self.oldest_pending.get_or_create(&labels).set(age);
        }
        for e in &snapshot.endpoints {
            set(
                &self.rate_limited,
                vec![label("endpoint", &e.name)],
                e.rate_limited,
            );
            let v = match e.circuit {
                Circuit::Closed => 0,
                Circuit::Open if e.in_flight > 0 => 1,
                Circuit::Open => 2,
                Circuit::Disabled => 3,
            };
            self.endpoint_state
                .get_or_create(&vec![label("endpoint", &e.name)])
                .set(v);
        }
        self.in_flight
            .set(i64::try_from(snapshot.in_flight).unwrap_or(i64::MAX));
        let p = process_figures();
        self.rss.set(i64::try_from(p.rss).unwrap_or(i64::MAX));
        self.cpu
            .inner()
            .store(p.cpu_seconds.to_bits(), Ordering::Relaxed);
        self.open_fds
            .set(i64::try_from(p.open_fds).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(8192);
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The `outcome` label of a class.
pub(crate) fn class_name(c: Class) -> &'static str {
    match c {
        Class::Success => "success",
        Class::Http4xx => "http_4xx",
        Class::Http5xx => "http_5xx",
        Class::Timeout => "timeout",
        Class::Connect => "connect",
        Class::Tls => "tls",
        Class::Dns => "dns",
        Class::EgressDenied => "egress_denied",
        Class::Other => "other",
    }
}

/// The `reason` label of a dead letter.
pub(crate) fn reason_name(r: DeadReason) -> &'static str {
    match r {
        DeadReason::Gone => "gone",
        DeadReason::Exhausted => "exhausted",
    }
}

/// The process's resident memory, CPU time and open descriptors, from `/proc/self`.
struct Process {
    rss: u64,
    cpu_seconds: f64,
    open_fds: u64,
}

fn process_figures() -> Process {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024);
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux); the
    // command name (field 2) may hold spaces, so count from its closing parenthesis.
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0);
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Process {
        rss,
        cpu_seconds,
        open_fds,
    }
}
