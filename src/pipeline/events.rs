//! What makes a cycle run before its interval is up: link changes in the host namespace (a pod's
//! host peer appearing or going), changes to the netns bind-mount folders (a namespace
//! mounted or removed) and the receivers' own events (the runtime's container events). Each bumps a counter the receive loops wait on, so a burst of events
//! makes one early cycle, not one per event.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use inotify::{Inotify, WatchMask};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::receivers::Receiver;
use crate::sys::netlink::LinkWatcher;

/// Bumped on every event; receive loops wait for it to change.
pub type Trigger = watch::Sender<u64>;

fn bump(trigger: &Trigger) {
    trigger.send_modify(|n| *n = n.wrapping_add(1));
}

/// Follows a receiver's own events until the task is dropped.
pub async fn receiver(receiver: Arc<dyn Receiver>, trigger: Trigger) {
    receiver.follow_events(&move || bump(&trigger)).await;
}

/// Watches the host namespace's links until the task is dropped.
pub async fn host_links(trigger: Trigger) {
    let mut watcher = match LinkWatcher::open() {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch host link changes; cycles run on their interval only");
            return;
        }
    };
    loop {
        match watcher.changed().await {
            Ok(()) => bump(&trigger),
            Err(e) => {
                warn!(error = %e, "host link watch stopped; cycles run on their interval only");
                return;
            }
        }
    }
}

/// Watches netns bind-mount folders for namespaces added or removed.
pub async fn folders(paths: Vec<PathBuf>, trigger: Trigger) {
    let inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => {
            warn!(error = %e, "cannot watch netns folders; cycles run on their interval only");
            return;
        }
    };
    let mask = WatchMask::CREATE | WatchMask::DELETE | WatchMask::MOVED_FROM | WatchMask::MOVED_TO;
    let mut watched = 0;
    for path in &paths {
        match inotify.watches().add(path, mask) {
            Ok(_) => watched += 1,
            Err(e) => debug!(path = %path.display(), error = %e, "netns folder not watched"),
        }
    }
    if watched == 0 {
        return;
    }
    let mut events = match inotify.into_event_stream([0u8; 4096]) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch netns folders");
            return;
        }
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => bump(&trigger),
            Err(e) => {
                warn!(error = %e, "netns folder watch stopped");
                return;
            }
        }
    }
}
