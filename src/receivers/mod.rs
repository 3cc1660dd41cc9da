//! Receivers find pods: each scan yields [`Sandbox`] records, what is known of a pod before its
//! network is looked at.

pub mod cri;
pub mod netns;

use std::time::Duration;

use async_trait::async_trait;

use crate::model::Sandboxes;

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The whole scan failed; the pipeline keeps the receiver's last good result.
    #[error("{0}")]
    Scan(String),
}

/// The factory of one receiver type (see [`crate::component`]).
pub type ReceiverFactory = crate::component::Factory<dyn Receiver>;

#[async_trait]
pub trait Receiver: Send + Sync {
    /// One scan. Individual entries that cannot be read are skipped (and logged) inside; an error
    /// means nothing could be scanned at all. Called on the collection thread (or by
    /// `netshim discover`), where blocking calls are fine: nothing else waits on that thread.
    /// A receiver may hand out the same list again when it knows nothing changed.
    async fn collect(&self) -> Result<Sandboxes, ReceiverError>;

    /// How often the pipeline asks for a scan.
    fn collection_interval(&self) -> Duration;

    /// Folders whose changes (namespaces mounted or removed) should make a scan run early.
    fn watch_folders(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    /// Follows the source's own change events, where it has any, calling `changed` for each, so
    /// that a scan runs before the interval is up. Runs until the task is dropped; returning
    /// means the source has no events to offer (the default).
    async fn follow_events(&self, _changed: &(dyn Fn() + Send + Sync)) {}
}
