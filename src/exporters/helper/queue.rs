//! The sending queue (the Collector's `sending_queue`). `export` puts one batch per snapshot
//! at the back of a bounded queue (dropping the oldest when full) and returns; one background
//! task ([`run`]) sends them in order, retrying per [`super::retry`]. The queue also keeps the
//! exporter's numbers ([`ExporterStats`]) and logs each change of its health once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
// tokio's clock, so that tests can run the retry and shutdown timing on paused time.
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::retry::RetrySettings;
use super::{Accepted, Batch, BatchSender, SendError};
use crate::self_metrics::{ExporterStats, ExporterStatsSource};

/// The Collector's `sending_queue`, sized in batches (one batch = one snapshot).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// When false, `export` sends (and retries) before returning.
    pub enabled: bool,
    /// Batches waiting at most; when full the oldest is dropped. Default: 10, not the
    /// Collector's 1000: each batch is a whole snapshot of cumulative counters (about 1.3 KB
    /// per pod interface), so the newest supersedes the ones before it, and 1000 of them at
    /// 1000 pods would hold over a gigabyte through a long outage.
    pub queue_size: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: true,
            queue_size: 10,
        }
    }
}

impl QueueSettings {
    /// Every problem with these settings, each with its path under the exporter.
    pub fn problems(&self) -> Vec<String> {
        if self.enabled && self.queue_size == 0 {
            return vec![
                "sending_queue::queue_size must be at least 1 (or set sending_queue::enabled: false)"
                    .into(),
            ];
        }
        Vec::new()
    }

    /// Batches the queue holds at most (0 when disabled).
    pub fn capacity(&self) -> usize {
        if self.enabled { self.queue_size } else { 0 }
    }
}

/// While shutting down, no wait between attempts is longer than this: what is pending is
/// pushed as fast as the receiver answers, until the shutdown bound.
const CLOSING_MAX_WAIT: Duration = Duration::from_millis(250);

#[derive(Default)]
pub(super) struct Counters {
    sent_batches: AtomicU64,
    sent_points: AtomicU64,
    rejected_points: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_failed: AtomicU64,
    dropped_shutdown: AtomicU64,
    dropped_points: AtomicU64,
    pub(super) retries: AtomicU64,
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

/// The queue and the exporter's numbers, shared by the exporter and its sending task.
pub struct SendingQueue {
    id: String,
    queue: Mutex<VecDeque<Batch>>,
    /// The batch being sent by the task, so that an aborted shutdown can count it.
    in_flight: Mutex<Option<Batch>>,
    capacity: usize,
    /// Wakes the sending task when something is queued.
    wake: Notify,
    /// Set once, at shutdown.
    pub(super) closing: watch::Sender<bool>,
    pub(super) counters: Counters,
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

impl SendingQueue {
    /// The queue of exporter `id` (its component id, for logs and metrics), holding at most
    /// `capacity` batches.
    pub fn new(id: &str, capacity: usize) -> Self {
        SendingQueue {
            id: id.to_string(),
            queue: Mutex::new(VecDeque::new()),
            in_flight: Mutex::new(None),
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
    pub fn enqueue(&self, payload: Batch) {
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

    fn pop(&self) -> Option<Batch> {
        lock(&self.queue).pop_front()
    }

    /// Counts what is still queued (and the batch in flight) as lost at shutdown.
    pub fn abandon(&self) -> u64 {
        let left: Vec<Batch> = lock(&self.queue).drain(..).collect();
        let in_flight = lock(&self.in_flight).take();
        let mut batches = 0;
        for p in left.iter().chain(in_flight.as_ref()) {
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

    pub(super) fn sent(&self, payload: &Batch, accepted: Accepted) {
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

    pub(super) fn failing(&self, message: &str) {
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

    pub(super) fn dropped(&self, payload: &Batch, why: &str, permanent: bool) {
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

/// The background task: sends queued batches in order until shutdown has emptied the queue.
pub async fn run<S: BatchSender>(queue: Arc<SendingQueue>, sender: Arc<S>, retry: RetrySettings) {
    let mut closing = queue.closing.subscribe();
    loop {
        match queue.pop() {
            Some(batch) => {
                *lock(&queue.in_flight) = Some(batch.clone());
                let _ = deliver(&queue, sender.as_ref(), &retry, &batch).await;
                *lock(&queue.in_flight) = None;
            }
            None if queue.is_closing() => return,
            None => {
                tokio::select! {
                    () = queue.wake.notified() => {}
                    () = closed(&mut closing) => {}
                }
            }
        }
    }
}

/// Sends one batch, retrying per `retry`; `Err` with the reason when it was dropped. With the
/// queue disabled the exporter calls this itself; with it, [`run`] does.
pub async fn deliver(
    shared: &SendingQueue,
    sender: &impl BatchSender,
    retry: &RetrySettings,
    payload: &Batch,
) -> Result<(), String> {
    let first = Instant::now();
    let mut backoff = retry.backoff();
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
        let wait = backoff.next_delay().max(retry_after.unwrap_or_default());
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

/// Ends the sending task started by [`run`]: waits at most `bound` for it to push what is
/// queued (call [`SendingQueue::close`] first), then aborts it and counts what was left as
/// dropped. `Err` says what went wrong.
pub async fn finish(
    queue: &SendingQueue,
    mut worker: JoinHandle<()>,
    bound: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(bound, &mut worker).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            error!(exporter = %queue.id, error = %e, "the sending task failed");
            Err(format!("sending task: {e}"))
        }
        Err(_) => {
            worker.abort();
            let lost = queue.abandon();
            warn!(
                exporter = %queue.id,
                batches = lost,
                bound = %humantime::format_duration(bound),
                "shutdown: batches not delivered in time were dropped"
            );
            Err(format!(
                "{lost} batches not delivered within {}",
                humantime::format_duration(bound)
            ))
        }
    }
}

/// Returns once shutdown has begun.
async fn closed(closing: &mut watch::Receiver<bool>) {
    // An error means the exporter is gone: as good as closed.
    let _ = closing.wait_for(|c| *c).await;
}

impl ExporterStatsSource for SendingQueue {
    fn stats(&self) -> ExporterStats {
        SendingQueue::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::*;

    fn payload(n: u64) -> Batch {
        Batch {
            body: Bytes::from(vec![0u8; n as usize]),
            points: n,
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let shared = SendingQueue::new("otlp_grpc", 3);
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
        assert_eq!(shared.abandon(), 2);
        assert_eq!(shared.stats().dropped_shutdown, 2);
    }

    /// A receiver that answers from a script (then "down" for ever, or never when `hang`),
    /// noting when, on tokio's clock, each attempt came. The timing under test is the
    /// helper's; the real transports are tested against a real OTLP receiver in tests/otlp.rs.
    struct Scripted {
        answers: Mutex<VecDeque<Result<Accepted, SendError>>>,
        attempts: Mutex<Vec<Instant>>,
        hang: bool,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Accepted, SendError>>) -> Self {
            Scripted {
                answers: Mutex::new(answers.into()),
                attempts: Mutex::default(),
                hang: false,
            }
        }

        /// Seconds after `start` of each attempt.
        fn offsets(&self, start: Instant) -> Vec<f64> {
            let attempts = lock(&self.attempts);
            attempts
                .iter()
                .map(|t| (*t - start).as_secs_f64())
                .collect()
        }
    }

    impl BatchSender for Scripted {
        async fn send(&self, _: &Bytes) -> Result<Accepted, SendError> {
            lock(&self.attempts).push(Instant::now());
            if self.hang {
                std::future::pending::<()>().await;
            }
            let next = lock(&self.answers).pop_front();
            next.unwrap_or_else(|| Err(down(None)))
        }
    }

    fn down(retry_after: Option<Duration>) -> SendError {
        SendError::Retryable {
            message: "unavailable".into(),
            retry_after,
        }
    }

    fn retry(initial: u64, max: u64, max_elapsed: u64) -> RetrySettings {
        RetrySettings {
            enabled: true,
            initial_interval: Duration::from_secs(initial),
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: Duration::from_secs(max),
            max_elapsed_time: Duration::from_secs(max_elapsed),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_and_give_up_after_max_elapsed_time() {
        let queue = SendingQueue::new("otlp_grpc/t", 4);
        let sender = Scripted::new(Vec::new());
        let start = Instant::now();
        let result = deliver(&queue, &sender, &retry(1, 4, 10), &payload(7)).await;
        let why = result.expect_err("dropped");
        assert!(why.contains("max_elapsed_time 10s"), "{why}");
        // Waits of 1, 2 and 4 s; the next (4 s) would end past 10 s, so the batch goes.
        assert_eq!(sender.offsets(start), [0.0, 1.0, 3.0, 7.0]);
        let stats = queue.stats();
        assert_eq!((stats.retries, stats.dropped_failed), (3, 1));
        assert_eq!((stats.dropped_points, stats.sent_batches), (7, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_receivers_retry_after_wins_when_longer() {
        let queue = SendingQueue::new("otlp_http/t", 4);
        let answers = vec![
            Err(down(Some(Duration::from_secs(9)))),
            Ok(Accepted::default()),
        ];
        let sender = Scripted::new(answers);
        let start = Instant::now();
        deliver(&queue, &sender, &retry(1, 4, 60), &payload(3))
            .await
            .expect("sent");
        assert_eq!(sender.offsets(start), [0.0, 9.0]);
        let stats = queue.stats();
        assert_eq!(
            (stats.sent_batches, stats.sent_points, stats.retries),
            (1, 3, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried_and_nothing_is_retried_when_disabled() {
        let queue = SendingQueue::new("otlp_grpc/t", 4);
        let refused = Scripted::new(vec![Err(SendError::Permanent("bad request".into()))]);
        let why = deliver(&queue, &refused, &retry(1, 4, 60), &payload(1)).await;
        assert_eq!(why.unwrap_err(), "bad request");
        assert_eq!(refused.offsets(Instant::now()).len(), 1);
        let disabled = RetrySettings {
            enabled: false,
            ..retry(1, 4, 60)
        };
        let sender = Scripted::new(Vec::new());
        let why = deliver(&queue, &sender, &disabled, &payload(1)).await;
        assert!(why.unwrap_err().contains("retry_on_failure disabled"));
        assert_eq!(lock(&sender.attempts).len(), 1);
        assert_eq!(queue.stats().dropped_failed, 2);
        assert_eq!(queue.stats().retries, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cuts_a_long_wait_short() {
        let queue = Arc::new(SendingQueue::new("otlp_grpc/t", 4));
        let sender = Arc::new(Scripted::new(vec![
            Err(down(None)),
            Ok(Accepted::default()),
        ]));
        let start = Instant::now();
        let worker = tokio::spawn(run(
            Arc::clone(&queue),
            Arc::clone(&sender),
            retry(30, 60, 300),
        ));
        queue.enqueue(payload(2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        queue.close();
        finish(&queue, worker, Duration::from_secs(10))
            .await
            .expect("pushed before the bound");
        // Without the shutdown the second attempt would have come at 30 s.
        let offsets = sender.offsets(start);
        assert_eq!(offsets.len(), 2, "{offsets:?}");
        assert!(
            offsets[1] > 1.0 && offsets[1] <= 1.0 + CLOSING_MAX_WAIT.as_secs_f64(),
            "{offsets:?}"
        );
        assert_eq!(queue.stats().sent_batches, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_at_its_bound_and_counts_what_was_left() {
        let queue = Arc::new(SendingQueue::new("otlp_grpc/t", 4));
        let sender = Arc::new(Scripted {
            hang: true,
            ..Scripted::new(Vec::new())
        });
        let worker = tokio::spawn(run(
            Arc::clone(&queue),
            Arc::clone(&sender),
            retry(1, 4, 60),
        ));
        queue.enqueue(payload(2));
        queue.enqueue(payload(3));
        tokio::task::yield_now().await;
        queue.close();
        let start = Instant::now();
        let why = finish(&queue, worker, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        // The batch in flight and the one still queued.
        assert_eq!(why, "2 batches not delivered within 2s");
        let stats = queue.stats();
        assert_eq!((stats.dropped_shutdown, stats.dropped_points), (2, 5));
    }
}
