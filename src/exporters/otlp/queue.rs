//! The sending queue and the retry loop. `export` puts one payload per snapshot at the back of
//! a bounded queue (dropping the oldest when full) and returns; one background task sends
//! them in order, retrying transient failures with exponential backoff.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use super::config::RetrySettings;
use super::transport::{Accepted, Payload, SendError, Sender};

/// While shutting down, no wait between attempts is longer than this: what is pending is
/// pushed as fast as the collector answers, until the shutdown bound.
const CLOSING_MAX_WAIT: Duration = Duration::from_millis(250);

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

#[derive(Default)]
struct Counters {
    sent_batches: AtomicU64,
    sent_points: AtomicU64,
    rejected_points: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_failed: AtomicU64,
    dropped_shutdown: AtomicU64,
    dropped_points: AtomicU64,
    retries: AtomicU64,
}

/// Where the exporter stands, so that each change is logged once.
enum Health {
    Healthy,
    /// Retryable failures since `since`; `dropped` batches given up meanwhile.
    Failing {
        since: Instant,
        dropped: u64,
    },
    /// The collector refuses the data for good (bad request, auth, …): `message`.
    Refused {
        message: String,
    },
}

/// State shared by the exporter and its sending task.
pub struct Shared {
    id: String,
    queue: Mutex<VecDeque<Payload>>,
    capacity: usize,
    /// Wakes the sending task when something is queued.
    wake: Notify,
    /// Set once, at shutdown.
    closing: watch::Sender<bool>,
    counters: Counters,
    health: Mutex<Health>,
    /// The queue is dropping batches (logged once per episode).
    overflowing: Mutex<bool>,
    /// The last partial-success message logged.
    last_partial: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these leaves plain data: keep going with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(id: &str, capacity: usize) -> Self {
        Shared {
            id: id.to_string(),
            queue: Mutex::new(VecDeque::new()),
            capacity,
            wake: Notify::new(),
            closing: watch::Sender::new(false),
            counters: Counters::default(),
            health: Mutex::new(Health::Healthy),
            overflowing: Mutex::new(false),
            last_partial: Mutex::new(None),
        }
    }

    pub fn stats(&self) -> ExporterStats {
        let c = &self.counters;
        let (len, bytes) = {
            let q = lock(&self.queue);
            (q.len(), q.iter().map(|p| p.body.len()).sum::<usize>())
        };
        ExporterStats {
            sent_batches: c.sent_batches.load(Ordering::Relaxed),
            sent_points: c.sent_points.load(Ordering::Relaxed),
            rejected_points: c.rejected_points.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_failed: c.dropped_failed.load(Ordering::Relaxed),
            dropped_shutdown: c.dropped_shutdown.load(Ordering::Relaxed),
            dropped_points: c.dropped_points.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            queue_length: len as u64,
            queue_capacity: self.capacity as u64,
            queue_bytes: bytes as u64,
        }
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Starts the shutdown: the sending task empties the queue, then ends.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Queues a payload, dropping (and counting) the oldest when full.
    pub fn enqueue(&self, payload: Payload) {
        let dropped = {
            let mut q = lock(&self.queue);
            let dropped = if q.len() >= self.capacity {
                q.pop_front()
            } else {
                None
            };
            q.push_back(payload);
            dropped
        };
        let mut overflowing = lock(&self.overflowing);
        match dropped {
            Some(old) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .dropped_points
                    .fetch_add(old.points, Ordering::Relaxed);
                if !*overflowing {
                    *overflowing = true;
                    warn!(
                        exporter = %self.id,
                        queue_size = self.capacity,
                        "sending queue full: dropping the oldest batches until the collector catches up"
                    );
                }
            }
            None if *overflowing => {
                *overflowing = false;
                info!(
                    exporter = %self.id,
                    dropped_total = self.counters.dropped_queue_full.load(Ordering::Relaxed),
                    "sending queue has room again"
                );
            }
            None => {}
        }
        drop(overflowing);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Payload> {
        lock(&self.queue).pop_front()
    }

    /// Counts what is still queued (and the batch in flight) as lost at shutdown.
    pub fn abandon(&self, in_flight: Option<&Payload>) -> u64 {
        let left: Vec<Payload> = lock(&self.queue).drain(..).collect();
        let mut batches = 0;
        for p in left.iter().chain(in_flight) {
            batches += 1;
            self.counters
                .dropped_points
                .fetch_add(p.points, Ordering::Relaxed);
        }
        self.counters
            .dropped_shutdown
            .fetch_add(batches, Ordering::Relaxed);
        batches
    }

    fn sent(&self, payload: &Payload, accepted: Accepted) {
        self.counters.sent_batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .sent_points
            .fetch_add(payload.points, Ordering::Relaxed);
        {
            let mut health = lock(&self.health);
            match &*health {
                Health::Failing { since, dropped } => info!(
                    exporter = %self.id,
                    after = %humantime::format_duration(round(since.elapsed())),
                    dropped_meanwhile = dropped,
                    "export works again"
                ),
                Health::Refused { .. } => {
                    info!(exporter = %self.id, "the collector accepts the data again")
                }
                Health::Healthy => {}
            }
            *health = Health::Healthy;
        }
        let rejected = u64::try_from(accepted.rejected).unwrap_or(0);
        self.counters
            .rejected_points
            .fetch_add(rejected, Ordering::Relaxed);
        let mut last = lock(&self.last_partial);
        if rejected > 0 || !accepted.message.is_empty() {
            if last.as_deref() != Some(accepted.message.as_str()) {
                warn!(
                    exporter = %self.id,
                    rejected_points = rejected,
                    message = %accepted.message,
                    "the collector accepted the batch only in part"
                );
                *last = Some(accepted.message);
            } else {
                debug!(exporter = %self.id, rejected_points = rejected, "partial success again");
            }
        } else {
            *last = None;
        }
    }

    fn failing(&self, message: &str) {
        let mut health = lock(&self.health);
        if !matches!(*health, Health::Failing { .. }) {
            warn!(exporter = %self.id, error = %message, "export failed; retrying with backoff");
            *health = Health::Failing {
                since: Instant::now(),
                dropped: 0,
            };
        } else {
            debug!(exporter = %self.id, error = %message, "export failed again");
        }
    }

    fn dropped(&self, payload: &Payload, why: &str, permanent: bool) {
        self.counters.dropped_failed.fetch_add(1, Ordering::Relaxed);
        self.counters
            .dropped_points
            .fetch_add(payload.points, Ordering::Relaxed);
        let mut health = lock(&self.health);
        if permanent {
            let same = matches!(&*health, Health::Refused { message } if message == why);
            if same {
                debug!(exporter = %self.id, error = %why, "batch refused again; dropped");
            } else {
                error!(exporter = %self.id, error = %why, "the collector refused the batch; dropped (not retryable)");
                *health = Health::Refused {
                    message: why.to_string(),
                };
            }
            return;
        }
        match &mut *health {
            Health::Failing { dropped, .. } if *dropped > 0 => {
                *dropped += 1;
                debug!(exporter = %self.id, error = %why, "batch dropped");
            }
            Health::Failing { dropped, .. } => {
                *dropped = 1;
                warn!(exporter = %self.id, error = %why, "dropping batches that cannot be delivered");
            }
            _ => {
                warn!(exporter = %self.id, error = %why, "dropping batches that cannot be delivered");
                *health = Health::Failing {
                    since: Instant::now(),
                    dropped: 1,
                };
            }
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// The background task: sends queued payloads in order until shutdown has emptied the queue.
/// The payload it is working on is published in `in_flight` so that an aborted shutdown can
/// count it.
pub async fn run(
    shared: Arc<Shared>,
    sender: Arc<Sender>,
    retry: RetrySettings,
    in_flight: Arc<Mutex<Option<Payload>>>,
) {
    let mut closing = shared.closing.subscribe();
    loop {
        match shared.pop() {
            Some(payload) => {
                *lock(&in_flight) = Some(payload.clone());
                let _ = deliver(&shared, &sender, &retry, &payload).await;
                *lock(&in_flight) = None;
            }
            None if shared.is_closing() => return,
            None => {
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = closed(&mut closing) => {}
                }
            }
        }
    }
}

/// Sends one payload, retrying per `retry`; `Err` with the reason when it was dropped.
pub async fn deliver(
    shared: &Shared,
    sender: &Sender,
    retry: &RetrySettings,
    payload: &Payload,
) -> Result<(), String> {
    let first = Instant::now();
    let mut backoff = Backoff::new(retry);
    let mut closing = shared.closing.subscribe();
    loop {
        let (message, retry_after) = match sender.send(&payload.body).await {
            Ok(accepted) => {
                shared.sent(payload, accepted);
                return Ok(());
            }
            Err(SendError::Permanent(message)) => {
                shared.dropped(payload, &message, true);
                return Err(message);
            }
            Err(SendError::Retryable {
                message,
                retry_after,
            }) => (message, retry_after),
        };
        if !retry.enabled {
            let why = format!("{message} (retry_on_failure disabled)");
            shared.dropped(payload, &why, false);
            return Err(why);
        }
        shared.failing(&message);
        let wait = backoff.next().max(retry_after.unwrap_or_default());
        let limit = retry.max_elapsed_time;
        if !limit.is_zero() && first.elapsed() + wait > limit {
            let why = format!(
                "{message} (still failing after {}, retry_on_failure::max_elapsed_time {})",
                humantime::format_duration(round(first.elapsed())),
                humantime::format_duration(limit)
            );
            shared.dropped(payload, &why, false);
            return Err(why);
        }
        shared.counters.retries.fetch_add(1, Ordering::Relaxed);
        let wait = if shared.is_closing() {
            wait.min(CLOSING_MAX_WAIT)
        } else {
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // Shutdown cuts a long wait short: what is pending goes now.
            () = closed(&mut closing), if !shared.is_closing() => {
                tokio::time::sleep(wait.min(CLOSING_MAX_WAIT)).await;
            }
        }
    }
}

/// Returns once shutdown has begun.
async fn closed(closing: &mut watch::Receiver<bool>) {
    // An error means the exporter is gone: as good as closed.
    let _ = closing.wait_for(|c| *c).await;
}

/// Exponential backoff with jitter, as the Collector's `configretry`: each wait is the
/// current interval ± `randomization_factor`, then the interval grows by `multiplier` up to
/// `max_interval`.
struct Backoff {
    current: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
}

impl Backoff {
    fn new(s: &RetrySettings) -> Self {
        Backoff {
            current: s.initial_interval,
            max: s.max_interval,
            multiplier: s.multiplier,
            randomization: s.randomization_factor,
        }
    }

    fn next(&mut self) -> Duration {
        let base = self.current.as_secs_f64();
        let delta = base * self.randomization;
        let wait = base - delta + random_unit() * 2.0 * delta;
        self.current = Duration::try_from_secs_f64(base * self.multiplier)
            .unwrap_or(self.max)
            .min(self.max);
        Duration::try_from_secs_f64(wait).unwrap_or(self.current)
    }
}

/// A number in [0, 1) from the standard library's per-process random hash keys.
fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn payload(n: u64) -> Payload {
        Payload {
            body: Bytes::from(vec![0u8; n as usize]),
            points: n,
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let shared = Shared::new("otlp_grpc", 3);
        for n in 1..=5 {
            shared.enqueue(payload(n));
        }
        let stats = shared.stats();
        assert_eq!(stats.queue_length, 3);
        assert_eq!(stats.queue_capacity, 3);
        assert_eq!(stats.dropped_queue_full, 2);
        assert_eq!(stats.dropped_points, 1 + 2);
        assert_eq!(stats.queue_bytes, 3 + 4 + 5);
        assert_eq!(shared.pop().map(|p| p.points), Some(3), "oldest left first");
        assert_eq!(shared.abandon(None), 2);
        assert_eq!(shared.stats().dropped_shutdown, 2);
    }

    #[test]
    fn backoff_grows_to_its_bound_with_jitter() {
        let settings = RetrySettings {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(4),
            ..RetrySettings::default()
        };
        let mut b = Backoff::new(&settings);
        let waits: Vec<f64> = (0..6).map(|_| b.next().as_secs_f64()).collect();
        let bases = [1.0, 1.5, 2.25, 3.375, 4.0, 4.0];
        for (w, base) in waits.iter().zip(bases) {
            assert!(
                *w >= base * 0.5 && *w <= base * 1.5,
                "{w} outside {base} ± 50%"
            );
        }
        let exact = RetrySettings {
            randomization_factor: 0.0,
            ..settings
        };
        let mut b = Backoff::new(&exact);
        assert_eq!(b.next(), Duration::from_secs(1));
        assert_eq!(b.next(), Duration::from_millis(1500));
    }
}
