//! The running service: one task per receiver (shared by the pipelines that use it), one task
//! per pipeline that turns fresh receiver results into snapshots, and an orderly shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, warn};

use crate::backoff::Backoff;
use crate::exporters::Exporter;
use crate::extensions::Extension;
use crate::health::Health;
use crate::model::Sandboxes;
use crate::receivers::Receiver;
use crate::resolvers::StartContext;
use crate::self_metrics::AgentMetrics;
use crate::sys::alarm::Alarm;

use super::{Service, cycle, events};

/// Changes that arrive together (several receivers ticking at once, later bursts of events)
/// make one cycle.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// After an event, how long to wait for the rest of its burst before scanning.
const EVENT_SETTLE: Duration = Duration::from_millis(50);

/// After a scan an event started, one more this soon. A runtime lists a sandbox only once it
/// is ready, which is after its network (the veth and namespace that made the event) exists;
/// without container events (containerd 1.6, `container_events: false`) nothing else would
/// tell the agent, and the pod would wait for the interval.
const EVENT_FOLLOW_UP: Duration = Duration::from_secs(1);

/// Free heap memory beyond this is handed back to the kernel after a cycle.
const TRIM_OVER: usize = 2 << 20;

/// In the steady state, free memory is looked at once in this many cycles.
const TRIM_EVERY: u64 = 10;

/// How long each exporter may take to flush at shutdown.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// A receiver's latest good result, `None` before its first.
type Latest = watch::Receiver<Option<Sandboxes>>;

impl Service {
    /// Starts the exporters, then runs until `shutdown` completes, then stops the exporters.
    ///
    /// Collection (event sources, receive loops, pipeline cycles) runs on a runtime of its own,
    /// on one dedicated thread; the caller's runtime keeps what must answer promptly: the
    /// exporters' servers and senders, the extensions, the API server watches. So receivers and
    /// resolvers may block (netlink requests, which can wait on the kernel's RTNL lock; file
    /// scans): that holds up only the next cycle, never a scrape or a health probe. And a
    /// steady cycle needs no thread hand-off: handing each blocking step to tokio's blocking
    /// pool cost two thread wake-ups a step (about 0.1 ms of a cycle's CPU on the benchmark's
    /// VM, docs/benchmarks.md).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let exporters = self.unique_exporters();
        self.start_components(&exporters).await?;
        let Service {
            context,
            extensions,
            pipelines,
            health,
            ..
        } = self;
        let collection = Collection {
            node: context.node_name.clone(),
            metrics: Arc::clone(&context.metrics),
            health,
            pipelines,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the collection runtime")?;
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("netshim-collect".into())
            .spawn(move || {
                let _entered = span.enter();
                runtime.block_on(collection.run(stop_rx));
                // Dropped here, on its own thread: dropping a runtime inside another's async
                // context panics.
                drop(runtime);
                let _ = done_tx.send(());
            })
            .context("starting the collection thread")?;
        info!(node = %context.node_name, "netshim running");

        shutdown.await;
        info!("shutting down");
        let _ = stop_tx.send(());
        // Err: the thread ended without saying so (it panicked); nothing is left to stop.
        let _ = done_rx.await;
        stop(&exporters, &extensions).await;
        info!("stopped");
        Ok(())
    }

    fn unique_exporters(&self) -> BTreeMap<String, Arc<dyn Exporter>> {
        self.pipelines
            .iter()
            .flat_map(|p| p.exporters.iter())
            .map(|(id, e)| (id.clone(), Arc::clone(e)))
            .collect()
    }

    /// Starts the exporters, the extensions and the resolvers (each once, however many
    /// pipelines use it), in that order: whatever produces data finds its consumers ready.
    async fn start_components(
        &self,
        exporters: &BTreeMap<String, Arc<dyn Exporter>>,
    ) -> anyhow::Result<()> {
        for (id, exporter) in exporters {
            exporter
                .start()
                .await
                .with_context(|| format!("starting exporter {id}"))?;
        }
        for (id, extension) in &self.extensions {
            extension
                .start(self.health.clone())
                .await
                .with_context(|| format!("starting extension {id}"))?;
        }
        let mut started = BTreeSet::new();
        for (id, resolver) in self.pipelines.iter().flat_map(|p| &p.resolvers) {
            if started.insert(id.clone()) {
                let context = StartContext {
                    id: id.clone(),
                    health: self.health.clone(),
                    one_shot: false,
                };
                resolver
                    .start(context)
                    .await
                    .with_context(|| format!("starting resolver {id}"))?;
            }
        }
        Ok(())
    }
}

/// What runs on the collection thread: every receiver's loop (and event listener), each
/// pipeline's cycles, the host's event sources.
struct Collection {
    node: String,
    metrics: Arc<AgentMetrics>,
    health: Health,
    pipelines: Vec<super::Pipeline>,
}

impl Collection {
    /// Runs until `stop` fires (or its sender is gone), then ends every task.
    async fn run(self, stop: tokio::sync::oneshot::Receiver<()>) {
        let mut tasks = JoinSet::new();
        // Events make receivers scan before their interval is up.
        let (trigger, early) = watch::channel(0u64);
        self.spawn_event_sources(&mut tasks, &trigger);
        let latest = self.spawn_receivers(&mut tasks, &trigger, &early);
        for pipeline in self.pipelines {
            let inputs: Vec<Latest> = pipeline
                .receivers
                .iter()
                .filter_map(|(id, _)| latest.get(id).cloned())
                .collect();
            let metrics = Arc::clone(&self.metrics);
            tasks.spawn(pipeline_loop(pipeline, self.node.clone(), inputs, metrics));
        }
        let _ = stop.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    /// The host's link changes and the receivers' watched folders, each bumping `trigger`.
    fn spawn_event_sources(&self, tasks: &mut JoinSet<()>, trigger: &watch::Sender<u64>) {
        tasks.spawn(events::host_links(trigger.clone()));
        let mut folders: Vec<PathBuf> = self
            .pipelines
            .iter()
            .flat_map(|p| p.receivers.iter().flat_map(|(_, r)| r.watch_folders()))
            .collect();
        folders.sort();
        folders.dedup();
        if !folders.is_empty() {
            tasks.spawn(events::folders(folders, trigger.clone()));
        }
    }

    /// One receive loop (and one event listener) per receiver, however many pipelines use
    /// it; returns where each publishes its results.
    fn spawn_receivers(
        &self,
        tasks: &mut JoinSet<()>,
        trigger: &watch::Sender<u64>,
        early: &watch::Receiver<u64>,
    ) -> BTreeMap<String, Latest> {
        let mut latest = BTreeMap::new();
        for (id, receiver) in self.pipelines.iter().flat_map(|p| &p.receivers) {
            if latest.contains_key(id) {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            latest.insert(id.clone(), rx);
            self.health.register(&format!("receivers::{id}"));
            tasks.spawn(events::receiver(Arc::clone(receiver), trigger.clone()));
            tasks.spawn(receive_loop(
                id.clone(),
                Arc::clone(receiver),
                tx,
                self.health.clone(),
                Arc::clone(&self.metrics),
                early.clone(),
            ));
        }
        latest
    }
}

/// Lets the exporters push what they hold (the last snapshot), in parallel and each within
/// [`SHUTDOWN_LIMIT`], then stops the extensions.
async fn stop(
    exporters: &BTreeMap<String, Arc<dyn Exporter>>,
    extensions: &[(String, Arc<dyn Extension>)],
) {
    let flushes = exporters.iter().map(|(id, exporter)| async move {
        match tokio::time::timeout(SHUTDOWN_LIMIT, exporter.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(exporter = %id, error = %e, "exporter shutdown failed"),
            Err(_) => {
                warn!(exporter = %id, "exporter did not finish within {SHUTDOWN_LIMIT:?}")
            }
        }
    });
    futures::future::join_all(flushes).await;
    for (id, extension) in extensions {
        if let Err(e) = extension.shutdown().await {
            warn!(extension = %id, error = %e, "extension shutdown failed");
        }
    }
}

/// Scans every `collection_interval` and publishes each good result. A failure keeps the last
/// good result, marks the receiver not ready, is logged once per change of state (not once per
/// cycle), and is retried with backoff: soon at first, then at most every
/// `collection_interval`.
async fn receive_loop(
    id: String,
    receiver: Arc<dyn Receiver>,
    tx: watch::Sender<Option<Sandboxes>>,
    health: Health,
    metrics: Arc<AgentMetrics>,
    mut early: watch::Receiver<u64>,
) {
    let interval = receiver.collection_interval();
    let key = format!("receivers::{id}");
    let mut backoff = receiver_backoff(interval);
    let mut timer = Timer::new();
    let mut event_scan = false; // this scan was started by an event
    loop {
        let started = Instant::now();
        // At debug level: the OTLP traces layer (netshim's spans from debug up) gets it, the
        // log layer at its usual `info` does not, and does not format its fields every cycle.
        let span = tracing::debug_span!("netshim.receive", receiver = %id);
        match receiver.collect().instrument(span).await {
            Ok(found) => {
                if health.report(&key, Ok(())) {
                    info!(receiver = %id, "receiver ready");
                }
                backoff.reset();
                // Nobody listening only means every pipeline has stopped.
                if tx.send(Some(found)).is_err() {
                    return;
                }
                let wait = if event_scan {
                    EVENT_FOLLOW_UP.min(interval)
                } else {
                    interval
                };
                event_scan = timer.until_due_or_event(started + wait, &mut early).await;
            }
            Err(e) => {
                metrics.error("receiver", &id);
                let msg = e.to_string();
                if health.report(&key, Err(msg.clone())) {
                    warn!(receiver = %id, error = %msg, "receiver failed; keeping its last result and retrying");
                }
                // Events do not cut a failing receiver's backoff short: on a busy node host
                // link changes come several times a second, and each would retry a dead
                // runtime.
                timer.sleep_until(started + backoff.next_delay()).await;
                early.mark_unchanged();
                event_scan = false;
            }
        }
    }
}

/// What a receive loop sleeps on: the kernel's timer (`sys::alarm`: one wake-up at the
/// deadline), or tokio's when no timerfd could be made.
struct Timer {
    alarm: Option<Alarm>,
}

impl Timer {
    fn new() -> Self {
        let alarm = Alarm::new()
            .inspect_err(|e| debug!(error = %e, "no timerfd; sleeping on tokio's timer"))
            .ok();
        Timer { alarm }
    }

    async fn sleep_until(&mut self, due: Instant) {
        if let Some(alarm) = self.alarm.as_mut() {
            match alarm.sleep_until(due).await {
                Ok(()) => return,
                Err(e) => {
                    debug!(error = %e, "timerfd failed; sleeping on tokio's timer from now on");
                    self.alarm = None;
                }
            }
        }
        tokio::time::sleep_until(due.into()).await;
    }

    /// Waits until `due` or an event, whichever comes first; true for an event. After an
    /// event it lets the rest of the burst (a pod's veth, its namespace, its addresses) land.
    async fn until_due_or_event(&mut self, due: Instant, early: &mut watch::Receiver<u64>) -> bool {
        tokio::select! {
            () = self.sleep_until(due) => false,
            changed = early.changed() => {
                if changed.is_err() {
                    // No more events (shutting down): the interval still holds.
                    self.sleep_until(due).await;
                    return false;
                }
                tokio::time::sleep(EVENT_SETTLE).await;
                early.mark_unchanged();
                true
            }
        }
    }
}

/// Retry delays after failures: 500 ms, doubling, capped at the collection interval.
fn receiver_backoff(interval: Duration) -> Backoff {
    Backoff::doubling(Duration::from_millis(500), interval)
}

/// Runs a cycle whenever one of the pipeline's receivers has something new.
async fn pipeline_loop(
    pipeline: super::Pipeline,
    node: String,
    mut inputs: Vec<Latest>,
    metrics: Arc<AgentMetrics>,
) {
    let mut cycles: u64 = 0;
    let mut pods_at_last_trim = 0;
    loop {
        if !wait_any_changed(&mut inputs).await {
            return;
        }
        // With one receiver there is nothing to wait for: its result is the whole cycle.
        if inputs.len() > 1 {
            tokio::time::sleep(DEBOUNCE).await;
        }
        let found: Vec<Sandboxes> = inputs
            .iter_mut()
            .filter_map(|rx| rx.borrow_and_update().clone())
            .collect();
        let span = tracing::debug_span!("netshim.cycle", pipeline = %pipeline.name);
        let snapshot = Arc::new(
            cycle::resolve(&pipeline, &node, &found, &metrics)
                .instrument(span)
                .await,
        );
        let exports = pipeline.exporters.iter().map(|(id, exporter)| {
            let snapshot = Arc::clone(&snapshot);
            let metrics = Arc::clone(&metrics);
            async move {
                if let Err(e) = exporter.export(snapshot).await {
                    metrics.error("exporter", id);
                    warn!(exporter = %id, error = %e, "export failed");
                }
            }
        });
        futures::future::join_all(exports).await;
        let pods = snapshot.pods.len();
        drop(snapshot);
        // Free memory (earlier snapshots, dumps, renders) goes back to the kernel once there is
        // enough of it to matter: after pods came or went, and every TRIM_EVERY cycles. Not every
        // cycle: in the steady state each cycle frees about what the next one allocates, and
        // trimming it each time cost page faults to take it back (a tenth of the CPU per cycle
        // at 1000 pods, with the allocator's statistics walk).
        cycles += 1;
        if pods != pods_at_last_trim || cycles.is_multiple_of(TRIM_EVERY) {
            pods_at_last_trim = pods;
            // On the collection thread, where blocking is fine (see `Service::run`).
            crate::sys::memory::release_free_memory(TRIM_OVER);
        }
    }
}

/// Waits until any input has an unseen value; false when a sender is gone (the service is
/// shutting down).
async fn wait_any_changed(inputs: &mut [Latest]) -> bool {
    if inputs.iter().any(|rx| rx.has_changed().unwrap_or(false)) {
        return true;
    }
    if inputs.is_empty() {
        return false;
    }
    let changes = inputs.iter_mut().map(|rx| Box::pin(rx.changed()));
    let (result, _, _) = futures::future::select_all(changes).await;
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval_and_resets() {
        let mut b = receiver_backoff(Duration::from_secs(3));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 3000, 3000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        let mut short = receiver_backoff(Duration::from_millis(200));
        assert_eq!(short.next_delay(), Duration::from_millis(200));
    }
}
