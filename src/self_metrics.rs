//! The agent's own numbers (cycles, their duration, errors by stage, what was seen), kept in
//! atomics by the pipeline and read by exporters (`netshim_*` on the Prometheus endpoint). One
//! [`AgentMetrics`] per agent, handed to every component in its `BuildContext`: the pipeline
//! writes to it, pushing exporters report their statistics through it
//! ([`AgentMetrics::report_exporter`]), the Prometheus exporter reads it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime};

/// Upper bounds, in seconds, of the cycle duration histogram.
pub const CYCLE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
pub struct AgentMetrics {
    cycles: AtomicU64,
    /// Cumulative counts per bucket of `CYCLE_BUCKETS`, then the count of all.
    buckets: [AtomicU64; 12],
    duration_sum_micros: AtomicU64,
    pods: AtomicU64,
    interfaces: AtomicU64,
    last_success_millis: AtomicU64,
    /// Errors by (stage, component id).
    errors: Mutex<BTreeMap<(String, String), u64>>,
    /// Started pushing exporters, by component id; gone when the exporter is.
    exporters: Mutex<Vec<(String, Weak<dyn ExporterStatsSource>)>>,
}

/// What an exporter has done so far, for its own metrics (`netshim_exporter_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterStats {
    /// Batches (snapshots) the collector accepted.
    pub sent_batches: u64,
    /// Data points in them (including any the collector then rejected).
    pub sent_points: u64,
    /// Data points a collector reported as rejected in a partial success.
    pub rejected_points: u64,
    /// Batches dropped because the queue was full (the oldest goes).
    pub dropped_queue_full: u64,
    /// Batches dropped after a permanent error or when retrying gave up.
    pub dropped_failed: u64,
    /// Batches still pending when the shutdown bound ran out.
    pub dropped_shutdown: u64,
    /// Data points in all dropped batches.
    pub dropped_points: u64,
    /// Attempts made again after a retryable failure.
    pub retries: u64,
    /// Batches waiting now (the one being sent not included).
    pub queue_length: u64,
    /// `sending_queue.queue_size` (0 when the queue is disabled).
    pub queue_capacity: u64,
    /// Bytes of the waiting batches.
    pub queue_bytes: u64,
}

/// Something that can tell an exporter's [`ExporterStats`] now (its sending queue).
pub trait ExporterStatsSource: Send + Sync {
    fn stats(&self) -> ExporterStats;
}

/// A copy of the numbers, for rendering.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsView {
    pub cycles: u64,
    /// Cumulative bucket counts, one per `CYCLE_BUCKETS` bound.
    pub buckets: Vec<u64>,
    pub duration_sum: f64,
    pub pods: u64,
    pub interfaces: u64,
    /// Unix seconds of the last cycle that completed, 0 before the first.
    pub last_success: f64,
    pub errors: BTreeMap<(String, String), u64>,
    /// What each pushing exporter has sent, dropped and queued, by component id.
    pub exporters: Vec<(String, ExporterStats)>,
}

impl AgentMetrics {
    /// Records a completed cycle.
    pub fn cycle(&self, took: Duration, pods: usize, interfaces: usize) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in CYCLE_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.cycles.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.pods.store(pods as u64, Ordering::Relaxed);
        self.interfaces.store(interfaces as u64, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_success_millis.store(now, Ordering::Relaxed);
    }

    /// Counts an error of `stage` (`receiver`, `resolver`, `exporter`) in component `id`.
    pub fn error(&self, stage: &str, id: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors
            .entry((stage.to_string(), id.to_string()))
            .or_default() += 1;
    }

    /// Publishes the statistics of exporter `id` (`otlp_grpc`, `otlp_http/backup`, …) from
    /// now on, for as long as `source` lives.
    pub fn report_exporter(&self, id: &str, source: Weak<dyn ExporterStatsSource>) {
        let mut all = self.exporters.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, w)| w.strong_count() > 0);
        all.push((id.to_string(), source));
    }

    fn exporter_stats(&self) -> Vec<(String, ExporterStats)> {
        self.exporters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(id, w)| w.upgrade().map(|s| (id.clone(), s.stats())))
            .collect()
    }

    pub fn view(&self) -> MetricsView {
        MetricsView {
            cycles: self.cycles.load(Ordering::Relaxed),
            buckets: self.buckets[..CYCLE_BUCKETS.len()]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            duration_sum: self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            pods: self.pods.load(Ordering::Relaxed),
            interfaces: self.interfaces.load(Ordering::Relaxed),
            last_success: self.last_success_millis.load(Ordering::Relaxed) as f64 / 1e3,
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            exporters: self.exporter_stats(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_fill_cumulative_buckets() {
        let m = AgentMetrics::default();
        m.cycle(Duration::from_micros(800), 3, 4);
        m.cycle(Duration::from_millis(30), 5, 6);
        m.error("receiver", "cri");
        m.error("receiver", "cri");
        let v = m.view();
        assert_eq!(v.cycles, 2);
        assert_eq!(v.buckets[0], 1, "≤ 1 ms");
        assert_eq!(v.buckets[4], 1, "≤ 25 ms");
        assert_eq!(v.buckets[5], 2, "≤ 50 ms");
        assert_eq!(*v.buckets.last().unwrap(), 2);
        assert!((v.duration_sum - 0.0308).abs() < 1e-9);
        assert_eq!((v.pods, v.interfaces), (5, 6));
        assert!(v.last_success > 0.0);
        assert_eq!(v.errors[&("receiver".to_string(), "cri".to_string())], 2);
    }

    #[test]
    fn exporters_report_while_they_live() {
        struct Fixed(u64);
        impl ExporterStatsSource for Fixed {
            fn stats(&self) -> ExporterStats {
                ExporterStats {
                    retries: self.0,
                    ..ExporterStats::default()
                }
            }
        }
        let m = AgentMetrics::default();
        let a = std::sync::Arc::new(Fixed(3));
        let b = std::sync::Arc::new(Fixed(5));
        m.report_exporter("otlp_grpc", std::sync::Arc::downgrade(&a) as _);
        m.report_exporter("otlp_http/b", std::sync::Arc::downgrade(&b) as _);
        let ids: Vec<(String, u64)> = m
            .view()
            .exporters
            .into_iter()
            .map(|(id, s)| (id, s.retries))
            .collect();
        assert_eq!(ids, [("otlp_grpc".into(), 3), ("otlp_http/b".into(), 5)]);
        drop(b);
        assert_eq!(m.view().exporters.len(), 1, "a dropped exporter is gone");
        // Another agent's metrics know nothing of these.
        assert!(AgentMetrics::default().view().exporters.is_empty());
    }
}
