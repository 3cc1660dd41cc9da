//! Receivers find pods: each scan yields [`Sandbox`] records, what is known of a pod before its
//! network is looked at.

pub mod cri;
pub mod netns;

use std::time::Duration;

use async_trait::async_trait;

use crate::model::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The whole scan failed; the pipeline keeps the receiver's last good result.
    #[error("{0}")]
    Scan(String),
}

#[async_trait]
pub trait Receiver: Send + Sync {
    /// One scan. Individual entries that cannot be read are skipped (and logged) inside; an error
    /// means nothing could be scanned at all.
    async fn collect(&self) -> Result<Vec<Sandbox>, ReceiverError>;

    /// How often the pipeline asks for a scan.
    fn collection_interval(&self) -> Duration;

    /// Folders whose changes (namespaces mounted or removed) should make a scan run early.
    fn watch_folders(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }
}
