//! The runtime's container events (`GetContainerEvents`, CRI v1; containerd ≥ 1.7 with its
//! evented PLEG, CRI-O ≥ 1.26): a sandbox or container created, started, stopped or deleted
//! makes a scan run before the interval is up. The stream is followed on a connection of its
//! own, so it never waits behind (or delays) a scan.
//!
//! Runtimes without the stream (containerd 1.6 answers `Unimplemented` or "not implemented") are
//! asked again only rarely: the periodic list, the host link events and the netns folder events
//! still keep pods fresh (but a new sandbox's veth appears before the runtime lists it ready, so
//! on 1.6 a new pod waits for the interval).
//!
//! What the versions send for a sandbox (tests/cri_runtimes.rs): containerd 1.7 CREATED, STARTED,
//! STOPPED with the sandbox's status and DELETED without it, from one queue that all subscribers
//! read (each event reaches one of them; a subscriber that went away still takes one); 2.x the
//! same four, each with status, to every subscriber. Events are only a trigger: what a scan
//! lists decides, so a missing status changes nothing, and a missed event only leaves the change
//! to the next trigger or the interval.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tracing::{debug, info};

use crate::backoff::Backoff;

use super::proto::{ContainerEventType, GetEventsRequest};
use super::{CriClient, CriError, CriReceiver};

/// First delay before reconnecting after the stream broke; doubles up to the interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// How often a runtime that had no event stream is asked again (it may have been upgraded).
const UNSUPPORTED_RETRY: Duration = Duration::from_secs(300);

/// How one subscription ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// The runtime closed the stream (it is restarting, or shutting down).
    Closed,
    /// The runtime does not offer the stream.
    Unsupported(CriError),
    /// Connecting or reading failed.
    Failed(CriError),
}

impl CriReceiver {
    /// Subscribes once and calls `changed` for every event until the stream ends. Events seen
    /// are counted (`events()`).
    pub async fn follow_events_once(&self, changed: &(dyn Fn() + Send + Sync)) -> StreamEnd {
        let socket = match self.endpoint.resolve(&self.config.host_root) {
            Ok(s) => s,
            Err(detail) => {
                return StreamEnd::Failed(CriError::Connect {
                    socket: self.config.endpoint.clone(),
                    detail,
                });
            }
        };
        // Its own call counter: the per-cycle call count stays exactly the lists and statuses.
        let client = match CriClient::new(socket, self.config.timeout, Arc::new(AtomicU64::new(0)))
        {
            Ok(c) => c,
            Err(e) => return StreamEnd::Failed(e),
        };
        // No timeout on the subscription: a runtime may send its response headers only with
        // its first event.
        let mut stream = match client.container_events(GetEventsRequest {}).await {
            Ok(s) => s,
            Err(e) if e.is_unimplemented() => return StreamEnd::Unsupported(e),
            Err(e) => return StreamEnd::Failed(e),
        };
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    self.events
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(
                        id = %event.container_id,
                        kind = ContainerEventType::try_from(event.container_event_type)
                            .map_or("unknown", |k| k.as_str_name()),
                        // containerd 1.7 sends DELETED without it; nothing here needs it: any
                        // event makes a scan, and the scan's list says what is gone.
                        with_status = event.pod_sandbox_status.is_some(),
                        "container event"
                    );
                    changed();
                }
                Ok(None) => return StreamEnd::Closed,
                Err(status) => {
                    let error = CriError::Call {
                        call: "GetContainerEvents",
                        status: Box::new(status),
                    };
                    return if error.is_unimplemented() {
                        StreamEnd::Unsupported(error)
                    } else {
                        StreamEnd::Failed(error)
                    };
                }
            }
        }
    }

    /// Follows the events for as long as the task runs: reconnects with backoff after a break,
    /// and asks a runtime without the stream again every few minutes.
    pub(super) async fn follow_events_forever(&self, changed: &(dyn Fn() + Send + Sync)) {
        if !self.config.container_events {
            debug!("container events turned off (container_events: false)");
            return std::future::pending().await;
        }
        let cap = self.config.collection_interval.max(FIRST_RETRY);
        let mut backoff = Backoff::doubling(FIRST_RETRY, cap);
        let mut said_unsupported = false;
        let mut said_failed = false;
        loop {
            let started = tokio::time::Instant::now();
            let end = self.follow_events_once(changed).await;
            // A stream that ran for a while was healthy: start the backoff (and the log) over.
            if started.elapsed() > cap {
                backoff.reset();
                said_failed = false;
            }
            let retry = backoff.next_delay();
            let wait = match end {
                StreamEnd::Unsupported(e) => {
                    if !said_unsupported {
                        info!(
                            error = %e,
                            interval = ?self.config.collection_interval,
                            "the runtime offers no container events; sandboxes are listed on the interval and on host link changes"
                        );
                        said_unsupported = true;
                    }
                    UNSUPPORTED_RETRY
                }
                StreamEnd::Closed => {
                    debug!("the runtime closed its event stream; subscribing again");
                    retry
                }
                StreamEnd::Failed(e) => {
                    // The scan reports the runtime's state (health, errors); this only says
                    // it once per outage.
                    if !said_failed {
                        debug!(error = %e, "container event stream unavailable; retrying");
                        said_failed = true;
                    }
                    retry
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}
