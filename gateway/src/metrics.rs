//! Per-second request metrics for every (namespace, app, version, instance) series.
//!
//! The request path only touches atomics of the series its backend handle points to: no
//! map lookup, no lock, no formatting. A tick at each whole second moves the counters of the
//! second that ended into a ring of the last hour (only seconds with activity are stored;
//! a missing second means zero requests). Readers (autoscaler, release analysis, API,
//! rollups) query windows of it; Prometheus text is rendered on demand.
//!
//! What is counted, per series:
//! - **requests**: attempts started on the instance, counted when dispatched. A request
//!   retried after a failed connect counts once on each instance it was sent to; the failed
//!   attempt is answered (internally) as a 502.
//! - **responses by class** and the **latency histogram**: recorded when the response ends
//!   (its body finished or dropped), so latency runs from dispatch to the end of the
//!   response. A `101 Switching Protocols` counts as 2xx, with the time to the 101. A client
//!   that goes away before the response headers counts as 4xx (499). The gateway's own
//!   502/504 count on the instance, its own 503s on the version's series with an empty
//!   instance label.
//! - **concurrency**: the time-average of requests in flight over the second, computed as
//!   the integral of in-flight over time (Σ of each request's overlap with the second, i.e.
//!   total busy time / 1 s). Lock-free: starts subtract their start time from an
//!   accumulator, ends add their end time, and the tick adds `inflight × tick time` and
//!   subtracts the same term of the previous tick (wrapping arithmetic keeps it exact).
//!   Requests held for an activation count here (on the empty-instance series) but not
//!   as requests.
//!
//! Latency buckets are 40 log-spaced upper bounds from 0.1 ms to 60 s (ratio ≈ 1.41) plus
//! an overflow bucket; quantiles interpolate linearly inside the bucket.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tideway_api_types::{MetricPoint, MetricSeries};
use tokio::time::Instant;

/// Number of finite latency bucket bounds.
pub const LATENCY_BOUNDS: usize = 40;
/// Buckets including the overflow bucket.
const NB: usize = LATENCY_BOUNDS + 1;
/// How many seconds of history each series keeps.
pub const RETENTION_SECS: i64 = 3600;

static BOUNDS_NS: LazyLock<[u64; LATENCY_BOUNDS]> = LazyLock::new(|| {
    let mut bounds = [0u64; LATENCY_BOUNDS];
    let span: f64 = 60.0e9 / 1.0e5;
    for (i, b) in bounds.iter_mut().enumerate() {
        let exp = i as f64 / (LATENCY_BOUNDS - 1) as f64;
        *b = (1.0e5 * span.powf(exp)).round() as u64;
    }
    bounds
});

/// The upper bounds of the latency buckets, in seconds.
pub fn latency_bounds_secs() -> impl Iterator<Item = f64> {
    BOUNDS_NS.iter().map(|&ns| ns as f64 / 1e9)
}

fn bucket_index(duration_ns: u64) -> usize {
    BOUNDS_NS.partition_point(|&b| b < duration_ns)
}

fn class_index(status: u16) -> usize {
    match status {
        0..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        _ => 3,
    }
}

const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Estimates the `q` quantile in milliseconds from bucket counts; `None` without samples.
pub(crate) fn quantile_ms(hist: &[u64; NB], q: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &count) in hist.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let Some(&upper) = BOUNDS_NS.get(i) else {
                // Overflow bucket: the largest finite bound is all we know.
                return Some(BOUNDS_NS[LATENCY_BOUNDS - 1] as f64 / 1e6);
            };
            let lower = if i == 0 { 0 } else { BOUNDS_NS[i - 1] };
            let frac = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some((lower as f64 + (upper - lower) as f64 * frac) / 1e6);
        }
        below += count;
    }
    Some(BOUNDS_NS[LATENCY_BOUNDS - 1] as f64 / 1e6)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SeriesKey {
    pub(crate) namespace: Arc<str>,
    pub(crate) app: Arc<str>,
    pub(crate) version: u32,
    /// Empty for the gateway's own answers after choosing the version.
    pub(crate) instance: Arc<str>,
}

/// The live counters of one series. Hot-path updates are relaxed atomics.
#[derive(Debug)]
pub(crate) struct SeriesStats {
    pub(crate) key: SeriesKey,
    base: Instant,
    inflight: AtomicU64,
    requests: AtomicU64,
    responses: [AtomicU64; 4],
    /// Σ end − Σ start of the current second, in nanoseconds on the gateway clock; wraps.
    area: AtomicU64,
    duration_sum_ns: AtomicU64,
    hist: [AtomicU64; NB],
    closed: Mutex<Closed>,
}

#[derive(Debug, Default)]
struct Closed {
    samples: VecDeque<Sample>,
    last_tick: u64,
    last_inflight: u64,
    totals: Totals,
    /// The last second with activity (or the first tick that saw the series).
    last_active: Option<i64>,
}

#[derive(Debug, Clone)]
struct Totals {
    requests: u64,
    responses: [u64; 4],
    hist: [u64; NB],
    duration_sum_ns: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            requests: 0,
            responses: [0; 4],
            hist: [0; NB],
            duration_sum_ns: 0,
        }
    }
}

/// One closed second of one series. Histograms are sparse: `(bucket, count)`.
#[derive(Debug)]
struct Sample {
    sec: i64,
    requests: u32,
    responses: [u32; 4],
    busy_ns: u64,
    hist: Box<[(u8, u32)]>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl SeriesStats {
    fn new(key: SeriesKey, base: Instant) -> Self {
        SeriesStats {
            key,
            base,
            inflight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            responses: [const { AtomicU64::new(0) }; 4],
            area: AtomicU64::new(0),
            duration_sum_ns: AtomicU64::new(0),
            hist: [const { AtomicU64::new(0) }; NB],
            closed: Mutex::new(Closed::default()),
        }
    }

    /// Nanoseconds on the gateway clock.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// A request dispatched at `t`.
    pub(crate) fn begin(&self, t: u64) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.area.fetch_sub(t, Ordering::Relaxed);
    }

    /// The end of a request dispatched at `start`.
    pub(crate) fn finish(&self, start: u64, end: u64, status: u16) {
        let duration = end.saturating_sub(start);
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.area.fetch_add(end, Ordering::Relaxed);
        self.responses[class_index(status)].fetch_add(1, Ordering::Relaxed);
        self.hist[bucket_index(duration)].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_ns.fetch_add(duration, Ordering::Relaxed);
    }

    /// An answer the gateway gave itself after `duration` ns: a request and a response,
    /// with no time in flight (a held request's wait is already counted by its hold).
    pub(crate) fn answer(&self, duration: u64, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.responses[class_index(status)].fetch_add(1, Ordering::Relaxed);
        self.hist[bucket_index(duration)].fetch_add(1, Ordering::Relaxed);
        self.duration_sum_ns.fetch_add(duration, Ordering::Relaxed);
    }

    /// A request held (waiting for capacity) from `t`: in flight, not yet a request.
    pub(crate) fn hold_begin(&self, t: u64) {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.area.fetch_sub(t, Ordering::Relaxed);
    }

    pub(crate) fn hold_end(&self, t: u64) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.area.fetch_add(t, Ordering::Relaxed);
    }

    /// Closes second `sec`, whose end is `tick` on the gateway clock.
    fn rotate(&self, sec: i64, tick: u64) {
        let inflight = self.inflight.load(Ordering::Relaxed);
        let area = self.area.swap(0, Ordering::Relaxed);
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let responses =
            std::array::from_fn::<u64, 4, _>(|i| self.responses[i].swap(0, Ordering::Relaxed));
        let duration_sum = self.duration_sum_ns.swap(0, Ordering::Relaxed);
        let mut hist = [0u64; NB];
        for (slot, counter) in hist.iter_mut().zip(&self.hist) {
            *slot = counter.swap(0, Ordering::Relaxed);
        }

        let mut closed = lock(&self.closed);
        let busy = area
            .wrapping_add(inflight.wrapping_mul(tick))
            .wrapping_sub(closed.last_inflight.wrapping_mul(closed.last_tick));
        let busy = u64::try_from(busy as i64).unwrap_or(0);
        closed.last_tick = tick;
        closed.last_inflight = inflight;

        let totals = &mut closed.totals;
        totals.requests += requests;
        for (t, r) in totals.responses.iter_mut().zip(responses) {
            *t += r;
        }
        for (t, h) in totals.hist.iter_mut().zip(hist) {
            *t += h;
        }
        totals.duration_sum_ns += duration_sum;

        let active = requests > 0 || busy > 0 || responses.iter().any(|&r| r > 0);
        if active {
            let sparse: Box<[(u8, u32)]> = hist
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i as u8, clamp_u32(c)))
                .collect();
            match closed.samples.back_mut() {
                Some(last) if last.sec >= sec => merge(last, requests, responses, busy, &sparse),
                _ => closed.samples.push_back(Sample {
                    sec,
                    requests: clamp_u32(requests),
                    responses: responses.map(clamp_u32),
                    busy_ns: busy,
                    hist: sparse,
                }),
            }
            closed.last_active = Some(sec);
        } else if closed.last_active.is_none() {
            closed.last_active = Some(sec);
        }
        while closed
            .samples
            .front()
            .is_some_and(|s| s.sec <= sec - RETENTION_SECS)
        {
            closed.samples.pop_front();
        }
    }

    fn expired(&self, sec: i64) -> bool {
        lock(&self.closed)
            .last_active
            .is_some_and(|last| last <= sec - RETENTION_SECS)
    }

    fn snapshot(&self) -> (Totals, u64) {
        let mut totals = lock(&self.closed).totals.clone();
        totals.requests += self.requests.load(Ordering::Relaxed);
        for (t, r) in totals.responses.iter_mut().zip(&self.responses) {
            *t += r.load(Ordering::Relaxed);
        }
        for (t, h) in totals.hist.iter_mut().zip(&self.hist) {
            *t += h.load(Ordering::Relaxed);
        }
        totals.duration_sum_ns += self.duration_sum_ns.load(Ordering::Relaxed);
        (totals, self.inflight())
    }
}

fn merge(last: &mut Sample, requests: u64, responses: [u64; 4], busy: u64, hist: &[(u8, u32)]) {
    last.requests = last.requests.saturating_add(clamp_u32(requests));
    for (l, r) in last.responses.iter_mut().zip(responses) {
        *l = l.saturating_add(clamp_u32(r));
    }
    last.busy_ns += busy;
    let mut dense = [0u32; NB];
    for &(i, c) in last.hist.iter().chain(hist) {
        dense[usize::from(i)] = dense[usize::from(i)].saturating_add(c);
    }
    last.hist = dense
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| (i as u8, c))
        .collect();
}

/// A request in flight on a series; records its end when dropped.
#[derive(Debug)]
pub(crate) struct Flight {
    stats: Arc<SeriesStats>,
    start: u64,
    status: u16,
}

impl Flight {
    pub(crate) fn start(stats: Arc<SeriesStats>) -> Flight {
        let start = stats.now();
        stats.begin(start);
        Flight {
            stats,
            start,
            status: 0,
        }
    }

    pub(crate) fn set_status(&mut self, status: u16) {
        self.status = status;
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let status = if self.status == 0 { 499 } else { self.status };
        self.stats.finish(self.start, self.stats.now(), status);
    }
}

/// A request held while its app is activated; in flight on the version's gateway series.
#[derive(Debug)]
pub(crate) struct Held(Arc<SeriesStats>);

impl Held {
    pub(crate) fn start(stats: Arc<SeriesStats>) -> Held {
        stats.hold_begin(stats.now());
        Held(stats)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.hold_end(self.0.now());
    }
}

/// One closed second of one series, as it moves between processes: a gateway running apart
/// from the control plane exports each second ([`GatewayMetrics::export_second`]) and the
/// control plane ingests it ([`GatewayMetrics::ingest`]) into the same series as its own
/// gateway's, so windows, the API and rollups count every gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondSample {
    pub namespace: String,
    pub app: String,
    pub version: u32,
    /// Empty for the gateway's own answers.
    pub instance: String,
    /// Unix seconds of the second's start.
    pub second: i64,
    pub requests: u64,
    /// 2xx, 3xx, 4xx, 5xx.
    pub responses: [u64; 4],
    /// Time requests were in flight during the second, in nanoseconds (concurrency × 1 s).
    pub busy_ns: u64,
    /// Sparse latency histogram: `(bucket index, count)`; indices follow
    /// [`latency_bounds_secs`], and index [`LATENCY_BOUNDS`] is the overflow bucket.
    pub latency: Vec<(u8, u64)>,
}

/// Request metrics of one instance of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSeries {
    pub version: u32,
    /// Empty for requests the gateway answered itself (no ready instance, activation).
    pub instance: String,
    pub points: Vec<MetricPoint>,
}

#[derive(Clone)]
struct Acc {
    requests: u64,
    responses: [u64; 4],
    busy_ns: u64,
    hist: [u64; NB],
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            requests: 0,
            responses: [0; 4],
            busy_ns: 0,
            hist: [0; NB],
        }
    }
}

/// Per-step accumulators by (version, instance or `""` when summed).
type Grouped = BTreeMap<(u32, Arc<str>), Vec<Acc>>;

/// Most points one window query returns.
const MAX_POINTS: i64 = 86_400;

/// The gateway's metrics: a registry of series plus the readers over them.
#[derive(Debug)]
pub struct GatewayMetrics {
    base: Instant,
    series: Mutex<HashMap<SeriesKey, Arc<SeriesStats>>>,
    unrouted: AtomicU64,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    pub fn new() -> Self {
        GatewayMetrics {
            base: Instant::now(),
            series: Mutex::new(HashMap::new()),
            unrouted: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the metrics were created, on the (tokio) gateway clock.
    pub(crate) fn now_nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The series of an instance (`""` for the version's own), created on first use. Called
    /// when a table is compiled, never per request.
    pub(crate) fn series(
        &self,
        namespace: &str,
        app: &str,
        version: u32,
        instance: &str,
    ) -> Arc<SeriesStats> {
        let key = SeriesKey {
            namespace: namespace.into(),
            app: app.into(),
            version,
            instance: instance.into(),
        };
        let mut series = lock(&self.series);
        Arc::clone(
            series
                .entry(key.clone())
                .or_insert_with(|| Arc::new(SeriesStats::new(key, self.base))),
        )
    }

    pub(crate) fn count_unrouted(&self) {
        self.unrouted.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the second starting at `second` (whole seconds; sub-second part ignored).
    /// The gateway calls this at each whole second; tests call [`Self::rotate_at`].
    pub fn rotate(&self, second: DateTime<Utc>) {
        self.rotate_at(second.timestamp(), self.now_nanos());
    }

    /// Closes second `sec` (Unix seconds), whose end is `tick` nanoseconds on the gateway
    /// clock; drops series no table uses that were idle for the retention period.
    pub(crate) fn rotate_at(&self, sec: i64, tick: u64) {
        let mut series = lock(&self.series);
        for stats in series.values() {
            stats.rotate(sec, tick);
        }
        series.retain(|_, stats| {
            Arc::strong_count(stats) > 1 || stats.inflight() > 0 || !stats.expired(sec)
        });
    }

    fn matching(&self, namespace: &str, app: &str) -> Vec<Arc<SeriesStats>> {
        let mut found: Vec<Arc<SeriesStats>> = lock(&self.series)
            .values()
            .filter(|s| &*s.key.namespace == namespace && &*s.key.app == app)
            .cloned()
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found
    }

    fn collect(
        &self,
        namespace: &str,
        app: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: u32,
        per_instance: bool,
    ) -> (i64, i64, Grouped) {
        let step = i64::from(step_secs.max(1));
        let from_sec = from.timestamp();
        let to_sec = to.timestamp() + i64::from(to.timestamp_subsec_nanos() > 0);
        let steps = ((to_sec - from_sec).max(0) + step - 1) / step;
        let steps = steps.min(MAX_POINTS);
        let end_sec = from_sec + steps * step;
        let no_instance: Arc<str> = Arc::from("");
        let mut out: Grouped = BTreeMap::new();
        for stats in self.matching(namespace, app) {
            let instance = if per_instance {
                Arc::clone(&stats.key.instance)
            } else {
                Arc::clone(&no_instance)
            };
            let accs = out
                .entry((stats.key.version, instance))
                .or_insert_with(|| vec![Acc::default(); steps as usize]);
            let closed = lock(&stats.closed);
            for s in closed
                .samples
                .iter()
                .filter(|s| s.sec >= from_sec && s.sec < end_sec)
            {
                let Some(acc) = accs.get_mut(((s.sec - from_sec) / step) as usize) else {
                    continue;
                };
                acc.requests += u64::from(s.requests);
                for (a, r) in acc.responses.iter_mut().zip(s.responses) {
                    *a += u64::from(r);
                }
                acc.busy_ns += s.busy_ns;
                for &(i, c) in s.hist.iter() {
                    acc.hist[usize::from(i)] += u64::from(c);
                }
            }
        }
        (from_sec, step, out)
    }

    fn points(from_sec: i64, step: i64, accs: Vec<Acc>) -> Vec<MetricPoint> {
        accs.into_iter()
            .enumerate()
            .map(|(i, acc)| MetricPoint {
                time: Utc
                    .timestamp_opt(from_sec + i as i64 * step, 0)
                    .single()
                    .unwrap_or_default(),
                requests: acc.requests,
                responses_2xx: acc.responses[0],
                responses_3xx: acc.responses[1],
                responses_4xx: acc.responses[2],
                responses_5xx: acc.responses[3],
                concurrency: acc.busy_ns as f64 / (step as f64 * 1e9),
                p50_ms: quantile_ms(&acc.hist, 0.50),
                p90_ms: quantile_ms(&acc.hist, 0.90),
                p99_ms: quantile_ms(&acc.hist, 0.99),
            })
            .collect()
    }

    /// The app's metrics per version (instances summed, concurrency summed), one point per
    /// `step_secs` from `from` (floored to a second) up to `to` (exclusive). Seconds without
    /// data count as zero requests. Only closed seconds are included.
    pub fn window(
        &self,
        namespace: &str,
        app: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: u32,
    ) -> Vec<MetricSeries> {
        let (from_sec, step, accs) = self.collect(namespace, app, from, to, step_secs, false);
        accs.into_iter()
            .map(|((version, _), accs)| MetricSeries {
                version,
                points: Self::points(from_sec, step, accs),
            })
            .collect()
    }

    /// Like [`Self::window`], one series per instance.
    pub fn instance_window(
        &self,
        namespace: &str,
        app: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: u32,
    ) -> Vec<InstanceSeries> {
        let (from_sec, step, accs) = self.collect(namespace, app, from, to, step_secs, true);
        accs.into_iter()
            .map(|((version, instance), accs)| InstanceSeries {
                version,
                instance: instance.to_string(),
                points: Self::points(from_sec, step, accs),
            })
            .collect()
    }

    /// Every series' sample of the closed second `second` (Unix seconds), sorted by series;
    /// series without activity in that second are left out.
    pub fn export_second(&self, second: i64) -> Vec<SecondSample> {
        let mut all: Vec<Arc<SeriesStats>> = lock(&self.series).values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all.iter()
            .filter_map(|stats| {
                let closed = lock(&stats.closed);
                let s = closed.samples.iter().rev().find(|s| s.sec <= second)?;
                (s.sec == second).then(|| SecondSample {
                    namespace: stats.key.namespace.to_string(),
                    app: stats.key.app.to_string(),
                    version: stats.key.version,
                    instance: stats.key.instance.to_string(),
                    second,
                    requests: u64::from(s.requests),
                    responses: s.responses.map(u64::from),
                    busy_ns: s.busy_ns,
                    latency: s.hist.iter().map(|&(i, c)| (i, u64::from(c))).collect(),
                })
            })
            .collect()
    }

    /// Adds samples from another gateway to the series with the same labels (created when
    /// missing), summing with what is already recorded for that second. Samples older than
    /// the retention (relative to the newest second of their series) and histogram buckets
    /// out of range are ignored. Ingested seconds show in windows (API, autoscaler,
    /// rollups) but not in [`Self::render_prometheus`], which describes this process's own
    /// traffic; each gateway serves its own Prometheus text.
    pub fn ingest(&self, samples: &[SecondSample]) {
        for s in samples {
            let stats = self.series(&s.namespace, &s.app, s.version, &s.instance);
            let hist: Box<[(u8, u32)]> = {
                let mut dense = [0u32; NB];
                for &(i, c) in &s.latency {
                    if let Some(slot) = dense.get_mut(usize::from(i)) {
                        *slot = slot.saturating_add(clamp_u32(c));
                    }
                }
                dense
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 0)
                    .map(|(i, &c)| (i as u8, c))
                    .collect()
            };
            let mut closed = lock(&stats.closed);
            if closed
                .samples
                .back()
                .is_some_and(|newest| s.second <= newest.sec - RETENTION_SECS)
            {
                continue;
            }
            match closed.samples.binary_search_by_key(&s.second, |x| x.sec) {
                Ok(i) => merge(
                    &mut closed.samples[i],
                    s.requests,
                    s.responses,
                    s.busy_ns,
                    &hist,
                ),
                Err(i) => closed.samples.insert(
                    i,
                    Sample {
                        sec: s.second,
                        requests: clamp_u32(s.requests),
                        responses: s.responses.map(clamp_u32),
                        busy_ns: s.busy_ns,
                        hist,
                    },
                ),
            }
            let newest = closed.samples.back().map_or(s.second, |b| b.sec);
            while closed
                .samples
                .front()
                .is_some_and(|f| f.sec <= newest - RETENTION_SECS)
            {
                closed.samples.pop_front();
            }
            closed.last_active = Some(closed.last_active.map_or(s.second, |l| l.max(s.second)));
        }
    }

    /// Requests in flight right now per version of an app (held requests included).
    pub fn inflight(&self, namespace: &str, app: &str) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for s in self.matching(namespace, app) {
            *out.entry(s.key.version).or_insert(0) += s.inflight();
        }
        out
    }

    /// All series in the Prometheus text format (0.0.4), including the open second.
    pub fn render_prometheus(&self) -> String {
        let mut all: Vec<Arc<SeriesStats>> = lock(&self.series).values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let snaps: Vec<(SeriesKey, Totals, u64)> = all
            .iter()
            .map(|s| {
                let (totals, inflight) = s.snapshot();
                (s.key.clone(), totals, inflight)
            })
            .collect();

        let mut out = String::with_capacity(256 + snaps.len() * 4096);
        let labels = |k: &SeriesKey| {
            format!(
                "namespace=\"{}\",app=\"{}\",version=\"{}\",instance=\"{}\"",
                escape(&k.namespace),
                escape(&k.app),
                k.version,
                escape(&k.instance)
            )
        };
        let label_sets: Vec<String> = snaps.iter().map(|(k, _, _)| labels(k)).collect();

        out.push_str("# HELP tideway_gateway_requests_total Requests dispatched, per instance.\n");
        out.push_str("# TYPE tideway_gateway_requests_total counter\n");
        for ((_, t, _), l) in snaps.iter().zip(&label_sets) {
            let _ = writeln!(out, "tideway_gateway_requests_total{{{l}}} {}", t.requests);
        }
        out.push_str("# HELP tideway_gateway_responses_total Responses by status class.\n");
        out.push_str("# TYPE tideway_gateway_responses_total counter\n");
        for ((_, t, _), l) in snaps.iter().zip(&label_sets) {
            for (class, n) in CLASSES.iter().zip(t.responses) {
                let _ = writeln!(
                    out,
                    "tideway_gateway_responses_total{{{l},class=\"{class}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP tideway_gateway_request_duration_seconds Time from dispatch to the end of the response.\n",
        );
        out.push_str("# TYPE tideway_gateway_request_duration_seconds histogram\n");
        for ((_, t, _), l) in snaps.iter().zip(&label_sets) {
            let mut cumulative = 0u64;
            for (le, n) in latency_bounds_secs().zip(t.hist) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "tideway_gateway_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {cumulative}"
                );
            }
            let count: u64 = t.hist.iter().sum();
            let _ = writeln!(
                out,
                "tideway_gateway_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "tideway_gateway_request_duration_seconds_sum{{{l}}} {}",
                t.duration_sum_ns as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "tideway_gateway_request_duration_seconds_count{{{l}}} {count}"
            );
        }
        out.push_str("# HELP tideway_gateway_inflight_requests Requests in flight now.\n");
        out.push_str("# TYPE tideway_gateway_inflight_requests gauge\n");
        for ((_, _, inflight), l) in snaps.iter().zip(&label_sets) {
            let _ = writeln!(out, "tideway_gateway_inflight_requests{{{l}}} {inflight}");
        }
        out.push_str(
            "# HELP tideway_gateway_unrouted_requests_total Requests that matched no app.\n",
        );
        out.push_str("# TYPE tideway_gateway_unrouted_requests_total counter\n");
        let _ = writeln!(
            out,
            "tideway_gateway_unrouted_requests_total {}",
            self.unrouted.load(Ordering::Relaxed)
        );
        out
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    /// An arbitrary Unix second for labels.
    const T0: i64 = 1_800_000_000;

    fn at(sec: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(sec, 0).single().unwrap()
    }

    #[test]
    fn bounds_are_log_spaced() {
        let b = &*BOUNDS_NS;
        assert_eq!(b[0], 100_000);
        assert_eq!(b[LATENCY_BOUNDS - 1], 60 * S);
        for w in b.windows(2) {
            let ratio = w[1] as f64 / w[0] as f64;
            assert!((1.40..1.42).contains(&ratio), "{ratio}");
        }
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(100_000), 0);
        assert_eq!(bucket_index(100_001), 1);
        assert_eq!(bucket_index(61 * S), LATENCY_BOUNDS);
    }

    #[test]
    fn quantiles_interpolate() {
        let mut hist = [0u64; NB];
        assert_eq!(quantile_ms(&hist, 0.5), None);
        // 100 samples all in the bucket containing 10 ms.
        let i = bucket_index(10 * MS);
        hist[i] = 100;
        let (lo, hi) = (BOUNDS_NS[i - 1] as f64 / 1e6, BOUNDS_NS[i] as f64 / 1e6);
        let p50 = quantile_ms(&hist, 0.5).unwrap();
        assert!((p50 - (lo + (hi - lo) * 0.5)).abs() < 1e-9, "{p50}");
        let p99 = quantile_ms(&hist, 0.99).unwrap();
        assert!(p99 > p50 && p99 <= hi);

        // 99 fast, 1 slow: p50 is fast, p99 sits at the top of the fast bucket.
        let mut hist = [0u64; NB];
        hist[bucket_index(MS)] = 99;
        hist[bucket_index(2 * S)] = 1;
        assert!(quantile_ms(&hist, 0.5).unwrap() <= 1.5);
        assert!(quantile_ms(&hist, 0.99).unwrap() <= 1.5);
        assert!(quantile_ms(&hist, 0.999).unwrap() >= 1000.0);

        let mut over = [0u64; NB];
        over[LATENCY_BOUNDS] = 3;
        assert_eq!(quantile_ms(&over, 0.5), Some(60_000.0));
    }

    #[test]
    fn rotation_counts_and_concurrency() {
        let m = GatewayMetrics::new();
        let s = m.series("ns", "app", 2, "i-1");
        let g = m.series("ns", "app", 2, "");
        let base = 10 * S;
        m.rotate_at(T0 - 1, base);

        // Second T0: two requests of 100 ms and 300 ms; one starting at +0.5 s still open.
        s.begin(base);
        s.finish(base, base + 100 * MS, 200);
        s.begin(base + 100 * MS);
        s.finish(base + 100 * MS, base + 400 * MS, 503);
        s.begin(base + 500 * MS);
        g.hold_begin(base + 900 * MS);
        m.rotate_at(T0, base + S);
        // Second T0+1: the long request ends at +1.5 s; the hold ends at +1.1 s.
        g.hold_end(base + 1100 * MS);
        s.finish(base + 500 * MS, base + 1500 * MS, 404);
        m.rotate_at(T0 + 1, base + 2 * S);
        // Nothing in T0+2.
        m.rotate_at(T0 + 2, base + 3 * S);

        let w = m.window("ns", "app", at(T0), at(T0 + 3), 1);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].version, 2);
        let p = &w[0].points;
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].time, at(T0));
        assert_eq!(
            (p[0].requests, p[0].responses_2xx, p[0].responses_5xx),
            (3, 1, 1)
        );
        // 0.1 + 0.3 + 0.5 (open request) + 0.1 (hold) = 1.0
        assert!(
            (p[0].concurrency - 1.0).abs() < 1e-6,
            "{}",
            p[0].concurrency
        );
        assert_eq!((p[1].requests, p[1].responses_4xx), (0, 1));
        // 0.5 (request) + 0.1 (hold)
        assert!(
            (p[1].concurrency - 0.6).abs() < 1e-6,
            "{}",
            p[1].concurrency
        );
        assert_eq!(p[2].requests, 0);
        assert_eq!(p[2].concurrency, 0.0);
        assert_eq!(p[2].p99_ms, None);
        let p99 = p[1].p99_ms.unwrap();
        assert!((700.0..=1500.0).contains(&p99), "{p99}");

        // Two-second steps sum and average.
        let w2 = m.window("ns", "app", at(T0), at(T0 + 4), 2);
        let p = &w2[0].points;
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].requests, 3);
        assert_eq!(p[0].responses_4xx, 1);
        assert!((p[0].concurrency - 0.8).abs() < 1e-6);

        // Per instance: the gateway's own series shows up with an empty instance.
        let iw = m.instance_window("ns", "app", at(T0), at(T0 + 2), 1);
        let names: Vec<&str> = iw.iter().map(|s| s.instance.as_str()).collect();
        assert_eq!(names, ["", "i-1"]);
        assert!((iw[0].points[0].concurrency - 0.1).abs() < 1e-6);

        assert!(m.window("ns", "other", at(T0), at(T0 + 2), 1).is_empty());
    }

    #[test]
    fn retention_and_expiry() {
        let m = GatewayMetrics::new();
        let s = m.series("ns", "app", 1, "gone");
        s.begin(0);
        s.finish(0, MS, 200);
        m.rotate_at(T0, S);
        drop(s);
        let sec = |i: i64| T0 + i;
        // Still there within the hour.
        m.rotate_at(sec(3599), 2 * S);
        assert_eq!(
            m.window("ns", "app", at(T0), at(T0 + 1), 1)[0].points[0].requests,
            1
        );
        // A series still used by a table is kept; an unused one is dropped after an hour.
        let kept = m.series("ns", "app", 1, "kept");
        m.rotate_at(sec(3600), 3 * S);
        m.rotate_at(sec(7300), 4 * S);
        let left: Vec<String> = lock(&m.series)
            .keys()
            .map(|k| k.instance.to_string())
            .collect();
        assert_eq!(left, ["kept"]);
        drop(kept);
    }

    #[test]
    fn export_and_ingest_sum_into_the_same_series() {
        // A remote gateway serves two requests in T0 and one in T0+1.
        let remote = GatewayMetrics::new();
        let r = remote.series("ns", "app", 2, "i-1");
        let base = 10 * S;
        remote.rotate_at(T0 - 1, base);
        r.begin(base);
        r.finish(base, base + 100 * MS, 200);
        r.begin(base + 200 * MS);
        r.finish(base + 200 * MS, base + 500 * MS, 503);
        remote.rotate_at(T0, base + S);
        r.begin(base + S);
        r.finish(base + S, base + S + 10 * MS, 404);
        remote.rotate_at(T0 + 1, base + 2 * S);
        remote.rotate_at(T0 + 2, base + 3 * S);

        let first = remote.export_second(T0);
        assert_eq!(first.len(), 1);
        let sample = &first[0];
        assert_eq!(
            (
                sample.namespace.as_str(),
                sample.app.as_str(),
                sample.version
            ),
            ("ns", "app", 2)
        );
        assert_eq!((sample.second, sample.requests), (T0, 2));
        assert_eq!(sample.responses, [1, 0, 0, 1]);
        assert_eq!(sample.busy_ns, 400 * MS);
        assert_eq!(sample.latency.iter().map(|&(_, c)| c).sum::<u64>(), 2);
        assert_eq!(remote.export_second(T0 + 1)[0].requests, 1);
        // Quiet and unknown seconds export nothing.
        assert!(remote.export_second(T0 + 2).is_empty());
        assert!(remote.export_second(T0 - 100).is_empty());

        // The control plane's own gateway served one request in T0 on the same instance.
        let local = GatewayMetrics::new();
        let l = local.series("ns", "app", 2, "i-1");
        local.rotate_at(T0 - 1, base);
        l.begin(base);
        l.finish(base, base + 100 * MS, 200);
        local.rotate_at(T0, base + S);
        // Seconds may arrive late and out of order; both merge or insert in place.
        local.ingest(&remote.export_second(T0 + 1));
        local.ingest(&first);
        local.rotate_at(T0 + 1, base + 2 * S);

        let w = local.window("ns", "app", at(T0), at(T0 + 2), 1);
        let p = &w[0].points;
        assert_eq!(
            (p[0].requests, p[0].responses_2xx, p[0].responses_5xx),
            (3, 2, 1)
        );
        assert!(
            (p[0].concurrency - 0.5).abs() < 1e-6,
            "{}",
            p[0].concurrency
        );
        assert_eq!((p[1].requests, p[1].responses_4xx), (1, 1));
        assert!(p[0].p50_ms.is_some());

        // A series only another gateway knows is created; bad buckets are ignored.
        let mut other = first[0].clone();
        other.instance = "i-9".into();
        other.latency.push((200, 5));
        local.ingest(&[other]);
        let iw = local.instance_window("ns", "app", at(T0), at(T0 + 1), 1);
        let names: Vec<&str> = iw.iter().map(|s| s.instance.as_str()).collect();
        assert_eq!(names, ["i-1", "i-9"]);
        assert_eq!(iw[1].points[0].requests, 2);

        // Ingested seconds are not this process's Prometheus counters.
        assert!(local
            .render_prometheus()
            .contains("tideway_gateway_requests_total{namespace=\"ns\",app=\"app\",version=\"2\",instance=\"i-1\"} 1\n"));

        // Samples beyond the retention of their series are dropped.
        let mut old = first[0].clone();
        old.second = T0 - RETENTION_SECS - 10;
        local.ingest(&[old]);
        let w = local.window(
            "ns",
            "app",
            at(T0 - RETENTION_SECS - 10),
            at(T0 - RETENTION_SECS),
            1,
        );
        assert!(w.iter().all(|s| s.points.iter().all(|p| p.requests == 0)));
    }

    #[test]
    fn ring_keeps_an_hour() {
        let m = GatewayMetrics::new();
        let s = m.series("ns", "app", 1, "i");
        for i in 0..4000 {
            let t = i as u64 * S;
            s.begin(t);
            s.finish(t, t + MS, 200);
            m.rotate_at(T0 + i, t + S);
        }
        let n = lock(&s.closed).samples.len();
        assert_eq!(n, RETENTION_SECS as usize);
        let w = m.window("ns", "app", at(T0), at(T0 + 4000), 4000);
        assert_eq!(w[0].points[0].requests, RETENTION_SECS as u64);
    }

    #[test]
    fn prometheus_text() {
        let m = GatewayMetrics::new();
        let s = m.series("ns", "app", 1, "i\"1");
        s.begin(0);
        s.finish(0, 2 * MS, 200);
        s.begin(0);
        m.count_unrouted();
        let text = m.render_prometheus();
        let labels = r#"namespace="ns",app="app",version="1",instance="i\"1""#;
        for line in [
            format!("tideway_gateway_requests_total{{{labels}}} 2"),
            format!("tideway_gateway_responses_total{{{labels},class=\"2xx\"}} 1"),
            format!("tideway_gateway_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 1"),
            format!("tideway_gateway_request_duration_seconds_count{{{labels}}} 1"),
            format!("tideway_gateway_inflight_requests{{{labels}}} 1"),
            "tideway_gateway_unrouted_requests_total 1".to_string(),
            "# TYPE tideway_gateway_request_duration_seconds histogram".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // Counters survive rotation.
        m.rotate_at(T0, S);
        assert!(m
            .render_prometheus()
            .contains(&format!("tideway_gateway_requests_total{{{labels}}} 2")));
    }
}
